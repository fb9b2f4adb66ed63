// Loading: architecture flags from GGUF metadata, and every tensor bound by
// name with its type and shape checked, pointing into the mapping (no copies).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

struct arch_info {
    const char *name;
    enum model_arch arch;
};

static const struct arch_info ARCHS[] = {
    {"llama", MODEL_ARCH_LLAMA},
    {"qwen2", MODEL_ARCH_QWEN2},
    {"qwen3", MODEL_ARCH_QWEN3},
    {"gemma3", MODEL_ARCH_GEMMA3},
    {"bert", MODEL_ARCH_BERT},
    {"nomic-bert", MODEL_ARCH_NOMIC_BERT},
};

// Reads "<arch>.<suffix>" as an integer; required keys must be present and > 0.
static int get_arch_int(const struct model *m, const char *suffix, int64_t *out, bool required,
                        llm_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, suffix);
    int rc = gguf_get_int(&m->file, key, out, err);
    if (rc < 0) return -1;
    if (rc == 0) return required ? err_set(err, "missing metadata key '%s'", key) : 0;
    if (*out <= 0 || *out > (1 << 30))
        return err_set(err, "metadata key '%s' has out-of-range value %lld", key, (long long)*out);
    return 0;
}

static int get_arch_float(const struct model *m, const char *suffix, float *out, llm_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch_name, suffix);
    double v;
    int rc = gguf_get_float(&m->file, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (!isfinite(v)) return err_set(err, "metadata key '%s' is not finite", key);
        *out = (float)v;
    }
    return 0;
}

// "<arch>.pooling_type": how the model's embeddings are pooled (absent or none: the engine's default).
static int read_pooling(struct model *m, llm_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.pooling_type", m->hp.arch_name);
    int64_t v = 0;
    if (gguf_get_int(&m->file, key, &v, err) < 0) return -1;
    if (v < 0 || v > MODEL_POOL_LAST)
        return err_set(err, "metadata key '%s' = %lld: only none (0), mean (1), cls (2) and last (3) are supported",
                       key, (long long)v);
    m->hp.pooling = (enum model_pooling)v;
    return 0;
}

static int read_hparams(struct model *m, llm_err *err) {
    struct model_hparams *hp = &m->hp;
    struct gguf_str arch;
    int rc = gguf_get_str(&m->file, "general.architecture", &arch, err);
    if (rc < 0) return -1;
    if (rc == 0) return err_set(err, "missing metadata key 'general.architecture'");
    hp->arch_name = NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (gguf_str_eq(arch, ARCHS[i].name)) {
            hp->arch = ARCHS[i].arch;
            hp->arch_name = ARCHS[i].name;
        }
    if (!hp->arch_name) {
        char name[64];
        return err_set(err, "unsupported architecture '%s' (supported: llama, qwen2, qwen3, gemma3, bert, nomic-bert)",
                       gguf_str_copy(name, sizeof name, arch));
    }
    if (get_arch_int(m, "embedding_length", &hp->n_embd, true, err) ||
        get_arch_int(m, "block_count", &hp->n_layer, true, err) ||
        get_arch_int(m, "feed_forward_length", &hp->n_ff, true, err) ||
        get_arch_int(m, "attention.head_count", &hp->n_head, true, err))
        return -1;
    hp->n_head_kv = hp->n_head;
    hp->n_ctx_train = 2048;
    if (get_arch_int(m, "attention.head_count_kv", &hp->n_head_kv, false, err) ||
        get_arch_int(m, "context_length", &hp->n_ctx_train, false, err))
        return -1;
    hp->head_dim_k = hp->n_embd / hp->n_head;
    if (get_arch_int(m, "attention.key_length", &hp->head_dim_k, false, err)) return -1;
    hp->head_dim_v = hp->head_dim_k;
    if (get_arch_int(m, "attention.value_length", &hp->head_dim_v, false, err)) return -1;
    hp->n_rot = hp->head_dim_k;
    if (get_arch_int(m, "rope.dimension_count", &hp->n_rot, false, err)) return -1;
    if (hp->n_head % hp->n_head_kv != 0)
        return err_set(err, "attention.head_count %lld is not a multiple of head_count_kv %lld",
                       (long long)hp->n_head, (long long)hp->n_head_kv);
    if (hp->head_dim_k > KERN_MAX_HEAD_DIM || hp->head_dim_v > KERN_MAX_HEAD_DIM)
        return err_set(err, "head dimension %lld exceeds the supported %d",
                       (long long)hp->head_dim_k, KERN_MAX_HEAD_DIM);
    if (hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
        return err_set(err, "rope.dimension_count %lld is odd or larger than the head (%lld)",
                       (long long)hp->n_rot, (long long)hp->head_dim_k);

    hp->norm_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_base_swa = 10000.0f;
    float rope_factor = 1.0f;
    if (get_arch_float(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, err) ||
        get_arch_float(m, "rope.freq_base", &hp->rope_base, err) ||
        get_arch_float(m, "rope.freq_base_swa", &hp->rope_base_swa, err) ||
        get_arch_float(m, "rope.scaling.factor", &rope_factor, err) ||
        get_arch_float(m, "final_logit_softcapping", &hp->logit_softcap, err))
        return -1;
    struct gguf_str scaling;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    rc = gguf_get_str(&m->file, key, &scaling, err);
    if (rc < 0) return -1;
    bool linear = rc == 0 || gguf_str_eq(scaling, "linear") || gguf_str_eq(scaling, "none");
    if (!linear) {
        char name[32];
        return err_set(err, "rope scaling '%s' is not supported yet (only linear)",
                       gguf_str_copy(name, sizeof name, scaling));
    }
    if (rope_factor <= 0) return err_set(err, "%s.rope.scaling.factor must be positive", hp->arch_name);
    hp->rope_freq_scale = (rc == 1 && gguf_str_eq(scaling, "none")) ? 1.0f : 1.0f / rope_factor;

    hp->act = MODEL_ACT_SILU;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
    switch (hp->arch) {
    case MODEL_ARCH_LLAMA: break;
    case MODEL_ARCH_QWEN2: hp->rope_neox = true; hp->qkv_bias = true; break;
    case MODEL_ARCH_QWEN3: hp->rope_neox = true; hp->qk_norm = true; break;
    case MODEL_ARCH_GEMMA3:
        hp->rope_neox = hp->qk_norm = hp->post_norms = hp->embed_scale = hp->scale_q = true;
        hp->act = MODEL_ACT_GELU;
        if (hp->n_layer == 62) // Gemma 3 27B scales by the embedding width per head
            hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
        if (get_arch_int(m, "attention.sliding_window", &hp->n_swa, false, err)) return -1;
        break;
    case MODEL_ARCH_BERT:
    case MODEL_ARCH_NOMIC_BERT:
        hp->encoder = true;
        hp->act = hp->arch == MODEL_ARCH_BERT ? MODEL_ACT_GELU : MODEL_ACT_SILU; // nomic: SwiGLU
        hp->rope_neox = true; // nomic-bert rotates q/k (NEOX pairs); bert has absolute positions
        hp->norm_eps = 1e-12f;
        if (get_arch_float(m, "attention.layer_norm_epsilon", &hp->norm_eps, err)) return -1;
        break;
    }
    return read_pooling(m, err);
}

// Binds tensor `name` as a matrix of rows x cols (any supported weight type).
static int bind_mat(struct model *m, const char *name, int64_t cols, int64_t rows, bool required,
                    struct kern_mat *out, llm_err *err) {
    memset(out, 0, sizeof *out);
    const struct gguf_tensor *t = gguf_find_tensor(&m->file, name);
    if (!t) return required ? err_set(err, "missing tensor '%s'", name) : 0;
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows)
        return err_set(err, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)cols, (long long)rows);
    const struct quant_traits *tr = quant_get(t->type);
    if (!tr || !tr->vec_dot) {
        const char *tn = gguf_type_name(t->type);
        return err_set(err, "tensor '%s' has weight type %s, which llmfile does not support yet", name,
                       tn ? tn : "unknown");
    }
    *out = (struct kern_mat){t->data, t->type, rows, cols, quant_row_bytes(t->type, cols), false};
    m->n_params += (uint64_t)(rows * cols);
    return 0;
}

// Binds a float32 vector of n values (norm weights, biases).
static int bind_vec(struct model *m, const char *name, int64_t n, bool required, const float **out,
                    llm_err *err) {
    *out = NULL;
    const struct gguf_tensor *t = gguf_find_tensor(&m->file, name);
    if (!t) return required ? err_set(err, "missing tensor '%s'", name) : 0;
    if (t->type != QUANT_F32)
        return err_set(err, "tensor '%s' must be f32, found %s", name, gguf_type_name(t->type));
    int64_t count = 1;
    for (int d = 0; d < t->n_dims; d++) count *= t->ne[d];
    if (count != n)
        return err_set(err, "tensor '%s' has %lld values, expected %lld", name, (long long)count,
                       (long long)n);
    if ((uintptr_t)t->data % sizeof(float))
        return err_set(err, "tensor '%s' data is not 4-byte aligned", name);
    *out = t->data;
    m->n_params += (uint64_t)n;
    return 0;
}

static int bind_layer(struct model *m, int il, llm_err *err) {
    const struct model_hparams *hp = &m->hp;
    struct model_layer *l = &m->layers[il];
    const int64_t e = hp->n_embd, qw = hp->n_head * hp->head_dim_k, kw = hp->n_head_kv * hp->head_dim_k,
                  vw = hp->n_head_kv * hp->head_dim_v, ow = hp->n_head * hp->head_dim_v;
    char name[96];
#define T(suffix) (snprintf(name, sizeof name, "blk.%d.%s", il, suffix), name)
    if (bind_vec(m, T("attn_norm.weight"), e, true, &l->attn_norm, err) ||
        bind_mat(m, T("attn_q.weight"), e, qw, true, &l->wq, err) ||
        bind_mat(m, T("attn_k.weight"), e, kw, true, &l->wk, err) ||
        bind_mat(m, T("attn_v.weight"), e, vw, true, &l->wv, err) ||
        bind_mat(m, T("attn_output.weight"), ow, e, true, &l->wo, err) ||
        bind_vec(m, T("attn_q.bias"), qw, hp->qkv_bias, &l->bq, err) ||
        bind_vec(m, T("attn_k.bias"), kw, hp->qkv_bias, &l->bk, err) ||
        bind_vec(m, T("attn_v.bias"), vw, hp->qkv_bias, &l->bv, err) ||
        bind_vec(m, T("attn_q_norm.weight"), hp->head_dim_k, hp->qk_norm, &l->q_norm, err) ||
        bind_vec(m, T("attn_k_norm.weight"), hp->head_dim_k, hp->qk_norm, &l->k_norm, err) ||
        bind_vec(m, T("post_attention_norm.weight"), e, hp->post_norms, &l->post_attn_norm, err) ||
        bind_vec(m, T("ffn_norm.weight"), e, true, &l->ffn_norm, err) ||
        bind_mat(m, T("ffn_gate.weight"), e, hp->n_ff, true, &l->ffn_gate, err) ||
        bind_mat(m, T("ffn_up.weight"), e, hp->n_ff, true, &l->ffn_up, err) ||
        bind_mat(m, T("ffn_down.weight"), hp->n_ff, e, true, &l->ffn_down, err) ||
        bind_vec(m, T("post_ffw_norm.weight"), e, hp->post_norms, &l->post_ffn_norm, err))
        return -1;
#undef T
    return 0;
}

// The tensors of a BERT-style encoder, named as llama.cpp's converter writes them.
static int bind_encoder(struct model *m, llm_err *err) {
    const struct model_hparams *hp = &m->hp;
    struct model_encoder *enc = &m->enc;
    const int64_t e = hp->n_embd;
    const bool nomic = hp->arch == MODEL_ARCH_NOMIC_BERT;
    if (hp->n_head_kv != hp->n_head || hp->head_dim_k * hp->n_head != e || hp->head_dim_v != hp->head_dim_k)
        return err_set(err, "%s: expected %lld heads of width %lld for n_embd %lld", hp->arch_name,
                       (long long)hp->n_head, (long long)(e / hp->n_head), (long long)e);
    const struct gguf_tensor *types = gguf_find_tensor(&m->file, "token_types.weight");
    if (bind_mat(m, "position_embd.weight", e, hp->n_ctx_train, !nomic, &enc->pos_embd, err) ||
        bind_mat(m, "token_types.weight", e, types && types->n_dims == 2 ? types->ne[1] : 1, false,
                 &enc->type_embd, err) ||
        bind_vec(m, "token_embd_norm.weight", e, true, &enc->embd_norm, err) ||
        bind_vec(m, "token_embd_norm.bias", e, true, &enc->embd_norm_b, err))
        return -1;
    if ((enc->pos_embd.data && !quant_get(enc->pos_embd.type)->to_f32) ||
        (enc->type_embd.data && !quant_get(enc->type_embd.type)->to_f32))
        return err_set(err, "position_embd/token_types weight type cannot be dequantized");
    enc->n_pos = hp->n_ctx_train;
    enc->layers = calloc((size_t)hp->n_layer, sizeof *enc->layers);
    if (!enc->layers) return err_set(err, "out of memory");
    char name[96];
    for (int il = 0; il < hp->n_layer; il++) {
        struct model_layer *l = &m->layers[il];
        struct model_enc_layer *el = &enc->layers[il];
#define T(suffix) (snprintf(name, sizeof name, "blk.%d.%s", il, suffix), name)
        // One fused q|k|v matrix if the file has it, else three.
        if (bind_mat(m, T("attn_qkv.weight"), e, 3 * e, false, &el->wqkv, err) ||
            bind_vec(m, T("attn_qkv.bias"), 3 * e, false, &el->bqkv, err))
            return -1;
        const bool sep = !el->wqkv.data;
        if (bind_mat(m, T("attn_q.weight"), e, e, sep, &l->wq, err) ||
            bind_mat(m, T("attn_k.weight"), e, e, sep, &l->wk, err) ||
            bind_mat(m, T("attn_v.weight"), e, e, sep, &l->wv, err) ||
            bind_vec(m, T("attn_q.bias"), e, false, &l->bq, err) ||
            bind_vec(m, T("attn_k.bias"), e, false, &l->bk, err) ||
            bind_vec(m, T("attn_v.bias"), e, false, &l->bv, err) ||
            bind_mat(m, T("attn_output.weight"), e, e, true, &l->wo, err) ||
            bind_vec(m, T("attn_output.bias"), e, false, &el->bo, err) ||
            bind_vec(m, T("attn_output_norm.weight"), e, true, &el->attn_out_norm, err) ||
            bind_vec(m, T("attn_output_norm.bias"), e, true, &el->attn_out_norm_b, err) ||
            bind_mat(m, T("ffn_gate.weight"), e, hp->n_ff, nomic, &l->ffn_gate, err) ||
            bind_mat(m, T("ffn_up.weight"), e, hp->n_ff, true, &l->ffn_up, err) ||
            bind_vec(m, T("ffn_up.bias"), hp->n_ff, false, &el->ffn_up_b, err) ||
            bind_mat(m, T("ffn_down.weight"), hp->n_ff, e, true, &l->ffn_down, err) ||
            bind_vec(m, T("ffn_down.bias"), e, false, &el->ffn_down_b, err) ||
            bind_vec(m, T("layer_output_norm.weight"), e, true, &el->out_norm, err) ||
            bind_vec(m, T("layer_output_norm.bias"), e, true, &el->out_norm_b, err))
            return -1;
#undef T
        if (!nomic) l->ffn_gate.data = NULL; // bert's FFN is up -> GELU -> down
    }
    return 0;
}

// Which layers use the sliding window: "<arch>.attention.sliding_window_pattern"
// as a per-layer bool array, or a period n (every n-th layer global; default 6).
static int read_swa_layers(struct model *m, llm_err *err) {
    const struct model_hparams *hp = &m->hp;
    if (hp->n_swa <= 0) return 0;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", hp->arch_name);
    const struct gguf_kv *kv = gguf_find_kv(&m->file, key);
    int64_t period = 6;
    if (kv && kv->type == GGUF_TYPE_ARRAY) {
        struct gguf_arr a;
        if (gguf_get_arr(&m->file, key, &a, err) < 0) return -1;
        if (a.n != (uint64_t)hp->n_layer) return err_set(err, "'%s' has %llu entries for %lld layers",
                                                         key, (unsigned long long)a.n, (long long)hp->n_layer);
        for (int64_t il = 0; il < hp->n_layer; il++) m->layers[il].swa = gguf_arr_int(&a, (uint64_t)il) != 0;
        return 0;
    }
    if (kv && gguf_get_int(&m->file, key, &period, err) < 0) return -1;
    if (period < 0) return err_set(err, "'%s' is negative", key);
    for (int64_t il = 0; il < hp->n_layer; il++)
        m->layers[il].swa = period == 0 || il % period < period - 1;
    return 0;
}

int model_load(struct model *m, const char *path, enum mapfile_mode mode, llm_err *err) {
    return model_load_progress(m, path, mode, NULL, err);
}

int model_load_progress(struct model *m, const char *path, enum mapfile_mode mode, const struct progress *progress,
                        llm_err *err) {
    memset(m, 0, sizeof *m);
    if (gguf_open_progress(&m->file, path, mode, progress, err)) return -1;
    if (read_hparams(m, err)) goto fail;
    struct model_hparams *hp = &m->hp;
    const struct gguf_tensor *emb = gguf_find_tensor(&m->file, "token_embd.weight");
    if (!emb) {
        err_set(err, "missing tensor 'token_embd.weight'");
        goto fail;
    }
    hp->n_vocab = emb->ne[1];
    if (bind_mat(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err) ||
        (!hp->encoder && bind_vec(m, "output_norm.weight", hp->n_embd, true, &m->output_norm, err)) ||
        (!hp->encoder && bind_mat(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err)))
        goto fail;
    if (!m->output.data) m->output = m->tok_embd; // tied embeddings (encoders: unused)
    if (!quant_get(m->tok_embd.type)->to_f32) {
        err_set(err, "token_embd.weight type cannot be dequantized");
        goto fail;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (hp->encoder) {
        if (bind_encoder(m, err)) goto fail;
    } else {
        for (int il = 0; il < hp->n_layer; il++)
            if (bind_layer(m, il, err)) goto fail;
    }
    if (read_swa_layers(m, err)) goto fail;
    return 0;
fail:
    err_prefix(err, "%s", path);
    model_free(m);
    return -1;
}

// A matrix the forward pass reads through kern_matmul, and otherwise only
// through kern_mat_row_f32, which may be interleaved: not the encoders'
// position and type embeddings.
static bool matmul_only(const struct model *m, const struct kern_mat *w) {
    return w->data && w->data != m->enc.pos_embd.data && w->data != m->enc.type_embd.data &&
           (w->data != m->tok_embd.data || w == &m->output);
}

// The matrices of m that model_interleave rearranges for level o, in `out`
// (room for 1 + 8 per layer); returns how many.
static int interleave_list(struct model *m, const struct kern_ops *o, struct kern_mat **out) {
    int count = 0;
    for (int64_t il = -1; il < m->hp.n_layer; il++) {
        struct kern_mat *mats[8] = {&m->output}; // il = -1: the output matrix (decoders)
        int n = m->hp.encoder ? 0 : 1;
        if (il >= 0) {
            struct model_layer *l = &m->layers[il];
            struct kern_mat *lm[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_gate, &l->ffn_up, &l->ffn_down};
            for (n = 0; n < 7; n++) mats[n] = lm[n];
            if (m->hp.encoder && m->enc.layers) mats[n++] = &m->enc.layers[il].wqkv;
        }
        for (int i = 0; i < n; i++)
            if (matmul_only(m, mats[i]) && kern_can_interleave(o, mats[i])) out[count++] = mats[i];
    }
    return count;
}

int model_interleave(struct model *m, const struct kern_ops *o, const struct progress *progress, llm_err *err) {
    if (!m->file.map.copied) return 0; // the file's own pages are read-only
    struct kern_mat **list = malloc(sizeof *list * (size_t)(1 + 8 * m->hp.n_layer));
    if (!list) return err_set(err, "out of memory");
    const int n = interleave_list(m, o, list);
    uint64_t total = 0, done = 0;
    for (int i = 0; i < n; i++) total += (uint64_t)list[i]->rows * list[i]->row_bytes;
    if (n > 0 && mapfile_set_writable(&m->file.map, true, err)) {
        free(list);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct kern_mat *w = list[i];
        if (kern_interleave(w, (void *)w->data, err)) {
            mapfile_set_writable(&m->file.map, false, NULL);
            free(list);
            return -1;
        }
        if (w == &m->output && w->data == m->tok_embd.data) m->tok_embd = *w; // tied: the same rows
        done += (uint64_t)w->rows * w->row_bytes;
        progress_report(progress, "arranging", done, total);
    }
    free(list);
    if (n > 0 && mapfile_set_writable(&m->file.map, false, err)) return -1;
    return n;
}

void model_free(struct model *m) {
    free(m->layers);
    free(m->enc.layers);
    gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}
