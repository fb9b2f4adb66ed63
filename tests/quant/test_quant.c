// Tests for quant/: the traits table, dequantization against goldens made by the
// independent `gguf` Python package (tools/gen_quant_goldens.py), quantization
// against gguf where it can quantize, quantizer properties derivable by hand,
// round-trip error bounds, and every vec_dot against a double-precision dot of
// dequantized operands. Run from the repository root.
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "quant/quant.h"
#include "testutil.h"

#define GOLDEN_DIR "tests/data/quant/"

// ---- Helpers ----------------------------------------------------------------

// Random values with a random magnitude per block of 32, so that blocks of very
// different scales are exercised.
static void fill_random(float *x, int64_t n) {
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) scale = (float)exp(rng_uniform() * 9.0 - 6.0);
        x[i] = rng_normal() * scale;
    }
}

static const int all_types[] = {QUANT_F32,  QUANT_F16,  QUANT_BF16, QUANT_Q4_0, QUANT_Q4_1,
                                QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0, QUANT_Q8_1, QUANT_Q2_K,
                                QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_Q8_K};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

// Distance in units in the last place between two finite floats.
static int64_t ulp_distance(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = (int32_t)(0x80000000u - (uint32_t)ia);
    if (ib < 0) ib = (int32_t)(0x80000000u - (uint32_t)ib);
    const int64_t d = (int64_t)ia - (int64_t)ib;
    return d < 0 ? -d : d;
}

// ---- Golden files -------------------------------------------------------------

struct golden {
    uint32_t kind, type, n_rows, n_per_row, row_bytes;
    uint8_t *blocks; // [n_rows][row_bytes]
    float *values;   // [n_rows][n_per_row]
};

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Reads tests/data/quant/<type name>.<suffix>.bin; returns 0 on success.
static int golden_read(int type, const char *suffix, struct golden *g) {
    const struct quant_traits *t = quant_get(type);
    char name[32], path[128];
    size_t i;
    for (i = 0; t->name[i] && i + 1 < sizeof name; i++) name[i] = (char)tolower((unsigned char)t->name[i]);
    name[i] = 0;
    snprintf(path, sizeof path, GOLDEN_DIR "%s.%s.bin", name, suffix);
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
        return -1;
    }
    uint8_t hdr[28];
    int ok = fread(hdr, 1, sizeof hdr, f) == sizeof hdr && memcmp(hdr, "LLQG", 4) == 0 &&
             le32(hdr + 4) == 1;
    if (ok) {
        g->kind = le32(hdr + 8);
        g->type = le32(hdr + 12);
        g->n_rows = le32(hdr + 16);
        g->n_per_row = le32(hdr + 20);
        g->row_bytes = le32(hdr + 24);
        ok = g->type == (uint32_t)type && g->n_rows > 0 && g->n_rows <= 64 && g->n_per_row > 0 &&
             g->n_per_row <= 65536 && g->row_bytes == quant_row_bytes(type, g->n_per_row);
    }
    if (ok) {
        const size_t nb = (size_t)g->n_rows * g->row_bytes, nv = (size_t)g->n_rows * g->n_per_row;
        g->blocks = xmalloc(nb);
        g->values = xmalloc(nv * sizeof(float));
        uint8_t *raw = xmalloc(nv * 4);
        if (g->kind == 0) {
            ok = fread(g->blocks, 1, nb, f) == nb && fread(raw, 1, nv * 4, f) == nv * 4;
        } else {
            ok = fread(raw, 1, nv * 4, f) == nv * 4 && fread(g->blocks, 1, nb, f) == nb;
        }
        ok = ok && fgetc(f) == EOF;
        for (size_t k = 0; k < nv; k++) {
            const uint32_t u = le32(raw + 4 * k);
            memcpy(&g->values[k], &u, 4);
        }
        free(raw);
    }
    fclose(f);
    CHECK(ok, "%s: bad or truncated golden file", path);
    return ok ? 0 : -1;
}

static void golden_free(struct golden *g) {
    free(g->blocks);
    free(g->values);
}

// ---- Traits -----------------------------------------------------------------

static void test_traits(void) {
    static const struct {
        int type;
        const char *name;
        int64_t elems;
        size_t bytes;
        int vec_dot_type;
    } want[] = {
        {QUANT_F32, "f32", 1, 4, QUANT_F32},         {QUANT_F16, "f16", 1, 2, QUANT_F16},
        {QUANT_BF16, "bf16", 1, 2, QUANT_BF16},      {QUANT_Q4_0, "q4_0", 32, 18, QUANT_Q8_0},
        {QUANT_Q4_1, "q4_1", 32, 20, QUANT_Q8_1},    {QUANT_Q5_0, "q5_0", 32, 22, QUANT_Q8_0},
        {QUANT_Q5_1, "q5_1", 32, 24, QUANT_Q8_1},    {QUANT_Q8_0, "q8_0", 32, 34, QUANT_Q8_0},
        {QUANT_Q8_1, "q8_1", 32, 36, QUANT_Q8_1},    {QUANT_Q2_K, "q2_K", 256, 84, QUANT_Q8_K},
        {QUANT_Q3_K, "q3_K", 256, 110, QUANT_Q8_K},  {QUANT_Q4_K, "q4_K", 256, 144, QUANT_Q8_K},
        {QUANT_Q5_K, "q5_K", 256, 176, QUANT_Q8_K},  {QUANT_Q6_K, "q6_K", 256, 210, QUANT_Q8_K},
        {QUANT_Q8_K, "q8_K", 256, 292, QUANT_Q8_K},
    };
    int supported = 0;
    for (int id = -2; id < QUANT_TYPE_COUNT + 3; id++) supported += quant_get(id) != NULL;
    CHECK(supported == (int)(sizeof want / sizeof want[0]), "%d supported types", supported);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct quant_traits *t = quant_get(want[i].type);
        CHECK(t != NULL, "type %d missing", want[i].type);
        if (!t) continue;
        CHECK(strcmp(t->name, want[i].name) == 0, "type %d name %s", want[i].type, t->name);
        CHECK(t->block_elems == want[i].elems && t->block_bytes == want[i].bytes,
              "%s: block %lld values, %zu bytes", t->name, (long long)t->block_elems, t->block_bytes);
        CHECK((int)t->vec_dot_type == want[i].vec_dot_type, "%s: vec_dot_type %d", t->name,
              (int)t->vec_dot_type);
        CHECK(t->to_f32 != NULL, "%s: no to_f32", t->name);
        CHECK(t->from_f32 != NULL, "%s: no from_f32", t->name);
        const int is_act = want[i].type == QUANT_Q8_1 || want[i].type == QUANT_Q8_K;
        CHECK(is_act || t->vec_dot != NULL, "%s: no vec_dot", t->name);
        // the activation type must itself be quantizable and dequantizable
        const struct quant_traits *vt = quant_get(t->vec_dot_type);
        CHECK(vt && vt->from_f32 && vt->to_f32 && vt->block_elems == t->block_elems,
              "%s: vec_dot_type unusable", t->name);
    }
    CHECK(quant_get(4) == NULL && quant_get(5) == NULL && quant_get(16) == NULL, "ids 4,5,16");
    CHECK(quant_get(-1) == NULL && quant_get(QUANT_TYPE_COUNT) == NULL && quant_get(1000) == NULL,
          "out-of-range ids");

    CHECK(quant_row_bytes(QUANT_F32, 7) == 28, "f32 row");
    CHECK(quant_row_bytes(QUANT_Q4_0, 64) == 36, "q4_0 row");
    CHECK(quant_row_bytes(QUANT_Q6_K, 512) == 420, "q6_K row");
    CHECK(quant_row_bytes(QUANT_Q4_0, 0) == 0, "empty row");
    CHECK(quant_row_bytes(QUANT_Q4_0, 33) == 0, "partial block");
    CHECK(quant_row_bytes(QUANT_Q4_K, -256) == 0, "negative n");
    CHECK(quant_row_bytes(4, 32) == 0, "unknown type");
    CHECK(quant_row_bytes(QUANT_F32, INT64_MAX) == 0, "overflow not detected");
    CHECK(quant_row_bytes(QUANT_F32, INT64_MAX / 2 + 1) == 0, "overflow not detected"); // 2^64 bytes
    CHECK(quant_row_bytes(QUANT_F32, INT64_MAX / 8) == (size_t)(INT64_MAX / 8) * 4 || SIZE_MAX < INT64_MAX,
          "large row");
}

// ---- Dequantization goldens ---------------------------------------------------

static void test_dequant_goldens(void) {
    static const int types[] = {QUANT_F32,  QUANT_F16,  QUANT_BF16, QUANT_Q4_0, QUANT_Q4_1,
                                QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0, QUANT_Q2_K, QUANT_Q3_K,
                                QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const struct quant_traits *t = quant_get(types[ti]);
        struct golden g;
        if (golden_read(types[ti], "deq", &g) != 0) continue;
        CHECK(g.kind == 0, "%s: kind", t->name);
        const int64_t n = (int64_t)g.n_rows * g.n_per_row;
        float *out = xmalloc((size_t)n * sizeof(float));
        // Row by row, so each call sees a tightly sized buffer (ASan catches overruns).
        for (uint32_t r = 0; r < g.n_rows; r++) {
            uint8_t *row = xmalloc(g.row_bytes);
            memcpy(row, g.blocks + (size_t)r * g.row_bytes, g.row_bytes);
            t->to_f32(row, out + (int64_t)r * g.n_per_row, g.n_per_row);
            free(row);
        }
        int64_t mismatches = 0, max_ulp = 0, first = -1;
        for (int64_t i = 0; i < n; i++) {
            const int64_t u = ulp_distance(out[i], g.values[i]);
            if (memcmp(&out[i], &g.values[i], 4) != 0) {
                mismatches++;
                if (first < 0) first = i;
            }
            if (u > max_ulp) max_ulp = u;
        }
        // Our arithmetic follows ggml's (and gguf's) operation order, so the
        // results are expected to be identical to the bit.
        CHECK(mismatches == 0, "%s: %lld of %lld values differ from gguf (max %lld ulp; first at %lld: %.9g vs %.9g)",
              t->name, (long long)mismatches, (long long)n, (long long)max_ulp, (long long)first,
              first >= 0 ? out[first] : 0.0, first >= 0 ? g.values[first] : 0.0);
        free(out);
        golden_free(&g);
    }
}

// ---- Quantization goldens -----------------------------------------------------

static void test_quant_goldens(void) {
    static const int types[] = {QUANT_F16,  QUANT_BF16, QUANT_Q4_0, QUANT_Q4_1,
                                QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const struct quant_traits *t = quant_get(types[ti]);
        struct golden g;
        if (golden_read(types[ti], "qnt", &g) != 0) continue;
        CHECK(g.kind == 1, "%s: kind", t->name);
        const size_t nb = (size_t)g.n_rows * g.row_bytes;
        uint8_t *out = xmalloc(nb);
        for (uint32_t r = 0; r < g.n_rows; r++)
            t->from_f32(g.values + (size_t)r * g.n_per_row, out + (size_t)r * g.row_bytes, g.n_per_row);
        size_t diff = 0, first = SIZE_MAX;
        for (size_t i = 0; i < nb; i++) {
            if (out[i] != g.blocks[i]) {
                diff++;
                if (first == SIZE_MAX) first = i;
            }
        }
        CHECK(diff == 0, "%s: %zu of %zu quantized bytes differ from gguf (first at byte %zu, block %zu)",
              t->name, diff, nb, first, first / t->block_bytes);

        if (types[ti] == QUANT_Q8_0) {
            // Q8_1 quantizes exactly like Q8_0 and adds s = d * sum(q).
            const int64_t n = (int64_t)g.n_rows * g.n_per_row;
            block_q8_1 *y = xmalloc((size_t)(n / 32) * sizeof(block_q8_1));
            quant_get(QUANT_Q8_1)->from_f32(g.values, y, n);
            const block_q8_0 *ref = (const block_q8_0 *)(const void *)g.blocks;
            int bad_qs = 0, bad_s = 0;
            for (int64_t b = 0; b < n / 32; b++) {
                block_q8_0 r;
                memcpy(&r, (const uint8_t *)ref + b * sizeof r, sizeof r);
                bad_qs += y[b].d != r.d || memcmp(y[b].qs, r.qs, 32) != 0;
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += y[b].qs[j];
                const double want = (double)fp16_to_fp32(y[b].d) * sum;
                // s is d*sum rounded to fp16, with d not yet rounded: 2 fp16 roundings.
                bad_s += fabs(fp16_to_fp32(y[b].s) - want) > fabs(want) * 0x1.0p-10 + 1e-30;
            }
            CHECK(bad_qs == 0, "q8_1: %d blocks differ from q8_0 golden", bad_qs);
            CHECK(bad_s == 0, "q8_1: %d blocks with s != d*sum", bad_s);
            free(y);
        }
        free(out);
        golden_free(&g);
    }
}

// ---- Activation quantizer properties ------------------------------------------

static void test_q8_properties(void) {
    const struct quant_traits *t0 = quant_get(QUANT_Q8_0), *t1 = quant_get(QUANT_Q8_1),
                              *tk = quant_get(QUANT_Q8_K);
    float x[256];

    // Q8_0/Q8_1: x = 0.1*(j+1) - one block whose max sits at the end.
    for (int j = 0; j < 32; j++) x[j] = 0.1f * (float)(j + 1);
    block_q8_0 b0;
    block_q8_1 b1;
    t0->from_f32(x, &b0, 32);
    t1->from_f32(x, &b1, 32);
    CHECK(b0.qs[31] == 127 && b1.qs[31] == 127, "max -> 127 (%d, %d)", b0.qs[31], b1.qs[31]);
    CHECK(b0.d == fp32_to_fp16(3.2f / 127.0f), "q8_0 d = amax/127");
    for (int j = 0; j < 32; j++) {
        // q = round(x * 127 / 3.2) = round((j+1) * 3.96875), no ties near.
        const int want = (int)lround((j + 1) * 127.0 / 32.0);
        CHECK(b0.qs[j] == want, "q8_0 q[%d] = %d, want %d", j, b0.qs[j], want);
    }
    // Negative max maps to -127; sum and s follow.
    for (int j = 0; j < 32; j++) x[j] = (j == 5) ? -8.0f : (float)(j % 7) - 3.0f;
    t0->from_f32(x, &b0, 32);
    t1->from_f32(x, &b1, 32);
    CHECK(b0.qs[5] == -127 && b1.qs[5] == -127, "negative max -> -127");
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += b1.qs[j];
    CHECK(fabsf(fp16_to_fp32(b1.s) - fp16_to_fp32(b1.d) * (float)sum) <=
              fabsf(fp16_to_fp32(b1.d) * (float)sum) * 0x1.0p-10f,
          "q8_1 s = d * sum");
    // Halves round to even (llama.cpp's x86 semantics): x = 0.5*d exactly. With amax = 127 -> d = 1.
    for (int j = 0; j < 32; j++) x[j] = 0.0f;
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    t0->from_f32(x, &b0, 32);
    CHECK(b0.qs[1] == 2 && b0.qs[2] == -2 && b0.qs[3] == 0, "q8_0 rounds half to even (%d %d %d)",
          b0.qs[1], b0.qs[2], b0.qs[3]);
    // All zero: d = 0, q = 0, s = 0.
    memset(x, 0, sizeof x);
    memset(&b1, 0x55, sizeof b1);
    t1->from_f32(x, &b1, 32);
    int nonzero = fp16_to_fp32(b1.d) != 0.0f || fp16_to_fp32(b1.s) != 0.0f;
    for (int j = 0; j < 32; j++) nonzero |= b1.qs[j] != 0;
    CHECK(!nonzero, "q8_1 of zeros");

    // Q8_K: x[e] = 0.01*(e%255 - 127): the first value of largest magnitude is
    // x[0] = -1.27, which maps to -127, so d = -1.27/-127 = +0.01 and q[e] = e%255 - 127.
    block_q8_K bk;
    for (int e = 0; e < 256; e++) x[e] = 0.01f * (float)(e % 255 - 127);
    tk->from_f32(x, &bk, 256);
    CHECK(fabsf(bk.d - 0.01f) <= 0.01f * 1e-6f, "q8_K d = %.9g, want 0.01", bk.d);
    int bad = 0;
    for (int e = 0; e < 256; e++) bad += bk.qs[e] != e % 255 - 127;
    CHECK(bad == 0, "q8_K quants: %d wrong", bad);
    // A positive maximum maps to -127 too (ggml's convention), giving negative d.
    for (int e = 0; e < 256; e++) x[e] = (float)sin(e * 0.37) * 0.5f;
    x[77] = 3.0f;
    tk->from_f32(x, &bk, 256);
    CHECK(bk.qs[77] == -127 && bk.d < 0.0f, "q8_K positive max -> -127 (%d, d=%g)", bk.qs[77], bk.d);
    CHECK(fabsf(bk.d - (-3.0f / 127.0f)) <= 3.0f / 127.0f * 1e-6f, "q8_K d = %g", bk.d);
    bad = 0;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int e = 16 * g; e < 16 * g + 16; e++) s += bk.qs[e];
        bad += bk.bsums[g] != s;
    }
    CHECK(bad == 0, "q8_K bsums: %d wrong", bad);
    bad = 0;
    for (int e = 0; e < 256; e++) bad += fabsf(bk.d * bk.qs[e] - x[e]) > fabsf(bk.d) * 0.5f * 1.0001f;
    CHECK(bad == 0, "q8_K: %d values off by more than d/2", bad);
    // Ties round half to even: with max -127 -> d = 1, x = 2.5 -> -2 (even), 3.5 -> -4.
    for (int e = 0; e < 256; e++) x[e] = 0.0f;
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = 3.5f;
    tk->from_f32(x, &bk, 256);
    CHECK(bk.qs[0] == -127 && bk.qs[1] == -2 && bk.qs[2] == -4, "q8_K ties to even (%d %d %d)", bk.qs[0],
          bk.qs[1], bk.qs[2]);
    // All zero block.
    memset(x, 0, sizeof x);
    memset(&bk, 0x55, sizeof bk);
    tk->from_f32(x, &bk, 256);
    nonzero = bk.d != 0.0f;
    for (int e = 0; e < 256; e++) nonzero |= bk.qs[e] != 0;
    for (int g = 0; g < 16; g++) nonzero |= bk.bsums[g] != 0;
    CHECK(!nonzero, "q8_K of zeros");
}

// ---- Round trips ----------------------------------------------------------------

// Quantizes random data, dequantizes it and checks each block's error against a
// bound derived from the format, and the mean error against half of that (the
// mean of a uniform rounding error is a quarter step).
static void test_round_trip(void) {
    const int64_t n = 4096;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int type = all_types[ti];
        const struct quant_traits *t = quant_get(type);
        if (!t->from_f32) continue;
        const size_t bytes = quant_row_bytes(type, n);
        void *q = xmalloc(bytes);
        fill_random(x, n);
        t->from_f32(x, q, n);
        t->to_f32(q, y, n);
        const int64_t be = type == QUANT_F32 || type == QUANT_F16 || type == QUANT_BF16 ? 32 : t->block_elems;
        int64_t bad = 0, worst = -1;
        double sum_err = 0.0, sum_step = 0.0, worst_frac = 0.0;
        for (int64_t b = 0; b < n / be; b++) {
            const float *xb = x + b * be, *yb = y + b * be;
            float amax = 0, min = xb[0], max = xb[0];
            for (int64_t j = 0; j < be; j++) {
                amax = fmaxf(amax, fabsf(xb[j]));
                min = fminf(min, xb[j]);
                max = fmaxf(max, xb[j]);
            }
            double step = 0.0, bound = 0.0; // absolute bound unless relative below
            double rel = 0.0;               // per-value relative bound (float types)
            switch (type) {
            case QUANT_F32: rel = 0.0; break;
            case QUANT_F16: rel = 0x1.0p-11; break;
            case QUANT_BF16: rel = 0x1.0p-8; break;
            // Symmetric types: step = amax/(levels/2). Values on the side of the
            // block's extreme round to within step/2; the other end is clamped, so
            // allow one step; fp16 rounding of d shifts the largest quants by up
            // to 2^-11 of amax.
            case QUANT_Q4_0: step = amax / 8.0; bound = step + amax * 0x1.0p-10; break;
            case QUANT_Q5_0: step = amax / 16.0; bound = step + amax * 0x1.0p-10; break;
            case QUANT_Q8_0:
            case QUANT_Q8_1: step = amax / 127.0; bound = step / 2 + amax * 0x1.0p-10; break;
            // Offset types: step = range/levels; the min is stored in fp16 too.
            case QUANT_Q4_1:
                step = (max - min) / 15.0;
                bound = step / 2 + (fabs(min) + (max - min)) * 0x1.0p-10;
                break;
            case QUANT_Q5_1:
                step = (max - min) / 31.0;
                bound = step / 2 + (fabs(min) + (max - min)) * 0x1.0p-10;
                break;
            case QUANT_Q8_K: step = amax / 127.0; bound = step / 2 * 1.0001; break;
            // K-quants (our simple quantizer), as fractions of the super-block's
            // largest magnitude A. Symmetric (Q3_K, Q6_K): one sub-block step
            // A/nhalf (the clamped end) plus sub-scale rounding nhalf*d/2.
            // Asymmetric: half a step (range <= 2A) plus the rounding of the
            // sub-scale (nmax*d/2) and of the min (dmin/2), d, dmin <= 2A/(nmax*smax).
            case QUANT_Q2_K: bound = step = 0.45 * amax; break;  // 1/3 + 1/15 + 1/30
            case QUANT_Q3_K: bound = step = 0.28 * amax; break;  // 1/4 + 1/64
            case QUANT_Q4_K: bound = step = 0.095 * amax; break; // 1/15 + 1/63 + 1/126
            case QUANT_Q5_K: bound = step = 0.058 * amax; break; // 1/31 + 1/63 + 1/126
            case QUANT_Q6_K: bound = step = 0.036 * amax; break; // 1/32 + 1/256
            default: CHECK(0, "%s: no bound", t->name); break;
            }
            for (int64_t j = 0; j < be; j++) {
                const double err = fabs((double)yb[j] - xb[j]);
                if (amax > 0 && err / amax > worst_frac) worst_frac = err / amax;
                // (fp16's subnormals have a fixed spacing of 2^-24: half of it absolute)
                const double lim = rel > 0.0 || step == 0.0
                                       ? fabs(xb[j]) * rel + (type == QUANT_F16 ? 0x1.0p-25 : 0.0)
                                       : bound * 1.001;
                if (err > lim) {
                    bad++;
                    if (worst < 0) worst = b * be + j;
                }
                sum_err += err;
                sum_step += step;
            }
        }
        if (getenv("QUANT_TEST_VERBOSE")) // prints how close each type comes to its bound
            printf("%s: worst error %.4f of amax, mean %.3f steps\n", t->name, worst_frac, sum_step > 0 ? sum_err / sum_step : 0.0);
        CHECK(bad == 0, "%s: %lld values outside the round-trip bound (first %lld: %.9g -> %.9g)", t->name,
              (long long)bad, (long long)worst, worst >= 0 ? x[worst] : 0.0, worst >= 0 ? y[worst] : 0.0);
        if (sum_step > 0.0)
            CHECK(sum_err <= 0.3 * sum_step, "%s: mean error %.3g steps, want ~0.25", t->name,
                  sum_err / sum_step);
        if (type == QUANT_F32) CHECK(memcmp(x, y, n * sizeof(float)) == 0, "f32 round trip not exact");
        free(q);
    }
    free(x);
    free(y);
}

// ---- vec_dot ------------------------------------------------------------------

// Checks one vec_dot of n weights (w, of type t) against a double-precision dot
// of the dequantized weights and activations.
static void check_vec_dot(int type, const void *w, int64_t n, const char *what) {
    const struct quant_traits *t = quant_get(type), *at = quant_get(t->vec_dot_type);
    float *x = xmalloc(n * sizeof(float)), *wf = xmalloc(n * sizeof(float)), *af = xmalloc(n * sizeof(float));
    const size_t abytes = quant_row_bytes(t->vec_dot_type, n);
    void *act = xmalloc(abytes);
    fill_random(x, n);
    at->from_f32(x, act, n);
    at->to_f32(act, af, n);
    t->to_f32(w, wf, n);

    double ref = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)wf[i] * af[i];
        mag += fabs((double)wf[i] * af[i]);
    }
    // Float rounding: a few roundings per block scale plus one per accumulated
    // block (ggml accumulates blocks in float): bounded by (blocks + 8) eps * sum|w*a|.
    const int64_t blocks = n / t->block_elems;
    double tol = (double)(blocks < 64 ? blocks + 8 : 72) * 0x1.0p-23 * mag + 1e-35;
    if (t->vec_dot_type == QUANT_Q8_1) {
        // Q4_1/Q5_1 use the activations' s = d*sum, which is rounded to fp16, for
        // the min term: allow 2^-10 of |m * s| per block.
        const block_q8_1 *a1 = act;
        for (int64_t b = 0; b < blocks; b++) {
            const fp16_t m = type == QUANT_Q4_1 ? ((const block_q4_1 *)w)[b].m : ((const block_q5_1 *)w)[b].m;
            tol += fabs((double)fp16_to_fp32(m) * fp16_to_fp32(a1[b].s)) * 0x1.0p-9;
        }
    }
    const float got = t->vec_dot(n, w, act);
    CHECK(fabs((double)got - ref) <= tol, "%s vec_dot (%s, n=%lld): %.9g vs reference %.9g (tol %.3g)", t->name,
          what, (long long)n, got, ref, tol);
    free(x);
    free(wf);
    free(af);
    free(act);
}

static void test_vec_dot(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int type = all_types[ti];
        const struct quant_traits *t = quant_get(type);
        if (!t->vec_dot) continue;
        if (t->block_elems == 1) {
            // Float types: weights from random values.
            static const int64_t sizes[] = {1, 7, 32, 300, 4096};
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                const int64_t n = sizes[s];
                float *x = xmalloc(n * sizeof(float));
                void *w = xmalloc(quant_row_bytes(type, n));
                fill_random(x, n);
                t->from_f32(x, w, n);
                check_vec_dot(type, w, n, "random");
                free(x);
                free(w);
            }
            continue;
        }
        // Quantized types: weights are the golden rows (random bytes), in
        // prefixes of 1, 2 and all blocks of each row.
        struct golden g;
        if (golden_read(type, "deq", &g) != 0) continue;
        const int64_t nblk = g.n_per_row / t->block_elems;
        const int64_t counts[] = {1, 2, nblk};
        for (uint32_t r = 0; r < g.n_rows; r++) {
            for (int c = 0; c < 3; c++) {
                const int64_t n = counts[c] * t->block_elems;
                const size_t bytes = quant_row_bytes(type, n);
                void *w = xmalloc(bytes);
                memcpy(w, g.blocks + (size_t)r * g.row_bytes, bytes);
                check_vec_dot(type, w, n, "golden row");
                free(w);
            }
        }
        golden_free(&g);
        // And weights quantized from random data, where a quantizer exists.
        if (t->from_f32) {
            const int64_t n = 16 * t->block_elems;
            float *x = xmalloc(n * sizeof(float));
            void *w = xmalloc(quant_row_bytes(type, n));
            fill_random(x, n);
            t->from_f32(x, w, n);
            check_vec_dot(type, w, n, "quantized");
            free(x);
            free(w);
        }
    }
}

// A dot against activations built by hand: all quants 1 and d = 1 makes the dot
// the plain sum of the dequantized weights, a check independent of the
// activation quantizers.
static void test_vec_dot_ones(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int type = all_types[ti];
        const struct quant_traits *t = quant_get(type);
        if (!t->vec_dot || t->block_elems == 1) continue;
        struct golden g;
        if (golden_read(type, "deq", &g) != 0) continue;
        const int64_t n = g.n_per_row, blocks = n / t->block_elems;
        void *act = xmalloc(quant_row_bytes(t->vec_dot_type, n));
        for (int64_t b = 0; b < blocks; b++) {
            if (t->vec_dot_type == QUANT_Q8_0) {
                block_q8_0 *a = (block_q8_0 *)act + b;
                a->d = fp32_to_fp16(1.0f);
                memset(a->qs, 1, sizeof a->qs);
            } else if (t->vec_dot_type == QUANT_Q8_1) {
                block_q8_1 *a = (block_q8_1 *)act + b;
                a->d = fp32_to_fp16(1.0f);
                a->s = fp32_to_fp16(32.0f);
                memset(a->qs, 1, sizeof a->qs);
            } else {
                block_q8_K *a = (block_q8_K *)act + b;
                a->d = 1.0f;
                memset(a->qs, 1, sizeof a->qs);
                for (int j = 0; j < 16; j++) a->bsums[j] = 16;
            }
        }
        for (uint32_t r = 0; r < g.n_rows; r++) {
            const float *wv = g.values + (size_t)r * n; // gguf's dequantization
            double ref = 0.0, mag = 0.0;
            for (int64_t i = 0; i < n; i++) {
                ref += wv[i];
                mag += fabs(wv[i]);
            }
            const float got = t->vec_dot(n, g.blocks + (size_t)r * g.row_bytes, act);
            CHECK(fabs(got - ref) <= (double)(blocks + 8) * 0x1.0p-23 * mag, "%s: dot with ones %.9g vs sum %.9g",
                  t->name, got, ref);
        }
        free(act);
        golden_free(&g);
    }
}

int main(void) {
    test_traits();
    test_dequant_goldens();
    test_quant_goldens();
    test_q8_properties();
    test_round_trip();
    test_vec_dot();
    test_vec_dot_ones();
    return CHECK_DONE();
}
