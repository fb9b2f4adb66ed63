// Values: arena, constructors, the public doc API, UTF-8 and character classes,
// the provenance-keeping string builder, and Python's str() / repr() /
// json.dumps / == / < semantics.
#include "chat/impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- arena

struct arena_chunk {
    struct arena_chunk *next;
    size_t size; // usable bytes after the (16-byte) header
};

#define ARENA_CHUNK (64 * 1024)
#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

void arena_init(struct arena *a, size_t limit) {
    memset(a, 0, sizeof *a);
    a->limit = limit;
}

void arena_free(struct arena *a) {
    struct arena_chunk *c = a->chunks;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->chunks = NULL;
    a->cur = NULL;
    a->left = 0;
}

static struct arena_chunk *arena_new_chunk(struct arena *a, size_t size) {
    size_t hdr = ALIGN16(sizeof(struct arena_chunk));
    if (size > SIZE_MAX - hdr || a->total + size + hdr > a->limit || a->total + size + hdr < a->total) {
        a->failed = true;
        return NULL;
    }
    struct arena_chunk *c = malloc(hdr + size);
    if (!c) {
        a->failed = true;
        return NULL;
    }
    c->size = size;
    a->total += hdr + size;
    return c;
}

static char *chunk_data(struct arena_chunk *c) { return (char *)c + ALIGN16(sizeof(struct arena_chunk)); }

void *arena_alloc(struct arena *a, size_t n) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX / 2) {
        a->failed = true;
        return NULL;
    }
    n = ALIGN16(n);
    if (n <= a->left) {
        void *p = a->cur;
        a->cur += n;
        a->left -= n;
        return p;
    }
    if (n > ARENA_CHUNK / 4) {
        // A big block gets a chunk of its own, behind the current one, so the
        // free space of the current chunk is not wasted.
        struct arena_chunk *c = arena_new_chunk(a, n);
        if (!c) return NULL;
        if (a->chunks) {
            c->next = a->chunks->next;
            a->chunks->next = c;
        } else {
            c->next = NULL;
            a->chunks = c;
        }
        return chunk_data(c);
    }
    struct arena_chunk *c = arena_new_chunk(a, ARENA_CHUNK);
    if (!c) return NULL;
    c->next = a->chunks;
    a->chunks = c;
    a->cur = chunk_data(c) + n;
    a->left = ARENA_CHUNK - n;
    return chunk_data(c);
}

void *arena_zalloc(struct arena *a, size_t n) {
    void *p = arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

void *arena_grow(struct arena *a, void *old, size_t old_n, size_t new_n) {
    if (new_n <= old_n) return old;
    if (old && (char *)old + ALIGN16(old_n) == a->cur && ALIGN16(new_n) - ALIGN16(old_n) <= a->left) {
        // The newest block of the current chunk grows in place.
        size_t extra = ALIGN16(new_n) - ALIGN16(old_n);
        a->cur += extra;
        a->left -= extra;
        return old;
    }
    void *p = arena_alloc(a, new_n);
    if (p && old && old_n) memcpy(p, old, old_n);
    return p;
}

// ---------------------------------------------------------------- constructors

struct chat_value chat_undefined_value = {.type = CHAT_UNDEFINED, .undef_how = UNDEF_HINT};
struct chat_value chat_none_value = {.type = CHAT_NONE};
struct chat_value chat_true_value = {.type = CHAT_BOOL, .u.b = true};
struct chat_value chat_false_value = {.type = CHAT_BOOL, .u.b = false};

struct chat_value *cv_new(struct arena *a, int type) {
    struct chat_value *v = arena_zalloc(a, sizeof *v);
    if (v) v->type = (uint8_t)type;
    return v;
}

struct chat_value *cv_int(struct arena *a, int64_t i) {
    struct chat_value *v = cv_new(a, CHAT_INT);
    if (v) v->u.i = i;
    return v;
}

struct chat_value *cv_float(struct arena *a, double f) {
    struct chat_value *v = cv_new(a, CHAT_FLOAT);
    if (v) v->u.f = f;
    return v;
}

struct chat_value *cv_str(struct arena *a, struct cstr s) {
    struct chat_value *v = cv_new(a, CHAT_STRING);
    if (v) v->u.str = s;
    return v;
}

struct chat_value *cv_str_copy(struct arena *a, const char *s, size_t n, bool from_user) {
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    uint8_t *m = NULL;
    if (from_user && n) {
        m = arena_alloc(a, n);
        if (!m) return NULL;
        memset(m, 1, n);
    }
    return cv_str(a, (struct cstr){p, m, n});
}

struct chat_value *cv_array(struct arena *a, size_t cap) {
    struct chat_value *v = cv_new(a, CHAT_ARRAY);
    if (!v) return NULL;
    if (cap) {
        v->u.arr.v = arena_alloc(a, cap * sizeof *v->u.arr.v);
        if (!v->u.arr.v) return NULL;
        v->u.arr.cap = cap;
    }
    return v;
}

int cv_push(struct arena *a, struct chat_value *arr, struct chat_value *v) {
    if (!arr || !v) return -1;
    if (arr->u.arr.n == arr->u.arr.cap) {
        size_t cap = arr->u.arr.cap ? arr->u.arr.cap * 2 : 4;
        struct chat_value **nv = arena_grow(a, arr->u.arr.v, arr->u.arr.cap * sizeof *nv, cap * sizeof *nv);
        if (!nv) return -1;
        arr->u.arr.v = nv;
        arr->u.arr.cap = cap;
    }
    arr->u.arr.v[arr->u.arr.n++] = v;
    return 0;
}

// Python's hash agrees with == across int, float and bool, so 1, 1.0 and True
// are one key; this hash does the same for the keys a template can make.
static uint64_t key_hash(const struct chat_value *k) {
    uint64_t h = 1469598103934665603ull;
    switch (k->type) {
    case CHAT_STRING:
        for (size_t i = 0; i < k->u.str.len; i++) h = (h ^ (uint8_t)k->u.str.s[i]) * 1099511628211ull;
        return h;
    case CHAT_BOOL: return (uint64_t)k->u.b * 0x9E3779B97F4A7C15ull;
    case CHAT_INT: return (uint64_t)k->u.i * 0x9E3779B97F4A7C15ull;
    case CHAT_FLOAT:
        if (k->u.f == floor(k->u.f) && fabs(k->u.f) < 9.2e18) return (uint64_t)(int64_t)k->u.f * 0x9E3779B97F4A7C15ull;
        return 7;
    default: return (uint64_t)k->type;
    }
}

static bool key_eq(const struct chat_value *a, const struct chat_value *b) { return py_eq(a, b, 8, NULL) == 1; }

static int obj_reindex(struct arena *a, struct chat_value *obj, uint32_t cap) {
    uint32_t *idx = arena_zalloc(a, cap * sizeof *idx);
    if (!idx) return -1;
    for (size_t i = 0; i < obj->u.obj.n; i++) {
        uint32_t slot = (uint32_t)key_hash(obj->u.obj.keys[i]) & (cap - 1);
        while (idx[slot]) slot = (slot + 1) & (cap - 1);
        idx[slot] = (uint32_t)i + 1;
    }
    obj->u.obj.index = idx;
    obj->u.obj.index_cap = cap;
    return 0;
}

// Position of key in obj, or -1.
static long obj_pos(const struct chat_value *obj, const struct chat_value *key) {
    if (obj->u.obj.index_cap) {
        uint32_t cap = obj->u.obj.index_cap;
        uint32_t slot = (uint32_t)key_hash(key) & (cap - 1);
        while (obj->u.obj.index[slot]) {
            uint32_t i = obj->u.obj.index[slot] - 1;
            if (key_eq(obj->u.obj.keys[i], key)) return (long)i;
            slot = (slot + 1) & (cap - 1);
        }
        return -1;
    }
    for (size_t i = 0; i < obj->u.obj.n; i++)
        if (key_eq(obj->u.obj.keys[i], key)) return (long)i;
    return -1;
}

int cv_obj_set(struct arena *a, struct chat_value *obj, struct chat_value *key, struct chat_value *v) {
    if (!obj || !key || !v) return -1;
    long pos = obj_pos(obj, key);
    if (pos >= 0) {
        obj->u.obj.vals[pos] = v;
        return 0;
    }
    if (obj->u.obj.n >= UINT32_MAX / 4) return -1;
    if (obj->u.obj.n == obj->u.obj.cap) {
        size_t cap = obj->u.obj.cap ? obj->u.obj.cap * 2 : 4;
        struct chat_value **nk = arena_grow(a, obj->u.obj.keys, obj->u.obj.cap * sizeof *nk, cap * sizeof *nk);
        struct chat_value **nv = nk ? arena_grow(a, obj->u.obj.vals, obj->u.obj.cap * sizeof *nv, cap * sizeof *nv) : NULL;
        if (!nv) return -1;
        obj->u.obj.keys = nk;
        obj->u.obj.vals = nv;
        obj->u.obj.cap = cap;
    }
    size_t i = obj->u.obj.n++;
    obj->u.obj.keys[i] = key;
    obj->u.obj.vals[i] = v;
    if (obj->u.obj.n > 8) {
        uint32_t cap = obj->u.obj.index_cap;
        if ((size_t)obj->u.obj.n * 2 > cap) return obj_reindex(a, obj, cap ? cap * 2 : 32);
        uint32_t slot = (uint32_t)key_hash(key) & (cap - 1);
        while (obj->u.obj.index[slot]) slot = (slot + 1) & (cap - 1);
        obj->u.obj.index[slot] = (uint32_t)i + 1;
    }
    return 0;
}

struct chat_value *cv_obj_find(const struct chat_value *obj, const struct chat_value *key) {
    if (!obj || (obj->type != CHAT_OBJECT && obj->type != CV_NAMESPACE)) return NULL;
    long pos = obj_pos(obj, key);
    return pos < 0 ? NULL : obj->u.obj.vals[pos];
}

struct chat_value *cv_obj_get(const struct chat_value *obj, const char *key, size_t len) {
    struct chat_value k = {.type = CHAT_STRING, .u.str = {key, NULL, len}};
    return cv_obj_find(obj, &k);
}

// ---------------------------------------------------------------- public doc API

struct chat_doc *chat_doc_new(void) {
    struct chat_doc *d = malloc(sizeof *d);
    if (d) arena_init(&d->a, SIZE_MAX);
    return d;
}

void chat_doc_free(struct chat_doc *d) {
    if (!d) return;
    arena_free(&d->a);
    free(d);
}

struct chat_value *chat_new_none(struct chat_doc *d) { return cv_new(&d->a, CHAT_NONE); }
struct chat_value *chat_new_bool(struct chat_doc *d, bool b) {
    struct chat_value *v = cv_new(&d->a, CHAT_BOOL);
    if (v) v->u.b = b;
    return v;
}
struct chat_value *chat_new_int(struct chat_doc *d, int64_t i) { return cv_int(&d->a, i); }
struct chat_value *chat_new_float(struct chat_doc *d, double f) { return cv_float(&d->a, f); }
struct chat_value *chat_new_string(struct chat_doc *d, const char *s, size_t len, bool from_user) {
    return cv_str_copy(&d->a, s, len, from_user);
}
struct chat_value *chat_new_array(struct chat_doc *d) { return cv_array(&d->a, 0); }
struct chat_value *chat_new_object(struct chat_doc *d) { return cv_new(&d->a, CHAT_OBJECT); }

int chat_array_push(struct chat_doc *d, struct chat_value *array, struct chat_value *v) {
    if (!array || array->type != CHAT_ARRAY) return -1;
    return cv_push(&d->a, array, v);
}

int chat_object_set(struct chat_doc *d, struct chat_value *object, const char *key, struct chat_value *v) {
    if (!object || object->type != CHAT_OBJECT || !key) return -1;
    return cv_obj_set(&d->a, object, cv_str_copy(&d->a, key, strlen(key), false), v);
}

enum chat_type chat_value_type(const struct chat_value *v) {
    if (!v) return CHAT_UNDEFINED;
    return v->type <= CHAT_OBJECT ? (enum chat_type)v->type : CHAT_OTHER;
}

const char *chat_value_str(const struct chat_value *v, size_t *len) {
    if (!v || v->type != CHAT_STRING) return NULL;
    if (len) *len = v->u.str.len;
    return v->u.str.s;
}

size_t chat_array_len(const struct chat_value *v) { return v && v->type == CHAT_ARRAY ? v->u.arr.n : 0; }

const struct chat_value *chat_array_at(const struct chat_value *v, size_t i) {
    return v && v->type == CHAT_ARRAY && i < v->u.arr.n ? v->u.arr.v[i] : NULL;
}

const struct chat_value *chat_object_get(const struct chat_value *v, const char *key) {
    return v && v->type == CHAT_OBJECT && key ? cv_obj_get(v, key, strlen(key)) : NULL;
}

struct chat_value *chat_new_message(struct chat_doc *d, const char *role, const char *content) {
    struct chat_value *m = chat_new_object(d);
    if (!m || !role || !content) return NULL;
    if (chat_object_set(d, m, "role", chat_new_string(d, role, strlen(role), true)) ||
        chat_object_set(d, m, "content", chat_new_string(d, content, strlen(content), true)))
        return NULL;
    return m;
}

struct chat_value *chat_new_context(struct chat_doc *d, struct chat_value *messages, bool add_generation_prompt,
                                    const char *bos_token, const char *eos_token) {
    struct chat_value *c = chat_new_object(d);
    if (!c || chat_object_set(d, c, "messages", messages) ||
        chat_object_set(d, c, "add_generation_prompt", chat_new_bool(d, add_generation_prompt)))
        return NULL;
    if (bos_token && chat_object_set(d, c, "bos_token", chat_new_string(d, bos_token, strlen(bos_token), false)))
        return NULL;
    if (eos_token && chat_object_set(d, c, "eos_token", chat_new_string(d, eos_token, strlen(eos_token), false)))
        return NULL;
    return c;
}

// ---------------------------------------------------------------- UTF-8

uint32_t utf8_next(const char *s, size_t len, size_t *i) {
    const uint8_t *p = (const uint8_t *)s + *i;
    size_t left = len - *i;
    uint8_t c = p[0];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    size_t k = 0;
    uint32_t cp = 0, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3, cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4, cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    }
    if (k == 0 || left < k || p[1] < lo || p[1] > hi) goto invalid;
    for (size_t j = 1; j < k; j++) {
        if (j > 1 && (p[j] & 0xC0) != 0x80) goto invalid;
        cp = cp << 6 | (p[j] & 0x3F);
    }
    *i += k;
    return cp;
invalid:
    *i += 1;
    return 0xDC00 + c; // surrogateescape: encodes back to the same byte
}

size_t chat_utf8_encode(uint32_t cp, char out[4]) {
    if (cp >= 0xDC80 && cp <= 0xDCFF) {
        out[0] = (char)(cp - 0xDC00);
        return 1;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t c = (uint8_t)s[i];
        if (c < 0x80) i++; // fast path
        else utf8_next(s, len, &i);
        n++;
    }
    return n;
}

bool cp_isspace(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Simple case mappings for the scripts chat text commonly uses (Latin, Greek,
// Cyrillic, Armenian, fullwidth Latin); other code points have no case here.
struct case_range {
    uint32_t lo, hi; // upper-case range
    int32_t delta;   // lower = upper + delta
    uint8_t alt;     // 1: only every other code point (pairs upper, lower, upper, ...)
};
static const struct case_range case_ranges[] = {
    {0x41, 0x5A, 32, 0},      {0xC0, 0xD6, 32, 0},      {0xD8, 0xDE, 32, 0},      {0x100, 0x12F, 1, 1},
    {0x132, 0x137, 1, 1},     {0x139, 0x148, 1, 1},     {0x14A, 0x177, 1, 1},     {0x179, 0x17E, 1, 1},
    {0x182, 0x185, 1, 1},     {0x1A0, 0x1A5, 1, 1},     {0x1CD, 0x1DC, 1, 1},     {0x1DE, 0x1EF, 1, 1},
    {0x1F8, 0x21F, 1, 1},     {0x222, 0x233, 1, 1},     {0x386, 0x386, 38, 0},    {0x388, 0x38A, 37, 0},
    {0x38C, 0x38C, 64, 0},    {0x38E, 0x38F, 63, 0},    {0x391, 0x3A1, 32, 0},    {0x3A3, 0x3AB, 32, 0},
    {0x3D8, 0x3EF, 1, 1},     {0x400, 0x40F, 80, 0},    {0x410, 0x42F, 32, 0},    {0x460, 0x481, 1, 1},
    {0x48A, 0x4BF, 1, 1},     {0x4C1, 0x4CE, 1, 1},     {0x4D0, 0x52F, 1, 1},     {0x531, 0x556, 48, 0},
    {0x1E00, 0x1E95, 1, 1},   {0x1EA0, 0x1EFF, 1, 1},   {0xFF21, 0xFF3A, 32, 0},
};
#define N_CASE_RANGES (sizeof case_ranges / sizeof case_ranges[0])

uint32_t cp_lower(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if (cp == 0x130) return 'i'; // İ (Python gives "i̇"; the dot is dropped here)
    if (cp == 0x178) return 0xFF;
    for (size_t i = 0; i < N_CASE_RANGES; i++) {
        const struct case_range *r = &case_ranges[i];
        if (cp >= r->lo && cp <= r->hi && (!r->alt || ((cp - r->lo) & 1) == 0)) return (uint32_t)((int32_t)cp + r->delta);
    }
    return cp;
}

uint32_t cp_upper(uint32_t cp) {
    if (cp < 0x80) return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    if (cp == 0xB5) return 0x39C;
    if (cp == 0xFF) return 0x178;
    if (cp == 0x131) return 'I';
    if (cp == 0x17F) return 'S';
    if (cp == 0x3C2) return 0x3A3; // final sigma
    for (size_t i = 0; i < N_CASE_RANGES; i++) {
        const struct case_range *r = &case_ranges[i];
        uint32_t lo = (uint32_t)((int32_t)r->lo + r->delta), hi = (uint32_t)((int32_t)r->hi + r->delta);
        if (cp >= lo && cp <= hi && (!r->alt || ((cp - lo) & 1) == 0)) return (uint32_t)((int32_t)cp - r->delta);
    }
    return cp;
}

// Latin digraphs: upper, title, lower forms (Ǆ ǅ ǆ, Ǉ ǈ ǉ, Ǌ ǋ ǌ, Ǳ ǲ ǳ).
static const uint32_t digraphs[4][3] = {{0x1C4, 0x1C5, 0x1C6}, {0x1C7, 0x1C8, 0x1C9}, {0x1CA, 0x1CB, 0x1CC},
                                        {0x1F1, 0x1F2, 0x1F3}};

// Code points whose upper / title / casefold forms are several code points.
static const struct {
    uint32_t cp;
    uint32_t upper[3], title[3], fold[3];
} special_case[] = {
    {0xDF, {'S', 'S'}, {'S', 's'}, {'s', 's'}},
    {0x149, {0x2BC, 'N'}, {0x2BC, 'N'}, {0x2BC, 'n'}},
    {0x1F0, {'J', 0x30C}, {'J', 0x30C}, {'j', 0x30C}},
    {0xFB00, {'F', 'F'}, {'F', 'f'}, {'f', 'f'}},
    {0xFB01, {'F', 'I'}, {'F', 'i'}, {'f', 'i'}},
    {0xFB02, {'F', 'L'}, {'F', 'l'}, {'f', 'l'}},
    {0xFB03, {'F', 'F', 'I'}, {'F', 'f', 'i'}, {'f', 'f', 'i'}},
    {0xFB04, {'F', 'F', 'L'}, {'F', 'f', 'l'}, {'f', 'f', 'l'}},
    {0xFB05, {'S', 'T'}, {'S', 't'}, {'s', 't'}},
    {0xFB06, {'S', 'T'}, {'S', 't'}, {'s', 't'}},
};

static int copy_cps(const uint32_t *src, uint32_t out[3]) {
    int n = 0;
    while (n < 3 && src[n]) out[n] = src[n], n++;
    return n;
}

int cp_case_full(uint32_t cp, char mode, uint32_t out[3]) {
    for (size_t i = 0; i < sizeof digraphs / sizeof digraphs[0]; i++)
        for (int k = 0; k < 3; k++)
            if (digraphs[i][k] == cp) {
                out[0] = digraphs[i][mode == 'U' ? 0 : mode == 'T' ? 1 : 2];
                return 1;
            }
    for (size_t i = 0; i < sizeof special_case / sizeof special_case[0]; i++)
        if (special_case[i].cp == cp) {
            if (mode == 'U') return copy_cps(special_case[i].upper, out);
            if (mode == 'T') return copy_cps(special_case[i].title, out);
            if (mode == 'F') return copy_cps(special_case[i].fold, out);
            out[0] = cp;
            return 1;
        }
    if (cp == 0x130 && (mode == 'L' || mode == 'F')) { // İ -> i + combining dot above
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (mode == 'F') {
        if (cp == 0x3C2) cp = 0x3C3; // ς folds to σ
        else if (cp == 0xB5) cp = 0x3BC;
        else if (cp == 0x17F) cp = 's';
    }
    out[0] = mode == 'U' || mode == 'T' ? cp_upper(cp) : cp_lower(cp);
    return 1;
}

bool cp_istitle(uint32_t cp) { return cp == 0x1C5 || cp == 0x1C8 || cp == 0x1CB || cp == 0x1F2; }

bool cp_case_ignorable(uint32_t cp) {
    return cp == '\'' || cp == '.' || cp == ':' || cp == '^' || cp == '`' || cp == 0xA8 || cp == 0xAD || cp == 0xAF ||
           cp == 0xB4 || cp == 0xB7 || cp == 0xB8 || (cp >= 0x2B0 && cp <= 0x36F) || (cp >= 0x483 && cp <= 0x489) ||
           cp == 0x2018 || cp == 0x2019 || cp == 0x2024 || cp == 0x2027;
}

bool cp_isupper(uint32_t cp) {
    if (cp == 0x1C4 || cp == 0x1C7 || cp == 0x1CA || cp == 0x1F1) return true;
    if (cp_istitle(cp) || cp == 0x1C6 || cp == 0x1C9 || cp == 0x1CC || cp == 0x1F3) return false;
    return cp_lower(cp) != cp;
}
bool cp_islower(uint32_t cp) {
    if (cp == 0x1C6 || cp == 0x1C9 || cp == 0x1CC || cp == 0x1F3 || (cp >= 0xFB00 && cp <= 0xFB06)) return true;
    if (cp_istitle(cp) || cp == 0x1C4 || cp == 0x1C7 || cp == 0x1CA || cp == 0x1F1) return false;
    return cp_upper(cp) != cp || cp == 0xDF || cp == 0x138 || cp == 0x149 || cp == 0xAA || cp == 0xBA;
}

bool cp_isalpha(uint32_t cp) {
    if (cp < 0x80) return (cp | 32) >= 'a' && (cp | 32) <= 'z';
    if (cp_isupper(cp) || cp_islower(cp) || cp_istitle(cp)) return true;
    // Uncased letters of common scripts (Hebrew, Arabic, Indic, Thai, CJK, kana, Hangul).
    return (cp >= 0x5D0 && cp <= 0x5EA) || (cp >= 0x620 && cp <= 0x64A) || (cp >= 0x904 && cp <= 0x939) ||
           (cp >= 0xE01 && cp <= 0xE30) || (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) ||
           (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3);
}

bool cp_isdigit(uint32_t cp) {
    return (cp >= '0' && cp <= '9') || (cp >= 0x660 && cp <= 0x669) || (cp >= 0xFF10 && cp <= 0xFF19) ||
           cp == 0xB2 || cp == 0xB3 || cp == 0xB9;
}

void one_line(char *msg) {
    for (; *msg; msg++)
        if ((unsigned char)*msg < 0x20 || *msg == 0x7F) *msg = ' ';
}

// ---------------------------------------------------------------- string builder

void sb_init(struct sb *b, struct arena *a, size_t limit) {
    memset(b, 0, sizeof *b);
    b->a = a;
    b->limit = limit;
}

static bool sb_reserve(struct sb *b, size_t extra) {
    if (b->failed) return false;
    if (extra > b->limit || b->len > b->limit - extra) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra;
    if (need + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 32;
    while (cap < need + 1) cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
    char *s = arena_grow(b->a, b->s, b->cap, cap);
    if (!s) {
        b->failed = true;
        return false;
    }
    b->s = s;
    if (b->m) {
        uint8_t *m = arena_grow(b->a, b->m, b->cap, cap);
        if (!m) {
            b->failed = true;
            return false;
        }
        b->m = m;
    }
    b->cap = cap;
    return true;
}

// Makes the mask exist (all earlier bytes trusted).
static bool sb_need_mask(struct sb *b) {
    if (b->m) return true;
    b->m = arena_alloc(b->a, b->cap ? b->cap : 1);
    if (!b->m) {
        b->failed = true;
        return false;
    }
    memset(b->m, 0, b->len);
    return true;
}

void sb_put(struct sb *b, const char *s, size_t n, bool user) {
    if (n == 0 || !sb_reserve(b, n)) return;
    if (user && !sb_need_mask(b)) return;
    memcpy(b->s + b->len, s, n);
    if (b->m) memset(b->m + b->len, user ? 1 : 0, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_puts(struct sb *b, const char *s) { sb_put(b, s, strlen(s), false); }
void sb_putc(struct sb *b, char c, bool user) { sb_put(b, &c, 1, user); }

void sb_put_range(struct sb *b, struct cstr s, size_t off, size_t n) {
    if (n == 0 || !sb_reserve(b, n)) return;
    if (s.m && !sb_need_mask(b)) return;
    memcpy(b->s + b->len, s.s + off, n);
    if (s.m) memcpy(b->m + b->len, s.m + off, n);
    else if (b->m) memset(b->m + b->len, 0, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_put_str(struct sb *b, struct cstr s) { sb_put_range(b, s, 0, s.len); }

void sb_printf(struct sb *b, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    sb_put(b, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, false);
}

struct cstr sb_cstr(const struct sb *b) {
    struct cstr s = {b->s ? b->s : "", NULL, b->len};
    if (b->m) {
        // Keep the mask only if some byte is a user byte.
        for (size_t i = 0; i < b->len; i++)
            if (b->m[i]) {
                s.m = b->m;
                break;
            }
    }
    return s;
}

// ---------------------------------------------------------------- Python str / repr

const char *const view_names[4] = {"", "dict_items", "dict_keys", "dict_values"};

const char *py_type_name(const struct chat_value *v) {
    switch (v->type) {
    case CHAT_UNDEFINED: return "Undefined";
    case CHAT_NONE: return "NoneType";
    case CHAT_BOOL: return "bool";
    case CHAT_INT: return "int";
    case CHAT_FLOAT: return "float";
    case CHAT_STRING: return "str";
    case CHAT_ARRAY: return v->view ? view_names[v->view] : v->is_tuple ? "tuple" : "list";
    case CHAT_OBJECT: return "dict";
    case CV_NAMESPACE: return "Namespace";
    case CV_CALLABLE: return v->u.fn->kind == FN_MACRO || v->u.fn->kind == FN_CALLER ? "Macro" : "builtin_function_or_method";
    case CV_LOOP: return "LoopContext";
    case CV_RANGE: return "range";
    case CV_ITER: return "generator";
    }
    return "object";
}

void py_float_repr(struct sb *b, double f) {
    if (isnan(f)) {
        sb_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        sb_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    // Shortest digits that round-trip, as Python's repr uses.
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    // buf is [-]d[.ddd]e[+-]xx: collect the digits and the exponent.
    const char *p = buf;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 23) digits[nd++] = *p;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    if (neg) sb_putc(b, '-', false);
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            sb_puts(b, "0.");
            for (int i = 0; i < -exp10 - 1; i++) sb_putc(b, '0', false);
            sb_put(b, digits, (size_t)nd, false);
        } else {
            int int_digits = exp10 + 1;
            for (int i = 0; i < int_digits; i++) sb_putc(b, i < nd ? digits[i] : '0', false);
            sb_putc(b, '.', false);
            if (nd > int_digits) sb_put(b, digits + int_digits, (size_t)(nd - int_digits), false);
            else sb_putc(b, '0', false);
        }
    } else {
        sb_putc(b, digits[0], false);
        if (nd > 1) {
            sb_putc(b, '.', false);
            sb_put(b, digits + 1, (size_t)(nd - 1), false);
        }
        sb_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

// Python's str.isprintable, for the code points a repr escapes: control and
// format characters, separators other than space, surrogates, private use.
static bool cp_printable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return false;
    if (cp < 0x7F) return true;
    if (cp <= 0xA0 || cp == 0xAD) return false;
    if (cp_isspace(cp)) return false;
    if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x206F) ||
        cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0x600 && cp <= 0x605) || cp == 0x61C ||
        cp == 0x6DD || cp == 0x70F || cp == 0x180E || cp == 0xFFFE || cp == 0xFFFF)
        return false;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) return false;
    if (cp >= 0xE0000 && cp <= 0xE0FFF) return false;
    return true;
}

static void repr_string(struct sb *b, struct cstr s) {
    bool has_sq = memchr(s.s, '\'', s.len) != NULL, has_dq = memchr(s.s, '"', s.len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    sb_putc(b, q, false);
    for (size_t i = 0; i < s.len;) {
        size_t start = i;
        bool user = cstr_user_at(s, i);
        uint32_t cp = utf8_next(s.s, s.len, &i);
        char esc[16];
        const char *e = NULL;
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\', esc[1] = (char)cp, esc[2] = 0;
            e = esc;
        } else if (cp == '\n') e = "\\n";
        else if (cp == '\r') e = "\\r";
        else if (cp == '\t') e = "\\t";
        else if (!cp_printable(cp)) {
            if (cp < 0x100) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            e = esc;
        }
        if (e) sb_put(b, e, strlen(e), user);
        else sb_put_range(b, s, start, i - start);
    }
    sb_putc(b, q, false);
}

static int nest_fail(llm_err *err) { return err_set(err, "value nested too deeply (more than %d levels)", CHAT_MAX_VALUE_DEPTH); }

int py_repr(struct sb *b, const struct chat_value *v, int depth_left, llm_err *err) {
    if (depth_left <= 0) return nest_fail(err);
    switch (v->type) {
    case CHAT_UNDEFINED: sb_puts(b, "Undefined"); break;
    case CHAT_STRING:
        if (v->markup) sb_puts(b, "Markup(");
        repr_string(b, v->u.str);
        if (v->markup) sb_putc(b, ')', false);
        break;
    case CHAT_ARRAY:
        if (v->view) { // dict_items([...])
            sb_puts(b, view_names[v->view]);
            sb_putc(b, '(', false);
        }
        sb_putc(b, v->is_tuple ? '(' : '[', false);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i) sb_puts(b, ", ");
            if (py_repr(b, v->u.arr.v[i], depth_left - 1, err)) return -1;
        }
        if (v->is_tuple && v->u.arr.n == 1) sb_putc(b, ',', false);
        sb_putc(b, v->is_tuple ? ')' : ']', false);
        if (v->view) sb_putc(b, ')', false);
        break;
    case CV_NAMESPACE:
    case CHAT_OBJECT:
        if (v->type == CV_NAMESPACE) sb_puts(b, "<Namespace ");
        sb_putc(b, '{', false);
        for (size_t i = 0; i < v->u.obj.n; i++) {
            if (i) sb_puts(b, ", ");
            if (py_repr(b, v->u.obj.keys[i], depth_left - 1, err)) return -1;
            sb_puts(b, ": ");
            if (py_repr(b, v->u.obj.vals[i], depth_left - 1, err)) return -1;
        }
        sb_putc(b, '}', false);
        if (v->type == CV_NAMESPACE) sb_putc(b, '>', false);
        break;
    default: return py_str(b, v, depth_left, err);
    }
    return b->failed ? err_set(err, "out of memory or output limit while formatting a value") : 0;
}

int py_str(struct sb *b, const struct chat_value *v, int depth_left, llm_err *err) {
    switch (v->type) {
    case CHAT_UNDEFINED: break;
    case CHAT_NONE: sb_puts(b, "None"); break;
    case CHAT_BOOL: sb_puts(b, v->u.b ? "True" : "False"); break;
    case CHAT_INT: sb_printf(b, "%lld", (long long)v->u.i); break;
    case CHAT_FLOAT: py_float_repr(b, v->u.f); break;
    case CHAT_STRING: sb_put_str(b, v->u.str); break;
    case CHAT_ARRAY:
    case CHAT_OBJECT:
    case CV_NAMESPACE: return py_repr(b, v, depth_left, err);
    case CV_CALLABLE:
        if (v->u.fn->kind == FN_MACRO || v->u.fn->kind == FN_CALLER) sb_printf(b, "<Macro '%s'>", v->u.fn->name);
        else sb_printf(b, "<built-in function %s>", v->u.fn->name);
        break;
    case CV_LOOP: // the length: as far as known (the evaluator runs a lazy filter to the end first)
        sb_printf(b, "<LoopContext %zu/%zu>", v->u.loop->index0 + 1,
                  v->u.loop->n_known + (v->u.loop->filter ? 0 : v->u.loop->src_n - v->u.loop->src_pos));
        break;
    case CV_RANGE:
        if (v->u.range.step == 1) sb_printf(b, "range(%lld, %lld)", (long long)v->u.range.start, (long long)v->u.range.stop);
        else
            sb_printf(b, "range(%lld, %lld, %lld)", (long long)v->u.range.start, (long long)v->u.range.stop,
                      (long long)v->u.range.step);
        break;
    case CV_ITER: sb_puts(b, "<generator object>"); break;
    }
    return b->failed ? err_set(err, "out of memory or output limit while formatting a value") : 0;
}

// ---------------------------------------------------------------- json.dumps

static void json_string(struct sb *b, struct cstr s, bool ensure_ascii) {
    sb_putc(b, '"', false);
    size_t run = 0; // start of bytes copied verbatim
    for (size_t i = 0; i < s.len;) {
        size_t start = i;
        bool user = cstr_user_at(s, i);
        uint8_t c = (uint8_t)s.s[i];
        char esc[16];
        const char *e = NULL;
        if (c >= 0x80) {
            uint32_t cp = utf8_next(s.s, s.len, &i);
            if (ensure_ascii) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else snprintf(esc, sizeof esc, "\\u%04x", cp);
                e = esc;
            }
        } else {
            i++;
            switch (c) {
            case '"': e = "\\\""; break;
            case '\\': e = "\\\\"; break;
            case '\n': e = "\\n"; break;
            case '\r': e = "\\r"; break;
            case '\t': e = "\\t"; break;
            case '\b': e = "\\b"; break;
            case '\f': e = "\\f"; break;
            default:
                if (c < 0x20 || (c == 0x7F && ensure_ascii)) {
                    snprintf(esc, sizeof esc, "\\u%04x", c);
                    e = esc;
                }
            }
        }
        if (e) {
            sb_put_range(b, s, run, start - run);
            sb_put(b, e, strlen(e), user);
            run = i;
        }
    }
    sb_put_range(b, s, run, s.len - run);
    sb_putc(b, '"', false);
}

static void json_newline(struct sb *b, const struct json_opts *o, int level) {
    sb_putc(b, '\n', false);
    for (int i = 0; i < level; i++) sb_put(b, o->indent, o->indent_len, false);
}

// Dict keys as json.dumps converts them.
static int json_key(struct sb *b, const struct chat_value *k, const struct json_opts *o, llm_err *err) {
    switch (k->type) {
    case CHAT_STRING: json_string(b, k->u.str, o->ensure_ascii); return 0;
    case CHAT_INT:
    case CHAT_FLOAT:
        sb_putc(b, '"', false);
        if (k->type == CHAT_INT) sb_printf(b, "%lld", (long long)k->u.i);
        else if (isnan(k->u.f)) sb_puts(b, "NaN");
        else if (isinf(k->u.f)) sb_puts(b, k->u.f < 0 ? "-Infinity" : "Infinity");
        else py_float_repr(b, k->u.f);
        sb_putc(b, '"', false);
        return 0;
    case CHAT_BOOL: sb_puts(b, k->u.b ? "\"true\"" : "\"false\""); return 0;
    case CHAT_NONE: sb_puts(b, "\"null\""); return 0;
    default: return err_set(err, "keys must be str, int, float, bool or None, not %s", py_type_name(k));
    }
}

static int cmp_str_keys(const struct chat_value *a, const struct chat_value *b) {
    size_t n = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
    int c = n ? memcmp(a->u.str.s, b->u.str.s, n) : 0;
    return c ? c : (a->u.str.len > b->u.str.len) - (a->u.str.len < b->u.str.len);
}

int json_dump(struct sb *b, const struct chat_value *v, const struct json_opts *o, int depth_left, llm_err *err) {
    if (depth_left <= 0) return nest_fail(err);
    int level = CHAT_MAX_VALUE_DEPTH - depth_left + 1;
    const char *item_sep = o->item_sep ? o->item_sep : (o->indent ? "," : ", ");
    size_t item_sep_len = o->item_sep ? o->item_sep_len : strlen(item_sep);
    const char *key_sep = o->key_sep ? o->key_sep : ": ";
    size_t key_sep_len = o->key_sep ? o->key_sep_len : 2;
    switch (v->type) {
    case CHAT_NONE: sb_puts(b, "null"); break;
    case CHAT_BOOL: sb_puts(b, v->u.b ? "true" : "false"); break;
    case CHAT_INT: sb_printf(b, "%lld", (long long)v->u.i); break;
    case CHAT_FLOAT:
        if (isnan(v->u.f)) sb_puts(b, "NaN");
        else if (isinf(v->u.f)) sb_puts(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else py_float_repr(b, v->u.f);
        break;
    case CHAT_STRING: json_string(b, v->u.str, o->ensure_ascii); break;
    case CHAT_ARRAY:
        if (v->view) return err_set(err, "Object of type %s is not JSON serializable", view_names[v->view]);
        if (v->u.arr.n == 0) {
            sb_puts(b, "[]");
            break;
        }
        sb_putc(b, '[', false);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i) sb_put(b, item_sep, item_sep_len, false);
            if (o->indent) json_newline(b, o, level);
            if (json_dump(b, v->u.arr.v[i], o, depth_left - 1, err)) return -1;
        }
        if (o->indent) json_newline(b, o, level - 1);
        sb_putc(b, ']', false);
        break;
    case CHAT_OBJECT: {
        if (v->u.obj.n == 0) {
            sb_puts(b, "{}");
            break;
        }
        // Key order: insertion order, or sorted (by the key text) with sort_keys.
        size_t n = v->u.obj.n;
        size_t *order = arena_alloc(b->a, n * sizeof *order);
        if (!order) return err_set(err, "out of memory in tojson");
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 0; i < n; i++)
                if (v->u.obj.keys[i]->type != CHAT_STRING)
                    return err_set(err, "tojson(sort_keys=true) supports only string keys");
            for (size_t i = 1; i < n; i++) { // insertion sort, stable (objects are small)
                size_t x = order[i], j = i;
                while (j > 0 && cmp_str_keys(v->u.obj.keys[order[j - 1]], v->u.obj.keys[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        sb_putc(b, '{', false);
        for (size_t i = 0; i < n; i++) {
            if (i) sb_put(b, item_sep, item_sep_len, false);
            if (o->indent) json_newline(b, o, level);
            if (json_key(b, v->u.obj.keys[order[i]], o, err)) return -1;
            sb_put(b, key_sep, key_sep_len, false);
            if (json_dump(b, v->u.obj.vals[order[i]], o, depth_left - 1, err)) return -1;
        }
        if (o->indent) json_newline(b, o, level - 1);
        sb_putc(b, '}', false);
        break;
    }
    default: return err_set(err, "Object of type %s is not JSON serializable", py_type_name(v));
    }
    return b->failed ? err_set(err, "out of memory or output limit in tojson") : 0;
}

// ---------------------------------------------------------------- comparisons

static bool is_number(const struct chat_value *v) {
    return v->type == CHAT_INT || v->type == CHAT_FLOAT || v->type == CHAT_BOOL;
}

// Compares two numbers exactly (int64 against double included).
static int num_cmp(const struct chat_value *a, const struct chat_value *b) {
    if (a->type != CHAT_FLOAT && b->type != CHAT_FLOAT) {
        int64_t x = a->type == CHAT_BOOL ? a->u.b : a->u.i, y = b->type == CHAT_BOOL ? b->u.b : b->u.i;
        return (x > y) - (x < y);
    }
    if (a->type == CHAT_FLOAT && b->type == CHAT_FLOAT) return (a->u.f > b->u.f) - (a->u.f < b->u.f);
    bool swap = a->type == CHAT_FLOAT;
    const struct chat_value *iv = swap ? b : a;
    double f = swap ? a->u.f : b->u.f;
    int64_t x = iv->type == CHAT_BOOL ? iv->u.b : iv->u.i;
    int r;
    if (isnan(f)) r = 2; // unordered
    else if (f >= 9.3e18) r = -1;
    else if (f <= -9.3e18) r = 1;
    else {
        double fl = floor(f);
        int64_t y = (int64_t)fl;
        if (x != y) r = (x > y) - (x < y);
        else r = fl < f ? -1 : 0;
    }
    if (r == 2) return 2;
    return swap ? -r : r;
}

int py_eq(const struct chat_value *a, const struct chat_value *b, int depth_left, uint64_t *budget) {
    if (depth_left <= 0) return -1;
    if (budget) {
        if (*budget == 0) return -2;
        --*budget;
    }
    if (a == b) return 1;
    if (is_number(a) && is_number(b)) return num_cmp(a, b) == 0;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case CHAT_UNDEFINED:
    case CHAT_NONE: return 1;
    case CHAT_STRING: return cstr_eq(a->u.str, b->u.str.s, b->u.str.len);
    case CHAT_ARRAY:
        if (a->is_tuple != b->is_tuple || a->view != b->view || a->u.arr.n != b->u.arr.n) return 0;
        for (size_t i = 0; i < a->u.arr.n; i++) {
            int e = py_eq(a->u.arr.v[i], b->u.arr.v[i], depth_left - 1, budget);
            if (e != 1) return e;
        }
        return 1;
    case CHAT_OBJECT:
        if (a->u.obj.n != b->u.obj.n) return 0;
        for (size_t i = 0; i < a->u.obj.n; i++) {
            const struct chat_value *bv = cv_obj_find(b, a->u.obj.keys[i]);
            if (!bv) return 0;
            int e = py_eq(a->u.obj.vals[i], bv, depth_left - 1, budget);
            if (e != 1) return e;
        }
        return 1;
    case CV_RANGE:
        return a->u.range.start == b->u.range.start && a->u.range.stop == b->u.range.stop &&
               a->u.range.step == b->u.range.step;
    default: return 0; // identity only
    }
}

int py_cmp(const struct chat_value *a, const struct chat_value *b, const char *op, int *res, int depth_left,
           uint64_t *budget, llm_err *err) {
    if (depth_left <= 0) return nest_fail(err);
    if (budget) {
        if (*budget == 0) return err_set(err, "comparison takes too long");
        --*budget;
    }
    if (is_number(a) && is_number(b)) {
        int c = num_cmp(a, b);
        if (c == 2) {
            *res = 2; // NaN: every ordering is false
            return 0;
        }
        *res = c;
        return 0;
    }
    if (a->type == CHAT_STRING && b->type == CHAT_STRING) {
        int c = cmp_str_keys(a, b); // UTF-8 byte order is code point order
        *res = (c > 0) - (c < 0);
        return 0;
    }
    if (a->type == CHAT_ARRAY && b->type == CHAT_ARRAY && a->is_tuple == b->is_tuple && !a->view && !b->view) {
        size_t n = a->u.arr.n < b->u.arr.n ? a->u.arr.n : b->u.arr.n;
        for (size_t i = 0; i < n; i++) {
            int e = py_eq(a->u.arr.v[i], b->u.arr.v[i], depth_left - 1, budget);
            if (e == -2) return err_set(err, "comparison takes too long");
            if (e < 0) return nest_fail(err);
            if (!e) return py_cmp(a->u.arr.v[i], b->u.arr.v[i], op, res, depth_left - 1, budget, err);
        }
        *res = (a->u.arr.n > b->u.arr.n) - (a->u.arr.n < b->u.arr.n);
        return 0;
    }
    return err_set(err, "'%s' not supported between instances of '%s' and '%s'", op, py_type_name(a), py_type_name(b));
}

bool py_truthy(const struct chat_value *v) {
    switch (v->type) {
    case CHAT_UNDEFINED:
    case CHAT_NONE: return false;
    case CHAT_BOOL: return v->u.b;
    case CHAT_INT: return v->u.i != 0;
    case CHAT_FLOAT: return v->u.f != 0;
    case CHAT_STRING: return v->u.str.len != 0;
    case CHAT_ARRAY: return v->u.arr.n != 0;
    case CHAT_OBJECT: return v->u.obj.n != 0;
    case CV_RANGE:
        return v->u.range.step > 0 ? v->u.range.start < v->u.range.stop : v->u.range.start > v->u.range.stop;
    default: return true;
    }
}

// ---------------------------------------------------------------- JSON parsing

struct jp {
    struct arena *a;
    const char *s;
    size_t len, pos;
    bool user;
    llm_err *err;
};

static int jp_fail(struct jp *p, const char *what) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->s[i] == '\n') line++, col = 1;
        else col++;
    }
    return err_set(p->err, "JSON: %s at line %zu column %zu", what, line, col);
}

static void jp_ws(struct jp *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int jp_hex4(struct jp *p, uint32_t *out) {
    if (p->len - p->pos < 4) return jp_fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if ((c | 32) >= 'a' && (c | 32) <= 'f') v |= (uint32_t)((c | 32) - 'a' + 10);
        else return jp_fail(p, "invalid \\u escape");
    }
    *out = v;
    return 0;
}

static struct chat_value *jp_string(struct jp *p) {
    p->pos++; // opening quote
    struct sb b;
    sb_init(&b, p->a, SIZE_MAX);
    for (;;) {
        size_t run = p->pos;
        while (p->pos < p->len && p->s[p->pos] != '"' && p->s[p->pos] != '\\' && (uint8_t)p->s[p->pos] >= 0x20) p->pos++;
        sb_put(&b, p->s + run, p->pos - run, p->user);
        if (p->pos >= p->len) return jp_fail(p, "unterminated string"), NULL;
        char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c != '\\') return jp_fail(p, "control character in string"), NULL;
        if (++p->pos >= p->len) return jp_fail(p, "unterminated string"), NULL;
        char e = p->s[p->pos++];
        char ch = 0;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (jp_hex4(p, &cp)) return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF && p->len - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                size_t save = p->pos;
                p->pos += 2;
                uint32_t lo;
                if (jp_hex4(p, &lo)) return NULL;
                if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else p->pos = save;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; // a lone surrogate is not UTF-8
            char u[4];
            sb_put(&b, u, chat_utf8_encode(cp, u), p->user);
            continue;
        }
        default: return jp_fail(p, "invalid escape"), NULL;
        }
        sb_put(&b, &ch, 1, p->user);
    }
    if (b.failed) return jp_fail(p, "out of memory"), NULL;
    struct cstr s = {b.s ? b.s : "", b.m, b.len};
    return cv_str(p->a, s);
}

static struct chat_value *jp_value(struct jp *p, int depth);

static struct chat_value *jp_number(struct jp *p) {
    size_t start = p->pos;
    bool is_float = false;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jp_fail(p, "invalid number"), NULL;
    if (p->s[p->pos] == '0') p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        is_float = true;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jp_fail(p, "invalid number"), NULL;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] | 32) == 'e') {
        is_float = true;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return jp_fail(p, "invalid number"), NULL;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    size_t n = p->pos - start;
    char buf[64];
    char *num = n < sizeof buf ? buf : arena_alloc(p->a, n + 1);
    if (!num) return jp_fail(p, "out of memory"), NULL;
    memcpy(num, p->s + start, n);
    num[n] = 0;
    if (!is_float) {
        errno = 0;
        char *end;
        long long v = strtoll(num, &end, 10);
        if (errno == 0) return cv_int(p->a, v);
    }
    return cv_float(p->a, strtod(num, NULL));
}

static struct chat_value *jp_value(struct jp *p, int depth) {
    if (depth > CHAT_MAX_VALUE_DEPTH) return jp_fail(p, "nesting too deep"), NULL;
    jp_ws(p);
    if (p->pos >= p->len) return jp_fail(p, "unexpected end of input"), NULL;
    char c = p->s[p->pos];
    if (c == '"') return jp_string(p);
    if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p);
    if (c == '[') {
        p->pos++;
        struct chat_value *arr = cv_array(p->a, 0);
        if (!arr) return jp_fail(p, "out of memory"), NULL;
        jp_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            return arr;
        }
        for (;;) {
            struct chat_value *item = jp_value(p, depth + 1);
            if (!item) return NULL;
            if (cv_push(p->a, arr, item)) return jp_fail(p, "out of memory"), NULL;
            jp_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == ']') {
                p->pos++;
                return arr;
            }
            return jp_fail(p, "expected ',' or ']'"), NULL;
        }
    }
    if (c == '{') {
        p->pos++;
        struct chat_value *obj = cv_new(p->a, CHAT_OBJECT);
        if (!obj) return jp_fail(p, "out of memory"), NULL;
        jp_ws(p);
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            return obj;
        }
        for (;;) {
            jp_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return jp_fail(p, "expected a string key"), NULL;
            struct chat_value *key = jp_string(p);
            if (!key) return NULL;
            jp_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return jp_fail(p, "expected ':'"), NULL;
            p->pos++;
            struct chat_value *val = jp_value(p, depth + 1);
            if (!val) return NULL;
            if (cv_obj_set(p->a, obj, key, val)) return jp_fail(p, "out of memory"), NULL;
            jp_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == '}') {
                p->pos++;
                return obj;
            }
            return jp_fail(p, "expected ',' or '}'"), NULL;
        }
    }
    static const struct {
        const char *word;
        struct chat_value *v;
    } words[] = {{"true", &chat_true_value}, {"false", &chat_false_value}, {"null", &chat_none_value}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i].word, n) == 0) {
            p->pos += n;
            struct chat_value *v = cv_new(p->a, words[i].v->type);
            if (!v) return jp_fail(p, "out of memory"), NULL;
            *v = *words[i].v;
            return v;
        }
    }
    return jp_fail(p, "unexpected character"), NULL;
}

int chat_parse_json(struct chat_doc *d, const char *json, size_t len, bool from_user, struct chat_value **out,
                    llm_err *err) {
    *out = NULL;
    struct jp p = {&d->a, json, len, 0, from_user, err};
    struct chat_value *v = jp_value(&p, 0);
    if (!v) return -1;
    jp_ws(&p);
    if (p.pos != len) return jp_fail(&p, "extra data after the value");
    *out = v;
    return 0;
}
