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

// ---- Matrix kernels (GEMM / GEMV), used by kern_matmul ---------------------------
//
// GEMM (prompt processing, n >= min_n activation rows): the driver converts all
// activation rows once per matrix with `prep` into the kernel's layout, in
// groups of rn rows ("column tiles", block-interleaved so one pointer walks a
// tile). Each thread then takes whole panels of rm weight rows: `pack` copies
// one panel (values [k0, k0 + kc) of each row, unpacked and interleaved so one
// vector holds one k-step of every row) into a per-thread buffer, and `tile`
// computes the rm x nc outputs of that panel and one column tile, holding them
// in registers while it streams kc. Short panels (nr < rm) and tiles (nc < rn)
// go through the same kernels.
struct kern_gemm {
    int rm;          // weight rows per panel
    int rn;          // activation rows per column tile
    int min_n;       // the driver uses GEMM for n >= min_n, else GEMV / dots
    int k_align;     // values per block: k chunks and prepared blocks are multiples of it
    size_t act_block;   // prepared bytes per column per k_align values (the row is padded up)
    size_t panel_block; // packed panel bytes per k_align values
    // One f32 activation row of k values -> prepared blocks, block j at dst + j * stride.
    void (*prep)(const float *x, int64_t k, void *dst, size_t stride);
    // Weight rows w[0..nr) (row_bytes apart, nr <= rm), values [k0, k0 + kc) -> panel.
    // k0 and kc are multiples of k_align, except that kc may end at the row's end.
    void (*pack)(const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc, void *panel);
    // y[c * y_stride + r] = (accumulate ? y[..] : 0) + sum over the panel's kc values
    // of w[r] * act[c], for r < nr, c < nc; act: the column tile's first prepared
    // block of the chunk, blocks rn * act_block apart.
    void (*tile)(const void *panel, int nr, int64_t kc, const void *act, int nc, float *y,
                 int64_t y_stride, int accumulate);
};

// GEMV (generation): y[r] = w[r] . act for the nr consecutive weight rows at w
// (row_bytes apart), sharing the loads of one activation row (vec_dot_type).
typedef void (*kern_gemv_fn)(int64_t k, const void *w, size_t row_bytes, int nr, const void *act,
                             float *y);

// Kernels of one CPU level. Entries indexed by weight type; NULL = unsupported.
struct kern_ops {
    const char *level;                            // "generic", "avx2", ...
    quant_vec_dot_fn dot[QUANT_TYPE_COUNT];       // weight row . activation row (in vec_dot_type)
    quant_from_f32_fn quantize[QUANT_TYPE_COUNT]; // f32 row -> activation type, by activation type
    // -- matrix kernels (GEMM / GEMV); NULL: kern_matmul falls back to dot --
    const struct kern_gemm *gemm[QUANT_TYPE_COUNT]; // by weight type
    kern_gemv_fn gemv[QUANT_TYPE_COUNT];            // by weight type
    // -- end of matrix kernels --
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
    void *scratch;      // activations converted to the weight's vec_dot_type / GEMM layout
    size_t scratch_cap; // bytes
    void *panels;       // [threads][panel_cap] packed weight panels (GEMM)
    size_t panel_cap;   // bytes per thread
    int64_t gemm_kc;    // GEMM k chunk in values (0: sized for the L2 cache; tests set it)
};

int  kern_ctx_init(struct kern_ctx *kc, const struct kern_ops *ops, struct pool *pool, llm_err *err);
void kern_ctx_free(struct kern_ctx *kc);

// y[i][r] = sum_c w[r][c] * x[i][c] for i < n. x: [n][w->cols], y: [n][y_stride].
int kern_matmul(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                float *y, int64_t y_stride, llm_err *err);

// ---- Row ops (single-threaded; callers split rows across threads) -----------

// out = x / sqrt(mean(x^2) + eps) * w (w may be NULL). out may alias x.
void kern_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

// Rotary embedding of one head vector in place. neox: rotate (i, i+n/2) pairs,
// else adjacent (2i, 2i+1) pairs. freq_scale multiplies the angle (linear scaling).
void kern_rope(float *x, int64_t n_dims, int32_t pos, float freq_base, float freq_scale, bool neox);

// out[i] = gelu_tanh(gate[i]) * up[i], gelu as ggml evaluates it (via a half table).
void kern_geglu(float *out, const float *gate, const float *up, int64_t n);
// out[i] = silu(gate[i]) * up[i].
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);

// Largest head dimension kern_attn_head supports (the model loader checks).
#define KERN_MAX_HEAD_DIM 1024

// Attention of one query head over n_cells cached keys/values (fp16 rows):
// out = softmax(scale * q.K[cells]) . V[cells]. scratch: [n_cells] floats.
void kern_attn_head(const float *q, const fp16_t *k, size_t k_stride, const fp16_t *v,
                    size_t v_stride, const int32_t *cells, int64_t n_cells, int64_t head_dim_k,
                    int64_t head_dim_v, float scale, float *scratch, float *out);

#endif
