// Checking GGUF reader. Every read goes through the bounds-checked rd_* helpers;
// every count is compared with the bytes that remain before anything is
// allocated for it; every product of dimensions is overflow-checked.
#include "gguf/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// ggml type table (ids, names and block geometry as in ggml / gguf-py)

struct type_info {
    const char *name;
    uint16_t blck;  // elements per block
    uint16_t bytes; // bytes per block
};

#define N_TYPE_IDS 42
static const struct type_info type_table[N_TYPE_IDS] = {
    [0] = {"f32", 1, 4},          [1] = {"f16", 1, 2},
    [2] = {"q4_0", 32, 18},       [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},       [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},       [9] = {"q8_1", 32, 40},
    [10] = {"q2_K", 256, 84},     [11] = {"q3_K", 256, 110},
    [12] = {"q4_K", 256, 144},    [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},    [15] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66},  [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98},  [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},    [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},    [23] = {"iq4_xs", 256, 136},
    [24] = {"i8", 1, 1},          [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},         [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},         [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},        [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},    [39] = {"mxfp4", 32, 17},
    [40] = {"nvfp4", 64, 36},     [41] = {"q1_0", 128, 18},
};

// Ids that ggml once used and removed; named in the error message.
static const char *removed_type_name(uint32_t id) {
    switch (id) {
    case 4: return "q4_2";
    case 5: return "q4_3";
    case 31: return "q4_0_4_4";
    case 32: return "q4_0_4_8";
    case 33: return "q4_0_8_8";
    case 36: return "iq4_nl_4_4";
    case 37: return "iq4_nl_4_8";
    case 38: return "iq4_nl_8_8";
    default: return NULL;
    }
}

const char *gguf_type_name(int t) {
    if (t < 0 || t >= N_TYPE_IDS) return NULL;
    return type_table[t].name;
}

int gguf_type_block(int t, int64_t *block_elems, size_t *block_bytes) {
    if (!gguf_type_name(t)) return -1;
    if (block_elems) *block_elems = type_table[t].blck;
    if (block_bytes) *block_bytes = type_table[t].bytes;
    return 0;
}

static const char *const value_type_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

const char *gguf_value_type_name(int t) {
    if (t < 0 || t >= GGUF_TYPE_COUNT) return NULL;
    return value_type_names[t];
}

// Bytes of a fixed-size value type, 0 for string/array.
static size_t value_size(int t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static bool is_int_type(int t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64:
        return true;
    default: return false;
    }
}

// ---------------------------------------------------------------------------
// Little-endian loads from unaligned bytes

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static double f64_from_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

// Reads a fixed-size element of type t at p as the widest matching kind.
static uint64_t ld_uint(int t, const uint8_t *p) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return p[0];
    case GGUF_TYPE_UINT16: return ld16(p);
    case GGUF_TYPE_UINT32: return ld32(p);
    default: return ld64(p);
    }
}
static int64_t ld_int(int t, const uint8_t *p) {
    switch (t) {
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_INT16: return (int16_t)ld16(p);
    case GGUF_TYPE_INT32: return (int32_t)ld32(p);
    case GGUF_TYPE_INT64: return (int64_t)ld64(p);
    default: return (int64_t)ld_uint(t, p);
    }
}
static double ld_float(int t, const uint8_t *p) {
    switch (t) {
    case GGUF_TYPE_FLOAT32: return f32_from_bits(ld32(p));
    case GGUF_TYPE_FLOAT64: return f64_from_bits(ld64(p));
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
    case GGUF_TYPE_BOOL:
        return (double)ld_uint(t, p);
    default: return (double)ld_int(t, p);
    }
}

// ---------------------------------------------------------------------------
// Strings

char *gguf_str_copy(char *buf, size_t size, struct gguf_str s) {
    if (!buf || size == 0) return buf;
    size_t n = s.len < size - 1 ? (size_t)s.len : size - 1;
    if (n) memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

bool gguf_str_eq(struct gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

// Escaped, truncated rendering of file bytes for messages: printable ASCII as
// is (quote and backslash escaped), everything else as \xNN; at most `max`
// source bytes, then "...".
static char *esc(char *buf, size_t size, const char *p, uint64_t len, size_t max) {
    size_t o = 0;
    for (uint64_t i = 0; i < len; i++) {
        if (i == max) {
            if (o + 4 <= size) { memcpy(buf + o, "...", 3); o += 3; }
            break;
        }
        unsigned char c = (unsigned char)p[i];
        char tmp[5];
        int k;
        if (c == '\'' || c == '"' || c == '\\') { tmp[0] = '\\'; tmp[1] = (char)c; k = 2; }
        else if (c >= 0x20 && c < 0x7f) { tmp[0] = (char)c; k = 1; }
        else k = snprintf(tmp, sizeof tmp, "\\x%02x", c);
        if (o + (size_t)k + 1 > size) break;
        memcpy(buf + o, tmp, (size_t)k);
        o += (size_t)k;
    }
    buf[o] = 0;
    return buf;
}
#define ESC_NAME(buf, s) esc(buf, sizeof buf, (s).ptr, (s).len, 96)

// ---------------------------------------------------------------------------
// Hash tables (FNV-1a, open addressing, entries are index + 1)

static uint64_t hash_bytes(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static size_t hash_cap_for(size_t n) {
    size_t cap = 8;
    while (cap < n * 2) cap *= 2;
    return cap;
}

// Returns the slot for name: holding a matching entry, or empty (0).
static size_t hash_slot(const uint32_t *tab, size_t cap, const char *p, uint64_t n,
                        const struct gguf_str *(*name_of)(const void *, uint32_t), const void *items) {
    size_t mask = cap - 1, i = (size_t)hash_bytes(p, n) & mask;
    for (;;) {
        uint32_t e = tab[i];
        if (e == 0) return i;
        const struct gguf_str *s = name_of(items, e - 1);
        if (s->len == n && (n == 0 || memcmp(s->ptr, p, n) == 0)) return i;
        i = (i + 1) & mask;
    }
}

static const struct gguf_str *kv_name(const void *items, uint32_t i) {
    return &((const struct gguf_kv *)items)[i].key;
}
static const struct gguf_str *tensor_name(const void *items, uint32_t i) {
    return &((const struct gguf_tensor *)items)[i].name;
}

// ---------------------------------------------------------------------------
// Reader

struct rd {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
    llm_err *err;
    struct gguf_file *f;
    size_t pool_cap;
    char ctx[200]; // what is being read, e.g. "key 'general.name' (offset 24)"
};

static int fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct rd *r, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->ctx[0]) return err_set(r->err, "%s: %s: %s", r->name, r->ctx, msg);
    return err_set(r->err, "%s: %s", r->name, msg);
}

static size_t left(const struct rd *r) { return r->size - r->pos; }

static int need(struct rd *r, size_t n, const char *what) {
    if (n > left(r))
        return fail(r, "file ends at offset %zu while reading %s at offset %zu (needs %zu bytes)",
                    r->size, what, r->pos, n);
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    *v = ld32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    *v = ld64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

// Reads a length-prefixed string; `what` names it in messages, followed by
// `elem` unless that is UINT64_MAX (array elements: "string element 5").
static int rd_str(struct rd *r, struct gguf_str *s, const char *what, uint64_t elem) {
    size_t at = r->pos;
    uint64_t len;
    char w[64];
    if (left(r) < 8 || ld64(r->p + r->pos) > left(r) - 8) { // error: name the string
        if (elem == UINT64_MAX) snprintf(w, sizeof w, "%s", what);
        else snprintf(w, sizeof w, "%s %llu", what, (unsigned long long)elem);
    }
    if (left(r) < 8) return need(r, 8, w);
    len = ld64(r->p + r->pos);
    r->pos += 8;
    if (len > left(r)) {
        return fail(r, "%s at offset %zu: length %llu runs past end of file (%zu bytes left)", w, at,
                    (unsigned long long)len, left(r));
    }
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += (size_t)len;
    return 0;
}

// Reserves n words at the end of the index pool; returns their position.
static int pool_reserve(struct rd *r, uint64_t n, uint64_t *pos) {
    struct gguf_file *f = r->f;
    if (n > SIZE_MAX / 8 - f->pool_len_) return fail(r, "index too large");
    size_t want = f->pool_len_ + (size_t)n;
    if (want > r->pool_cap) {
        size_t cap = r->pool_cap ? r->pool_cap : 256;
        while (cap < want) cap = cap > SIZE_MAX / 16 ? want : cap * 2;
        uint64_t *np = realloc(f->pool_, cap * sizeof *np);
        if (!np) return fail(r, "out of memory for the array index (%zu words)", cap);
        f->pool_ = np;
        r->pool_cap = cap;
    }
    *pos = f->pool_len_;
    f->pool_len_ = want;
    return 0;
}

static int parse_array(struct rd *r, int depth, struct gguf_arr *a, uint64_t *index_pos);

static int check_value_type(struct rd *r, uint32_t t, size_t at, const char *what) {
    if (t >= GGUF_TYPE_COUNT)
        return fail(r, "invalid %s %u at offset %zu (valid: 0..%d)", what, t, at, GGUF_TYPE_COUNT - 1);
    return 0;
}

static int parse_array(struct rd *r, int depth, struct gguf_arr *a, uint64_t *index_pos) {
    size_t at = r->pos;
    uint32_t t;
    uint64_t n;
    if (rd_u32(r, &t, "array element type")) return -1;
    if (check_value_type(r, t, at, "array element type")) return -1;
    if (rd_u64(r, &n, "array length")) return -1;
    a->type = (int)t;
    a->n = n;
    a->data = r->p + r->pos;
    a->index = NULL;
    a->pool = NULL;
    *index_pos = UINT64_MAX;
    size_t start = r->pos, es = value_size((int)t);
    if (n == 0) return 0;
    if (es) {
        if (n > left(r) / es)
            return fail(r, "array at offset %zu: %llu %s elements do not fit in the %zu bytes that remain", at,
                        (unsigned long long)n, value_type_names[t], left(r));
        if (t == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++) {
                uint8_t b = r->p[r->pos + i];
                if (b > 1)
                    return fail(r, "array element %llu: bool value %u at offset %zu is not 0 or 1",
                                (unsigned long long)i, b, r->pos + (size_t)i);
            }
        r->pos += (size_t)n * es;
        return 0;
    }
    if (t == GGUF_TYPE_STRING) {
        if (n > left(r) / 8)
            return fail(r, "array at offset %zu: %llu strings cannot fit in the %zu bytes that remain", at,
                        (unsigned long long)n, left(r));
        uint64_t ip;
        if (pool_reserve(r, n, &ip)) return -1;
        for (uint64_t i = 0; i < n; i++) {
            r->f->pool_[ip + i] = r->pos - start;
            struct gguf_str s;
            if (rd_str(r, &s, "string element", i)) return -1;
        }
        *index_pos = ip;
        return 0;
    }
    // array of arrays
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return fail(r, "array at offset %zu: arrays nested more than %d deep", at, GGUF_MAX_ARRAY_DEPTH);
    if (n > left(r) / 12)
        return fail(r, "array at offset %zu: %llu arrays cannot fit in the %zu bytes that remain", at,
                    (unsigned long long)n, left(r));
    uint64_t ip;
    if (n > UINT64_MAX / 2 || pool_reserve(r, 2 * n, &ip)) return -1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = r->pos - start, sub_ip;
        struct gguf_arr sub;
        if (parse_array(r, depth + 1, &sub, &sub_ip)) return -1;
        r->f->pool_[ip + 2 * i] = off;
        r->f->pool_[ip + 2 * i + 1] = sub_ip;
    }
    *index_pos = ip;
    return 0;
}

static int parse_kv(struct rd *r, size_t idx, struct gguf_kv *kv) {
    size_t at = r->pos;
    snprintf(r->ctx, sizeof r->ctx, "kv #%zu (offset %zu)", idx, at);
    if (rd_str(r, &kv->key, "key", UINT64_MAX)) return -1;
    char nm[400];
    snprintf(r->ctx, sizeof r->ctx, "key '%s' (offset %zu)", ESC_NAME(nm, kv->key), at);
    kv->offset = at;
    kv->index_pos_ = UINT64_MAX;
    size_t tat = r->pos;
    uint32_t t;
    if (rd_u32(r, &t, "value type")) return -1;
    if (check_value_type(r, t, tat, "value type")) return -1;
    kv->type = (int)t;
    size_t es = value_size((int)t);
    if (es) {
        if (need(r, es, value_type_names[t])) return -1;
        const uint8_t *p = r->p + r->pos;
        switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
            kv->v.u = ld_uint((int)t, p);
            break;
        case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
            kv->v.i = ld_int((int)t, p);
            break;
        case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
            kv->v.f = ld_float((int)t, p);
            break;
        case GGUF_TYPE_BOOL:
            if (p[0] > 1) return fail(r, "bool value %u at offset %zu is not 0 or 1", p[0], r->pos);
            kv->v.b = p[0] != 0;
            break;
        }
        r->pos += es;
        return 0;
    }
    if (t == GGUF_TYPE_STRING) return rd_str(r, &kv->v.s, "string value", UINT64_MAX);
    return parse_array(r, 0, &kv->v.a, &kv->index_pos_);
}

static int parse_tensor_info(struct rd *r, size_t idx, struct gguf_tensor *t) {
    size_t at = r->pos;
    snprintf(r->ctx, sizeof r->ctx, "tensor info #%zu (offset %zu)", idx, at);
    if (rd_str(r, &t->name, "name", UINT64_MAX)) return -1;
    char nm[400];
    snprintf(r->ctx, sizeof r->ctx, "tensor '%s' (info at offset %zu)", ESC_NAME(nm, t->name), at);
    uint32_t nd, type;
    size_t ndat = r->pos;
    if (rd_u32(r, &nd, "n_dims")) return -1;
    if (nd > GGUF_MAX_DIMS) return fail(r, "n_dims %u at offset %zu is more than %d", nd, ndat, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        size_t neat = r->pos;
        uint64_t ne;
        if (rd_u64(r, &ne, "ne")) return -1;
        if (ne > (uint64_t)INT64_MAX)
            return fail(r, "ne[%u] = %llu at offset %zu is negative or too large", d, (unsigned long long)ne,
                        neat);
        t->ne[d] = (int64_t)ne;
    }
    size_t tyat = r->pos;
    if (rd_u32(r, &type, "type")) return -1;
    if (type >= N_TYPE_IDS || !type_table[type].name) {
        const char *old = removed_type_name(type);
        if (old) return fail(r, "ggml type %u (%s) at offset %zu was removed from ggml and is not supported", type, old, tyat);
        return fail(r, "unknown ggml type %u at offset %zu", type, tyat);
    }
    t->type = (int)type;
    if (rd_u64(r, &t->offset, "data offset")) return -1;
    return 0;
}

// Element count and byte size, every multiply checked.
static int tensor_size(struct rd *r, const struct gguf_tensor *t, uint64_t *nbytes) {
    const struct type_info *ti = &type_table[t->type];
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne && n > (uint64_t)INT64_MAX / ne)
            return fail(r, "element count ne[0..%d] = %lld x %lld x %lld x %lld overflows int64",
                        t->n_dims - 1, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3]);
        n *= ne;
    }
    if (t->ne[0] % ti->blck)
        return fail(r, "row length ne[0] = %lld is not a multiple of the %s block size %u", (long long)t->ne[0],
                    ti->name, ti->blck);
    uint64_t b = (uint64_t)(t->ne[0] / ti->blck);
    if (b && ti->bytes > UINT64_MAX / b) goto overflow;
    b *= ti->bytes;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne && b > UINT64_MAX / ne) goto overflow;
        b *= ne;
    }
    *nbytes = b;
    return 0;
overflow:
    return fail(r, "byte size of %lld x %lld x %lld x %lld %s overflows", (long long)t->ne[0],
                (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], ti->name);
}

struct span { uint64_t start, end; size_t idx; };

static int span_cmp(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int get_alignment(struct rd *r) {
    struct gguf_file *f = r->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return 0;
    snprintf(r->ctx, sizeof r->ctx, "key 'general.alignment' (offset %llu)", (unsigned long long)kv->offset);
    uint64_t a;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        a = kv->v.u;
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        if (kv->v.i <= 0) return fail(r, "alignment %lld is not positive", (long long)kv->v.i);
        a = (uint64_t)kv->v.i;
        break;
    default:
        return fail(r, "has type %s, expected uint32", value_type_names[kv->type]);
    }
    if (a == 0 || (a & (a - 1)))
        return fail(r, "alignment %llu is not a power of two", (unsigned long long)a);
    if (a > (1u << 30)) return fail(r, "alignment %llu is larger than 2^30", (unsigned long long)a);
    f->alignment = a;
    return 0;
}

static int parse(struct rd *r) {
    struct gguf_file *f = r->f;
    r->ctx[0] = 0;
    if (r->size < 4) return fail(r, "file too small to be GGUF (%zu bytes)", r->size);
    if (memcmp(r->p, "GGUF", 4) != 0)
        return fail(r, "not a GGUF file (starts with bytes %02x %02x %02x %02x, expected 'GGUF')", r->p[0], r->p[1],
                    r->p[2], r->p[3]);
    r->pos = 4;
    uint32_t v;
    if (rd_u32(r, &v, "version")) return -1;
    if (v == 1) return fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (v != 2 && v != 3) {
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        if (sw >= 1 && sw <= 3)
            return fail(r, "big-endian GGUF (version %u byte-swapped) is not supported", sw);
        return fail(r, "unsupported GGUF version %u (only versions 2 and 3)", v);
    }
    f->version = v;
    uint64_t nt, nkv;
    if (rd_u64(r, &nt, "tensor count")) return -1;
    if (rd_u64(r, &nkv, "metadata kv count")) return -1;
    // A tensor info takes at least 24 bytes (empty name, 0 dims), a kv at least 13.
    if (nt > left(r) / 24)
        return fail(r, "tensor count %llu at offset 8 is impossible: the %zu bytes after the header hold at most %zu tensor infos",
                    (unsigned long long)nt, left(r), left(r) / 24);
    if (nkv > left(r) / 13)
        return fail(r, "metadata kv count %llu at offset 16 is impossible: the %zu bytes after the header hold at most %zu kvs",
                    (unsigned long long)nkv, left(r), left(r) / 13);
    if (nt * 24 + nkv * 13 > left(r))
        return fail(r, "tensor count %llu and kv count %llu cannot both fit in the %zu bytes after the header",
                    (unsigned long long)nt, (unsigned long long)nkv, left(r));
    if (nt >= UINT32_MAX / 2 || nkv >= UINT32_MAX / 2)
        return fail(r, "tensor count %llu or kv count %llu is beyond the supported 2^31", (unsigned long long)nt,
                    (unsigned long long)nkv);

    f->kv_hash_cap_ = hash_cap_for((size_t)nkv);
    f->tensor_hash_cap_ = hash_cap_for((size_t)nt);
    f->kvs = calloc((size_t)nkv + 1, sizeof *f->kvs);
    f->tensors = calloc((size_t)nt + 1, sizeof *f->tensors);
    f->kv_hash_ = calloc(f->kv_hash_cap_, sizeof *f->kv_hash_);
    f->tensor_hash_ = calloc(f->tensor_hash_cap_, sizeof *f->tensor_hash_);
    if (!f->kvs || !f->tensors || !f->kv_hash_ || !f->tensor_hash_) return fail(r, "out of memory");

    char nm[400];
    for (size_t i = 0; i < (size_t)nkv; i++) {
        struct gguf_kv *kv = &f->kvs[i];
        if (parse_kv(r, i, kv)) return -1;
        size_t s = hash_slot(f->kv_hash_, f->kv_hash_cap_, kv->key.ptr, kv->key.len, kv_name, f->kvs);
        if (f->kv_hash_[s]) {
            r->ctx[0] = 0;
            return fail(r, "duplicate key '%s' at offset %llu (first at offset %llu)", ESC_NAME(nm, kv->key),
                        (unsigned long long)kv->offset,
                        (unsigned long long)f->kvs[f->kv_hash_[s] - 1].offset);
        }
        f->kv_hash_[s] = (uint32_t)i + 1;
        f->n_kvs = i + 1;
    }
    // Arrays now point into the finished index pool.
    for (size_t i = 0; i < f->n_kvs; i++) {
        struct gguf_kv *kv = &f->kvs[i];
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        kv->v.a.pool = f->pool_;
        kv->v.a.index = kv->index_pos_ == UINT64_MAX ? NULL : f->pool_ + kv->index_pos_;
    }
    if (get_alignment(r)) return -1;

    for (size_t i = 0; i < (size_t)nt; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (parse_tensor_info(r, i, t)) return -1;
        size_t s = hash_slot(f->tensor_hash_, f->tensor_hash_cap_, t->name.ptr, t->name.len, tensor_name, f->tensors);
        if (f->tensor_hash_[s]) {
            r->ctx[0] = 0;
            return fail(r, "duplicate tensor name '%s' (tensor infos #%u and #%zu)", ESC_NAME(nm, t->name),
                        f->tensor_hash_[s] - 1, i);
        }
        f->tensor_hash_[s] = (uint32_t)i + 1;
        f->n_tensors = i + 1;
    }

    // Data section: starts at the next multiple of the alignment.
    r->ctx[0] = 0;
    size_t rem = r->pos % f->alignment, data = r->pos;
    if (rem) {
        if (f->alignment - rem > SIZE_MAX - data) return fail(r, "data section offset overflows");
        data += (size_t)f->alignment - rem;
    }
    f->data_offset = data;

    struct span *spans = NULL;
    if (f->n_tensors) {
        spans = malloc(f->n_tensors * sizeof *spans);
        if (!spans) return fail(r, "out of memory");
    }
    size_t n_spans = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", ESC_NAME(nm, t->name));
        uint64_t nbytes = 0;
        if (tensor_size(r, t, &nbytes)) goto fail;
        if (t->offset % f->alignment) {
            fail(r, "data offset %llu is not a multiple of the alignment %llu", (unsigned long long)t->offset,
                 (unsigned long long)f->alignment);
            goto fail;
        }
        uint64_t start = (uint64_t)data + t->offset, end = start + nbytes;
        if (t->offset > UINT64_MAX - data || nbytes > UINT64_MAX - start) {
            fail(r, "data offset %llu + size %llu overflows", (unsigned long long)t->offset,
                 (unsigned long long)nbytes);
            goto fail;
        }
        if (end > r->size) {
            fail(r, "data [offset %llu..%llu) runs past end of file (size %zu)", (unsigned long long)start,
                 (unsigned long long)end, r->size);
            goto fail;
        }
        t->data = r->p + start;
        t->nbytes = (size_t)nbytes;
        if (nbytes) spans[n_spans++] = (struct span){start, end, i};
    }
    r->ctx[0] = 0;
    if (n_spans > 1) {
        qsort(spans, n_spans, sizeof *spans, span_cmp);
        for (size_t i = 1; i < n_spans; i++) {
            if (spans[i].start < spans[i - 1].end) {
                char nm2[400];
                const struct gguf_tensor *a = &f->tensors[spans[i - 1].idx], *b = &f->tensors[spans[i].idx];
                fail(r, "tensor '%s': data [offset %llu..%llu) overlaps tensor '%s' [offset %llu..%llu)",
                     ESC_NAME(nm, b->name), (unsigned long long)spans[i].start, (unsigned long long)spans[i].end,
                     ESC_NAME(nm2, a->name), (unsigned long long)spans[i - 1].start,
                     (unsigned long long)spans[i - 1].end);
                goto fail;
            }
        }
    }
    free(spans);
    return 0;
fail:
    free(spans);
    return -1;
}

int gguf_parse(struct gguf_file *f, const void *buf, size_t size, const char *name, llm_err *err) {
    memset(f, 0, sizeof *f);
    if (!name) name = "<memory>";
    f->path = strdup(name);
    if (!f->path) return err_set(err, "%s: out of memory", name);
    f->base = buf;
    f->size = size;
    struct rd r = {.p = buf, .size = size, .name = f->path, .err = err, .f = f};
    if (parse(&r) != 0) {
        gguf_close(f);
        return -1;
    }
    return 0;
}

int gguf_open_mode(struct gguf_file *f, const char *path, enum mapfile_mode mode, llm_err *err) {
    return gguf_open_progress(f, path, mode, NULL, err);
}

int gguf_open_progress(struct gguf_file *f, const char *path, enum mapfile_mode mode,
                       const struct progress *progress, llm_err *err) {
    struct mapfile m;
    memset(f, 0, sizeof *f);
    if (mapfile_open_progress(&m, path, mode, progress, err)) return -1;
    if (gguf_parse(f, m.data, m.size, path, err)) {
        mapfile_close(&m);
        return -1;
    }
    f->map = m;
    return 0;
}

int gguf_open(struct gguf_file *f, const char *path, llm_err *err) {
    return gguf_open_mode(f, path, MAPFILE_MAP, err);
}

void gguf_close(struct gguf_file *f) {
    free(f->path);
    free(f->kvs);
    free(f->tensors);
    free(f->pool_);
    free(f->kv_hash_);
    free(f->tensor_hash_);
    mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

// ---------------------------------------------------------------------------
// Lookup and getters

const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key) {
    if (!f->kv_hash_) return NULL;
    size_t s = hash_slot(f->kv_hash_, f->kv_hash_cap_, key, strlen(key), kv_name, f->kvs);
    return f->kv_hash_[s] ? &f->kvs[f->kv_hash_[s] - 1] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name) {
    if (!f->tensor_hash_) return NULL;
    size_t s = hash_slot(f->tensor_hash_, f->tensor_hash_cap_, name, strlen(name), tensor_name, f->tensors);
    return f->tensor_hash_[s] ? &f->tensors[f->tensor_hash_[s] - 1] : NULL;
}

static int wrong_type(const struct gguf_file *f, const struct gguf_kv *kv, const char *want, llm_err *err) {
    char nm[400];
    return err_set(err, "%s: key '%s' has type %s, expected %s", f->path, ESC_NAME(nm, kv->key),
                   value_type_names[kv->type], want);
}

int gguf_get_int(const struct gguf_file *f, const char *key, int64_t *out, llm_err *err) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        if (kv->v.u > (uint64_t)INT64_MAX) {
            char nm[400];
            return err_set(err, "%s: key '%s' value %llu is out of range for int64", f->path, ESC_NAME(nm, kv->key),
                           (unsigned long long)kv->v.u);
        }
        *out = (int64_t)kv->v.u;
        return 1;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        *out = kv->v.i;
        return 1;
    default:
        return wrong_type(f, kv, "an integer", err);
    }
}

int gguf_get_float(const struct gguf_file *f, const char *key, double *out, llm_err *err) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    switch (kv->type) {
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: *out = kv->v.f; return 1;
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        *out = (double)kv->v.u;
        return 1;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        *out = (double)kv->v.i;
        return 1;
    default:
        return wrong_type(f, kv, "a number", err);
    }
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, llm_err *err) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(f, kv, "bool", err);
    *out = kv->v.b;
    return 1;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out, llm_err *err) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(f, kv, "string", err);
    *out = kv->v.s;
    return 1;
}

int gguf_get_arr(const struct gguf_file *f, const char *key, struct gguf_arr *out, llm_err *err) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_ARRAY) return wrong_type(f, kv, "array", err);
    *out = kv->v.a;
    return 1;
}

struct gguf_str gguf_arr_str(const struct gguf_arr *a, uint64_t i) {
    struct gguf_str s = {"", 0};
    if (a->type != GGUF_TYPE_STRING || i >= a->n || !a->index) return s;
    const uint8_t *p = a->data + a->index[i];
    s.len = ld64(p);
    s.ptr = (const char *)p + 8;
    return s;
}

int64_t gguf_arr_int(const struct gguf_arr *a, uint64_t i) {
    if (i >= a->n || !(is_int_type(a->type) || a->type == GGUF_TYPE_BOOL)) return 0;
    return ld_int(a->type, a->data + i * value_size(a->type));
}

double gguf_arr_f64(const struct gguf_arr *a, uint64_t i) {
    if (i >= a->n || !value_size(a->type)) return 0;
    return ld_float(a->type, a->data + i * value_size(a->type));
}

float gguf_arr_f32(const struct gguf_arr *a, uint64_t i) {
    if (a->type == GGUF_TYPE_FLOAT32 && i < a->n) return f32_from_bits(ld32(a->data + i * 4));
    return (float)gguf_arr_f64(a, i);
}

int gguf_arr_sub(const struct gguf_arr *a, uint64_t i, struct gguf_arr *out) {
    if (a->type != GGUF_TYPE_ARRAY || i >= a->n || !a->index) return -1;
    const uint8_t *p = a->data + a->index[2 * i];
    uint64_t ip = a->index[2 * i + 1];
    out->type = (int)ld32(p);
    out->n = ld64(p + 4);
    out->data = p + 12;
    out->pool = a->pool;
    out->index = ip == UINT64_MAX ? NULL : a->pool + ip;
    return 0;
}

// ---------------------------------------------------------------------------
// Formatting for dumps

struct out { char *buf; size_t size, len; };

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
    if (o->len + 1 >= o->size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    o->len = o->len + (size_t)n < o->size ? o->len + (size_t)n : o->size - 1;
}

static void put_str(struct out *o, struct gguf_str s, size_t max) {
    char tmp[400];
    put(o, "\"%s\"", esc(tmp, sizeof tmp, s.ptr, s.len, max < 96 ? max : 96));
}

static void put_arr(struct out *o, const struct gguf_arr *a) {
    put(o, "[%llu x %s] [", (unsigned long long)a->n, value_type_names[a->type]);
    uint64_t show = a->n < 8 ? a->n : 8;
    for (uint64_t i = 0; i < show; i++) {
        if (i) put(o, ", ");
        switch (a->type) {
        case GGUF_TYPE_STRING: put_str(o, gguf_arr_str(a, i), 32); break;
        case GGUF_TYPE_ARRAY: {
            struct gguf_arr sub;
            if (gguf_arr_sub(a, i, &sub) == 0) put_arr(o, &sub);
            break;
        }
        case GGUF_TYPE_FLOAT32: put(o, "%.9g", gguf_arr_f64(a, i)); break;
        case GGUF_TYPE_FLOAT64: put(o, "%.17g", gguf_arr_f64(a, i)); break;
        case GGUF_TYPE_BOOL: put(o, "%s", gguf_arr_int(a, i) ? "true" : "false"); break;
        case GGUF_TYPE_UINT64: put(o, "%llu", (unsigned long long)gguf_arr_int(a, i)); break;
        default: put(o, "%lld", (long long)gguf_arr_int(a, i)); break;
        }
    }
    put(o, "%s]", a->n > show ? ", ..." : "");
}

char *gguf_kv_format(const struct gguf_kv *kv, char *buf, size_t size) {
    if (!buf || !size) return buf;
    struct out o = {buf, size, 0};
    buf[0] = 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        put(&o, "%llu", (unsigned long long)kv->v.u);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        put(&o, "%lld", (long long)kv->v.i);
        break;
    case GGUF_TYPE_FLOAT32: put(&o, "%.9g", kv->v.f); break;
    case GGUF_TYPE_FLOAT64: put(&o, "%.17g", kv->v.f); break;
    case GGUF_TYPE_BOOL: put(&o, "%s", kv->v.b ? "true" : "false"); break;
    case GGUF_TYPE_STRING: put_str(&o, kv->v.s, 96); break;
    case GGUF_TYPE_ARRAY: put_arr(&o, &kv->v.a); break;
    }
    return buf;
}
