// The batched forward pass of the decoder, written out step by step. Matrix
// products go through kern_matmul (threaded inside); per-token steps are split
// across the pool by token, attention by (token, head).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int model_ctx_init(struct model_ctx *mc, const struct model *m, const struct kern_ops *ops,
                   struct pool *pool, int64_t n_ctx, int32_t n_seq_max, llm_err *err) {
    memset(mc, 0, sizeof *mc);
    mc->model = m;
    mc->pool = pool;
    if (!m->hp.encoder && kv_init(&mc->kv, &m->hp, n_ctx, n_seq_max, err)) return -1; // encoders cache nothing
    if (kern_ctx_init(&mc->kc, ops, pool, err)) {
        kv_free(&mc->kv);
        return -1;
    }
    return 0;
}

static void work_free(struct model_work *w) {
    float **bufs[] = {&w->x, &w->xn, &w->q, &w->k, &w->v, &w->att, &w->tmp, &w->gate, &w->up, &w->scores, &w->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    free(w->cell);
    free(w->vis);
    memset(w, 0, sizeof *w);
}

void model_ctx_free(struct model_ctx *mc) {
    kv_free(&mc->kv);
    kern_ctx_free(&mc->kc);
    work_free(&mc->w);
}

static int grow(void **p, size_t bytes, llm_err *err) {
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return err_set(err, "out of memory (%zu bytes of scratch)", bytes);
    *p = q;
    return 0;
}

static int work_reserve(struct model_ctx *mc, int64_t n, llm_err *err) {
    struct model_work *w = &mc->w;
    const struct model_hparams *hp = &mc->model->hp;
    if (n > w->cap_tokens) {
        const size_t f = sizeof(float), nn = (size_t)n;
        if (grow((void **)&w->x, nn * (size_t)hp->n_embd * f, err) ||
            grow((void **)&w->xn, nn * (size_t)hp->n_embd * f, err) ||
            grow((void **)&w->tmp, nn * (size_t)hp->n_embd * f, err) ||
            grow((void **)&w->out, nn * (size_t)hp->n_embd * f, err) ||
            grow((void **)&w->q, nn * (size_t)(hp->n_head * hp->head_dim_k) * f, err) ||
            grow((void **)&w->k, nn * (size_t)(hp->n_head_kv * hp->head_dim_k) * f, err) ||
            grow((void **)&w->v, nn * (size_t)(hp->n_head_kv * hp->head_dim_v) * f, err) ||
            grow((void **)&w->att, nn * (size_t)(hp->n_head * hp->head_dim_v) * f, err) ||
            grow((void **)&w->gate, nn * (size_t)hp->n_ff * f, err) ||
            grow((void **)&w->up, nn * (size_t)hp->n_ff * f, err) ||
            grow((void **)&w->cell, nn * 3 * sizeof(int32_t), err))
            return -1;
        w->cap_tokens = n;
    }
    const int64_t scores = (int64_t)pool_size(mc->pool) * mc->kv.n_cells;
    if (scores > w->scores_cap) {
        if (grow((void **)&w->scores, (size_t)scores * sizeof(float), err)) return -1;
        w->scores_cap = scores;
    }
    return 0;
}

// Per-token bookkeeping for attention: which sorted cell list (one per sequence
// in the batch) the token reads, and the visible ranges in it.
struct token_view {
    int32_t group; // index of the token's sequence among the batch's sequences
    int32_t end;   // cells [0, end) of the group have pos <= token pos
    int32_t begin_swa; // first cell inside the sliding window
};

struct fwd {
    struct model_ctx *mc;
    const struct model_batch *b;
    const struct model_layer *layer;
    int64_t il;
    struct token_view *views; // [n]
    int32_t *group_cells;     // [n_groups][n_cells] cells sorted by position
    int64_t n_out;
    const int32_t *out_rows;  // [n_out] batch indices whose logits are wanted
};

static int cmp_cell_pos(const void *a, const void *b, void *ctx) {
    const int32_t *pos = ctx;
    const int32_t pa = pos[*(const int32_t *)a], pb = pos[*(const int32_t *)b];
    return (pa > pb) - (pa < pb);
}

// Places the batch's tokens in free cells and builds the per-sequence cell
// lists each token attends over.
static int place_tokens(struct model_ctx *mc, const struct model_batch *b, struct token_view *views,
                        int32_t **group_cells, llm_err *err) {
    struct kv_cache *kv = &mc->kv;
    if (kv->n_cells - kv->n_used < b->n)
        return err_set(err, "context full: %lld of %lld cells used, batch needs %d more (raise -c)",
                       (long long)kv->n_used, (long long)kv->n_cells, b->n);
    int32_t *cell = mc->w.cell;
    int64_t next = 0;
    for (int32_t i = 0; i < b->n; i++) {
        // A token at a (seq, pos) already cached replaces it.
        kv_seq_rm(kv, b->seq[i], b->pos[i], b->pos[i] + 1);
        while (kv->pos[next] >= 0) next++;
        cell[i] = (int32_t)next;
        kv->pos[next] = b->pos[i];
        kv->seq[next] = b->seq[i];
        kv->n_used++;
    }
    // Distinct sequences of the batch, each with its cells sorted by position.
    int32_t *group_seq = cell + b->n; // [n] scratch
    int32_t n_groups = 0;
    for (int32_t i = 0; i < b->n; i++) {
        int32_t g = 0;
        while (g < n_groups && group_seq[g] != b->seq[i]) g++;
        if (g == n_groups) group_seq[n_groups++] = b->seq[i];
        views[i].group = g;
    }
    const size_t need = (size_t)n_groups * (size_t)kv->n_cells;
    if ((int64_t)need > mc->w.vis_cap) {
        if (grow((void **)&mc->w.vis, need * sizeof(int32_t), err)) return -1;
        mc->w.vis_cap = (int64_t)need;
    }
    int32_t *n_in_group = cell + 2 * b->n; // [n_groups] scratch
    for (int32_t g = 0; g < n_groups; g++) {
        int32_t *list = mc->w.vis + (size_t)g * (size_t)kv->n_cells, cnt = 0;
        for (int64_t c = 0; c < kv->n_cells; c++)
            if (kv->pos[c] >= 0 && kv->seq[c] == group_seq[g]) list[cnt++] = (int32_t)c;
        qsort_r(list, (size_t)cnt, sizeof *list, cmp_cell_pos, kv->pos);
        n_in_group[g] = cnt;
    }
    const int64_t n_swa = mc->model->hp.n_swa;
    for (int32_t i = 0; i < b->n; i++) {
        const int32_t *list = mc->w.vis + (size_t)views[i].group * (size_t)kv->n_cells;
        const int32_t cnt = n_in_group[views[i].group], p = b->pos[i];
        int32_t lo = 0, hi = cnt; // first index with pos > p
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (kv->pos[list[mid]] <= p) lo = mid + 1; else hi = mid;
        }
        views[i].end = lo;
        lo = 0, hi = views[i].end; // first index with p - pos < n_swa
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (n_swa > 0 && (int64_t)p - kv->pos[list[mid]] >= n_swa) lo = mid + 1; else hi = mid;
        }
        views[i].begin_swa = lo;
    }
    *group_cells = mc->w.vis;
    return 0;
}

static void embed_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model *m = f->mc->model;
    const int64_t e = m->hp.n_embd;
    const quant_to_f32_fn to_f32 = quant_get(m->tok_embd.type)->to_f32;
    const float scale = sqrtf((float)e);
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *x = f->mc->w.x + i * e;
        to_f32((const char *)m->tok_embd.data + (size_t)f->b->token[i] * m->tok_embd.row_bytes, x, e);
        if (m->hp.embed_scale)
            for (int64_t j = 0; j < e; j++) x[j] *= scale;
    }
}

static void attn_norm_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const int64_t e = f->mc->model->hp.n_embd;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++)
        kern_rmsnorm(f->mc->w.xn + i * e, f->mc->w.x + i * e, f->layer->attn_norm, e,
                     f->mc->model->hp.norm_eps);
}

// x += post_norm ? rmsnorm(t) * post_norm : t (t is overwritten).
static void add_residual(float *x, float *t, const float *post_norm, int64_t n, float eps) {
    if (post_norm) kern_rmsnorm(t, t, post_norm, n, eps);
    for (int64_t j = 0; j < n; j++) x[j] += t[j];
}

static void ffn_norm_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *x = f->mc->w.x + i * e;
        add_residual(x, f->mc->w.tmp + i * e, f->layer->post_attn_norm, e, hp->norm_eps);
        kern_rmsnorm(f->mc->w.xn + i * e, x, f->layer->ffn_norm, e, hp->norm_eps);
    }
}

static void ffn_act_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *g = f->mc->w.gate + i * hp->n_ff, *u = f->mc->w.up + i * hp->n_ff;
        if (hp->act == MODEL_ACT_GELU) kern_geglu(g, g, u, hp->n_ff);
        else kern_swiglu(g, g, u, hp->n_ff);
    }
}

static void ffn_out_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++)
        add_residual(f->mc->w.x + i * e, f->mc->w.tmp + i * e, f->layer->post_ffn_norm, e, hp->norm_eps);
}

static void add_bias(float *y, const float *bias, int64_t n) {
    if (bias)
        for (int64_t j = 0; j < n; j++) y[j] += bias[j];
}

// Biases, q/k norms, RoPE, q scaling, and the keys/values stored in the cache.
static void qkv_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    struct model_ctx *mc = f->mc;
    const struct model_hparams *hp = &mc->model->hp;
    const struct model_layer *l = f->layer;
    const int64_t qw = hp->n_head * hp->head_dim_k, kw = mc->kv.k_width, vw = mc->kv.v_width;
    const float base = l->swa ? hp->rope_base_swa : hp->rope_base;
    const float fscale = l->swa ? 1.0f : hp->rope_freq_scale;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *q = mc->w.q + i * qw, *k = mc->w.k + i * kw, *v = mc->w.v + i * vw;
        add_bias(q, l->bq, qw);
        add_bias(k, l->bk, kw);
        add_bias(v, l->bv, vw);
        for (int64_t h = 0; h < hp->n_head; h++) {
            float *qh = q + h * hp->head_dim_k;
            if (l->q_norm) kern_rmsnorm(qh, qh, l->q_norm, hp->head_dim_k, hp->norm_eps);
            kern_rope(qh, hp->n_rot, f->b->pos[i], base, fscale, hp->rope_neox);
            if (hp->scale_q)
                for (int64_t d = 0; d < hp->head_dim_k; d++) qh[d] *= hp->attn_scale;
        }
        for (int64_t h = 0; h < hp->n_head_kv; h++) {
            float *kh = k + h * hp->head_dim_k;
            if (l->k_norm) kern_rmsnorm(kh, kh, l->k_norm, hp->head_dim_k, hp->norm_eps);
            kern_rope(kh, hp->n_rot, f->b->pos[i], base, fscale, hp->rope_neox);
        }
        const size_t c = (size_t)(f->il * mc->kv.n_cells + mc->w.cell[i]);
        fp16_t *kc = mc->kv.k + c * (size_t)kw, *vc = mc->kv.v + c * (size_t)vw;
        for (int64_t d = 0; d < kw; d++) kc[d] = fp32_to_fp16(k[d]);
        for (int64_t d = 0; d < vw; d++) vc[d] = fp32_to_fp16(v[d]);
    }
}

static void attention_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    struct model_ctx *mc = f->mc;
    const struct model_hparams *hp = &mc->model->hp;
    const int64_t n_cells = mc->kv.n_cells, group = hp->n_head / hp->n_head_kv;
    const float scale = hp->scale_q ? 1.0f : hp->attn_scale;
    float *scores = mc->w.scores + (size_t)ith * (size_t)n_cells;
    long w0, w1;
    pool_split((long)f->b->n * (long)hp->n_head, ith, nth, &w0, &w1);
    for (long item = w0; item < w1; item++) {
        const long i = item / hp->n_head, h = item % hp->n_head;
        const struct token_view *tv = &f->views[i];
        const int32_t *cells = f->group_cells + (size_t)tv->group * (size_t)n_cells;
        const int32_t begin = f->layer->swa ? tv->begin_swa : 0;
        const size_t layer_off = (size_t)(f->il * n_cells);
        const int64_t kvh = h / group;
        kern_attn_head(mc->w.q + i * hp->n_head * hp->head_dim_k + h * hp->head_dim_k,
                       mc->kv.k + layer_off * (size_t)mc->kv.k_width + (size_t)(kvh * hp->head_dim_k),
                       (size_t)mc->kv.k_width,
                       mc->kv.v + layer_off * (size_t)mc->kv.v_width + (size_t)(kvh * hp->head_dim_v),
                       (size_t)mc->kv.v_width, cells + begin, tv->end - begin, hp->head_dim_k,
                       hp->head_dim_v, scale, scores,
                       mc->w.att + i * hp->n_head * hp->head_dim_v + h * hp->head_dim_v);
    }
}

static void output_norm_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model *m = f->mc->model;
    const int64_t e = m->hp.n_embd;
    long r0, r1;
    pool_split((long)f->n_out, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++)
        kern_rmsnorm(f->mc->w.out + r * e, f->mc->w.x + f->out_rows[r] * e, m->output_norm, e,
                     m->hp.norm_eps);
}

static int check_batch(const struct model_ctx *mc, const struct model_batch *b, llm_err *err) {
    if (b->n <= 0) return err_set(err, "empty batch");
    for (int32_t i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= mc->model->hp.n_vocab)
            return err_set(err, "batch entry %d: token id %d outside the vocabulary (0..%lld)", i,
                           b->token[i], (long long)mc->model->hp.n_vocab - 1);
        if (b->seq[i] < 0 || b->seq[i] >= mc->kv.n_seq_max)
            return err_set(err, "batch entry %d: sequence id %d outside 0..%d", i, b->seq[i],
                           mc->kv.n_seq_max - 1);
        if (b->pos[i] < 0) return err_set(err, "batch entry %d: negative position %d", i, b->pos[i]);
    }
    return 0;
}

int model_decode(struct model_ctx *mc, const struct model_batch *b, float *logits, llm_err *err) {
    if (mc->model->hp.encoder)
        return err_set(err, "%s is an encoder (embeddings only): it cannot decode", mc->model->hp.arch_name);
    if (check_batch(mc, b, err) || work_reserve(mc, b->n, err)) return -1;
    const struct model *m = mc->model;
    const struct model_hparams *hp = &m->hp;
    struct model_work *w = &mc->w;
    struct token_view *views = malloc((size_t)b->n * sizeof *views);
    int32_t *out_rows = malloc((size_t)b->n * sizeof *out_rows);
    if (!views || !out_rows) {
        free(views);
        free(out_rows);
        return err_set(err, "out of memory");
    }
    struct fwd f = {.mc = mc, .b = b, .views = views, .out_rows = out_rows};
    for (int32_t i = 0; i < b->n; i++)
        if (b->logits ? b->logits[i] : i == b->n - 1) out_rows[f.n_out++] = i;
    int rc = -1;
    if (place_tokens(mc, b, views, &f.group_cells, err)) goto done;
    pool_run(mc->pool, embed_job, &f);
    const int64_t n = b->n, qw = hp->n_head * hp->head_dim_k;
    for (f.il = 0; f.il < hp->n_layer; f.il++) {
        const struct model_layer *l = f.layer = &m->layers[f.il];
        pool_run(mc->pool, attn_norm_job, &f);
        if (kern_matmul(&mc->kc, &l->wq, w->xn, n, w->q, qw, err) ||
            kern_matmul(&mc->kc, &l->wk, w->xn, n, w->k, mc->kv.k_width, err) ||
            kern_matmul(&mc->kc, &l->wv, w->xn, n, w->v, mc->kv.v_width, err))
            goto done;
        pool_run(mc->pool, qkv_job, &f);
        pool_run(mc->pool, attention_job, &f);
        if (kern_matmul(&mc->kc, &l->wo, w->att, n, w->tmp, hp->n_embd, err)) goto done;
        pool_run(mc->pool, ffn_norm_job, &f);
        if (kern_matmul(&mc->kc, &l->ffn_gate, w->xn, n, w->gate, hp->n_ff, err) ||
            kern_matmul(&mc->kc, &l->ffn_up, w->xn, n, w->up, hp->n_ff, err))
            goto done;
        pool_run(mc->pool, ffn_act_job, &f);
        if (kern_matmul(&mc->kc, &l->ffn_down, w->gate, n, w->tmp, hp->n_embd, err)) goto done;
        pool_run(mc->pool, ffn_out_job, &f);
    }
    if (f.n_out && (logits || b->hidden)) {
        pool_run(mc->pool, output_norm_job, &f);
        if (b->hidden) memcpy(b->hidden, w->out, (size_t)(f.n_out * hp->n_embd) * sizeof(float));
    }
    if (f.n_out && logits) {
        if (kern_matmul(&mc->kc, &m->output, w->out, f.n_out, logits, hp->n_vocab, err)) goto done;
        if (hp->logit_softcap > 0) {
            const float cap = hp->logit_softcap;
            for (int64_t i = 0; i < f.n_out * hp->n_vocab; i++) logits[i] = tanhf(logits[i] / cap) * cap;
        }
    }
    rc = (int)f.n_out;
done:
    if (rc < 0) // leave no half-written tokens behind
        for (int32_t i = 0; i < b->n; i++) kv_seq_rm(&mc->kv, b->seq[i], b->pos[i], b->pos[i] + 1);
    free(views);
    free(out_rows);
    return rc;
}
