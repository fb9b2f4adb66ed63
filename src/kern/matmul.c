// Matrix multiply driver. kern_matmul picks GEMM or GEMV by the number of
// activation rows; kern_matmul_rows (the forward pass) by the kind of each
// row, so that a row's numbers never depend on its batch.
// GEMM: activations are converted once per matrix into the kernel's layout,
// then each thread takes whole panels of weight rows, packs one into its own
// buffer and runs the register-blocked tile kernel over every column tile
// (see struct kern_gemm). GEMV: each weight row streams once; activations are
// converted to the weight's vec_dot_type and the level's multi-row GEMV (or,
// without one, its dot) runs over the chunks of rows each thread takes.
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"
#include "rows.h"

const struct kern_ops *kern_generic_ops(void) {
    static struct kern_ops ops;
    static int ready;
    if (!ready) {
        ops.level = "generic";
        for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
            const struct quant_traits *tr = quant_get(t);
            if (!tr) continue;
            ops.dot[t] = tr->vec_dot;
            ops.quantize[t] = tr->from_f32;
        }
        ready = 1;
    }
    return &ops;
}

int kern_ctx_init(struct kern_ctx *kc, const struct kern_ops *ops, struct pool *pool, llm_err *err) {
    memset(kc, 0, sizeof *kc);
    kc->ops = ops;
    kc->pool = pool;
    kc->rows = aligned_alloc(_Alignof(struct kern_rows), sizeof(struct kern_rows) * (size_t)pool_size(pool));
    if (!kc->rows) return err_set(err, "matmul: out of memory");
    return 0;
}

void kern_ctx_free(struct kern_ctx *kc) {
    free(kc->scratch);
    free(kc->panels);
    free(kc->rows);
    kc->rows = NULL;
    kc->scratch = kc->panels = NULL;
    kc->scratch_cap = kc->panel_cap = 0;
}

enum {
    ALIGN = 64,           // cache line: packed panels, prepared tiles and y rows per thread
    CHUNK_ROWS = 64,      // GEMV/dot work is taken in chunks of this many weight rows: a
                          // multiple of 16 (64 bytes of y), so no two threads write one
                          // cache line (shorter chunks measured slower: the GEMV's prefetch
                          // runs ahead)
    TAKE_BYTES = 256 << 10, // weights a thread takes from its own share at once (vec_job_run)
    GEMV_ROWS = 8,        // rows per GEMV call when n > 1: their weights stay in L1
                          // while every activation row passes
    // packed panel bytes per k chunk (measured: 24..128 KB within 5%; at 128 KB the 32-row
    // integer panels of 2048-value rows are one chunk, with no partial sums kept between)
    PANEL_BYTES = 128 << 10,
};

// GEMM panels are handed out from a shared counter, not split evenly up
// front: on a machine whose cores are also busy with other work, a thread that
// loses its core for a while then holds up nothing but its current panel.
// (Which thread computes a panel never changes its numbers.)
static bool next_chunk(atomic_long *next, long n_chunks, long *chunk) {
    *chunk = atomic_fetch_add_explicit(next, 1, memory_order_relaxed);
    return *chunk < n_chunks;
}

static void *align_up(void *p) { return (void *)(((uintptr_t)p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1)); }

// Grows a buffer to at least `need` usable bytes from a 64-byte boundary.
static int reserve(void **buf, size_t *cap, size_t need, llm_err *err) {
    if (need <= *cap) return 0;
    void *p = realloc(*buf, need + ALIGN);
    if (!p) return err_set(err, "matmul: out of memory (%zu bytes of scratch)", need);
    *buf = p;
    *cap = need;
    return 0;
}

// ---- GEMV / dot path ----------------------------------------------------------------

enum { MAX_SHARED = 4 }; // matrices in one pass over shared activations

struct vec_job {
    const struct kern_ops *ops;
    int n_w;
    const struct kern_mat *w[MAX_SHARED];
    float *y[MAX_SHARED];          // [n][y_stride[m]] for matrix m
    int64_t y_stride[MAX_SHARED];
    long chunk_end[MAX_SHARED];    // chunks of matrices 0..m together (CHUNK_ROWS rows each)
    const float *x;  // [n][w[0]->cols]
    int64_t n;
    void *act;       // [n][act_row_bytes] in vec_dot_type
    size_t act_row_bytes;
    int act_type;
    struct kern_rows *rows; // [threads] shares of all the chunks
};

static void quantize_job(void *ctx, int ith, int nth) {
    struct vec_job *j = ctx;
    const int64_t k = j->w[0]->cols;
    long b, e;
    pool_split((long)j->n, ith, nth, &b, &e);
    quant_from_f32_fn q = j->ops->quantize[j->act_type];
    for (long i = b; i < e; i++) q(j->x + i * k, (char *)j->act + (size_t)i * j->act_row_bytes, k);
}

// Rows [r0, r1) of w through the level's GEMV, for every activation row.
static void gemv_rows(const struct vec_job *j, const struct kern_mat *w, int64_t r0, int64_t r1, float *y,
                      int64_t ys) {
    kern_gemv_fn gemv = w->interleaved ? j->ops->gemv_ilv[w->type] : j->ops->gemv[w->type];
    // one call per column: the kernel streams the rows and prefetches ahead (interleaved
    // groups are one stream each, so every column passes over the whole chunk; it stays in L2)
    if (j->n == 1 || w->interleaved) {
        for (int64_t c = 0; c < j->n; c++)
            gemv(w->cols, (const char *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes, (int)(r1 - r0),
                 (const char *)j->act + (size_t)c * j->act_row_bytes, y + c * ys + r0);
        return;
    }
    kern_gemv2_fn gemv2 = j->ops->gemv2[w->type];
    for (int64_t r = r0; r < r1; r += GEMV_ROWS) {
        const int nr = (int)(r1 - r < GEMV_ROWS ? r1 - r : GEMV_ROWS);
        const void *wr = (const char *)w->data + (size_t)r * w->row_bytes;
        int64_t c = 0;
        for (; gemv2 && c + 2 <= j->n; c += 2) // two columns per pass over the rows
            gemv2(w->cols, wr, w->row_bytes, nr, (const char *)j->act + (size_t)c * j->act_row_bytes,
                  (const char *)j->act + (size_t)(c + 1) * j->act_row_bytes, y + c * ys + r, y + (c + 1) * ys + r);
        for (; c < j->n; c++)
            gemv(w->cols, wr, w->row_bytes, nr, (const char *)j->act + (size_t)c * j->act_row_bytes, y + c * ys + r);
    }
}

// The same through the level's dot, row by row (types without a GEMV).
static void dot_rows(const struct vec_job *j, const struct kern_mat *w, int64_t r0, int64_t r1, float *y,
                     int64_t ys) {
    quant_vec_dot_fn dot = j->ops->dot[w->type];
    for (int64_t rb = r0; rb < r1; rb += GEMV_ROWS) {
        const int64_t re = rb + GEMV_ROWS < r1 ? rb + GEMV_ROWS : r1;
        for (int64_t c = 0; c < j->n; c++) {
            const void *a = (const char *)j->act + (size_t)c * j->act_row_bytes;
            for (int64_t r = rb; r < re; r++)
                y[c * ys + r] = dot(w->cols, (const char *)w->data + (size_t)r * w->row_bytes, a);
        }
    }
}

static void vec_job_run(void *ctx, int ith, int nth) {
    struct vec_job *j = ctx;
    // One activation row: a thread takes about TAKE_BYTES of its own chunks at
    // once, one GEMV call over them (fewer locked updates and fewer passes over
    // the activations). Several rows: a chunk at a time, which stays in L2 while
    // every row passes.
    const long most = j->n == 1 ? 1 + (long)(TAKE_BYTES / (CHUNK_ROWS * j->w[0]->row_bytes)) : 1;
    long c0, count;
    while (rows_next(j->rows, ith, nth, most, &c0, &count)) {
        for (long c = c0; c < c0 + count;) { // the taken chunks, matrix by matrix
            int m = 0;
            while (c >= j->chunk_end[m]) m++;
            const long first = m ? j->chunk_end[m - 1] : 0;
            const long end = c0 + count < j->chunk_end[m] ? c0 + count : j->chunk_end[m];
            const struct kern_mat *w = j->w[m];
            const int64_t r0 = (int64_t)(c - first) * CHUNK_ROWS, r1 = (int64_t)(end - first) * CHUNK_ROWS;
            (j->ops->gemv[w->type] || w->interleaved ? gemv_rows : dot_rows)(j, w, r0, r1 < w->rows ? r1 : w->rows,
                                                                             j->y[m], j->y_stride[m]);
            c = end;
        }
    }
}

// GEMV of n activation rows x (the same for every matrix, whose activation
// type must be act_type) by n_w matrices in one pass of the threads.
static int matmul_vec_n(struct kern_ctx *kc, int n_w, const struct kern_mat *const *w, int act_type,
                        const float *x, int64_t n, float *const *y, const int64_t *y_stride, llm_err *err) {
    if (!kc->ops->quantize[act_type])
        return err_set(err, "matmul: cannot convert activations to type %d", act_type);
    const size_t act_row_bytes = quant_row_bytes(act_type, w[0]->cols);
    if (act_row_bytes == 0)
        return err_set(err, "matmul: row of %lld values does not fit type %s", (long long)w[0]->cols,
                       quant_get(act_type)->name);
    if (reserve(&kc->scratch, &kc->scratch_cap, act_row_bytes * (size_t)n, err)) return -1;
    struct vec_job job = {.ops = kc->ops, .n_w = n_w, .x = x, .n = n, .act = align_up(kc->scratch),
                          .act_row_bytes = act_row_bytes, .act_type = act_type, .rows = kc->rows};
    long chunks = 0;
    for (int m = 0; m < n_w; m++) {
        job.w[m] = w[m], job.y[m] = y[m], job.y_stride[m] = y_stride[m];
        job.chunk_end[m] = chunks += (long)((w[m]->rows + CHUNK_ROWS - 1) / CHUNK_ROWS);
    }
    rows_split(kc->rows, pool_size(kc->pool), chunks);
    if (n == 1) quantize_job(&job, 0, 1);
    else pool_run(kc->pool, quantize_job, &job);
    pool_run(kc->pool, vec_job_run, &job);
    return 0;
}

static int matmul_vec(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n, float *y,
                      int64_t y_stride, llm_err *err) {
    return matmul_vec_n(kc, 1, &w, quant_get(w->type)->vec_dot_type, x, n, &y, &y_stride, err);
}

// ---- GEMM path -----------------------------------------------------------------------

// Prepared activations are laid out chunk-major: [k chunk][column tile][block
// of the chunk][rn columns][act_block bytes], so that while a panel passes, the
// activations of its chunk are one sequential stream.
struct gemm_job {
    const struct kern_gemm *g;
    const struct kern_mat *w;
    const float *x;       // [n][w->cols]
    int64_t n;
    uint8_t *act;         // prepared activations, chunk-major (above)
    int64_t n_tiles;
    int64_t kb;           // blocks (of k_align values) per k chunk
    int64_t blocks;       // blocks per row (the last one may be partial for floats)
    uint8_t *panels;      // [threads][panel_bytes]: a packed panel, then its sums (acc_bytes)
    size_t panel_bytes;
    size_t acc_bytes;     // [n_tiles * rn][rm] f32
    float *y;             // [n][y_stride]
    int64_t y_stride;
    atomic_long next_panel;
};

// Where the prepared block `b` of column tile `t` starts, and the blocks in its chunk.
static uint8_t *act_at(const struct gemm_job *j, int64_t t, int64_t b, int64_t *chunk_blocks) {
    const size_t tile_block = (size_t)j->g->rn * j->g->act_block; // one block of one tile
    const int64_t c0 = b / j->kb * j->kb;
    const int64_t kbc = j->blocks - c0 < j->kb ? j->blocks - c0 : j->kb;
    if (chunk_blocks) *chunk_blocks = kbc;
    return j->act + (size_t)c0 * (size_t)j->n_tiles * tile_block + (size_t)t * (size_t)kbc * tile_block +
           (size_t)(b - c0) * tile_block;
}

static void prep_job(void *ctx, int ith, int nth) {
    struct gemm_job *j = ctx;
    const struct kern_gemm *g = j->g;
    const int64_t k = j->w->cols;
    long c0, c1;
    pool_split((long)j->n, ith, nth, &c0, &c1);
    for (long c = c0; c < c1; c++)
        for (int64_t b = 0; b < j->blocks; b += j->kb) {
            const int64_t v0 = b * g->k_align, nv = k - v0 < j->kb * g->k_align ? k - v0 : j->kb * g->k_align;
            uint8_t *dst = act_at(j, c / g->rn, b, NULL) + (size_t)(c % g->rn) * g->act_block;
            g->prep(j->x + c * k + v0, nv, dst, (size_t)g->rn * g->act_block);
        }
}

static void gemm_job(void *ctx, int ith, int nth) {
    struct gemm_job *j = ctx;
    const struct kern_gemm *g = j->g;
    const struct kern_mat *w = j->w;
    (void)nth;
    uint8_t *panel = j->panels + (size_t)ith * j->panel_bytes;
    // A panel's outputs are summed over its k chunks here, [n][rm], not in y:
    // the columns of y are y_stride apart, often a power of two that maps them
    // all to a few cache sets, so partial sums there leave the caches.
    float *acc = (float *)(panel + j->panel_bytes - j->acc_bytes);
    const bool one_chunk = j->kb >= j->blocks;
    const long n_panels = (long)((w->rows + g->rm - 1) / g->rm);
    const int64_t chunk_values = j->kb * g->k_align;
    long p;
    while (next_chunk(&j->next_panel, n_panels, &p)) {
        const int64_t r = (int64_t)p * g->rm;
        const int nr = (int)(w->rows - r < g->rm ? w->rows - r : g->rm);
        const uint8_t *wr = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t b = 0; b < j->blocks; b += j->kb) {
            const int64_t k0 = b * g->k_align;
            const int64_t kc = w->cols - k0 < chunk_values ? w->cols - k0 : chunk_values;
            (w->interleaved ? g->pack_ilv : g->pack)(wr, w->row_bytes, nr, k0, kc, panel);
            for (int64_t t = 0; t < j->n_tiles; t++) {
                const int64_t c = t * g->rn;
                const int nc = (int)(j->n - c < g->rn ? j->n - c : g->rn);
                float *yt = j->y + c * j->y_stride + r;
                // after the last of several chunks the sums go to y, whose lines are fetched while it runs
                const bool to_y = !one_chunk && b + j->kb >= j->blocks;
                if (to_y)
                    for (int i = 0; i < nc; i++)
                        for (int o = 0; o < nr; o += ALIGN / 4) __builtin_prefetch(yt + i * j->y_stride + o, 1, 3);
                g->tile(panel, nr, kc, act_at(j, t, b, NULL), nc, one_chunk ? yt : acc + c * g->rm,
                        one_chunk ? j->y_stride : g->rm, k0 > 0);
                if (to_y)
                    for (int i = 0; i < nc; i++)
                        memcpy(yt + i * j->y_stride, acc + (c + i) * g->rm, sizeof(float) * (size_t)nr);
            }
        }
    }
}

// prepared: the scratch already holds x prepared for g and rows of w->cols
// values (the previous matrix of kern_matmul_rows_shared had the same g and width).
static int matmul_gemm(struct kern_ctx *kc, const struct kern_gemm *g, const struct kern_mat *w,
                       const float *x, int64_t n, float *y, int64_t y_stride, bool prepared, llm_err *err) {
    const struct quant_traits *tr = quant_get(w->type);
    if (w->cols % tr->block_elems || w->row_bytes != quant_row_bytes(w->type, w->cols))
        return err_set(err, "matmul: %s rows of %lld values do not make whole blocks", tr->name,
                       (long long)w->cols);
    const int64_t blocks = (w->cols + g->k_align - 1) / g->k_align; // the row padded up
    const int64_t n_tiles = (n + g->rn - 1) / g->rn;
    // k chunks: a packed panel stays close (L1/L2) while the chunk's activations stream past
    int64_t kb = kc->gemm_kc > 0 ? kc->gemm_kc / g->k_align : (int64_t)(PANEL_BYTES / g->panel_block);
    if (kb < 1) kb = 1;
    if (kb > blocks) kb = blocks;
    const size_t act_bytes = (size_t)blocks * (size_t)n_tiles * (size_t)g->rn * g->act_block;
    const size_t acc_bytes = sizeof(float) * (size_t)(n_tiles * g->rn) * (size_t)g->rm;
    const size_t panel_bytes = (((size_t)kb * g->panel_block + ALIGN - 1) & ~(size_t)(ALIGN - 1)) + acc_bytes;
    const int nth = pool_size(kc->pool);
    if (reserve(&kc->scratch, &kc->scratch_cap, act_bytes, err) ||
        reserve(&kc->panels, &kc->panel_cap, panel_bytes * (size_t)nth, err))
        return -1;
    struct gemm_job job = {g, w, x, n, align_up(kc->scratch), n_tiles, kb, blocks,
                           align_up(kc->panels), panel_bytes, acc_bytes, y, y_stride, 0};
    if (!prepared) pool_run(kc->pool, prep_job, &job);
    pool_run(kc->pool, gemm_job, &job);
    return 0;
}

// The level's GEMM for w, or NULL (none, or rows too long for the i32 gather
// offsets of a panel's rows).
static const struct kern_gemm *gemm_for(const struct kern_ctx *kc, const struct kern_mat *w) {
    const struct kern_gemm *g = kc->ops->gemm[w->type];
    if (g && w->interleaved) return g->pack_ilv && g->rm % KERN_ILV_ROWS == 0 ? g : NULL;
    return g && (uint64_t)w->row_bytes * (uint64_t)g->rm < (1ull << 31) ? g : NULL;
}

static int check_type(const struct kern_ctx *kc, const struct kern_mat *w, llm_err *err) {
    if (!quant_get(w->type) || !kc->ops->dot[w->type])
        return err_set(err, "matmul: weight type %d has no kernel", w->type);
    if (w->interleaved && (!kc->ops->gemv_ilv[w->type] || w->rows % KERN_ILV_ROWS))
        return err_set(err, "matmul: %s weights interleaved for another CPU level than %s", quant_get(w->type)->name,
                       kc->ops->level);
    return 0;
}

int kern_matmul(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                float *y, int64_t y_stride, llm_err *err) {
    if (check_type(kc, w, err)) return -1;
    if (n <= 0) return 0;
    const struct kern_gemm *g = gemm_for(kc, w);
    if (g && n >= g->min_n) return matmul_gemm(kc, g, w, x, n, y, y_stride, false, err);
    return matmul_vec(kc, w, x, n, y, y_stride, err);
}

// The prompt rows: GEMM, or without one the dots, which compute every row alone
// (so invariant too).
// prev: the matrix before w on the same x, or NULL.
static int matmul_prompt(struct kern_ctx *kc, const struct kern_mat *w, const struct kern_mat *prev, const float *x,
                         int64_t n, float *y, int64_t y_stride, llm_err *err) {
    const struct kern_gemm *g = gemm_for(kc, w);
    const bool prepared = g && prev && gemm_for(kc, prev) == g && prev->cols == w->cols;
    return g ? matmul_gemm(kc, g, w, x, n, y, y_stride, prepared, err) : matmul_vec(kc, w, x, n, y, y_stride, err);
}

int kern_matmul_rows_shared(struct kern_ctx *kc, int n_w, const struct kern_mat *const *w, const float *x,
                            int64_t n, int64_t n_prompt, float *const *y, const int64_t *y_stride, llm_err *err) {
    bool together = n_w <= MAX_SHARED; // the generation rows in one pass
    for (int m = 0; m < n_w; m++) {
        if (check_type(kc, w[m], err)) return -1;
        together = together && quant_get(w[m]->type)->vec_dot_type == quant_get(w[0]->type)->vec_dot_type &&
                   w[m]->cols == w[0]->cols;
    }
    if (n <= 0 || n_w <= 0) return 0;
    if (n_prompt > n) n_prompt = n;
    if (n_prompt < 0) n_prompt = 0;
    for (int m = 0; m < n_w && n_prompt > 0; m++)
        if (matmul_prompt(kc, w[m], m > 0 ? w[m - 1] : NULL, x, n_prompt, y[m], y_stride[m], err)) return -1;
    if (n == n_prompt) return 0;
    if (!together) { // the generation rows matrix by matrix
        for (int m = 0; m < n_w; m++)
            if (matmul_vec(kc, w[m], x + n_prompt * w[m]->cols, n - n_prompt, y[m] + n_prompt * y_stride[m],
                           y_stride[m], err))
                return -1;
        return 0;
    }
    float *yg[MAX_SHARED];
    for (int m = 0; m < n_w; m++) yg[m] = y[m] + n_prompt * y_stride[m];
    return matmul_vec_n(kc, n_w, w, quant_get(w[0]->type)->vec_dot_type, x + n_prompt * w[0]->cols, n - n_prompt,
                        yg, y_stride, err);
}

int kern_matmul_rows(struct kern_ctx *kc, const struct kern_mat *w, const float *x, int64_t n,
                     int64_t n_prompt, float *y, int64_t y_stride, llm_err *err) {
    return kern_matmul_rows_shared(kc, 1, &w, x, n, n_prompt, &y, &y_stride, err);
}
