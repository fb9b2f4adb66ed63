// The forward pass of a BERT-style encoder, as llama.cpp's bert graph computes
// it: summed token + token-type + position embeddings, LayerNorm, then per
// layer attention over the token's whole sequence (no mask within a sequence,
// nothing cached), residual + LayerNorm, GELU FFN, residual + LayerNorm. Every
// LayerNorm has a bias. nomic-bert: no position embeddings but RoPE (NEOX) on
// q and k, a fused q|k|v projection, and a SwiGLU FFN (gate, up) without
// biases. Matrix products go through kern_matmul; per-token steps are split
// across the pool by token, attention by (token, head).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

// Scratch of one model_encode call, in one allocation.
struct enc_work {
    float *x;      // [n][n_embd] residual stream (layer input / output)
    float *h;      // [n][n_embd] after the attention block's LayerNorm (FFN input)
    float *qkv;    // [n][3*n_embd] q | k | v of each token
    float *att;    // [n][n_embd] attention output per head, concatenated
    float *tmp;    // [n][n_embd] projection outputs before the residual
    float *up;     // [n][n_ff]
    float *gate;   // [n][n_ff] (nomic-bert)
    float *scores; // [n_threads][n] softmax scratch
    int32_t *order;      // [n] token indices grouped by sequence (batch order inside a group)
    int32_t *grp_begin;  // [n] where token i's sequence starts in order
    int32_t *grp_len;    // [n] how many tokens it has
};

struct enc {
    struct model_ctx *mc;
    const struct model_batch *b;
    const struct model_layer *layer;
    const struct model_enc_layer *el;
    struct enc_work w;
};

static void add_bias(float *y, const float *bias, int64_t n) {
    if (bias)
        for (int64_t j = 0; j < n; j++) y[j] += bias[j];
}

// x = LayerNorm(tok_embd[token] + token_types[0] + position_embd[pos]).
static void embed_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    const struct model *m = f->mc->model;
    const struct model_encoder *enc = &m->enc;
    const int64_t e = m->hp.n_embd;
    const quant_to_f32_fn pos_f32 = enc->pos_embd.data ? quant_get(enc->pos_embd.type)->to_f32 : NULL;
    float *row = f->w.tmp + (size_t)ith * (size_t)e; // per-thread scratch: tmp has >= n_threads rows
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *x = f->w.x + i * e;
        kern_mat_row_f32(&m->tok_embd, f->b->token[i], x);
        if (enc->type_embd.data) {
            quant_get(enc->type_embd.type)->to_f32(enc->type_embd.data, row, e);
            for (int64_t j = 0; j < e; j++) x[j] += row[j];
        }
        if (pos_f32) {
            pos_f32((const char *)enc->pos_embd.data + (size_t)f->b->pos[i] * enc->pos_embd.row_bytes, row, e);
            for (int64_t j = 0; j < e; j++) x[j] += row[j];
        }
        kern_layernorm(x, x, enc->embd_norm, enc->embd_norm_b, e, m->hp.norm_eps);
    }
}

// q/k/v biases, and nomic-bert's rotation of each q and k head by the token's position.
static void qkv_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd;
    const bool rope = hp->arch == MODEL_ARCH_NOMIC_BERT;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *q = f->w.qkv + i * 3 * e, *k = q + e, *v = q + 2 * e;
        if (f->el->bqkv) {
            add_bias(q, f->el->bqkv, 3 * e);
        } else {
            add_bias(q, f->layer->bq, e);
            add_bias(k, f->layer->bk, e);
            add_bias(v, f->layer->bv, e);
        }
        if (rope)
            for (int64_t h = 0; h < hp->n_head; h++) {
                kern_rope(q + h * hp->head_dim_k, hp->n_rot, f->b->pos[i], hp->rope_base, hp->rope_freq_scale, true);
                kern_rope(k + h * hp->head_dim_k, hp->n_rot, f->b->pos[i], hp->rope_base, hp->rope_freq_scale, true);
            }
    }
}

static void attention_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd, hd = hp->head_dim_k;
    float *scores = f->w.scores + (size_t)ith * (size_t)f->b->n;
    long w0, w1;
    pool_split((long)f->b->n * (long)hp->n_head, ith, nth, &w0, &w1);
    for (long item = w0; item < w1; item++) {
        const long i = item / hp->n_head, h = item % hp->n_head;
        const float *qkv = f->w.qkv;
        kern_attn_head_f32(qkv + i * 3 * e + h * hd, qkv + e + h * hd, (size_t)(3 * e), qkv + 2 * e + h * hd,
                           (size_t)(3 * e),
                           f->w.order + f->w.grp_begin[i], f->w.grp_len[i], hd, hp->attn_scale, scores,
                           f->w.att + i * e + h * hd);
    }
}

// For the worker's tokens: out = LayerNorm(t + bias + res), where t is the
// projection output in tmp (bias added in place).
static void bias_residual_norm(const struct enc *f, int ith, int nth, const float *bias, const float *res,
                               float *out, const float *norm, const float *norm_b) {
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *t = f->w.tmp + i * e, *o = out + i * e;
        const float *r = res + i * e;
        add_bias(t, bias, e);
        for (int64_t j = 0; j < e; j++) o[j] = t[j] + r[j];
        kern_layernorm(o, o, norm, norm_b, e, hp->norm_eps);
    }
}

// h = LayerNorm(attn_output + bias + x).
static void attn_out_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    bias_residual_norm(f, ith, nth, f->el->bo, f->w.x, f->w.h, f->el->attn_out_norm, f->el->attn_out_norm_b);
}

static void ffn_act_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    const int64_t n_ff = f->mc->model->hp.n_ff;
    void (*swiglu)(float *, const float *, const float *, int64_t) =
        f->mc->kc.ops->swiglu ? f->mc->kc.ops->swiglu : kern_swiglu;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *u = f->w.up + i * n_ff;
        add_bias(u, f->el->ffn_up_b, n_ff);
        if (f->layer->ffn_gate.data) swiglu(u, f->w.gate + i * n_ff, u, n_ff); // silu(gate) * up
        else kern_gelu(u, u, n_ff);
    }
}

// x = LayerNorm(ffn_down + bias + h).
static void ffn_out_job(void *ctx, int ith, int nth) {
    struct enc *f = ctx;
    bias_residual_norm(f, ith, nth, f->el->ffn_down_b, f->w.h, f->w.x, f->el->out_norm, f->el->out_norm_b);
}

static int check_batch(const struct model *m, const struct model_batch *b, llm_err *err) {
    if (b->n <= 0) return err_set(err, "empty batch");
    for (int32_t i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= m->hp.n_vocab)
            return err_set(err, "batch entry %d: token id %d outside the vocabulary (0..%lld)", i, b->token[i],
                           (long long)m->hp.n_vocab - 1);
        if (b->pos[i] < 0 || b->pos[i] >= m->enc.n_pos)
            return err_set(err, "batch entry %d: position %d outside the model's %lld positions", i, b->pos[i],
                           (long long)m->enc.n_pos);
    }
    return 0;
}

static int cmp_by_seq(const void *a, const void *b, void *ctx) {
    const int32_t *seq = ctx, ia = *(const int32_t *)a, ib = *(const int32_t *)b;
    if (seq[ia] != seq[ib]) return (seq[ia] > seq[ib]) - (seq[ia] < seq[ib]);
    return (ia > ib) - (ia < ib);
}

// Groups the batch's tokens by sequence: token i attends to order[grp_begin[i] ..+ grp_len[i]).
static void group_by_sequence(const struct model_batch *b, struct enc_work *w) {
    for (int32_t i = 0; i < b->n; i++) w->order[i] = i;
    qsort_r(w->order, (size_t)b->n, sizeof *w->order, cmp_by_seq, (void *)b->seq);
    for (int32_t s = 0; s < b->n;) {
        int32_t end = s;
        while (end < b->n && b->seq[w->order[end]] == b->seq[w->order[s]]) end++;
        for (int32_t j = s; j < end; j++) {
            w->grp_begin[w->order[j]] = s;
            w->grp_len[w->order[j]] = end - s;
        }
        s = end;
    }
}

static int work_alloc(struct enc_work *w, int64_t n, int64_t e, int64_t n_ff, int n_threads, void **block,
                      llm_err *err) {
    const size_t nn = (size_t)n, f = sizeof(float);
    const size_t floats = nn * (size_t)(7 * e + 2 * n_ff) + (size_t)n_threads * nn;
    char *p = malloc(floats * f + 3 * nn * sizeof(int32_t));
    if (!p) return err_set(err, "out of memory (encoder scratch for %lld tokens)", (long long)n);
    *block = p;
    float *fp = (float *)p;
    w->x = fp, fp += nn * (size_t)e;
    w->h = fp, fp += nn * (size_t)e;
    w->qkv = fp, fp += nn * (size_t)(3 * e);
    w->att = fp, fp += nn * (size_t)e;
    w->tmp = fp, fp += nn * (size_t)e;
    w->up = fp, fp += nn * (size_t)n_ff;
    w->gate = fp, fp += nn * (size_t)n_ff;
    w->scores = fp, fp += (size_t)n_threads * nn;
    int32_t *ip = (int32_t *)fp;
    w->order = ip, ip += nn;
    w->grp_begin = ip, ip += nn;
    w->grp_len = ip;
    return 0;
}

int model_encode(struct model_ctx *mc, const struct model_batch *b, float *hidden, llm_err *err) {
    const struct model *m = mc->model;
    const struct model_hparams *hp = &m->hp;
    if (!hp->encoder) return err_set(err, "%s is not an encoder model", hp->arch_name);
    if (check_batch(m, b, err)) return -1;
    const int64_t n = b->n, e = hp->n_embd;
    const int n_threads = pool_size(mc->pool);
    struct enc f = {.mc = mc, .b = b};
    void *block = NULL;
    // embed_job uses tmp rows as per-thread scratch: make sure there is one per thread.
    if (work_alloc(&f.w, n > n_threads ? n : n_threads, e, hp->n_ff, n_threads, &block, err)) return -1;
    group_by_sequence(b, &f.w);
    int rc = -1;
    pool_run(mc->pool, embed_job, &f);
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = f.layer = &m->layers[il];
        f.el = &m->enc.layers[il];
        if (f.el->wqkv.data) {
            if (kern_matmul_rows(&mc->kc, &f.el->wqkv, f.w.x, n, n, f.w.qkv, 3 * e, err)) goto done;
        } else if (kern_matmul_rows(&mc->kc, &l->wq, f.w.x, n, n, f.w.qkv, 3 * e, err) ||
                   kern_matmul_rows(&mc->kc, &l->wk, f.w.x, n, n, f.w.qkv + e, 3 * e, err) ||
                   kern_matmul_rows(&mc->kc, &l->wv, f.w.x, n, n, f.w.qkv + 2 * e, 3 * e, err)) {
            goto done;
        }
        pool_run(mc->pool, qkv_job, &f);
        pool_run(mc->pool, attention_job, &f);
        if (kern_matmul_rows(&mc->kc, &l->wo, f.w.att, n, n, f.w.tmp, e, err)) goto done;
        pool_run(mc->pool, attn_out_job, &f);
        if (kern_matmul_rows(&mc->kc, &l->ffn_up, f.w.h, n, n, f.w.up, hp->n_ff, err) ||
            (l->ffn_gate.data && kern_matmul_rows(&mc->kc, &l->ffn_gate, f.w.h, n, n, f.w.gate, hp->n_ff, err)))
            goto done;
        pool_run(mc->pool, ffn_act_job, &f);
        if (kern_matmul_rows(&mc->kc, &l->ffn_down, f.w.up, n, n, f.w.tmp, e, err)) goto done;
        pool_run(mc->pool, ffn_out_job, &f);
    }
    memcpy(hidden, f.w.x, (size_t)(n * e) * sizeof(float));
    rc = 0;
done:
    free(block);
    return rc;
}

void model_pool(enum model_pooling pooling, const float *x, int64_t n, int64_t n_embd, float *out) {
    if (pooling == MODEL_POOL_CLS || pooling == MODEL_POOL_LAST) {
        memcpy(out, x + (pooling == MODEL_POOL_CLS ? 0 : (n - 1) * n_embd), (size_t)n_embd * sizeof(float));
        return;
    }
    // llama.cpp multiplies the hidden states by a matrix of 1/n: a float sum of x * (1/n).
    const float inv = 1.0f / (float)n;
    for (int64_t d = 0; d < n_embd; d++) out[d] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < n_embd; d++) out[d] += x[i * n_embd + d] * inv;
}
