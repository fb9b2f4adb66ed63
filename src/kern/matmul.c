// Matrix multiply driver: converts activations to the weight's dot type once,
// then splits the output across threads (rows for generation, row x batch
// tiles for prompt processing) and calls the level's dot kernel.
#include <stdlib.h>
#include <string.h>

#include "kern.h"

const struct kern_ops *kern_generic_ops(void) {
    static struct kern_ops ops;
    static int ready;
    if (!ready) {
        ops.level = "generic";
        for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
            const struct quant_traits *tr = quant_get(t);
            if (!tr) continue;
            ops.dot[t] = tr->vec_dot;
            ops.quantize[t] = tr->from_f32;
        }
        ready = 1;
    }
    return &ops;
}

int kern_ctx_init(struct kern_ctx *kc, const struct kern_ops *ops, struct pool *pool, llm_err *err) {
    memset(kc, 0, sizeof *kc);
    kc->ops = ops;
    kc->pool = pool;
    (void)err;
    return 0;
}

void kern_ctx_free(struct kern_ctx *kc) {
    free(kc->scratch);
    kc->scratch = NULL;
    kc->scratch_cap = 0;
}

struct matmul_job {
    const struct kern_ops *ops;
    const struct kern_mat *w;
    const float *x;         // [n][w->cols]
    int64_t n;
    void *act;              // [n][act_row_bytes]
    size_t act_row_bytes;
    int act_type;
    float *y;               // [n][y_stride]
    int64_t y_stride;
};

static void quantize_job(void *ctx, int ith, int nth) {
    struct matmul_job *j = ctx;
    long b, e;
    pool_split((long)j->n, ith, nth, &b, &e);
    quant_from_f32_fn q = j->ops->quantize[j->act_type];
    for (long i = b; i < e; i++)
        q(j->x + i * j->w->cols, (char *)j->act + (size_t)i * j->act_row_bytes, j->w->cols);
}

enum { BATCH_TILE = 16 }; // activation rows that stay in L1 while a weight row streams

static void dot_job(void *ctx, int ith, int nth) {
    struct matmul_job *j = ctx;
    const struct kern_mat *w = j->w;
    quant_vec_dot_fn dot = j->ops->dot[w->type];
    long r0, r1;
    pool_split((long)w->rows, ith, nth, &r0, &r1);
    for (int64_t b0 = 0; b0 < j->n; b0 += BATCH_TILE) {
        const int64_t b1 = b0 + BATCH_TILE < j->n ? b0 + BATCH_TILE : j->n;
        for (long r = r0; r < r1; r++) {
            const void *wr = (const char *)w->data + (size_t)r * w->row_bytes;
            for (int64_t b = b0; b < b1; b++)
                j->y[b * j->y_stride + r] =
                    dot(w->cols, wr, (const char *)j->act + (size_t)b * j->act_row_bytes);
        }
    }
}

int kern_matmul(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                float *y, int64_t y_stride, llm_err *err) {
    const struct quant_traits *tr = quant_get(w->type);
    if (!tr || !kc->ops->dot[w->type])
        return err_set(err, "matmul: weight type %d has no kernel", w->type);
    const int act_type = tr->vec_dot_type;
    if (!kc->ops->quantize[act_type])
        return err_set(err, "matmul: cannot convert activations to type %d", act_type);
    const size_t act_row_bytes = quant_row_bytes(act_type, w->cols);
    if (act_row_bytes == 0)
        return err_set(err, "matmul: row of %lld values does not fit type %s", (long long)w->cols,
                       quant_get(act_type)->name);
    const size_t need = act_row_bytes * (size_t)n;
    if (need > kc->scratch_cap) {
        void *p = realloc(kc->scratch, need);
        if (!p) return err_set(err, "matmul: out of memory (%zu bytes of activations)", need);
        kc->scratch = p;
        kc->scratch_cap = need;
    }
    struct matmul_job job = {kc->ops, w, x, n, kc->scratch, act_row_bytes, act_type, y, y_stride};
    if (n == 1) quantize_job(&job, 0, 1);
    else pool_run(kc->pool, quantize_job, &job);
    pool_run(kc->pool, dot_job, &job);
    return 0;
}
