// Every kernel level this CPU can run, against the reference level (quant/'s
// plain C): the dot product of every weight type with its activation type, on
// quantized random floats and on random valid block bytes, for rows of 1 block
// up to many (odd counts included); and every activation quantizer, byte for
// byte (a rounding tie may legitimately go the other way: then a quant may
// differ by one and the dots made from both must still agree).
//
// Build with -DKERN_BENCH to also time each level's dots (GB/s of weights).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(KERN_BENCH)
#include <time.h>
#endif

#include "check.h"
#include "kern/kern.h"
#include "random_blocks.h"
#include "testutil.h"

// ---- Helpers ----------------------------------------------------------------

// Random values with a random magnitude per 32, some all-zero stretches, some
// values on quantization grid points (ties), and the odd outlier.
static void fill_random(float *x, int64_t n) {
    float scale = 1.0f;
    int kind = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) {
            scale = (float)exp(rng_uniform() * 9.0 - 6.0);
            kind = (int)(rng_next() % 16);
        }
        if (kind == 0) x[i] = 0.0f;
        else if (kind == 1) x[i] = (float)((int)(rng_next() % 255) - 127) * 0.5f * scale; // ties
        else if (kind == 2) x[i] = (float)((int)(rng_next() % 9) - 4); // small integers
        else x[i] = rng_normal() * scale * (rng_next() % 64 == 0 ? 20.0f : 1.0f);
    }
}

// Zeroes a block's quants, so that dequantizing it gives just the offsets
// (mins) of types that have them. Returns 0 for types without offsets.
static int zero_quants(int type, uint8_t *b) {
    switch (type) {
    case QUANT_Q4_1: memset(b + 4, 0, 16); return 1;
    case QUANT_Q5_1: memset(b + 4, 0, 20); return 1;
    case QUANT_Q2_K: memset(b + 16, 0, 64); return 1;
    case QUANT_Q4_K: memset(b + 16, 0, 128); return 1;
    case QUANT_Q5_K: memset(b + 16, 0, 160); return 1;
    default: return 0;
    }
}

// Random activation bytes of an integer activation type, consistent with its
// invariants (Q8_1's s, Q8_K's bsums).
static void random_act(int type, void *dst, int64_t n) {
    if (type == QUANT_Q8_0 || type == QUANT_Q8_1) {
        const int per = type == QUANT_Q8_0 ? 34 : 36;
        for (int64_t i = 0; i < n / 32; i++) {
            uint8_t *b = (uint8_t *)dst + i * per;
            const fp16_t d = fp32_to_fp16((float)fabs(rng_normal()) * 0.01f);
            int8_t *qs = (int8_t *)(b + per - 32);
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += qs[j] = (int8_t)((int)(rng_next() % 255) - 127);
            put16(b, d);
            if (type == QUANT_Q8_1) put16(b + 2, fp32_to_fp16((float)sum * fp16_to_fp32(d)));
        }
    } else if (type == QUANT_Q8_K) {
        block_q8_K *y = dst;
        for (int64_t i = 0; i < n / 256; i++) {
            y[i].d = (float)rng_normal() * 0.01f;
            for (int j = 0; j < 256; j++) y[i].qs[j] = (int8_t)((int)(rng_next() % 255) - 127);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++) s += y[i].qs[16 * g + j];
                y[i].bsums[g] = (int16_t)s;
            }
        }
    }
}

static const int dot_types[] = {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K, QUANT_Q5_0, QUANT_Q4_0,
                                QUANT_F16,  QUANT_Q4_1, QUANT_Q5_1, QUANT_Q5_K, QUANT_BF16,
                                QUANT_F32,  QUANT_Q3_K, QUANT_Q2_K};
#define N_DOT_TYPES (int)(sizeof dot_types / sizeof dot_types[0])

static const int act_types[] = {QUANT_Q8_0, QUANT_Q8_K, QUANT_Q8_1, QUANT_F16, QUANT_BF16, QUANT_F32};
#define N_ACT_TYPES (int)(sizeof act_types / sizeof act_types[0])

// Row lengths in blocks (element counts for the plain float types).
static const int64_t block_counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 31, 33, 64, 65};
static const int64_t float_counts[] = {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100,
                                       127, 128, 129, 640, 1000, 2048, 4099};

// ---- Dots -----------------------------------------------------------------------

// One comparison: the level's dot against the reference, with a tolerance
// relative to sum |w_i a_i| (plus the offsets' share for types with mins).
static int worst_reported;

static void check_dot(const struct kern_ops *o, int type, int64_t n, const void *w, const void *a,
                      const char *what) {
    const struct kern_ops *g = kern_generic_ops();
    const struct quant_traits *tr = quant_get(type), *ta = quant_get(tr->vec_dot_type);
    float *wf = xmalloc((size_t)n * sizeof(float)), *af = xmalloc((size_t)n * sizeof(float));
    float *mf = xmalloc((size_t)n * sizeof(float));
    tr->to_f32(w, wf, n);
    ta->to_f32(a, af, n);
    double mag = 0.0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
    const size_t rb = quant_row_bytes(type, n);
    uint8_t *wz = xmalloc(rb);
    memcpy(wz, w, rb);
    int has_min = 0;
    for (size_t off = 0; off < rb; off += tr->block_bytes) has_min = zero_quants(type, wz + off);
    if (has_min) {
        tr->to_f32(wz, mf, n);
        for (int64_t i = 0; i < n; i++) mag += fabs((double)mf[i] * af[i]);
    }
    const float ref = g->dot[type](n, w, a);
    const float got = o->dot[type](n, w, a);
    const double tol = 2e-5 * mag + 1e-30;
    const double err = fabs((double)got - (double)ref);
    CHECK(err <= tol || (isnan(ref) && isnan(got)),
          "%s: dot %s n=%lld (%s): got %.9g want %.9g (err %.3g > tol %.3g, sum|wa| %.3g)", o->level,
          tr->name, (long long)n, what, got, ref, err, tol, mag);
    if (!(err <= tol) && ++worst_reported > 20) exit(1);
    free(wz);
    free(wf);
    free(af);
    free(mf);
}

static void test_dots(const struct kern_ops *o) {
    const struct kern_ops *g = kern_generic_ops();
    for (int ti = 0; ti < N_DOT_TYPES; ti++) {
        const int type = dot_types[ti];
        const struct quant_traits *tr = quant_get(type);
        CHECK(o->dot[type] != NULL, "%s: no dot for %s", o->level, tr->name);
        if (!o->dot[type]) continue;
        const int act = tr->vec_dot_type;
        const int is_float = tr->block_elems == 1;
        const int64_t *counts = is_float ? float_counts : block_counts;
        const int n_counts = is_float ? (int)(sizeof float_counts / sizeof float_counts[0])
                                      : (int)(sizeof block_counts / sizeof block_counts[0]);
        for (int ci = 0; ci < n_counts; ci++) {
            const int64_t n = counts[ci] * tr->block_elems;
            for (int rep = 0; rep < 3; rep++) {
                const size_t wb = quant_row_bytes(type, n), ab = quant_row_bytes(act, n);
                float *x = xmalloc((size_t)n * sizeof(float)), *y = xmalloc((size_t)n * sizeof(float));
                uint8_t *w = xmalloc(wb), *a = xmalloc(ab);
                // quantized random floats, activations from the reference quantizer
                fill_random(x, n);
                fill_random(y, n);
                g->quantize[type](x, w, n);
                g->quantize[act](y, a, n);
                check_dot(o, type, n, w, a, "quantized floats");
                // and from this level's quantizer
                o->quantize[act](y, a, n);
                check_dot(o, type, n, w, a, "level's activations");
                if (!is_float) { // random valid block bytes, random activation bytes
                    for (size_t k = 0; k < wb; k++) w[k] = (uint8_t)rng_next();
                    for (size_t off = 0; off < wb; off += tr->block_bytes) sanitize_block(type, w + off);
                    check_dot(o, type, n, w, a, "random weight bytes");
                    if (act != QUANT_F32) {
                        random_act(act, a, n);
                        check_dot(o, type, n, w, a, "random bytes");
                    }
                }
                free(x);
                free(y);
                free(w);
                free(a);
            }
        }
    }
}

// ---- Activation quantizers ------------------------------------------------------

static int float_bits_equal(int type, const uint8_t *got, const uint8_t *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t g16, w16;
        memcpy(&g16, got + 2 * i, 2);
        memcpy(&w16, want + 2 * i, 2);
        if (g16 == w16) continue;
        const float gf = type == QUANT_F16 ? fp16_to_fp32(g16) : bf16_to_fp32(g16);
        const float wf = type == QUANT_F16 ? fp16_to_fp32(w16) : bf16_to_fp32(w16);
        if (isnan(gf) && isnan(wf)) continue; // NaN payloads may differ
        return 0;
    }
    return 1;
}

// Checks a Q8_0 / Q8_1 / Q8_K row that differs from the reference: same
// scales, quants within one, consistent sums. Returns the number of quants
// that differ (ties), or -1 if something else differs.
static int64_t q8_near(int type, const uint8_t *got, const uint8_t *want, int64_t n) {
    int64_t diffs = 0;
    if (type == QUANT_Q8_K) {
        const block_q8_K *g = (const void *)got, *w = (const void *)want;
        for (int64_t i = 0; i < n / 256; i++) {
            if (memcmp(&g[i].d, &w[i].d, 4) != 0) return -1;
            for (int j = 0; j < 256; j++) {
                const int d = g[i].qs[j] - w[i].qs[j];
                if (d < -1 || d > 1) return -1;
                diffs += d != 0;
            }
            for (int s = 0; s < 16; s++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += g[i].qs[16 * s + j];
                if (sum != g[i].bsums[s]) return -1;
            }
        }
        return diffs;
    }
    const int per = type == QUANT_Q8_0 ? 34 : 36, hdr = per - 32;
    for (int64_t i = 0; i < n / 32; i++) {
        const uint8_t *gb = got + i * per, *wb = want + i * per;
        if (memcmp(gb, wb, 2) != 0) return -1; // d
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const int d = (int8_t)gb[hdr + j] - (int8_t)wb[hdr + j];
            if (d < -1 || d > 1) return -1;
            diffs += d != 0;
            sum += (int8_t)gb[hdr + j];
        }
        if (type == QUANT_Q8_1) {
            fp16_t s;
            memcpy(&s, gb + 2, 2);
            const float want_s = fp16_to_fp32(fp32_to_fp16((float)sum * fp16_to_fp32(*(const fp16_t *)wb)));
            if (fabsf(fp16_to_fp32(s) - want_s) > 0.01f * fabsf(want_s) + 1e-6f) return -1;
        }
    }
    return diffs;
}

static void test_quantizers(const struct kern_ops *o) {
    const struct kern_ops *g = kern_generic_ops();
    for (int ai = 0; ai < N_ACT_TYPES; ai++) {
        const int type = act_types[ai];
        const struct quant_traits *tr = quant_get(type);
        CHECK(o->quantize[type] != NULL, "%s: no quantizer for %s", o->level, tr->name);
        if (!o->quantize[type]) continue;
        const int is_float = tr->block_elems == 1;
        const int64_t *counts = is_float ? float_counts : block_counts;
        const int n_counts = is_float ? (int)(sizeof float_counts / sizeof float_counts[0])
                                      : (int)(sizeof block_counts / sizeof block_counts[0]);
        int64_t ties = 0, values = 0;
        for (int ci = 0; ci < n_counts; ci++) {
            const int64_t n = counts[ci] * tr->block_elems;
            for (int rep = 0; rep < 4; rep++) {
                const size_t rb = quant_row_bytes(type, n);
                float *x = xmalloc((size_t)n * sizeof(float));
                uint8_t *want = xmalloc(rb), *got = xmalloc(rb);
                fill_random(x, n);
                if (rep == 3) { // specials: signed zeros, denormals, huge, inf, NaN; max of either sign
                    static const float sp[] = {-0.0f, 1e-40f, -3e-39f, 6e-8f, -65520.0f, 7e4f, 1e30f,
                                               -1e-30f, INFINITY, -INFINITY, NAN, 127.5f, -127.5f};
                    for (int64_t i = 0; i < n; i++)
                        if (rng_next() % 4 == 0) x[i] = sp[rng_next() % (sizeof sp / sizeof sp[0])];
                    if (!is_float) // only finite values make sense for the integer types
                        for (int64_t i = 0; i < n; i++)
                            if (!isfinite(x[i]) || fabsf(x[i]) > 1e20f) x[i] = 3.0f;
                }
                memset(want, 0xA5, rb);
                memset(got, 0x5A, rb);
                g->quantize[type](x, want, n);
                o->quantize[type](x, got, n);
                values += n;
                if (type == QUANT_F16 || type == QUANT_BF16) {
                    CHECK(float_bits_equal(type, got, want, n), "%s: quantize %s n=%lld differs",
                          o->level, tr->name, (long long)n);
                } else if (memcmp(got, want, rb) != 0) {
                    const int64_t d = type == QUANT_F32 ? -1 : q8_near(type, got, want, n);
                    CHECK(d >= 0, "%s: quantize %s n=%lld differs beyond rounding ties", o->level,
                          tr->name, (long long)n);
                    if (d > 0) ties += d;
                }
                free(x);
                free(want);
                free(got);
            }
        }
        // Ties are rare: only exact half-way products go the other way.
        CHECK(ties * 1000 <= values, "%s: quantize %s: %lld of %lld quants differ", o->level,
              tr->name, (long long)ties, (long long)values);
    }
}

#if defined(KERN_BENCH)
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// One thread, rows of n values: a matrix in L2 (hot) and one of 64 MB (cold).
static void bench(const struct kern_ops *o) {
    static const int64_t ns[] = {640, 2048, 8192};
    for (int ti = 0; ti < N_DOT_TYPES; ti++) {
        const int type = dot_types[ti];
        const struct quant_traits *tr = quant_get(type);
        printf("  %-5s %-6s", o->level, tr->name);
        for (int ni = 0; ni < 3; ni++) {
            const int64_t n = ns[ni];
            if (n % tr->block_elems) { printf("  %23s", "-"); continue; }
            const size_t rb = quant_row_bytes(type, n), ab = quant_row_bytes(tr->vec_dot_type, n);
            for (int cold = 0; cold < 2; cold++) {
                const size_t total = cold ? (64u << 20) : (512u << 10);
                const int64_t rows = (int64_t)(total / rb);
                uint8_t *w = xmalloc(rb * (size_t)rows), *a = xmalloc(ab);
                float *x = xmalloc((size_t)n * sizeof(float));
                fill_random(x, n);
                for (int64_t r = 0; r < rows; r++) kern_generic_ops()->quantize[type](x, w + r * rb, n);
                o->quantize[tr->vec_dot_type](x, a, n);
                volatile float sink = 0.0f;
                double best = 1e30;
                for (int it = 0; it < (cold ? 3 : 20); it++) {
                    const double t0 = now_s();
                    float s = 0.0f;
                    for (int64_t r = 0; r < rows; r++) s += o->dot[type](n, w + r * rb, a);
                    const double t = now_s() - t0;
                    sink += s;
                    if (t < best) best = t;
                }
                (void)sink;
                printf(" %5lld:%5.1f%s", (long long)n, (double)(rb * (size_t)rows) / best * 1e-9,
                       cold ? "GB/s" : "/");
                free(w);
                free(a);
                free(x);
            }
        }
        printf("\n");
    }
}
#endif

int main(void) {
    rng_seed(0x2545F4914F6CDD1Du);
    struct cpu_features f;
    cpu_detect(&f);
    const struct kern_level *levels;
    const int n = kern_levels(&levels);
    char tested[512] = "", skipped[512] = "";
    for (int i = 0; i < n; i++) {
        if (!levels[i].supported(&f)) {
            strncat(skipped, " ", sizeof skipped - strlen(skipped) - 1);
            strncat(skipped, levels[i].name, sizeof skipped - strlen(skipped) - 1);
            continue;
        }
        const struct kern_ops *o = levels[i].ops();
        CHECK(o && o->level, "level %s has no ops", levels[i].name);
        if (!o) continue;
        test_quantizers(o);
        test_dots(o);
        strncat(tested, " ", sizeof tested - strlen(tested) - 1);
        strncat(tested, levels[i].name, sizeof tested - strlen(tested) - 1);
        printf("tested level %s\n", levels[i].name);
        fflush(stdout);
    }
    printf("levels tested:%s\nlevels skipped (CPU lacks them):%s\n", tested,
           skipped[0] ? skipped : " none");
#if defined(KERN_BENCH)
    printf("single-thread dot speed, GB/s of weights: n: hot(L2)/cold(64 MB)\n");
    for (int i = 0; i < n; i++)
        if (levels[i].supported(&f)) bench(levels[i].ops());
#endif
    return CHECK_DONE();
}
