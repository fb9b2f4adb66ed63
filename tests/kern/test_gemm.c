// kern_matmul at every CPU level this machine runs, against the reference:
// y[c][r] = quant/'s plain-C dot of weight row r with activation row c
// (converted by the level's own quantizer, itself checked against quant/ in
// test_levels.c). Sizes are awkward on purpose: m not a multiple of any panel
// height, n = 1..33 (the GEMV path below the level's min_n, GEMM tiles with
// every remainder above it), k not a multiple of the float kernels' steps,
// k chunks forced smaller than k, and 1, 2 or 3 threads; and the batch
// invariance of kern_matmul_rows. Weights are quantized
// random floats or random valid block bytes; the tolerance is relative to
// sum |w_i a_i| (the scale of the rounding a reordered float sum can show).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kern/kern.h"
#include "random_blocks.h"
#include "testutil.h"

// Roughly normal (sum of three uniforms, variance 1): cheaper than rng_normal,
// which matters under the sanitizers.
static float rng_normal_fast(void) { return (float)((rng_uniform() + rng_uniform() + rng_uniform() - 1.5) * 2.0); }

// Random magnitudes per 32 values, zero stretches and outliers.
static void fill_random(float *x, int64_t n) {
    float scale = 1.0f;
    int kind = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) {
            scale = (float)exp(rng_uniform() * 6.0 - 4.0);
            kind = (int)(rng_next() % 12);
        }
        if (kind == 0) x[i] = 0.0f;
        else x[i] = rng_normal_fast() * scale * (rng_next() % 64 == 0 ? 10.0f : 1.0f);
    }
}

// Random block bytes with finite scales and int8 quants in [-127, 127].
static void random_blocks(int type, uint8_t *w, size_t bytes) {
    const size_t bs = quant_get(type)->block_bytes;
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rng_next();
    for (size_t off = 0; off < bytes; off += bs) sanitize_block(type, w + off);
}

static const int types[] = {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q5_0, QUANT_Q4_1, QUANT_Q5_1, QUANT_Q4_K,
                            QUANT_Q5_K, QUANT_Q6_K, QUANT_Q3_K, QUANT_Q2_K, QUANT_F16,  QUANT_BF16,
                            QUANT_F32};
#define N_TYPES (int)(sizeof types / sizeof types[0])

// Shapes (m, k in blocks; floats: k in values).
static const int64_t shapes_q[][2] = {{1, 1}, {17, 3}, {33, 9}};
static const int64_t shapes_k[][2] = {{5, 1}, {17, 3}};
static const int64_t shapes_f[][2] = {{3, 1}, {17, 33}, {33, 100}};

static int failures_shown;
// Weights' scale (check_matmul's random floats times this): large ones make
// fp16 sums overflow.
static float weight_gain = 1.0f;

// The rounding fp16 sums may add (struct kern_gemm's half_sum_steps, the
// avx512fp16 F16 tile: in each block of 2 * steps values, one fp16 chain per
// k parity): each step rounds its partial sum, by at most 2^-11 of the sum of
// the chain's |w a| so far; the block's values are scaled into [32, 64) first,
// where fp16's subnormals round by 2^-25 (2^-30 of the block's largest |a|),
// and the reference rounds a's below 2^-14 to fp16's subnormals instead.
static double half_sum_bound(int steps, const float *w, const float *a, int64_t k) {
    if (!steps) return 0.0;
    double bound = 0.0;
    const int64_t block = 2 * (int64_t)steps;
    for (int64_t b0 = 0; b0 < k; b0 += block) {
        double amax = 0.0;
        for (int64_t i = b0; i < b0 + block && i < k; i++) amax = fabs(a[i]) > amax ? fabs(a[i]) : amax;
        for (int parity = 0; parity < 2; parity++) {
            double run = 0.0;
            for (int64_t i = b0 + parity; i < b0 + block && i < k; i += 2) {
                run += fabs((double)w[i] * a[i]);
                bound += ldexp(run, -11) + ldexp(amax, -30);
            }
        }
        for (int64_t i = b0; i < b0 + block && i < k; i++) bound += ldexp(fabs(w[i]), -25);
    }
    return bound;
}

// One matmul at level o with nt threads and k chunk kc (0 = automatic),
// against the reference, for n = 1..n_max.
static void check_matmul_ilv(const struct kern_ops *o, struct pool *pool, int type, int64_t m, int64_t k,
                             int64_t n, int random_bytes, int64_t kchunk, bool interleave) {
    const struct kern_ops *g = kern_generic_ops();
    const struct quant_traits *tr = quant_get(type), *ta = quant_get(tr->vec_dot_type);
    const size_t rb = quant_row_bytes(type, k), ab = quant_row_bytes(tr->vec_dot_type, k);
    uint8_t *w = xmalloc(rb * (size_t)m), *a = xmalloc(ab);
    float *x = xmalloc(sizeof(float) * (size_t)(n * k)), *af = xmalloc(sizeof(float) * (size_t)k);
    const int64_t ys = m + 3; // y rows with a gap, which must stay untouched
    float *y = xmalloc(sizeof(float) * (size_t)(n * ys));
    if (random_bytes && tr->block_elems > 1) {
        random_blocks(type, w, rb * (size_t)m);
    } else {
        float *row = xmalloc(sizeof(float) * (size_t)k);
        for (int64_t r = 0; r < m; r++) {
            fill_random(row, k);
            for (int64_t i = 0; i < k; i++) row[i] *= weight_gain;
            g->quantize[type](row, w + (size_t)r * rb, k);
        }
        free(row);
    }
    fill_random(x, n * k);
    for (int64_t i = 0; i < n * ys; i++) y[i] = -12345.0f;

    struct kern_ctx kc;
    llm_err err = {0};
    kern_ctx_init(&kc, o, pool, &err);
    kc.gemm_kc = kchunk;
    struct kern_mat mat = {w, type, m, k, rb, false};
    uint8_t *wi = NULL; // the rows interleaved (the reference reads w as it was)
    if (interleave) {
        CHECK(kern_can_interleave(o, &mat), "%s %s m=%lld: cannot interleave", o->level, tr->name, (long long)m);
        wi = xmalloc(rb * (size_t)m);
        memcpy(wi, w, rb * (size_t)m);
        CHECK(kern_interleave(&mat, wi, &err) == 0 && mat.interleaved && mat.data == wi, "%s", err.msg);
        CHECK(!kern_can_interleave(o, &mat), "%s %s: interleavable twice", o->level, tr->name);
        float *want = xmalloc(sizeof(float) * (size_t)k), *got = xmalloc(sizeof(float) * (size_t)k);
        for (int64_t r = 0; r < m; r++) { // the row lookup reads the layout back, bit for bit
            tr->to_f32(w + (size_t)r * rb, want, k);
            kern_mat_row_f32(&mat, r, got);
            CHECK(memcmp(want, got, sizeof(float) * (size_t)k) == 0, "%s %s m=%lld k=%lld: row %lld read back wrong",
                  o->level, tr->name, (long long)m, (long long)k, (long long)r);
        }
        free(want), free(got);
    }
    const int rc = kern_matmul(&kc, &mat, x, n, y, ys, &err);
    CHECK(rc == 0, "%s: matmul %s failed: %s", o->level, tr->name, err.msg);
    const struct kern_gemm *gm = o->gemm[type];
    const char *path = gm && n >= gm->min_n ? (interleave ? "gemm interleaved" : "gemm")
                     : interleave ? "gemv interleaved" : o->gemv[type] ? "gemv" : "dot";
    float *wfs = xmalloc(sizeof(float) * (size_t)(m * k)), *wmax = xmalloc(sizeof(float) * (size_t)(m * k));
    for (int64_t r = 0; r < m; r++) {
        float *wf = wfs + r * k;
        tr->to_f32(w + (size_t)r * rb, wf, k);
        for (int64_t b0 = 0; b0 < k; b0 += tr->block_elems) { // block maxima (see below)
            float mx = 0.0f;
            for (int64_t i = b0; i < b0 + tr->block_elems; i++) mx = fabsf(wf[i]) > mx ? fabsf(wf[i]) : mx;
            for (int64_t i = b0; i < b0 + tr->block_elems; i++) wmax[r * k + i] = mx;
        }
    }
    for (int64_t c = 0; c < n && rc == 0; c++) {
        o->quantize[tr->vec_dot_type](x + c * k, a, k);
        ta->to_f32(a, af, k);
        for (int64_t r = 0; r < m; r++) {
            const float want = g->dot[type](k, w + (size_t)r * rb, a);
            // Rounding scale: sum |w a|, plus (small) the block maxima times |a|:
            // kernels that split a block's sum into unsigned quants minus an
            // offset round on those partial sums even where w a cancels.
            double mag = 0.0, mag_blocks = 0.0;
            for (int64_t i = 0; i < k; i++) {
                mag += fabs((double)wfs[r * k + i] * af[i]);
                mag_blocks += (double)wmax[r * k + i] * fabs(af[i]);
            }
            const double err_abs = fabs((double)y[c * ys + r] - want);
            const double half = half_sum_bound(gm && n >= gm->min_n ? gm->half_sum_steps : 0, wfs + r * k, af, k);
            const int ok = err_abs <= 3e-5 * mag + 2e-6 * mag_blocks + half + 1e-30;
            CHECK(ok, "%s %s (%s) m=%lld k=%lld n=%lld kc=%lld threads=%d%s: y[%lld][%lld] = %.9g, want %.9g (|sum w a| %.3g)",
                  o->level, tr->name, path, (long long)m, (long long)k, (long long)n, (long long)kchunk,
                  pool_size(pool), random_bytes ? " random bytes" : "", (long long)c, (long long)r,
                  y[c * ys + r], want, mag);
            if (!ok && ++failures_shown > 30) exit(1);
        }
        for (int64_t r = m; r < ys; r++)
            CHECK(y[c * ys + r] == -12345.0f, "%s %s (%s): wrote y[%lld][%lld] past the rows", o->level,
                  tr->name, path, (long long)c, (long long)r);
    }
    free(wfs);
    free(wmax);
    kern_ctx_free(&kc);
    free(wi);
    free(w);
    free(a);
    free(x);
    free(af);
    free(y);
}

static void check_matmul(const struct kern_ops *o, struct pool *pool, int type, int64_t m, int64_t k,
                         int64_t n, int random_bytes, int64_t kchunk) {
    check_matmul_ilv(o, pool, type, m, k, n, random_bytes, kchunk, false);
}

// Batch invariance (kern_matmul_rows): every output row must be bit-identical
// whether its activation row is computed in a batch of 13 (6 prompt rows, 7
// generation rows) or alone, with any thread count.
static void check_batch_invariance(const struct kern_ops *o, struct pool **pools, int n_pools, int type,
                                   bool interleave) {
    const struct quant_traits *tr = quant_get(type);
    const int64_t m = interleave ? 3 * KERN_ILV_ROWS : 37, k = (tr->block_elems == 1 ? 100 : 11) * tr->block_elems, n = 13, n_prompt = 6;
    const size_t rb = quant_row_bytes(type, k);
    uint8_t *w = xmalloc(rb * (size_t)m);
    float *x = xmalloc(sizeof(float) * (size_t)(n * k)), *y = xmalloc(sizeof(float) * (size_t)(n * m));
    float *y1 = xmalloc(sizeof(float) * (size_t)m);
    float *row = xmalloc(sizeof(float) * (size_t)k);
    for (int64_t r = 0; r < m; r++) {
        fill_random(row, k);
        kern_generic_ops()->quantize[type](row, w + (size_t)r * rb, k);
    }
    fill_random(x, n * k);
    struct kern_mat mat = {w, type, m, k, rb, false};
    struct kern_ctx kc;
    llm_err err = {0};
    if (interleave) CHECK(kern_interleave(&mat, w, &err) == 0, "%s", err.msg);
    kern_ctx_init(&kc, o, pools[1 % n_pools], &err);
    CHECK(kern_matmul_rows(&kc, &mat, x, n, n_prompt, y, m, &err) == 0, "%s", err.msg);
    kern_ctx_free(&kc);
    for (int p = 0; p < n_pools; p++) {
        kern_ctx_init(&kc, o, pools[p], &err);
        for (int64_t c = 0; c < n; c++) {
            CHECK(kern_matmul_rows(&kc, &mat, x + c * k, 1, c < n_prompt, y1, m, &err) == 0, "%s", err.msg);
            CHECK(memcmp(y1, y + c * m, sizeof(float) * (size_t)m) == 0,
                  "%s %s%s: %s row %lld alone (%d threads) differs from the batch", o->level, tr->name,
                  interleave ? " interleaved" : "", c < n_prompt ? "prompt" : "generation", (long long)c,
                  pool_size(pools[p]));
        }
        kern_ctx_free(&kc);
    }
    free(w), free(x), free(y), free(y1), free(row);
}

// kern_matmul_rows_shared gives each matrix exactly what kern_matmul_rows
// gives it alone: matrices of one activation type (passed together) and of
// two (passed one by one), with rows of 1..4 tokens, some of them prompt rows.
static void check_shared(const struct kern_ops *o, struct pool **pools, int n_pools) {
    static const int sets[][3] = {{QUANT_Q8_0, QUANT_Q5_0, QUANT_Q4_0}, // all Q8_0 activations
                                  {QUANT_Q4_K, QUANT_Q6_K, QUANT_Q5_K}, // all Q8_K
                                  {QUANT_Q8_0, QUANT_Q4_K, QUANT_F16}}; // mixed: one by one
    static const int64_t rows[3] = {200, 600, 40}; // GEMV chunks taken several at once cross matrices
    const int64_t k = 512;
    for (int si = 0; si < 3; si++) {
        struct kern_mat mats[3];
        const struct kern_mat *wp[3];
        float *x = malloc(sizeof(float) * (size_t)(4 * k)), *row = malloc(sizeof(float) * (size_t)k);
        float *y[3], *y1[3];
        int64_t ys[3];
        fill_random(x, 4 * k);
        for (int m = 0; m < 3; m++) {
            const int type = sets[si][m];
            const size_t rb = quant_row_bytes(type, k);
            uint8_t *w = malloc(rb * (size_t)rows[m]);
            for (int64_t r = 0; r < rows[m]; r++) {
                fill_random(row, k);
                kern_generic_ops()->quantize[type](row, w + (size_t)r * rb, k);
            }
            mats[m] = (struct kern_mat){w, type, rows[m], k, rb, false};
            wp[m] = &mats[m];
            ys[m] = rows[m] + 3; // a row stride other than the width
            y[m] = malloc(sizeof(float) * (size_t)(4 * ys[m]));
            y1[m] = malloc(sizeof(float) * (size_t)(4 * ys[m]));
        }
        for (int p = 0; p < n_pools; p++) {
            struct kern_ctx kc;
            llm_err err = {0};
            kern_ctx_init(&kc, o, pools[p], &err);
            for (int64_t n = 1; n <= 4; n++)
                for (int64_t n_prompt = 0; n_prompt <= n; n_prompt += 2) {
                    for (int m = 0; m < 3; m++) {
                        memset(y[m], 0, sizeof(float) * (size_t)(4 * ys[m]));
                        memset(y1[m], 0, sizeof(float) * (size_t)(4 * ys[m]));
                    }
                    CHECK(kern_matmul_rows_shared(&kc, 3, wp, x, n, n_prompt, y, ys, &err) == 0, "%s", err.msg);
                    for (int m = 0; m < 3; m++) {
                        CHECK(kern_matmul_rows(&kc, wp[m], x, n, n_prompt, y1[m], ys[m], &err) == 0, "%s", err.msg);
                        CHECK(memcmp(y[m], y1[m], sizeof(float) * (size_t)(n * ys[m])) == 0,
                              "%s shared set %d matrix %d (%s), n %lld, %lld prompt rows, %d threads: differs from "
                              "kern_matmul_rows alone", o->level, si, m, quant_get(sets[si][m])->name, (long long)n,
                              (long long)n_prompt, pool_size(pools[p]));
                    }
                }
            kern_ctx_free(&kc);
        }
        for (int m = 0; m < 3; m++) free((void *)mats[m].data), free(y[m]), free(y1[m]);
        free(x), free(row);
    }
}

// Interleaved rows (kern_interleave) where the level has kernels for them:
// one to five groups (one and two GEMV chunks of 64 rows), every n of the
// level (GEMV and GEMM), k of one block to past a GEMV slice, k chunks of one
// block; batch invariance; what may not be interleaved; and a level without
// the kernels refusing interleaved weights.
static void check_interleaved(const struct kern_ops *o, struct pool **pools, int n_pools, int64_t n_count) {
    // m, k in blocks; k 0: three blocks past the interleaved GEMVs' slice of activations
    // (KV_ILV_SLICE_VALUES, gemv_x86.inc), so rows of two slices
    static const int64_t shapes[][2] = {{16, 1}, {48, 3}, {80, 9}, {32, 0}};
    for (int type = 0; type < QUANT_TYPE_COUNT; type++) {
        if (!o->gemv_ilv[type]) continue;
        const struct quant_traits *tr = quant_get(type);
        for (int si = 0; si < 4; si++) {
            const int64_t blocks = shapes[si][1] ? shapes[si][1] : 16384 / tr->block_elems + 3;
            const int64_t m = shapes[si][0], k = blocks * tr->block_elems;
            for (int64_t n = 1; n <= (si == 3 ? 3 : n_count); n++)
                check_matmul_ilv(o, pools[(si + n) % n_pools], type, m, k, n, (int)(n % 3 == 0),
                                 n % 2 ? 0 : tr->block_elems, true);
        }
        check_batch_invariance(o, pools, n_pools, type, true);
        const size_t rb = quant_row_bytes(type, 64);
        const struct kern_mat odd = {NULL, type, KERN_ILV_ROWS + 1, 64, rb, false};
        CHECK(!kern_can_interleave(o, &odd), "%s %s: %d rows interleavable", o->level, tr->name, KERN_ILV_ROWS + 1);
        const struct kern_mat other = {NULL, QUANT_F32, KERN_ILV_ROWS, 64, 256, false};
        CHECK(!kern_can_interleave(o, &other), "%s: F32 interleavable", o->level);
        // the reference level has no interleaved kernels: it must refuse, not misread
        uint8_t *w = xmalloc(rb * KERN_ILV_ROWS);
        random_blocks(type, w, rb * KERN_ILV_ROWS);
        struct kern_mat mat = {w, type, KERN_ILV_ROWS, 64, rb, false};
        llm_err err = {0};
        CHECK(kern_interleave(&mat, w, &err) == 0, "%s", err.msg);
        struct kern_ctx kc;
        kern_ctx_init(&kc, kern_generic_ops(), pools[0], &err);
        float x[64] = {1.0f}, y[KERN_ILV_ROWS];
        CHECK(kern_matmul(&kc, &mat, x, 1, y, KERN_ILV_ROWS, &err) != 0 && strstr(err.msg, "interleaved"),
              "generic level took %s weights interleaved for %s", tr->name, o->level);
        kern_ctx_free(&kc);
        free(w);
    }
}

// Levels with matrix kernels get every n in 1..33; the others (the dot path of
// the driver, whose dots test_levels.c covers) a few.
static void test_level(const struct kern_ops *o, struct pool **pools, int n_pools) {
    int full = 0;
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) full |= o->gemm[t] != NULL || o->gemv[t] != NULL;
    static const int64_t few_n[] = {1, 2, 9, 33};
    const int64_t n_count = full ? 33 : (int64_t)(sizeof few_n / sizeof few_n[0]);
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int type = types[ti];
        const struct quant_traits *tr = quant_get(type);
        const int is_k = tr->block_elems == 256, is_f = tr->block_elems == 1;
        const int64_t(*shapes)[2] = is_f ? shapes_f : is_k ? shapes_k : shapes_q;
        const int n_shapes = is_f ? (int)(sizeof shapes_f / sizeof shapes_f[0])
                           : is_k ? (int)(sizeof shapes_k / sizeof shapes_k[0])
                                  : (int)(sizeof shapes_q / sizeof shapes_q[0]);
        for (int si = 0; si < n_shapes; si++) {
            const int64_t m = shapes[si][0], k = shapes[si][1] * tr->block_elems;
            struct pool *pool = pools[si % n_pools];
            for (int64_t ni = 0; ni < n_count; ni++) {
                const int64_t n = full ? ni + 1 : few_n[ni];
                // every other n with a k chunk of one block (several chunks when k allows)
                const int64_t kchunk = n % 2 ? 0 : (is_f ? 8 : tr->block_elems);
                check_matmul(o, pool, type, m, k, n, (int)(n % 3 == 0), kchunk);
            }
        }
        // larger: several panels and column tiles per thread, k past one float step
        check_matmul(o, pools[n_pools - 1], type, 70, (is_f ? 257 : 2) * tr->block_elems, 40, 0, 0);
        // rows longer than a GEMV's slice of prepared activations (4096 values), with a tail
        for (int64_t n = 1; n <= 3; n++)
            check_matmul(o, pools[1], type, 9, is_f ? 4099 : is_k ? 17 * 256 : 134 * 32, n, (int)(n == 2), 0);
        check_batch_invariance(o, pools, n_pools, type, false);
        if (o->gemm[type] && o->gemm[type]->half_sum_steps) { // weights up to ~10^4: the tiles' fp16 sums
            weight_gain = 64.0f;                                // overflow, and they redo them in f32
            check_matmul(o, pools[1], type, 40, 200, 13, 0, 0);
            weight_gain = 1.0f;
        }
    }
    check_shared(o, pools, n_pools);
    check_interleaved(o, pools, n_pools, n_count);
}

int main(void) {
    struct cpu_features f;
    cpu_detect(&f);
    struct pool *pools[3];
    llm_err err = {0};
    for (int i = 0; i < 3; i++)
        if (pool_create(&pools[i], i + 1, &err)) {
            fprintf(stderr, "pool: %s\n", err.msg);
            return 1;
        }
    const struct kern_level *levels;
    const int n = kern_levels(&levels);
    test_level(kern_generic_ops(), pools, 3);
    printf("tested generic\n");
    for (int i = 0; i < n; i++) {
        if (!levels[i].supported(&f)) {
            printf("skipped level %s (CPU lacks it)\n", levels[i].name);
            continue;
        }
        const struct kern_ops *o = levels[i].ops();
        test_level(o, pools, 3);
        int n_gemm = 0;
        for (int t = 0; t < QUANT_TYPE_COUNT; t++) n_gemm += o->gemm[t] != NULL;
        printf("tested level %s (%d types with a GEMM kernel)\n", levels[i].name, n_gemm);
        fflush(stdout);
    }
    for (int i = 0; i < 3; i++) pool_destroy(pools[i]);
    return CHECK_DONE();
}
