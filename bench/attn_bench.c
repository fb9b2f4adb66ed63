// kern_attn speed on one thread: prompt tiles (n_tok tokens x the query heads of
// one KV head) over a causal span, in the shapes of the bench models. Prints
// GFLOP/s counting 2 FLOP per multiply-add of Q.K and P.V over the visible cells.
//   attn_bench [-l LEVEL] [-s SPAN] [-r REPS]
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "kern/kern.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) { // uniform in [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1 << 23) - 1.0f;
}

static const struct { const char *name; int64_t d; int group, n_tok; } SHAPES[] = {
    {"gemma3-270m (d 256, 4 heads x 8 tokens)", 256, 4, 8},
    {"tinyllama (d 64, 8 heads x 4 tokens)", 64, 8, 4},
    {"tinyllama (d 64, 8 heads x 8 tokens)", 64, 8, 8},
    {"generation, d 256, 4 heads", 256, 4, 1},
    {"generation, d 64, 8 heads", 64, 8, 1},
};

int main(int argc, char **argv) {
    const char *level = NULL;
    int64_t span = 512;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-l") && i + 1 < argc) level = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) span = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: attn_bench [-l LEVEL] [-s SPAN] [-r REPS]\n");
            return 2;
        }
    }
    struct cpu_features f;
    cpu_detect(&f);
    const struct kern_level *lv;
    llm_err err = {0};
    if (span < 8 || kern_select(&f, level, &lv, &err)) {
        fprintf(stderr, "%s\n", span < 8 ? "attn_bench: span must be at least 8" : err.msg);
        return 1;
    }
    const struct kern_ops *ops = lv->ops();
    printf("level %s, span %lld cells, 1 thread\n", lv->name, (long long)span);
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const int64_t d = SHAPES[s].d;
        const int n_q = SHAPES[s].group * SHAPES[s].n_tok;
        fp16_t *k = malloc(sizeof(fp16_t) * (size_t)(span * d)), *v = malloc(sizeof(fp16_t) * (size_t)(span * d));
        int32_t *cells = malloc(sizeof(int32_t) * (size_t)span);
        float *q = malloc(sizeof(float) * (size_t)(n_q * d)), *out = malloc(sizeof(float) * (size_t)(n_q * d));
        float *scratch = malloc(sizeof(float) * kern_attn_scratch_floats(span, d));
        for (int64_t i = 0; i < span * d; i++) k[i] = fp32_to_fp16(frand()), v[i] = fp32_to_fp16(frand());
        for (int64_t i = 0; i < n_q * d; i++) q[i] = frand();
        for (int64_t j = 0; j < span; j++) cells[j] = (int32_t)j;
        // Tiles of n_tok consecutive tokens from the start of the span to its end: the
        // causal prompt of `span` tokens, as one KV head of one layer sees it.
        double flop = 0, best = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            const double t0 = now();
            flop = 0;
            for (int64_t tok0 = SHAPES[s].n_tok == 1 ? span - 1 : 0; tok0 < span; tok0 += SHAPES[s].n_tok) {
                struct kern_attn_tile t = {0};
                t.n_q = 0;
                for (int i = 0; i < SHAPES[s].n_tok && tok0 + i < span; i++)
                    for (int h = 0; h < SHAPES[s].group; h++, t.n_q++) {
                        t.q[t.n_q] = q + (size_t)t.n_q * (size_t)d;
                        t.out[t.n_q] = out + (size_t)t.n_q * (size_t)d;
                        t.begin[t.n_q] = 0;
                        t.end[t.n_q] = (int32_t)(tok0 + i + 1);
                        flop += 4.0 * (double)d * (double)(tok0 + i + 1);
                    }
                t.cells = cells, t.k = k, t.v = v, t.k_stride = t.v_stride = (size_t)d;
                t.head_dim_k = t.head_dim_v = d, t.scale = 1.0f / sqrtf((float)d);
                kern_attn(ops, &t, scratch);
            }
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        uint64_t hash = 1469598103934665603ull; // FNV-1a of the last tile's output bits: A/B bit-identity checks
        for (int64_t i = 0; i < n_q * d; i++) {
            uint32_t u;
            memcpy(&u, out + i, 4);
            hash = (hash ^ u) * 1099511628211ull;
        }
        printf("  %-42s %8.3f ms  %6.1f GFLOP/s  (output hash %016llx)\n", SHAPES[s].name, best * 1e3,
               flop / best * 1e-9, (unsigned long long)hash);
        free(k), free(v), free(cells), free(q), free(out), free(scratch);
    }
    return 0;
}
