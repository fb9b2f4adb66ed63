// The batched forward pass of the decoder, written out step by step. Matrix
// products go through kern_matmul (threaded inside); per-token steps are split
// across the pool by token (or run on the caller for a single token), attention
// by tiles of tokens x query heads sharing a KV head (kern_attn).
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

const char *model_stage_name(enum model_stage s) {
    static const char *const names[STAGE_COUNT] = {
        [STAGE_QKV] = "q, k, v matrices", [STAGE_ROPE_KV] = "rope, cache store",
        [STAGE_ATTENTION] = "attention", [STAGE_ATTN_OUT] = "attention output matrix",
        [STAGE_FFN_IN] = "FFN gate, up matrices", [STAGE_FFN_DOWN] = "FFN down matrix",
        [STAGE_OUTPUT] = "output matrix", [STAGE_ROW_OPS] = "norms, activations, adds"};
    return (unsigned)s < STAGE_COUNT ? names[s] : "?";
}

double model_stage_clock(const struct model_ctx *mc) {
    if (!mc->profile) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Bytes of a matrix's weights (0 for an absent one).
static double mat_bytes(const struct kern_mat *w) { return w->data ? (double)w->rows * (double)w->row_bytes : 0; }

void model_stage_lap(struct model_ctx *mc, enum model_stage s, double *t, double weight_bytes) {
    if (!mc->profile) return;
    const double now = model_stage_clock(mc);
    mc->profile->seconds[s] += now - *t;
    *t = now;
    mc->profile->weight_bytes[s] += weight_bytes;
    mc->profile->calls[s]++;
}

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
    return 0;
}

// Per-token bookkeeping for attention: which sorted cell list (one per sequence
// in the batch) the token reads, and the visible ranges in it.
struct token_view {
    int32_t group; // index of the token's sequence among the batch's sequences
    int32_t end;   // cells [0, end) of the group have pos <= token pos
    int32_t begin_swa; // first cell inside the sliding window
};

// Attention work of one layer kind (full or sliding-window): tiles of tokens x
// query heads that share a KV head, largest first; threads take them in turn.
struct attn_item {
    int32_t tok0, n_tok; // the tile's tokens: attn_plan.toks[tok0 .. tok0 + n_tok)
    int32_t kvh;         // KV head
    int32_t h0, n_h;     // query heads kvh * group + h0 .. + n_h
    int64_t cost;        // queries x cells spanned
};

struct attn_plan {
    struct attn_item *items; // [n_items <= n * n_head], by decreasing cost
    int32_t n_items;
    int32_t *toks;           // [n] batch indices, grouped into tiles
    int32_t *tile_tok0;      // [n] (building) first entry of each token tile in toks
    int32_t *tile_len;       // [n] (building) tokens per token tile
    uint8_t *taken;          // [n] (building) token already in a tile
    int64_t span_max;        // widest tile span (list positions), sizes the scratch
    bool split;              // run_attention_split: tiles split by keys and values among threads
};

enum { SPLIT_ITEMS_MAX = 64 }; // run_attention_split: at most this many tiles (fewer than the threads)

struct fwd {
    struct model_ctx *mc;
    const struct model_batch *b;
    const struct model_layer *layer;
    const float *next_norm;   // attn_norm of the next layer (NULL after the last)
    int64_t il;
    struct token_view *views; // [n]
    int32_t *group_cells;     // [n_groups][n_cells] cells sorted by position
    int64_t n_out;
    const int32_t *out_rows;  // [n_out] batch indices whose logits are wanted
    struct attn_plan plan[2]; // [0] full attention, [1] sliding window
    const struct attn_plan *cur_plan;
    atomic_int attn_next;     // next item (or split unit) of cur_plan to take
    int split_units;          // run_attention_split: units of work of the current step
    int split_item_units[SPLIT_ITEMS_MAX]; // [n_items] its scoring units per item
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

// rmsnorm with the level's kernel (kern_rmsnorm but for the order of the double sum).
static void rms_norm(const struct model_ctx *mc, float *out, const float *x, const float *w, int64_t n, float eps) {
    (mc->kc.ops->rmsnorm ? mc->kc.ops->rmsnorm : kern_rmsnorm)(out, x, w, n, eps);
}

static void embed_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model *m = f->mc->model;
    const int64_t e = m->hp.n_embd;
    const float scale = sqrtf((float)e);
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *x = f->mc->w.x + i * e;
        kern_mat_row_f32(&m->tok_embd, f->b->token[i], x); // interleaved too, when tied to the output
        if (m->hp.embed_scale)
            for (int64_t j = 0; j < e; j++) x[j] *= scale;
        if (f->next_norm) rms_norm(f->mc, f->mc->w.xn + i * e, x, f->next_norm, e, m->hp.norm_eps);
    }
}

// x += post_norm ? rmsnorm(t) * post_norm : t (t is overwritten).
static void add_residual(const struct model_ctx *mc, float *x, float *t, const float *post_norm, int64_t n,
                         float eps) {
    if (post_norm) rms_norm(mc, t, t, post_norm, n, eps);
    for (int64_t j = 0; j < n; j++) x[j] += t[j];
}

// For the worker's tokens: x += the block output in tmp (through add_residual),
// then xn = rmsnorm(x) * norm, the next block's input (none if norm is NULL).
static void residual_norm(const struct fwd *f, int ith, int nth, const float *post_norm, const float *norm) {
    const struct model_hparams *hp = &f->mc->model->hp;
    const int64_t e = hp->n_embd;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *x = f->mc->w.x + i * e;
        add_residual(f->mc, x, f->mc->w.tmp + i * e, post_norm, e, hp->norm_eps);
        if (norm) rms_norm(f->mc, f->mc->w.xn + i * e, x, norm, e, hp->norm_eps);
    }
}

// After attention: the residual, and the FFN's input norm.
static void ffn_norm_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    residual_norm(f, ith, nth, f->layer->post_attn_norm, f->layer->ffn_norm);
}

static void ffn_act_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model_hparams *hp = &f->mc->model->hp;
    const struct kern_ops *ops = f->mc->kc.ops;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *g = f->mc->w.gate + i * hp->n_ff, *u = f->mc->w.up + i * hp->n_ff;
        if (hp->act == MODEL_ACT_GELU) (ops->geglu ? ops->geglu : kern_geglu)(g, g, u, hp->n_ff);
        else (ops->swiglu ? ops->swiglu : kern_swiglu)(g, g, u, hp->n_ff);
    }
}

// After the FFN: the residual, and the next layer's attention norm.
static void ffn_out_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    residual_norm(f, ith, nth, f->layer->post_ffn_norm, f->next_norm);
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
    const quant_from_f32_fn to_f16 = mc->kc.ops->quantize[QUANT_F16] ? mc->kc.ops->quantize[QUANT_F16]
                                                                     : quant_get(QUANT_F16)->from_f32;
    long b0, b1;
    pool_split(f->b->n, ith, nth, &b0, &b1);
    for (long i = b0; i < b1; i++) {
        float *q = mc->w.q + i * qw, *k = mc->w.k + i * kw, *v = mc->w.v + i * vw;
        add_bias(q, l->bq, qw);
        add_bias(k, l->bk, kw);
        add_bias(v, l->bv, vw);
        float cs[KERN_MAX_HEAD_DIM]; // n_rot <= head_dim_k (checked at load)
        kern_rope_angles(cs, hp->n_rot, f->b->pos[i], base, fscale);
        for (int64_t h = 0; h < hp->n_head; h++) {
            float *qh = q + h * hp->head_dim_k;
            if (l->q_norm) rms_norm(mc, qh, qh, l->q_norm, hp->head_dim_k, hp->norm_eps);
            kern_rope_apply(qh, hp->n_rot, cs, hp->rope_neox);
            if (hp->scale_q)
                for (int64_t d = 0; d < hp->head_dim_k; d++) qh[d] *= hp->attn_scale;
        }
        for (int64_t h = 0; h < hp->n_head_kv; h++) {
            float *kh = k + h * hp->head_dim_k;
            if (l->k_norm) rms_norm(mc, kh, kh, l->k_norm, hp->head_dim_k, hp->norm_eps);
            kern_rope_apply(kh, hp->n_rot, cs, hp->rope_neox);
        }
        for (int64_t h = 0; h < hp->n_head_kv; h++) { // the level's conversion: fp32_to_fp16's rounding
            to_f16(k + h * hp->head_dim_k, kv_key(&mc->kv, f->il, h, mc->w.cell[i]), hp->head_dim_k);
            to_f16(v + h * hp->head_dim_v, kv_value(&mc->kv, f->il, h, mc->w.cell[i]), hp->head_dim_v);
        }
    }
}

// ---- Attention ------------------------------------------------------------------
// Work items are tiles of up to KERN_ATTN_MAX_Q queries: consecutive tokens of one
// sequence x the query heads of one KV head, so every K/V row is read once for
// all of them. Causal masks make later tokens costlier, so items are sorted by
// cost and handed out dynamically (longest first), which also absorbs a thread
// that the OS delays.

// A token joins the tile being built if the tile's cell span stays within this
// many positions of every member's own range (masked positions are wasted work).
enum { ATTN_TILE_SLACK = 64 };

static int cmp_item_cost(const void *a, const void *b) {
    const struct attn_item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return (x->tok0 > y->tok0) - (x->tok0 < y->tok0); // deterministic order
}

static int32_t view_begin(const struct token_view *tv, bool swa) { return swa ? tv->begin_swa : 0; }

// Attention work (queries x cells x (dk + dv)) from which splitting tiles among
// threads by keys and values (run_attention_split) pays for its two extra wake-ups
// of the pool (far above ATTN_SERIAL_WORK).
#define SPLIT_MIN_WORK (1 << 22)

// Attention work under which the caller attends alone. A generated token's
// attention over the short contexts of tg128 already pays for the pool: 1 << 19
// left it to the caller, 22 -> 15 us per layer with 1 << 16 (TinyLlama Q4_0, 2
// threads; Gemma 3 270M 15 -> 11).
#define ATTN_SERIAL_WORK (1 << 16)

// Whether generation's tiles of this layer kind are split by keys and values
// rather than by query heads (which reads the K/V rows once per part): a single
// token at a long context.
static bool split_pays(const struct fwd *f, bool swa) {
    const struct model_hparams *hp = &f->mc->model->hp;
    if (f->b->n != 1) return false;
    const struct token_view *tv = &f->views[0];
    const int64_t span = tv->end - view_begin(tv, swa);
    return span * hp->n_head * (hp->head_dim_k + hp->head_dim_v) >= SPLIT_MIN_WORK;
}

// Builds the tiles of one layer kind into plan's arrays (allocated by attn_plans_alloc).
static void attn_plan_build(const struct fwd *f, bool swa, struct attn_plan *plan) {
    const struct model_hparams *hp = &f->mc->model->hp;
    const int32_t n = f->b->n;
    const int group = (int)(hp->n_head / hp->n_head_kv);
    const int heads_max = group < KERN_ATTN_MAX_Q ? group : KERN_ATTN_MAX_Q;
    const int tok_max = KERN_ATTN_MAX_Q / heads_max;
    // Token tiles: up to tok_max tokens of one sequence, in batch order, whose
    // visible ranges are close (a prompt's consecutive tokens).
    int32_t n_tiles = 0, n_toks = 0;
    memset(plan->taken, 0, (size_t)n * sizeof *plan->taken);
    for (int32_t i = 0; i < n; i++) {
        if (plan->taken[i]) continue;
        const struct token_view *v0 = &f->views[i];
        int32_t lo = view_begin(v0, swa), hi = v0->end, min_len = hi - lo, cnt = 0;
        plan->tile_tok0[n_tiles] = n_toks;
        for (int32_t j = i; j < n && cnt < tok_max; j++) {
            const struct token_view *vj = &f->views[j];
            if (plan->taken[j] || vj->group != v0->group) continue;
            const int32_t b = view_begin(vj, swa), e = vj->end;
            const int32_t nlo = b < lo ? b : lo, nhi = e > hi ? e : hi;
            const int32_t nmin = e - b < min_len ? e - b : min_len;
            if (cnt > 0 && nhi - nlo > nmin + ATTN_TILE_SLACK) break;
            lo = nlo, hi = nhi, min_len = nmin;
            plan->taken[j] = 1;
            plan->toks[n_toks++] = j;
            cnt++;
        }
        plan->tile_len[n_tiles++] = cnt;
    }
    // Fewer tiles than threads (generation): split each tile by keys and values
    // where that pays (a long context), else split the query heads of a group,
    // at the price of reading the K/V rows once per part.
    int heads = heads_max;
    const int64_t nth = pool_size(f->mc->pool), whole = (int64_t)n_tiles * hp->n_head_kv;
    plan->split = whole < nth && whole <= SPLIT_ITEMS_MAX && split_pays(f, swa);
    while (!plan->split && heads > 1 && whole * ((group + heads - 1) / heads) < nth) heads = (heads + 1) / 2;
    plan->n_items = 0;
    plan->span_max = 0;
    for (int32_t t = 0; t < n_tiles; t++) {
        const int32_t tok0 = plan->tile_tok0[t], len = plan->tile_len[t];
        int32_t lo = INT32_MAX, hi = 0;
        for (int32_t k = tok0; k < tok0 + len; k++) {
            const struct token_view *tv = &f->views[plan->toks[k]];
            const int32_t b = view_begin(tv, swa);
            lo = b < lo ? b : lo;
            hi = tv->end > hi ? tv->end : hi;
        }
        const int64_t span = hi > lo ? hi - lo : 0;
        if (span > plan->span_max) plan->span_max = span;
        for (int32_t kvh = 0; kvh < hp->n_head_kv; kvh++)
            for (int h0 = 0; h0 < group; h0 += heads) {
                const int nh = group - h0 < heads ? group - h0 : heads;
                plan->items[plan->n_items++] = (struct attn_item){
                    .tok0 = tok0, .n_tok = len, .kvh = kvh, .h0 = h0, .n_h = nh,
                    .cost = (span + 16) * len * nh}; // + per-query overhead
            }
    }
    qsort(plan->items, (size_t)plan->n_items, sizeof *plan->items, cmp_item_cost);
}

// The tile of work item `it` of the current plan.
static void attn_tile_build(const struct fwd *f, const struct attn_item *it, struct kern_attn_tile *t) {
    const struct model_ctx *mc = f->mc;
    const struct model_hparams *hp = &mc->model->hp;
    const struct attn_plan *plan = f->cur_plan;
    const int64_t n_cells = mc->kv.n_cells, group = hp->n_head / hp->n_head_kv;
    const int64_t dk = hp->head_dim_k, dv = hp->head_dim_v;
    t->k_stride = (size_t)dk;
    t->v_stride = (size_t)dv;
    t->head_dim_k = dk;
    t->head_dim_v = dv;
    t->scale = hp->scale_q ? 1.0f : hp->attn_scale;
    t->n_q = it->n_tok * it->n_h;
    t->k = kv_key(&mc->kv, f->il, it->kvh, 0);
    t->v = kv_value(&mc->kv, f->il, it->kvh, 0);
    int r = 0;
    for (int32_t k = it->tok0; k < it->tok0 + it->n_tok; k++) {
        const int32_t i = plan->toks[k];
        const struct token_view *tv = &f->views[i];
        t->cells = f->group_cells + (size_t)tv->group * (size_t)n_cells; // one group per tile
        for (int hh = 0; hh < it->n_h; hh++, r++) {
            const int64_t h = it->kvh * group + it->h0 + hh;
            t->q[r] = mc->w.q + (i * hp->n_head + h) * dk;
            t->out[r] = mc->w.att + (i * hp->n_head + h) * dv;
            t->begin[r] = view_begin(tv, f->layer->swa);
            t->end[r] = tv->end;
        }
    }
}

static float *attn_thread_scratch(const struct fwd *f, int ith) {
    return f->mc->w.scores + (size_t)ith * kern_attn_scratch_floats(f->cur_plan->span_max, f->mc->model->hp.head_dim_k);
}

static void attention_job(void *ctx, int ith, int nth) {
    (void)nth;
    struct fwd *f = ctx;
    float *scratch = attn_thread_scratch(f, ith);
    struct kern_attn_tile t;
    for (int idx; (idx = atomic_fetch_add_explicit(&f->attn_next, 1, memory_order_relaxed)) < f->cur_plan->n_items;) {
        attn_tile_build(f, &f->cur_plan->items[idx], &t);
        kern_attn(f->mc->kc.ops, &t, scratch);
    }
}

// Generation with fewer tiles than threads (one KV head, or few) at long
// contexts: each tile is split among all threads, its scores by ranges of keys,
// then (after every score is in) its outputs by ranges of values, with the same
// bits as kern_attn (kern.h). Tile i's scores live in thread i's scratch (there
// are fewer tiles than threads), each thread's q scratch past every tile's scores.
enum { SPLIT_KEYS = 256, SPLIT_VALUES = 64 }; // a unit of work: keys scored, output values

static float *split_scores(const struct fwd *f, int item) { return attn_thread_scratch(f, item); }
static float *split_qh(const struct fwd *f, int ith) {
    return attn_thread_scratch(f, ith) + (size_t)KERN_ATTN_MAX_Q * (size_t)f->cur_plan->span_max;
}

static void split_scores_job(void *ctx, int ith, int nth) {
    (void)nth;
    struct fwd *f = ctx;
    struct kern_attn_tile t;
    int64_t j0, j1;
    for (int unit; (unit = atomic_fetch_add_explicit(&f->attn_next, 1, memory_order_relaxed)) < f->split_units;) {
        int item = 0, first = 0; // the unit's item, and that item's first unit
        while (unit >= first + f->split_item_units[item]) first += f->split_item_units[item++];
        attn_tile_build(f, &f->cur_plan->items[item], &t);
        kern_attn_span(&t, &j0, &j1);
        const int64_t a = j0 + (int64_t)(unit - first) * SPLIT_KEYS, b = a + SPLIT_KEYS < j1 ? a + SPLIT_KEYS : j1;
        kern_attn_scores(f->mc->kc.ops, &t, j0, j1, a, b, split_scores(f, item), split_qh(f, ith));
    }
}

static void split_values_job(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    struct fwd *f = ctx;
    const int64_t dv = f->mc->model->hp.head_dim_v, per_item = (dv + SPLIT_VALUES - 1) / SPLIT_VALUES;
    struct kern_attn_tile t;
    int64_t j0, j1;
    for (int unit; (unit = atomic_fetch_add_explicit(&f->attn_next, 1, memory_order_relaxed)) < f->split_units;) {
        const int item = unit / (int)per_item;
        const int64_t d0 = (unit % per_item) * SPLIT_VALUES, d1 = d0 + SPLIT_VALUES < dv ? d0 + SPLIT_VALUES : dv;
        attn_tile_build(f, &f->cur_plan->items[item], &t);
        kern_attn_span(&t, &j0, &j1);
        kern_attn_values(f->mc->kc.ops, &t, j0, j1, split_scores(f, item), d0, d1);
    }
}

static void run_attention_split(struct fwd *f) {
    const struct attn_plan *plan = f->cur_plan;
    struct kern_attn_tile t;
    int64_t j0, j1;
    f->split_units = 0;
    for (int i = 0; i < plan->n_items; i++) {
        attn_tile_build(f, &plan->items[i], &t);
        kern_attn_span(&t, &j0, &j1);
        f->split_item_units[i] = j1 > j0 ? (int)((j1 - j0 + SPLIT_KEYS - 1) / SPLIT_KEYS) : 0;
        f->split_units += f->split_item_units[i];
    }
    atomic_store_explicit(&f->attn_next, 0, memory_order_relaxed);
    pool_run(f->mc->pool, split_scores_job, f);
    for (int i = 0; i < plan->n_items; i++) { // a few rows of softmax: here
        attn_tile_build(f, &plan->items[i], &t);
        kern_attn_span(&t, &j0, &j1);
        if (j1 > j0) kern_attn_probs(f->mc->kc.ops, &t, j0, j1, 0, t.n_q, split_scores(f, i));
    }
    const int64_t dv = f->mc->model->hp.head_dim_v;
    f->split_units = plan->n_items * (int)((dv + SPLIT_VALUES - 1) / SPLIT_VALUES);
    atomic_store_explicit(&f->attn_next, 0, memory_order_relaxed);
    pool_run(f->mc->pool, split_values_job, f);
}

static void output_norm_job(void *ctx, int ith, int nth) {
    struct fwd *f = ctx;
    const struct model *m = f->mc->model;
    const int64_t e = m->hp.n_embd;
    long r0, r1;
    pool_split((long)f->n_out, ith, nth, &r0, &r1);
    for (long r = r0; r < r1; r++)
        rms_norm(f->mc, f->mc->w.out + r * e, f->mc->w.x + f->out_rows[r] * e, m->output_norm, e,
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

// Per-token steps over few values (a generated token's norms, activations, RoPE)
// cost less on the calling thread than waking the pool.
enum { SERIAL_VALUES = 4096 };

static void run_tokens(struct fwd *f, pool_fn fn, int64_t values_per_token) {
    if ((int64_t)f->b->n * values_per_token < SERIAL_VALUES) fn(f, 0, 1);
    else pool_run(f->mc->pool, fn, f);
}

// Attention plans of both layer kinds present, and the scratch their tiles need.
static int attn_plans_prepare(struct fwd *f, llm_err *err) {
    struct model_ctx *mc = f->mc;
    const struct model_hparams *hp = &mc->model->hp;
    const size_t n = (size_t)f->b->n;
    bool kinds[2] = {false, false};
    for (int64_t il = 0; il < hp->n_layer; il++) kinds[mc->model->layers[il].swa ? 1 : 0] = true;
    int64_t span_max = 0;
    for (int k = 0; k < 2; k++) {
        if (!kinds[k]) continue;
        struct attn_plan *p = &f->plan[k];
        p->items = malloc(n * (size_t)hp->n_head * sizeof *p->items);
        p->toks = malloc(n * 3 * sizeof *p->toks);
        p->taken = malloc(n);
        if (!p->items || !p->toks || !p->taken) return err_set(err, "out of memory (attention plan)");
        p->tile_tok0 = p->toks + n;
        p->tile_len = p->toks + 2 * n;
        attn_plan_build(f, k == 1, p);
        if (p->span_max > span_max) span_max = p->span_max;
    }
    const int64_t need = (int64_t)pool_size(mc->pool) * (int64_t)kern_attn_scratch_floats(span_max, hp->head_dim_k);
    if (need > mc->w.scores_cap) {
        if (grow((void **)&mc->w.scores, (size_t)need * sizeof(float), err)) return -1;
        mc->w.scores_cap = need;
    }
    return 0;
}

static void attn_plans_free(struct fwd *f) {
    for (int k = 0; k < 2; k++) {
        free(f->plan[k].items);
        free(f->plan[k].toks);
        free(f->plan[k].taken);
    }
}

static void run_attention(struct fwd *f) {
    const struct model_hparams *hp = &f->mc->model->hp;
    f->cur_plan = &f->plan[f->layer->swa ? 1 : 0];
    atomic_store_explicit(&f->attn_next, 0, memory_order_relaxed);
    int64_t cost = 0; // queries x cells
    for (int32_t i = 0; i < f->cur_plan->n_items; i++) cost += f->cur_plan->items[i].cost;
    // Below ATTN_SERIAL_WORK the caller attends alone: a pool wake-up costs more.
    if (f->cur_plan->split) run_attention_split(f);
    else if (cost * (hp->head_dim_k + hp->head_dim_v) < ATTN_SERIAL_WORK) attention_job(f, 0, 1);
    else pool_run(f->mc->pool, attention_job, f);
}

static bool wants_logits(const struct model_batch *b, int32_t i) { return b->logits ? b->logits[i] : i == b->n - 1; }

// Batch invariance: a token's numbers must not depend on what else is in the
// batch (a server request gives the same answer alone or beside others, and a
// prompt the same whether its cache was reused). So the kind of each row, not
// the batch size, picks the matrix kernel: tokens that want logits (the one
// being generated, a prompt's last) are generation rows (GEMV), the others
// prompt rows (GEMM). kern_matmul_rows takes prompt rows first, so the batch
// is reordered into prompt rows then generation rows, each in batch order
// (which keeps the logits in batch order). Returns the number of prompt rows;
// *pb is b itself or the reordered copy in the arrays at `store` ([4][n]).
static int64_t order_rows(const struct model_batch *b, struct model_batch *pb, int32_t *store) {
    *pb = *b;
    if (b->all_prompt_rows) return b->n;
    int64_t n_prompt = 0;
    bool ordered = true;
    for (int32_t i = 0; i < b->n; i++)
        if (!wants_logits(b, i)) ordered &= n_prompt++ == i;
    if (ordered) return n_prompt;
    int32_t *tok = store, *pos = store + b->n, *seq = store + 2 * b->n;
    bool *want = (bool *)(store + 3 * b->n);
    int32_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t i = 0; i < b->n; i++)
            if (wants_logits(b, i) == (pass == 1)) {
                tok[k] = b->token[i], pos[k] = b->pos[i], seq[k] = b->seq[i];
                want[k++] = pass == 1;
            }
    pb->token = tok, pb->pos = pos, pb->seq = seq, pb->logits = want;
    return n_prompt;
}

int model_decode(struct model_ctx *mc, const struct model_batch *b_in, float *logits, llm_err *err) {
    if (mc->model->hp.encoder)
        return err_set(err, "%s is an encoder (embeddings only): it cannot decode", mc->model->hp.arch_name);
    if (check_batch(mc, b_in, err) || work_reserve(mc, b_in->n, err)) return -1;
    int32_t *order_store = malloc((size_t)b_in->n * 4 * sizeof(int32_t));
    if (!order_store) return err_set(err, "out of memory");
    struct model_batch ordered;
    const int64_t n_prompt = order_rows(b_in, &ordered, order_store);
    const struct model_batch *b = &ordered;
    const struct model *m = mc->model;
    const struct model_hparams *hp = &m->hp;
    struct model_work *w = &mc->w;
    struct token_view *views = malloc((size_t)b->n * sizeof *views);
    int32_t *out_rows = malloc((size_t)b->n * sizeof *out_rows);
    if (!views || !out_rows) {
        free(views);
        free(out_rows);
        free(order_store);
        return err_set(err, "out of memory");
    }
    struct fwd f = {.mc = mc, .b = b, .views = views, .out_rows = out_rows};
    for (int32_t i = 0; i < b->n; i++)
        if (wants_logits(b, i)) out_rows[f.n_out++] = i;
    int rc = -1;
    if (place_tokens(mc, b, views, &f.group_cells, err) || attn_plans_prepare(&f, err)) goto done;
    const int64_t n = b->n, qw = hp->n_head * hp->head_dim_k;
    // Each per-token job also does the first step of the next block where it can
    // (the embedding and the FFN's residual add normalise for the next layer).
    f.next_norm = m->layers[0].attn_norm;
    double t0 = model_stage_clock(mc); // the current stage's start (without a profile: 0, unused)
    run_tokens(&f, embed_job, hp->n_embd);
    model_stage_lap(mc, STAGE_ROW_OPS, &t0, 0);
    for (f.il = 0; f.il < hp->n_layer; f.il++) {
        const struct model_layer *l = f.layer = &m->layers[f.il];
        f.next_norm = f.il + 1 < hp->n_layer ? m->layers[f.il + 1].attn_norm : NULL;
        const struct kern_mat *qkv[] = {&l->wq, &l->wk, &l->wv};
        float *qkv_out[] = {w->q, w->k, w->v};
        const int64_t qkv_width[] = {qw, mc->kv.k_width, mc->kv.v_width};
        if (kern_matmul_rows_shared(&mc->kc, 3, qkv, w->xn, n, n_prompt, qkv_out, qkv_width, err)) goto done;
        model_stage_lap(mc, STAGE_QKV, &t0, mat_bytes(&l->wq) + mat_bytes(&l->wk) + mat_bytes(&l->wv));
        run_tokens(&f, qkv_job, qw + mc->kv.k_width + mc->kv.v_width);
        model_stage_lap(mc, STAGE_ROPE_KV, &t0, 0);
        run_attention(&f);
        model_stage_lap(mc, STAGE_ATTENTION, &t0, 0);
        if (kern_matmul_rows(&mc->kc, &l->wo, w->att, n, n_prompt, w->tmp, hp->n_embd, err)) goto done;
        model_stage_lap(mc, STAGE_ATTN_OUT, &t0, mat_bytes(&l->wo));
        run_tokens(&f, ffn_norm_job, hp->n_embd);
        model_stage_lap(mc, STAGE_ROW_OPS, &t0, 0);
        const struct kern_mat *gate_up[] = {&l->ffn_gate, &l->ffn_up};
        float *gate_up_out[] = {w->gate, w->up};
        const int64_t ff_width[] = {hp->n_ff, hp->n_ff};
        if (kern_matmul_rows_shared(&mc->kc, 2, gate_up, w->xn, n, n_prompt, gate_up_out, ff_width, err)) goto done;
        model_stage_lap(mc, STAGE_FFN_IN, &t0, mat_bytes(&l->ffn_gate) + mat_bytes(&l->ffn_up));
        run_tokens(&f, ffn_act_job, hp->n_ff);
        model_stage_lap(mc, STAGE_ROW_OPS, &t0, 0);
        if (kern_matmul_rows(&mc->kc, &l->ffn_down, w->gate, n, n_prompt, w->tmp, hp->n_embd, err)) goto done;
        model_stage_lap(mc, STAGE_FFN_DOWN, &t0, mat_bytes(&l->ffn_down));
        run_tokens(&f, ffn_out_job, hp->n_embd);
        model_stage_lap(mc, STAGE_ROW_OPS, &t0, 0);
    }
    if (f.n_out && (logits || b->hidden)) {
        if (f.n_out * hp->n_embd < SERIAL_VALUES) output_norm_job(&f, 0, 1);
        else pool_run(mc->pool, output_norm_job, &f);
        if (b->hidden) memcpy(b->hidden, w->out, (size_t)(f.n_out * hp->n_embd) * sizeof(float));
        model_stage_lap(mc, STAGE_ROW_OPS, &t0, 0);
    }
    if (f.n_out && logits) {
        if (kern_matmul_rows(&mc->kc, &m->output, w->out, f.n_out, b->all_prompt_rows ? f.n_out : 0, logits,
                             hp->n_vocab, err))
            goto done;
        model_stage_lap(mc, STAGE_OUTPUT, &t0, mat_bytes(&m->output));
        if (hp->logit_softcap > 0) {
            const float cap = hp->logit_softcap;
            for (int64_t i = 0; i < f.n_out * hp->n_vocab; i++) logits[i] = tanhf(logits[i] / cap) * cap;
        }
    }
    rc = (int)f.n_out;
done:
    if (rc < 0) // leave no half-written tokens behind
        for (int32_t i = 0; i < b->n; i++) kv_seq_rm(&mc->kv, b->seq[i], b->pos[i], b->pos[i] + 1);
    attn_plans_free(&f);
    free(views);
    free(out_rows);
    free(order_store);
    return rc;
}
