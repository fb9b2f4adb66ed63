// kern/: the hot math. A kern_ops table holds the per-CPU-level kernels (filled
// once at start-up by kern_select); the drivers here split work across the
// thread pool and make one indirect call per tile, never per element.
#ifndef LLMFILE_KERN_KERN_H
#define LLMFILE_KERN_KERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cpu.h"
#include "base/err.h"
#include "base/fp16.h"
#include "base/pool.h"
#include "quant/quant.h"

// A 2-D weight matrix borrowed from the model mapping: rows of `cols` values.
struct kern_mat {
    const void *data; // [rows][row_bytes]
    int type;         // enum quant_type
    int64_t rows;     // output features
    int64_t cols;     // input features (row length)
    size_t row_bytes;
};

// Kernels of one CPU level. Entries indexed by weight type; NULL = unsupported.
struct kern_ops {
    const char *level;                            // "generic", "avx2", ...
    quant_vec_dot_fn dot[QUANT_TYPE_COUNT];       // weight row . activation row (in vec_dot_type)
    quant_from_f32_fn quantize[QUANT_TYPE_COUNT]; // f32 row -> activation type, by activation type
};

// The reference level: quant/'s plain-C routines.
const struct kern_ops *kern_generic_ops(void);

// A CPU level: a compilation of the kernels with one microarchitecture's flags.
struct kern_level {
    const char *name;                                // "avx2", used by --cpu-level
    const char *desc;                                // what CPUs it is for
    bool (*supported)(const struct cpu_features *f); // can this CPU (and OS) run it
    const struct kern_ops *(*ops)(void);
};

// Levels of this architecture, oldest first.
int kern_levels(const struct kern_level **out);
// The best level the CPU supports, no higher than `cap` (a level name; NULL or "" = no cap).
int kern_select(const struct cpu_features *f, const char *cap, const struct kern_level **out, llm_err *err);

// Execution context for the drivers: kernels, threads and scratch memory.
struct kern_ctx {
    const struct kern_ops *ops;
    struct pool *pool;
    void *scratch;      // activations converted to the weight's vec_dot_type
    size_t scratch_cap; // bytes
};

int  kern_ctx_init(struct kern_ctx *kc, const struct kern_ops *ops, struct pool *pool, llm_err *err);
void kern_ctx_free(struct kern_ctx *kc);

// y[i][r] = sum_c w[r][c] * x[i][c] for i < n. x: [n][w->cols], y: [n][y_stride].
int kern_matmul(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                float *y, int64_t y_stride, llm_err *err);

// ---- Row ops (single-threaded; callers split rows across threads) -----------

// out = x / sqrt(mean(x^2) + eps) * w (w may be NULL). out may alias x.
void kern_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

// LayerNorm as ggml_norm then * w + b: out = (x - mean) / sqrt(var + eps) * w + b
// (w, b may be NULL). Mean and variance summed in double, as ggml. out may alias x.
void kern_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);

// Rotary embedding of one head vector in place. neox: rotate (i, i+n/2) pairs,
// else adjacent (2i, 2i+1) pairs. freq_scale multiplies the angle (linear scaling).
void kern_rope(float *x, int64_t n_dims, int32_t pos, float freq_base, float freq_scale, bool neox);

// out[i] = gelu_tanh(gate[i]) * up[i], gelu as ggml evaluates it (via a half table).
void kern_geglu(float *out, const float *gate, const float *up, int64_t n);
// out[i] = gelu_tanh(x[i]) through the same half table (ggml_gelu). out may alias x.
void kern_gelu(float *out, const float *x, int64_t n);
// out[i] = silu(gate[i]) * up[i].
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);

// Largest head dimension kern_attn_head supports (the model loader checks).
#define KERN_MAX_HEAD_DIM 1024

// Attention of one query head over n_cells cached keys/values (fp16 rows):
// out = softmax(scale * q.K[cells]) . V[cells]. scratch: [n_cells] floats.
void kern_attn_head(const float *q, const fp16_t *k, size_t k_stride, const fp16_t *v,
                    size_t v_stride, const int32_t *cells, int64_t n_cells, int64_t head_dim_k,
                    int64_t head_dim_v, float scale, float *scratch, float *out);

// Attention of one query head over float keys/values (no cache: encoders), as
// ggml's non-flash path on f32 tensors: out = softmax(scale * q.K[rows]) . V[rows],
// float products, softmax sum in double. scratch: [n_rows] floats.
void kern_attn_head_f32(const float *q, const float *k, size_t k_stride, const float *v, size_t v_stride,
                        const int32_t *rows, int64_t n_rows, int64_t head_dim, float scale, float *scratch,
                        float *out);

#endif
