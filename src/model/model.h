// model/: a GGUF decoder model bound to its tensors, its KV cache, and the
// batched forward pass. One decoder serves every architecture; they differ by
// the flags in model_hparams, not by copies of the forward pass.
#ifndef LLMFILE_MODEL_MODEL_H
#define LLMFILE_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "kern/kern.h"

enum model_arch { MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3, MODEL_ARCH_GEMMA3, MODEL_ARCH_BERT,
                  MODEL_ARCH_NOMIC_BERT };

enum model_act { MODEL_ACT_SILU, MODEL_ACT_GELU };

// How an embedding is made from a sequence's final hidden states; the values
// 1..3 are GGUF's <arch>.pooling_type (llama_pooling_type).
enum model_pooling {
    MODEL_POOL_DEFAULT = 0, // not named by the file (or "none"): the engine picks mean
    MODEL_POOL_MEAN = 1,
    MODEL_POOL_CLS = 2,     // first token
    MODEL_POOL_LAST = 3,    // last token
};

struct model_hparams {
    enum model_arch arch;
    const char *arch_name;  // as in general.architecture
    int64_t n_vocab;
    int64_t n_ctx_train;
    int64_t n_embd;
    int64_t n_layer;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim_k;     // per-head key/query width
    int64_t head_dim_v;     // per-head value width
    int64_t n_rot;          // rotated dimensions per head (<= head_dim_k)
    int64_t n_ff;
    float norm_eps;
    float rope_base;        // global layers
    float rope_base_swa;    // sliding-window layers
    float rope_freq_scale;  // 1/linear scaling factor
    bool rope_neox;         // rotate (i, i+n/2) pairs instead of (2i, 2i+1)
    bool qkv_bias;          // qwen2
    bool qk_norm;           // qwen3, gemma3: RMSNorm on each q/k head
    bool post_norms;        // gemma3: RMSNorm after attention and after FFN
    bool embed_scale;       // gemma3: embeddings times sqrt(n_embd)
    bool scale_q;           // gemma3: q scaled before the product (else the scores are)
    enum model_act act;
    float attn_scale;       // multiplies q.k
    float logit_softcap;    // 0 = none
    int64_t n_swa;          // sliding window (0 = none)
    bool encoder;           // bert, nomic-bert: attention over the whole sequence, no KV cache (encoder.c)
    enum model_pooling pooling; // <arch>.pooling_type
};

struct model_layer {
    const float *attn_norm;      // [n_embd]
    struct kern_mat wq;          // [n_head*head_dim_k][n_embd]
    struct kern_mat wk;          // [n_head_kv*head_dim_k][n_embd]
    struct kern_mat wv;          // [n_head_kv*head_dim_v][n_embd]
    struct kern_mat wo;          // [n_embd][n_head*head_dim_v]
    const float *bq, *bk, *bv;   // biases [rows of wq/wk/wv] or NULL
    const float *q_norm, *k_norm;// [head_dim_k] or NULL
    const float *post_attn_norm; // [n_embd] or NULL
    const float *ffn_norm;       // [n_embd]
    struct kern_mat ffn_gate;    // [n_ff][n_embd]
    struct kern_mat ffn_up;      // [n_ff][n_embd]
    struct kern_mat ffn_down;    // [n_embd][n_ff]
    const float *post_ffn_norm;  // [n_embd] or NULL
    bool swa;                    // sliding-window layer
};

// What an encoder has besides model_layer's q/k/v/o (with biases), ffn_up/ffn_down
// (and ffn_gate: nomic-bert's SwiGLU): LayerNorms with biases, FFN biases, and
// optionally one fused q|k|v projection instead of model_layer's wq/wk/wv.
struct model_enc_layer {
    struct kern_mat wqkv;                    // [3*n_embd][n_embd] rows q, k, v (data NULL: separate)
    const float *bqkv;                       // [3*n_embd] or NULL
    const float *bo;                         // [n_embd] attn_output bias or NULL
    const float *attn_out_norm, *attn_out_norm_b; // [n_embd] LayerNorm after attention + residual
    const float *ffn_up_b;                   // [n_ff] or NULL
    const float *ffn_down_b;                 // [n_embd] or NULL
    const float *out_norm, *out_norm_b;      // [n_embd] LayerNorm after FFN + residual
};

struct model_encoder {
    struct kern_mat pos_embd;                // [n_ctx_train][n_embd] absolute positions (bert; nomic-bert
                                             // rotates q/k instead: data NULL)
    int64_t n_pos;                           // positions a sequence may use
    struct kern_mat type_embd;               // [n_token_types][n_embd]; row 0 added to every token (data NULL: none)
    const float *embd_norm, *embd_norm_b;    // [n_embd] LayerNorm of the summed embeddings
    struct model_enc_layer *layers;          // [n_layer]
};

struct model {
    struct gguf_file file;       // owns the mapping every weight points into
    struct model_hparams hp;
    struct kern_mat tok_embd;    // [n_vocab][n_embd]
    const float *output_norm;    // [n_embd] (decoders)
    struct kern_mat output;      // [n_vocab][n_embd] (may be tok_embd; decoders)
    struct model_layer *layers;  // [n_layer]
    struct model_encoder enc;    // hp.encoder only
    uint64_t n_params;
};

// mode: how the file is held (base/mapfile.h; MAPFILE_AUTO copies small models onto huge pages).
int  model_load(struct model *m, const char *path, enum mapfile_mode mode, llm_err *err);
// The same, reporting the copy's progress (base/progress.h).
int  model_load_progress(struct model *m, const char *path, enum mapfile_mode mode, const struct progress *progress,
                         llm_err *err);
void model_free(struct model *m);
// Interleaves, in the copy of a copied (not mapped) file, the matrices level o
// has interleaved kernels for (kern_interleave: same bytes rearranged, once;
// ~0.1 s per GB), reporting "arranging" in bytes of them. Returns how many, or
// -1 with err.
int  model_interleave(struct model *m, const struct kern_ops *o, const struct progress *progress, llm_err *err);

// ---- KV cache ---------------------------------------------------------------
// A pool of cells; each holds one token's keys and values for every layer and
// belongs to one sequence. Several sequences share the pool (server slots).
struct kv_cache {
    int64_t n_cells;
    int64_t n_layer;
    int64_t n_head_kv;
    int64_t head_dim_k, head_dim_v;
    int64_t k_width;       // n_head_kv*head_dim_k
    int64_t v_width;       // n_head_kv*head_dim_v
    // Head-major, so that one KV head's keys (or values) of a layer are one
    // contiguous stream: a thread attending with that head reads no other head's
    // lines (cell-major rows mixed the heads of other threads into its reads).
    fp16_t *k;             // [n_layer][n_head_kv][n_cells][head_dim_k]
    fp16_t *v;             // [n_layer][n_head_kv][n_cells][head_dim_v]
    int32_t *pos;          // [n_cells] position, -1 = free
    int32_t *seq;          // [n_cells] sequence id
    int64_t n_used;
    int32_t n_seq_max;     // sequence ids are 0..n_seq_max-1
};

// Where cell `cell`'s key (value) of KV head `head` in layer `layer` lies.
static inline fp16_t *kv_key(const struct kv_cache *kv, int64_t layer, int64_t head, int64_t cell) {
    return kv->k + ((size_t)(layer * kv->n_head_kv + head) * (size_t)kv->n_cells + (size_t)cell) * (size_t)kv->head_dim_k;
}
static inline fp16_t *kv_value(const struct kv_cache *kv, int64_t layer, int64_t head, int64_t cell) {
    return kv->v + ((size_t)(layer * kv->n_head_kv + head) * (size_t)kv->n_cells + (size_t)cell) * (size_t)kv->head_dim_v;
}

int  kv_init(struct kv_cache *kv, const struct model_hparams *hp, int64_t n_cells, int32_t n_seq_max,
             llm_err *err);
void kv_free(struct kv_cache *kv);
// Frees the cells of sequence `seq` (-1: all sequences) with pos in [p0, p1); p1 < 0 means no end.
void kv_seq_rm(struct kv_cache *kv, int32_t seq, int32_t p0, int32_t p1);
// Copies the cells of `src` with pos in [p0, p1) into sequence `dst` (prefix reuse). -1 if full.
int  kv_seq_cp(struct kv_cache *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, llm_err *err);
// Highest position stored for seq, or -1.
int32_t kv_seq_pos_max(const struct kv_cache *kv, int32_t seq);

// ---- Forward pass -----------------------------------------------------------
// One batch entry per token, as llama_decode takes them.
struct model_batch {
    int32_t n;             // tokens in the batch
    const int32_t *token;  // [n]
    const int32_t *pos;    // [n]
    const int32_t *seq;    // [n]
    const bool *logits;    // [n] whether this token's logits are wanted (NULL: last only)
    float *hidden;         // NULL, or [n_out][n_embd]: receives the final hidden states (after
                           // the output norm) of the tokens that want logits, in batch order
    bool all_prompt_rows;  // every token is a prompt row (embeddings); else the tokens that
                           // want logits are generation rows (see kern_matmul_rows)
};

// Scratch buffers of the forward pass, grown on demand.
struct model_work {
    int64_t cap_tokens;
    float *x;        // [n][n_embd] residual stream
    float *xn;       // [n][n_embd] normalised input of a block
    float *q;        // [n][n_head*head_dim_k]
    float *k;        // [n][n_head_kv*head_dim_k]
    float *v;        // [n][n_head_kv*head_dim_v]
    float *att;      // [n][n_head*head_dim_v]
    float *tmp;      // [n][n_embd]
    float *gate;     // [n][n_ff]
    float *up;       // [n][n_ff]
    int32_t *cell;   // [n] cache cell each token was stored in
    int32_t *vis;    // [n_seq_groups][n_cells] visible cells per sequence, sorted by position
    int64_t vis_cap;
    float *scores;   // [n_threads][kern_attn_scratch_floats(span, head_dim_k)] attention scratch
    int64_t scores_cap; // floats
    float *out;      // [n_out][n_embd]
};

// Where the decoder's forward passes' time goes (llmfile bench --profile): per
// stage, seconds, calls and the weight bytes its matrices hold, summed over
// every pass while a profile is attached to the context.
enum model_stage {
    STAGE_QKV,       // the q, k, v matrices
    STAGE_ROPE_KV,   // rotary positions, q/k norms, keys and values into the cache
    STAGE_ATTENTION, // scores, softmax, values over the cache
    STAGE_ATTN_OUT,  // the attention output matrix
    STAGE_FFN_IN,    // the FFN's gate and up matrices
    STAGE_FFN_DOWN,  // the FFN's down matrix
    STAGE_OUTPUT,    // the output (vocabulary) matrix
    STAGE_ROW_OPS,   // embeddings, norms, activations, residual adds
    STAGE_COUNT
};
struct model_profile {
    double seconds[STAGE_COUNT];
    double weight_bytes[STAGE_COUNT]; // of the matrices the stage multiplied by, once per call
    int64_t calls[STAGE_COUNT];
};
const char *model_stage_name(enum model_stage s);

struct model_ctx {
    const struct model *model;
    struct kv_cache kv;
    struct kern_ctx kc;
    struct pool *pool;
    struct model_work w;
    struct model_profile *profile; // NULL: passes are not timed
};

// Stage timing inside a pass (nothing without a profile): t = model_stage_clock(mc)
// once, then after each stage model_stage_lap(mc, stage, &t, bytes), which gives
// it the time since t and moves t on.
double model_stage_clock(const struct model_ctx *mc);
void model_stage_lap(struct model_ctx *mc, enum model_stage s, double *t, double weight_bytes);

int  model_ctx_init(struct model_ctx *mc, const struct model *m, const struct kern_ops *ops,
                    struct pool *pool, int64_t n_ctx, int32_t n_seq_max, llm_err *err);
void model_ctx_free(struct model_ctx *mc);

// Runs the batch: stores its keys/values in the cache and writes the logits of
// the tokens that want them, in batch order, to logits ([n_out][n_vocab]).
// Returns the number of logit rows written, or -1 (cache full, bad token...).
int model_decode(struct model_ctx *mc, const struct model_batch *b, float *logits, llm_err *err);

// ---- Encoder (encoder.c) ----------------------------------------------------
// Runs a batch through an encoder model (hp.encoder): each token attends to
// every token of its own sequence in the batch, so a sequence must be whole in
// one call; positions index the position embeddings (< n_ctx_train). Nothing is
// cached. Writes the final hidden states of every token to hidden ([n][n_embd]).
int model_encode(struct model_ctx *mc, const struct model_batch *b, float *hidden, llm_err *err);

// out[d] = the pooled value of rows x[0..n) ([n][n_embd]) as llama.cpp pools:
// mean (sum of x * 1/n), first row (CLS) or last row.
void model_pool(enum model_pooling pooling, const float *x, int64_t n, int64_t n_embd, float *out);

#endif
