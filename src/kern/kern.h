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
    const void *data; // [rows][row_bytes], or [rows / KERN_ILV_ROWS] interleaved groups (below)
    int type;         // enum quant_type
    int64_t rows;     // output features
    int64_t cols;     // input features (row length)
    size_t row_bytes;
    bool interleaved; // rows interleaved in groups by kern_interleave
};

// ---- Interleaved rows (a layout repacked at load, where a level has kernels for it) ----
// Generation reads every weight once per token; with rows side by side a
// 4-row GEMV step reads four streams and spends much of its work gathering
// and spreading each row's blocks. Interleaved, a group of KERN_ILV_ROWS
// rows is one stream in which block b of all the group's rows lies together:
//   legacy types (Q4_0: 4 parts, Q5_0: 5, its qh first, Q8_0: 8, its quants + 128
//   as unsigned bytes, which vpdpbusd takes as they lie):
//     [16 fp16 scales d, row r's at 2r][parts x 64 bytes: byte 4r + i of part p
//                                       = byte 4p + i of row r's block quants]
//   K-quants (Q4_K, Q5_K, Q6_K): 64-byte part t holds dword t of every row's
//     block, row r's at byte 4r; Q6_K's block (210 bytes) ends in its fp16 d,
//     which follows the 52 parts as 16 d's, row r's at 2r
//   16-bit floats (F16, BF16): 32 bytes per value k, row r's at byte 2r
// so one 64-byte vector holds four quants (two floats) of each of the 16 rows,
// which is the GEMV's dot-product lanes and the GEMM's packed panel layout as
// they are (the float GEMM's panels are two groups). Same
// bytes as the rows (a group takes 16 x row_bytes), no memory beyond them.
#define KERN_ILV_ROWS 16

struct kern_ops; // below

// Whether level o has kernels for w interleaved (type, shape) and w is not yet.
bool kern_can_interleave(const struct kern_ops *o, const struct kern_mat *w);
// Rearranges w's rows in place (data must be writable) and marks w
// interleaved; kern_can_interleave must hold. Scratch: one group (16 rows).
int kern_interleave(struct kern_mat *w, void *data, llm_err *err);
// Row r of w (either layout) as floats: the embeddings' row lookup.
void kern_mat_row_f32(const struct kern_mat *w, int64_t r, float *out);

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
    // pack from interleaved groups (w at the first one's start; rm and nr whole groups); NULL: none
    void (*pack_ilv)(const void *w, size_t row_bytes, int nr, int64_t k0, int64_t kc, void *panel);
    // products each fp16 sum takes before it goes into f32 (the avx512fp16 level's F16
    // tile, gemm_f16h.inc); 0: the sums are f32
    int half_sum_steps;
};

// GEMV (generation): y[r] = w[r] . act for the nr consecutive weight rows at w
// (row_bytes apart), sharing the loads of one activation row (vec_dot_type).
typedef void (*kern_gemv_fn)(int64_t k, const void *w, size_t row_bytes, int nr, const void *act,
                             float *y);
// The same for two activation rows at once (the weights loaded once): y0 and
// y1 bit for bit what two kern_gemv_fn calls give.
typedef void (*kern_gemv2_fn)(int64_t k, const void *w, size_t row_bytes, int nr, const void *act0,
                              const void *act1, float *y0, float *y1);

struct kern_attn_tile; // below, with the attention driver

// Kernels of one CPU level. Entries indexed by weight type; NULL = unsupported.
struct kern_ops {
    const char *level;                            // "generic", "avx2", ...
    quant_vec_dot_fn dot[QUANT_TYPE_COUNT];       // weight row . activation row (in vec_dot_type)
    quant_from_f32_fn quantize[QUANT_TYPE_COUNT]; // f32 row -> activation type, by activation type
    // -- matrix kernels (GEMM / GEMV); NULL: kern_matmul falls back to dot --
    const struct kern_gemm *gemm[QUANT_TYPE_COUNT]; // by weight type
    kern_gemv_fn gemv[QUANT_TYPE_COUNT];            // by weight type
    kern_gemv2_fn gemv2[QUANT_TYPE_COUNT];          // by weight type; NULL: gemv per column
    // GEMV over interleaved groups (w at a group's start, nr a multiple of KERN_ILV_ROWS); NULL: none
    kern_gemv_fn gemv_ilv[QUANT_TYPE_COUNT];        // by weight type
    // -- end of matrix kernels --

    // ---- Attention over the fp16 KV cache (kept together; see struct kern_attn_tile) ----
    // Scores: s[r * s_stride + (j - j0)] = scale * fp16(q_r) . K[cells[j]] for every query
    // r < n_q and list position j in [j0, j1), masked or not. qh: [n_q][head_dim_k] scratch.
    void (*attn_qk)(const struct kern_attn_tile *t, int64_t j0, int64_t j1, float *s,
                    int64_t s_stride, float *qh);
    // Softmax of one query's visible scores, in place, probabilities rounded to fp16 as
    // ggml rounds them: p[j] = fp16(exp(p[j] - max) * (float)(1 / sum)), sum in double.
    void (*attn_softmax)(float *p, int64_t n);
    // acc[r][d] += sum_{j in [j0, j1)} p[r * p_stride + (j - j0)] * V[cells[j]][d].
    void (*attn_pv)(const struct kern_attn_tile *t, int64_t j0, int64_t j1, const float *p,
                    int64_t p_stride, float *const *acc);
    // ---- Row ops with a faster form at some levels (NULL: use the kern_* reference) ----
    void (*geglu)(float *out, const float *gate, const float *up, int64_t n); // = kern_geglu
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n); // ~ kern_swiglu (vector exp)
    // = kern_rmsnorm but for the order of the double sum of squares (out may be x)
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
};

// The reference level: quant/'s plain-C routines.
const struct kern_ops *kern_generic_ops(void);

// Every fp16's float (f16_table.c), for the levels without a conversion
// instruction; a level that reads it calls kern_f16_table_init (once, any thread) first.
extern float kern_f16_table[1 << 16];
void kern_f16_table_init(void);

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
    struct kern_rows *rows; // [threads] each thread's share of a GEMV's weight rows (matmul.c)
};

int  kern_ctx_init(struct kern_ctx *kc, const struct kern_ops *ops, struct pool *pool, llm_err *err);
void kern_ctx_free(struct kern_ctx *kc);

// y[i][r] = sum_c w[r][c] * x[i][c] for i < n. x: [n][w->cols], y: [n][y_stride].
// GEMM for n >= the kernel's min_n, else GEMV.
int kern_matmul(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                float *y, int64_t y_stride, llm_err *err);

// The same product, batch-invariant: rows [0, n_prompt) are "prompt rows",
// computed by the GEMM (whatever their number), rows [n_prompt, n)
// "generation rows", computed by the GEMV. Each output is a function of its own
// row and kind only, bit for bit, never of n, of the other rows or of the
// thread count, so a request gets the same numbers alone or batched with others.
int kern_matmul_rows(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                     int64_t n_prompt, float *y, int64_t y_stride, llm_err *err);

// kern_matmul_rows for n_w matrices that share their input x: each y[m]
// exactly as kern_matmul_rows(w[m], ..., y[m], y_stride[m]) gives. Where up to
// 4 matrices take the same activation type, the generation rows are converted
// once and the threads pass over all the matrices' rows together (one
// barrier, not n_w). kern_matmul_rows is this with one matrix.
int kern_matmul_rows_shared(struct kern_ctx *kc, int n_w, const struct kern_mat *const *w, const float *x,
                            int64_t n, int64_t n_prompt, float *const *y, const int64_t *y_stride, llm_err *err);

// ---- Row ops (single-threaded; callers split rows across threads) -----------

// out = x / sqrt(mean(x^2) + eps) * w (w may be NULL). out may alias x.
void kern_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

// LayerNorm as ggml_norm then * w + b: out = (x - mean) / sqrt(var + eps) * w + b
// (w, b may be NULL). Mean and variance summed in double, as ggml. out may alias x.
void kern_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);

// Rotary embedding of one head vector in place. neox: rotate (i, i+n/2) pairs,
// else adjacent (2i, 2i+1) pairs. freq_scale multiplies the angle (linear scaling).
void kern_rope(float *x, int64_t n_dims, int32_t pos, float freq_base, float freq_scale, bool neox);
// kern_rope in two steps, so that every head of a token shares one set of angles:
// cs[2i], cs[2i+1] = cos, sin of pair i's angle at pos ([n_dims] floats), then the
// rotation with them (the same results as kern_rope).
void kern_rope_angles(float *cs, int64_t n_dims, int32_t pos, float freq_base, float freq_scale);
void kern_rope_apply(float *x, int64_t n_dims, const float *cs, bool neox);

// out[i] = gelu_tanh(gate[i]) * up[i], gelu as ggml evaluates it (via a half table).
void kern_geglu(float *out, const float *gate, const float *up, int64_t n);
// out[i] = gelu_tanh(x[i]) through the same half table (ggml_gelu). out may alias x.
void kern_gelu(float *out, const float *x, int64_t n);
// ggml's GELU table (indexed by the input's fp16 bits) widened to float.
const float *kern_gelu_table_f32(void);
// out[i] = silu(gate[i]) * up[i].
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);

// Largest head dimension kern_attn_head / kern_attn support (the model loader checks).
#define KERN_MAX_HEAD_DIM 1024

// ---- Attention over the KV cache: tiles of queries sharing one KV head ----------
// A tile is up to KERN_ATTN_MAX_Q query vectors (e.g. the query heads of one
// grouped-query KV head, for a few consecutive tokens) that read K/V rows of the
// same head through the same cell list; each K/V row is loaded once per tile
// instead of once per query. Query r sees list positions [begin[r], end[r]).
// Numerics are llama.cpp's without flash attention (exactly kern_attn_head's):
// Q rounded to fp16, Q.K summed in float, softmax in float with a double sum,
// probabilities rounded to fp16, P.V summed in float; only summation order differs.
// 64 rather than 32: staging the rows to f32 is then shared by twice the queries
// (bench/attn_bench.c, TinyLlama's 8 heads: 8 tokens a tile 80.6-82.9 GFLOP/s vs
// 4 tokens 76.9-79.1; the scores scratch is 64 x span floats per thread).
#define KERN_ATTN_MAX_Q 64

struct kern_attn_tile {
    int n_q;                              // queries, 1..KERN_ATTN_MAX_Q
    const float *q[KERN_ATTN_MAX_Q];      // [n_q] -> [head_dim_k] query (not yet rounded)
    float *out[KERN_ATTN_MAX_Q];          // [n_q] -> [head_dim_v] result
    int32_t begin[KERN_ATTN_MAX_Q];       // [n_q] first visible list position
    int32_t end[KERN_ATTN_MAX_Q];         // [n_q] one past the last visible position
    const int32_t *cells;                 // [list length] cache cell of each list position
    const fp16_t *k;                      // key of cell c: k + c * k_stride, [head_dim_k]
    size_t k_stride;
    const fp16_t *v;                      // value of cell c: v + c * v_stride, [head_dim_v]
    size_t v_stride;
    int64_t head_dim_k, head_dim_v;       // each <= KERN_MAX_HEAD_DIM
    float scale;                          // multiplies q.k
};

// Floats of scratch kern_attn needs for a tile whose ranges span `span` list
// positions (max end - min begin).
static inline size_t kern_attn_scratch_floats(int64_t span, int64_t head_dim_k) {
    return (size_t)KERN_ATTN_MAX_Q * (size_t)(span + head_dim_k);
}

// Attention of every query of the tile with ops' kernels: out[r] = softmax(scale *
// q_r.K[visible]) . V[visible]; a query with no visible cell gets zeros.
void kern_attn(const struct kern_ops *ops, const struct kern_attn_tile *t, float *scratch);

// kern_attn in steps, for one tile split among threads (generation with fewer
// tiles than threads) with the same bits: the tile's list span [j0, j1); the
// scores of positions [a, b) of it into s ([n_q][j1 - j0]; qh: [n_q][head_dim_k]
// of scratch); the softmax of rows [r0, r1) once all scores are in; then output
// values [d0, d1), zeroed first. Each score and each output value is one sum
// whatever the split (P.V's products, of fp16 values, are exact in float).
void kern_attn_span(const struct kern_attn_tile *t, int64_t *j0, int64_t *j1);
void kern_attn_scores(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1, int64_t a,
                      int64_t b, float *s, float *qh);
void kern_attn_probs(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1, int r0,
                     int r1, float *s);
void kern_attn_values(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1,
                      const float *s, int64_t d0, int64_t d1);

// The plain-C reference kernels (the generic level's attn_* entries).
void kern_attn_qk_ref(const struct kern_attn_tile *t, int64_t j0, int64_t j1, float *s,
                      int64_t s_stride, float *qh);
void kern_attn_softmax_ref(float *p, int64_t n);
void kern_attn_pv_ref(const struct kern_attn_tile *t, int64_t j0, int64_t j1, const float *p,
                      int64_t p_stride, float *const *acc);

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
