// Matrix multiply speed of kern_matmul alone, on the matrices of one layer of
// a TinyLlama-1.1B-shaped model (bench/make_bench_models.py): q, k, v, o,
// gate, up (2048 inputs) and down (5632 inputs), random weights.
//
//   make bench-matmul && build/bench/matmul_bench [-t THREADS] [-n TOKENS] [-r REPS]
//        [-l LEVEL] [-L LAYERS] [-s ROWS,COLS] [TYPE...]   TYPE: f32 f16 bf16 q8_0 q4_0 ... (default: the
//                                      prompt-processing types f16 q8_0 q4_0 q4_K q6_K)
//
// Prints, per type, the best of REPS passes over the layer's matrices: ms per
// layer, GOP/s (2 * m * k * n per matrix) and the tokens/s that 22 such layers
// would give if nothing else took time (an upper bound for prompt processing;
// with -n 1, for generation: GB/s of weights streamed). The same from process
// CPU time / threads follows: on a machine shared with other work, wall time
// includes time the threads were not running, CPU time does not.
// -L LAYERS: that many copies of the layer, run in turn, so that the weights
// come from memory, not the last-level cache (use -L 22 with -n 1: one
// layer's Q8_0 weights fit in a large L3, and GEMV then measures the cache).
// -s ROWS,COLS: one matrix of that shape instead of the layer's seven (a "layer" is
// then that matrix; -s 22528,2048 has about a layer's weights in one GEMV call, which
// shows a kernel's streaming rate without the calls' starts and ends).
// -H: weights on 2 MB huge pages (as a model copied at load is); -I: also
// interleaved in groups of rows where the level has kernels for it (as
// model_interleave does), implies -H.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kern/kern.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

// Weights of `bytes`, on 2 MB huge pages if `huge` (rounded up to whole pages).
static void *weights_alloc(size_t bytes, bool huge) {
    if (!huge) return malloc(bytes);
    const size_t page = (size_t)2 << 20, size = (bytes + page - 1) / page * page;
    void *p = NULL;
    if (posix_memalign(&p, page, size)) return NULL;
    madvise(p, size, MADV_HUGEPAGE);
    return p;
}

struct shape {
    const char *name;
    int64_t m, k; // rows, columns
};
static const struct shape LAYER[] = {
    {"q", 2048, 2048}, {"k", 256, 2048}, {"v", 256, 2048}, {"o", 2048, 2048},
    {"gate", 5632, 2048}, {"up", 5632, 2048}, {"down", 2048, 5632},
};
#define LAYER_SHAPES (int)(sizeof LAYER / sizeof LAYER[0])

static int type_by_name(const char *s) {
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
        const struct quant_traits *tr = quant_get(t);
        if (tr && strcmp(tr->name, s) == 0) return t;
    }
    return -1;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3, layers = 1;
    bool huge = false, interleave = false;
    int64_t n = 512;
    const struct shape *shapes = LAYER;
    int n_shapes = LAYER_SHAPES;
    struct shape custom = {"custom", 0, 0};
    const char *level = NULL;
    const char *types[32];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) level = argv[++i];
        else if (!strcmp(argv[i], "-L") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            long long m = 0, k = 0;
            if (sscanf(argv[++i], "%lld,%lld", &m, &k) != 2 || m < 1 || k < 1 || m > (1 << 20) || k > (1 << 20)) {
                fprintf(stderr, "-s wants ROWS,COLS (1..1048576 each), got %s\n", argv[i]);
                return 1;
            }
            custom.m = m, custom.k = k, shapes = &custom, n_shapes = 1;
        } else if (!strcmp(argv[i], "-H")) huge = true;
        else if (!strcmp(argv[i], "-I")) huge = interleave = true;
        else if (n_types < 32) types[n_types++] = argv[i];
    }
    if (!n_types) {
        static const char *def[] = {"f16", "q8_0", "q4_0", "q4_K", "q6_K"};
        for (int i = 0; i < 5; i++) types[n_types++] = def[i];
    }
    struct cpu_features f;
    cpu_detect(&f);
    const struct kern_level *lv;
    llm_err err = {0};
    if (kern_select(&f, level, &lv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct pool *pool;
    if (pool_create(&pool, threads, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct kern_ctx kc;
    kern_ctx_init(&kc, lv->ops(), pool, &err);
    if (getenv("GEMM_KC")) kc.gemm_kc = atoll(getenv("GEMM_KC"));
    int64_t max_m = 0, max_k = 0; // x: [n][max_k], y: [n][max_m]
    for (int s = 0; s < n_shapes; s++) {
        if (shapes[s].m > max_m) max_m = shapes[s].m;
        if (shapes[s].k > max_k) max_k = shapes[s].k;
    }
    float *x = malloc(sizeof(float) * (size_t)(n * max_k)), *y = malloc(sizeof(float) * (size_t)(n * max_m));
    if (!x || !y) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < n * max_k; i++) x[i] = frand();
    printf("level %s, %d threads, n = %lld, %d layer%s%s%s\n", lv->name, threads, (long long)n, layers,
           layers > 1 ? "s" : "", huge ? ", huge pages" : "", interleave ? ", interleaved" : "");
    for (int ti = 0; ti < n_types; ti++) {
        const int type = type_by_name(types[ti]);
        if (type < 0 || !quant_get(type)->vec_dot) {
            fprintf(stderr, "unknown weight type %s\n", types[ti]);
            return 1;
        }
        struct kern_mat *mats = calloc((size_t)layers * n_shapes, sizeof *mats); // [layer][shape]
        double ops = 0.0, bytes = 0.0; // per layer
        for (int s = 0; s < n_shapes; s++) {
            const int64_t m = shapes[s].m, k = shapes[s].k;
            const size_t rb = quant_row_bytes(type, k);
            float *row = malloc(sizeof(float) * (size_t)k);
            for (int l = 0; l < layers; l++) {
                uint8_t *w = weights_alloc(rb * (size_t)m, huge);
                if (l > 0) {
                    memcpy(w, mats[s].data, rb * (size_t)m); // the same values, other memory
                    mats[l * n_shapes + s] = mats[s];
                    mats[l * n_shapes + s].data = w;
                    continue;
                }
                    for (int64_t r = 0; r < m; r++) {
                        for (int64_t i = 0; i < k; i++) row[i] = frand() * 0.05f;
                        quant_get(type)->from_f32(row, w + (size_t)r * rb, k);
                    }
                struct kern_mat *mat = &mats[l * n_shapes + s];
                *mat = (struct kern_mat){w, type, m, k, rb, false};
                if (interleave && kern_can_interleave(kc.ops, mat) && kern_interleave(mat, w, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
            }
            free(row);
            ops += 2.0 * (double)m * (double)k * (double)n;
            bytes += (double)(rb * (size_t)m);
        }
        double best = 1e30, best_cpu = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            const double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            for (int s = 0; s < layers * n_shapes; s++)
                if (kern_matmul(&kc, &mats[s], x, n, y, mats[s].rows, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
            const double t = (clock_s(CLOCK_MONOTONIC) - t0) / layers;
            const double tc = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / threads / layers;
            if (t < best) best = t;
            if (tc < best_cpu) best_cpu = tc;
        }
        printf("  %-5s %8.2f ms/layer  %7.1f GOP/s  %7.1f GB/s weights  %8.1f tok/s (22 layers, matmuls only)"
               "  | by CPU time: %7.1f GOP/s %8.1f tok/s\n",
               quant_get(type)->name, best * 1e3, ops / best * 1e-9, bytes / best * 1e-9,
               (double)n / (22.0 * best), ops / best_cpu * 1e-9, (double)n / (22.0 * best_cpu));
        fflush(stdout);
        for (int s = 0; s < layers * n_shapes; s++) free((void *)mats[s].data);
        free(mats);
    }
    kern_ctx_free(&kc);
    pool_destroy(pool);
    free(x);
    free(y);
    return 0;
}
