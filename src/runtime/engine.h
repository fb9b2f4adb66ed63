// runtime/: the one public engine API. Loads a model with its tokenizer, owns
// the threads, the kernels and the KV cache, and decodes batches of tokens
// from one or more sequences, as llama_decode does.
#ifndef LLMFILE_RUNTIME_ENGINE_H
#define LLMFILE_RUNTIME_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/progress.h"
#include "model/model.h"
#include "sample/sample.h"
#include "tok/tok.h"

struct engine_params {
    const char *model_path;
    int n_threads;       // <= 0: physical cores
    int64_t n_ctx;       // KV cells shared by all sequences; <= 0: min(4096, trained context)
    int32_t n_seq_max;   // sequences that may be in the cache at once (server slots); <= 0: 1
    int32_t n_batch;     // tokens per forward pass when a batch is split; <= 0: 512
    const char *cpu_level; // cap on the kernel level (NULL: $LLMFILE_CPU_LEVEL, else the best)
    bool allow_unknown_pre; // an unknown BPE pre-tokenizer falls back to the default one
    enum model_pooling pooling; // embeddings: MODEL_POOL_DEFAULT = the model's <arch>.pooling_type, else mean
    bool fit_encoder_ctx; // an encoder's n_ctx beyond its positions is cut to them (else it is an error)
    bool mmap_only;       // keep the weights in the file's mapping (else small models are copied onto huge pages)
    struct progress progress; // loading: the copy and the rearranging of the weights (base/progress.h); {0}: none
};

struct engine_batch {
    int32_t n;
    int32_t *token;      // [n]
    int32_t *pos;        // [n]
    int32_t *seq;        // [n]
    bool *logits;        // [n] wants logits
    int32_t cap;
};

struct engine;

int  engine_load(struct engine **out, const struct engine_params *p, llm_err *err);
// Loads only the tokenizer of a GGUF file (vocabulary-only files included), for
// --tokenize / --detokenize; such an engine cannot decode.
int  engine_load_vocab(struct engine **out, const char *path, bool allow_unknown_pre, llm_err *err);
void engine_free(struct engine *e);

const struct model_hparams *engine_hparams(const struct engine *e);
const struct tok_vocab *engine_vocab(const struct engine *e);
const struct model *engine_model(const struct engine *e);
int64_t engine_n_ctx(const struct engine *e);
int engine_n_threads(const struct engine *e);
const char *engine_cpu_level(const struct engine *e);
// Times every forward pass's stages into p (NULL: stop), summing until detached.
void engine_set_profile(struct engine *e, struct model_profile *p);

// Runs the batch (split into n_batch pieces if larger). Afterwards
// engine_logits(e, i) gives the logits [n_vocab] of batch entry i, if it asked.
int engine_decode(struct engine *e, const struct engine_batch *b, llm_err *err);
const float *engine_logits(const struct engine *e, int32_t i);

// Forgets cached tokens of seq (-1: all) with positions in [p0, p1) (p1 < 0: to the end).
void engine_seq_rm(struct engine *e, int32_t seq, int32_t p0, int32_t p1);
int32_t engine_seq_pos_max(const struct engine *e, int32_t seq);

// Tokenizes text; returns a malloc'd array in *out and its length, or -1.
int engine_tokenize(const struct engine *e, const char *text, size_t len, bool add_special,
                    bool parse_special, int32_t **out, llm_err *err);
// Tokenizes segments of text as one (tok_encode_segments: control tokens only
// in parse_special segments); returns a malloc'd array in *out and its length, or -1.
int engine_tokenize_segments(const struct engine *e, const struct tok_segment *segs, size_t n_segs,
                             bool add_special, int32_t **out, llm_err *err);

// ---- Embeddings ---------------------------------------------------------------
// Encoders (bert) run without a KV cache; decoders embed from their final hidden
// states after the output norm (causal attention), as llama.cpp does with
// embeddings on. Each sequence is pooled (engine_pooling) into n_embd floats.
int64_t engine_n_embd(const struct engine *e);
bool engine_is_encoder(const struct engine *e);
enum model_pooling engine_pooling(const struct engine *e); // mean, cls or last: what engine_embed uses
const char *engine_pooling_name(enum model_pooling p);      // "mean", "cls", "last"
// Longest sequence engine_embed takes: an encoder's positions (<= n_ctx), else n_ctx.
int64_t engine_embed_max_tokens(const struct engine *e);

// Embeds n_seqs token sequences into out ([n_seqs][n_embd]), L2-normalised when
// normalize (a zero vector stays zero). Several sequences share a forward pass
// up to n_batch tokens (decoders: up to n_seq_max sequences). For a decoder
// this uses the KV cache: sequences 0..n_seq_max-1 are cleared before and after.
int engine_embed_batch(struct engine *e, const int32_t *const *tokens, const int32_t *n_tokens, int32_t n_seqs,
                       bool normalize, float *out, llm_err *err);
// One sequence: out [n_embd].
int engine_embed(struct engine *e, const int32_t *tokens, int32_t n, float *out, bool normalize, llm_err *err);

// Batch helpers.
int  engine_batch_init(struct engine_batch *b, int32_t cap, llm_err *err);
void engine_batch_free(struct engine_batch *b);
void engine_batch_clear(struct engine_batch *b);
// Returns -1 if the batch is full.
int  engine_batch_add(struct engine_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits);

#endif
