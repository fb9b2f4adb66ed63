#include "engine.h"

#include "base/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct engine {
    struct engine_params p;
    struct model model;
    struct tok_vocab *vocab;
    struct pool *pool;
    struct model_ctx mc;
    float *logits;           // [n_logit_rows][n_vocab]
    int64_t logits_cap;      // rows
    int32_t *logit_row;      // [batch entry] -> row in logits, or -1
    int32_t logit_row_cap;
};

int engine_load(struct engine **out, const struct engine_params *p, llm_err *err) {
    struct engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, "out of memory");
    e->p = *p;
    if (e->p.n_threads <= 0) e->p.n_threads = cpu_physical_cores();
    if (e->p.n_seq_max <= 0) e->p.n_seq_max = 1;
    if (e->p.n_batch <= 0) e->p.n_batch = 512;
    if (model_load_progress(&e->model, p->model_path, p->mmap_only ? MAPFILE_MAP : MAPFILE_AUTO, &p->progress, err)) {
        free(e);
        return -1;
    }
    const struct model_hparams *hp = &e->model.hp;
    if (e->p.n_ctx <= 0) e->p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (hp->encoder && e->p.fit_encoder_ctx && e->p.n_ctx > e->model.enc.n_pos) e->p.n_ctx = e->model.enc.n_pos;
    if (hp->encoder && e->p.n_ctx > e->model.enc.n_pos) {
        err_set(err, "%s: context %lld exceeds the %lld positions of this encoder", p->model_path,
                (long long)e->p.n_ctx, (long long)e->model.enc.n_pos);
        goto fail;
    }
    if (e->p.pooling == MODEL_POOL_DEFAULT) e->p.pooling = hp->pooling;
    if (e->p.pooling == MODEL_POOL_DEFAULT) e->p.pooling = MODEL_POOL_MEAN;
    if (e->p.pooling < MODEL_POOL_MEAN || e->p.pooling > MODEL_POOL_LAST) {
        err_set(err, "pooling type %d is not mean, cls or last", (int)e->p.pooling);
        goto fail;
    }
    struct tok_load_opts opts = {.allow_unknown_pre = p->allow_unknown_pre};
    if (tok_load_ex(&e->vocab, &e->model.file, &opts, err)) {
        err_prefix(err, "%s", p->model_path);
        goto fail;
    }
    if (tok_n_vocab(e->vocab) > hp->n_vocab) {
        err_set(err, "%s: tokenizer has %d tokens but token_embd.weight only %lld rows", p->model_path,
                tok_n_vocab(e->vocab), (long long)hp->n_vocab);
        goto fail;
    }
    struct cpu_features cpu;
    cpu_detect(&cpu);
    const struct kern_level *level;
    const char *cap = e->p.cpu_level ? e->p.cpu_level : getenv("LLMFILE_CPU_LEVEL");
    if (kern_select(&cpu, cap, &level, err)) goto fail;
    if (model_interleave(&e->model, level->ops(), &p->progress, err) < 0) goto fail;
    if (pool_create(&e->pool, e->p.n_threads, err)) goto fail;
    if (model_ctx_init(&e->mc, &e->model, level->ops(), e->pool, e->p.n_ctx, e->p.n_seq_max, err))
        goto fail;
    *out = e;
    return 0;
fail:
    engine_free(e);
    return -1;
}

int engine_load_vocab(struct engine **out, const char *path, bool allow_unknown_pre, llm_err *err) {
    struct engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, "out of memory");
    if (gguf_open(&e->model.file, path, err)) {
        free(e);
        return -1;
    }
    struct tok_load_opts opts = {.allow_unknown_pre = allow_unknown_pre};
    if (tok_load_ex(&e->vocab, &e->model.file, &opts, err)) {
        err_prefix(err, "%s", path);
        engine_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void engine_free(struct engine *e) {
    if (!e) return;
    model_ctx_free(&e->mc);
    pool_destroy(e->pool);
    tok_free(e->vocab);
    model_free(&e->model);
    free(e->logits);
    free(e->logit_row);
    free(e);
}

const struct model_hparams *engine_hparams(const struct engine *e) { return &e->model.hp; }
const struct tok_vocab *engine_vocab(const struct engine *e) { return e->vocab; }
const struct model *engine_model(const struct engine *e) { return &e->model; }
int64_t engine_n_ctx(const struct engine *e) { return e->p.n_ctx; }
int engine_n_threads(const struct engine *e) { return e->p.n_threads; }
const char *engine_cpu_level(const struct engine *e) { return e->mc.kc.ops ? e->mc.kc.ops->level : "none"; }
void engine_set_profile(struct engine *e, struct model_profile *p) { e->mc.profile = p; }

int engine_decode(struct engine *e, const struct engine_batch *b, llm_err *err) {
    if (!e->pool) return err_set(err, "this engine holds only a vocabulary");
    const int64_t n_vocab = e->model.hp.n_vocab;
    if (b->n > e->logit_row_cap) {
        int32_t *rows = realloc(e->logit_row, (size_t)b->n * sizeof *rows);
        if (!rows) return err_set(err, "out of memory");
        e->logit_row = rows;
        e->logit_row_cap = b->n;
    }
    int64_t n_rows = 0;
    for (int32_t i = 0; i < b->n; i++) e->logit_row[i] = b->logits[i] ? (int32_t)n_rows++ : -1;
    if (n_rows > e->logits_cap) {
        float *l = realloc(e->logits, (size_t)n_rows * (size_t)n_vocab * sizeof(float));
        if (!l) return err_set(err, "out of memory for %lld rows of logits", (long long)n_rows);
        e->logits = l;
        e->logits_cap = n_rows;
    }
    int64_t row = 0;
    for (int32_t start = 0; start < b->n; start += e->p.n_batch) {
        const int32_t n = b->n - start < e->p.n_batch ? b->n - start : e->p.n_batch;
        struct model_batch mb = {n, b->token + start, b->pos + start, b->seq + start, b->logits + start, NULL, false};
        int got = model_decode(&e->mc, &mb, e->logits + row * n_vocab, err);
        if (got < 0) return -1;
        row += got;
    }
    return 0;
}

const float *engine_logits(const struct engine *e, int32_t i) {
    if (i < 0 || i >= e->logit_row_cap || e->logit_row[i] < 0) return NULL;
    return e->logits + (size_t)e->logit_row[i] * (size_t)e->model.hp.n_vocab;
}

void engine_seq_rm(struct engine *e, int32_t seq, int32_t p0, int32_t p1) { kv_seq_rm(&e->mc.kv, seq, p0, p1); }
int32_t engine_seq_pos_max(const struct engine *e, int32_t seq) { return kv_seq_pos_max(&e->mc.kv, seq); }

// Tokenizes text, or segs if of_segments (len: their total bytes), into a buffer
// that grows until the ids fit: first about one id per byte, then the count the
// tokenizer asked for.
static int tokenize_grow(const struct engine *e, const char *text, bool of_segments, const struct tok_segment *segs,
                         size_t n_segs, size_t len, bool add_special, bool parse_special, int32_t **out,
                         llm_err *err) {
    int cap = (int)(len < 1 << 20 ? len : 1 << 20) + 8;
    for (;;) {
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) return err_set(err, "out of memory tokenizing %zu bytes", len);
        int n = of_segments ? tok_encode_segments(e->vocab, segs, n_segs, add_special, ids, cap, err)
                           : tok_encode(e->vocab, text, len, add_special, parse_special, ids, cap, err);
        if (n < 0 || n <= cap) {
            if (n < 0) free(ids);
            else *out = ids;
            return n;
        }
        free(ids);
        cap = n;
    }
}

int engine_tokenize(const struct engine *e, const char *text, size_t len, bool add_special,
                    bool parse_special, int32_t **out, llm_err *err) {
    return tokenize_grow(e, text, false, NULL, 0, len, add_special, parse_special, out, err);
}

int engine_tokenize_segments(const struct engine *e, const struct tok_segment *segs, size_t n_segs,
                             bool add_special, int32_t **out, llm_err *err) {
    size_t len = 0;
    for (size_t i = 0; i < n_segs; i++) len += segs[i].len;
    return tokenize_grow(e, NULL, true, segs, n_segs, len, add_special, false, out, err);
}

int64_t engine_n_embd(const struct engine *e) { return e->model.hp.n_embd; }
bool engine_is_encoder(const struct engine *e) { return e->model.hp.encoder; }
enum model_pooling engine_pooling(const struct engine *e) { return e->p.pooling; }

const char *engine_pooling_name(enum model_pooling p) {
    switch (p) {
    case MODEL_POOL_MEAN: return "mean";
    case MODEL_POOL_CLS: return "cls";
    case MODEL_POOL_LAST: return "last";
    default: return "default";
    }
}

int64_t engine_embed_max_tokens(const struct engine *e) { return e->p.n_ctx; }

// Runs sequences [s0, s1) of engine_embed_batch in one forward pass and pools them.
static int embed_pass(struct engine *e, const int32_t *const *tokens, const int32_t *n_tokens, int32_t s0,
                      int32_t s1, int64_t total, float *out, llm_err *err) {
    const int64_t n_embd = e->model.hp.n_embd;
    const bool decoder = !e->model.hp.encoder;
    int32_t *ints = malloc((size_t)total * 3 * sizeof(int32_t));
    bool *want = malloc((size_t)total * sizeof(bool));
    float *hidden = malloc((size_t)(total * n_embd) * sizeof(float));
    if (!ints || !want || !hidden) {
        free(ints), free(want), free(hidden);
        return err_set(err, "out of memory embedding %lld tokens", (long long)total);
    }
    int32_t *tok = ints, *pos = ints + total, *seq = ints + 2 * total;
    int64_t i = 0;
    for (int32_t s = s0; s < s1; s++)
        for (int32_t j = 0; j < n_tokens[s]; j++, i++) {
            tok[i] = tokens[s][j];
            pos[i] = j;
            seq[i] = s - s0;
            want[i] = true;
        }
    struct model_batch mb = {(int32_t)total, tok, pos, seq, want, hidden, .all_prompt_rows = true};
    int rc;
    if (decoder) { // the cache must hold only this pass's sequences, and keeps nothing after
        for (int32_t s = 0; s < s1 - s0; s++) kv_seq_rm(&e->mc.kv, s, 0, -1);
        rc = model_decode(&e->mc, &mb, NULL, err) < 0 ? -1 : 0;
        for (int32_t s = 0; s < s1 - s0; s++) kv_seq_rm(&e->mc.kv, s, 0, -1);
    } else {
        rc = model_encode(&e->mc, &mb, hidden, err);
    }
    if (rc == 0) {
        const float *h = hidden;
        for (int32_t s = s0; s < s1; s++) {
            model_pool(e->p.pooling, h, n_tokens[s], n_embd, out + (size_t)s * (size_t)n_embd);
            h += (size_t)n_tokens[s] * (size_t)n_embd;
        }
    }
    free(ints), free(want), free(hidden);
    return rc;
}

int engine_embed_batch(struct engine *e, const int32_t *const *tokens, const int32_t *n_tokens, int32_t n_seqs,
                       bool normalize, float *out, llm_err *err) {
    if (!e->pool) return err_set(err, "this engine holds only a vocabulary");
    if (n_seqs <= 0) return err_set(err, "nothing to embed");
    const int64_t max = engine_embed_max_tokens(e), n_embd = e->model.hp.n_embd;
    for (int32_t s = 0; s < n_seqs; s++) {
        if (n_tokens[s] <= 0) return err_set(err, "input %d has no tokens", s);
        if (n_tokens[s] > max)
            return err_set(err, "input %d is %d tokens, more than the %lld this model %s", s, n_tokens[s],
                           (long long)max, e->model.hp.encoder ? "has positions for" : "context holds (raise -c)");
    }
    // Whole sequences per pass (attention sees the whole sequence at once), as many
    // as fit n_batch tokens; a decoder also needs a cache sequence id for each.
    const bool decoder = !e->model.hp.encoder;
    for (int32_t s0 = 0; s0 < n_seqs;) {
        int64_t total = n_tokens[s0];
        int32_t s1 = s0 + 1;
        while (s1 < n_seqs && total + n_tokens[s1] <= e->p.n_batch &&
               (!decoder || (s1 - s0 < e->mc.kv.n_seq_max && total + n_tokens[s1] <= e->mc.kv.n_cells)))
            total += n_tokens[s1++];
        if (embed_pass(e, tokens, n_tokens, s0, s1, total, out, err)) return -1;
        s0 = s1;
    }
    if (normalize)
        for (int32_t s = 0; s < n_seqs; s++) {
            float *v = out + (size_t)s * (size_t)n_embd;
            double sum = 0;
            for (int64_t d = 0; d < n_embd; d++) sum += (double)v[d] * v[d];
            if (sum > 0)
                for (int64_t d = 0; d < n_embd; d++) v[d] = (float)(v[d] / sqrt(sum));
        }
    return 0;
}

int engine_embed(struct engine *e, const int32_t *tokens, int32_t n, float *out, bool normalize, llm_err *err) {
    return engine_embed_batch(e, &tokens, &n, 1, normalize, out, err);
}

int engine_batch_init(struct engine_batch *b, int32_t cap, llm_err *err) {
    memset(b, 0, sizeof *b);
    b->token = malloc((size_t)cap * sizeof *b->token);
    b->pos = malloc((size_t)cap * sizeof *b->pos);
    b->seq = malloc((size_t)cap * sizeof *b->seq);
    b->logits = malloc((size_t)cap * sizeof *b->logits);
    if (!b->token || !b->pos || !b->seq || !b->logits) {
        engine_batch_free(b);
        return err_set(err, "out of memory for a batch of %d", cap);
    }
    b->cap = cap;
    return 0;
}

void engine_batch_free(struct engine_batch *b) {
    free(b->token);
    free(b->pos);
    free(b->seq);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

void engine_batch_clear(struct engine_batch *b) { b->n = 0; }

int engine_batch_add(struct engine_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits) {
    if (b->n >= b->cap) return -1;
    b->token[b->n] = token;
    b->pos[b->n] = pos;
    b->seq[b->n] = seq;
    b->logits[b->n] = logits;
    b->n++;
    return 0;
}
