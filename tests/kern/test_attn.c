// Attention tiles (kern_attn) at every kernel level this CPU runs, against the
// plain-C reference kernels, which in turn must equal kern_attn_head bit for bit
// and stay near exact double-precision attention; and each level's tile must give
// each query the bits it gets alone. Sizes are awkward on purpose:
// head dims 64/80/128/256 and odd ones (tails of every vector width), 1..1000
// cells in a scrambled order, grouped-query ratios 1/4/8 with 1..8 tokens per
// tile (causal and sliding-window ranges, a query that sees nothing), keys and
// values interleaved with other heads (strides larger than a head).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kern/kern.h"
#include "testutil.h"

// One test case: a KV cache of n_cells cells for n_kv heads, and a tile of
// n_tok tokens x group query heads reading KV head `kvh`.
struct attn_case {
    int64_t dk, dv, n_cells;
    int group, n_tok, n_kv, kvh;
    int64_t swa;       // > 0: each token sees only its last swa positions
    bool empty_query;  // the first token sees nothing
};

struct attn_data {
    fp16_t *k, *v;     // [n_cells][n_kv * dk], [n_cells][n_kv * dv]
    int32_t *cells;    // [n_cells] list position -> cell (a permutation)
    float *q;          // [n_q][dk]
    float *ref;        // [n_q][dv] reference output
    float *out;        // [n_q][dv]
    float *scratch;
    float v_max;       // largest |V| (scale of the tolerance)
    struct kern_attn_tile tile;
};

static void make_case(const struct attn_case *c, struct attn_data *a) {
    const int n_q = c->group * c->n_tok;
    const size_t kw = (size_t)(c->n_kv * c->dk), vw = (size_t)(c->n_kv * c->dv);
    a->k = xcalloc((size_t)c->n_cells * kw, sizeof(fp16_t));
    a->v = xcalloc((size_t)c->n_cells * vw, sizeof(fp16_t));
    a->cells = xcalloc((size_t)c->n_cells, sizeof(int32_t));
    a->q = xcalloc((size_t)n_q * (size_t)c->dk, sizeof(float));
    a->ref = xcalloc((size_t)n_q * (size_t)c->dv, sizeof(float));
    a->out = xcalloc((size_t)n_q * (size_t)c->dv, sizeof(float));
    a->scratch = xcalloc(kern_attn_scratch_floats(c->n_cells, c->dk), sizeof(float));
    a->v_max = 0;
    for (size_t i = 0; i < (size_t)c->n_cells * kw; i++) a->k[i] = fp32_to_fp16(rng_normal());
    for (size_t i = 0; i < (size_t)c->n_cells * vw; i++) {
        a->v[i] = fp32_to_fp16(rng_normal());
        const float av = fabsf(fp16_to_fp32(a->v[i]));
        if (av > a->v_max) a->v_max = av;
    }
    // Queries with a random overall size: scores from nearly uniform to peaked softmaxes.
    for (int r = 0; r < n_q; r++) {
        const float mag = (float)exp(rng_uniform() * 3.0 - 1.0);
        for (int64_t d = 0; d < c->dk; d++) a->q[r * c->dk + d] = rng_normal() * mag;
    }
    for (int64_t j = 0; j < c->n_cells; j++) a->cells[j] = (int32_t)j;
    for (int64_t j = c->n_cells - 1; j > 0; j--) { // cells in no particular order
        const int64_t o = (int64_t)(rng_next() % (uint64_t)(j + 1));
        const int32_t t = a->cells[j];
        a->cells[j] = a->cells[o];
        a->cells[o] = t;
    }
    struct kern_attn_tile *t = &a->tile;
    memset(t, 0, sizeof *t);
    t->n_q = n_q;
    t->cells = a->cells;
    t->k = a->k + (size_t)(c->kvh * c->dk);
    t->k_stride = kw;
    t->v = a->v + (size_t)(c->kvh * c->dv);
    t->v_stride = vw;
    t->head_dim_k = c->dk;
    t->head_dim_v = c->dv;
    t->scale = 1.0f / sqrtf((float)c->dk);
    // Token i (of n_tok consecutive ones ending at the last cell) sees positions up to
    // its own; each of its group heads shares that range, as in grouped-query attention.
    for (int i = 0; i < c->n_tok; i++) {
        int64_t end = c->n_cells - (c->n_tok - 1 - i);
        if (end < 1) end = 1;
        int64_t begin = c->swa > 0 && end > c->swa ? end - c->swa : 0;
        if (c->empty_query && i == 0) begin = end;
        for (int h = 0; h < c->group; h++) {
            const int r = i * c->group + h;
            t->q[r] = a->q + (size_t)r * (size_t)c->dk;
            t->begin[r] = (int32_t)begin;
            t->end[r] = (int32_t)end;
        }
    }
}

static void free_case(struct attn_data *a) {
    free(a->k);
    free(a->v);
    free(a->cells);
    free(a->q);
    free(a->ref);
    free(a->out);
    free(a->scratch);
}

static void set_out(struct attn_data *a, float *base, int64_t dv) {
    for (int r = 0; r < a->tile.n_q; r++) a->tile.out[r] = base + (size_t)r * (size_t)dv;
}

static const char *case_name(const struct attn_case *c) {
    static char buf[160];
    snprintf(buf, sizeof buf, "dk %lld dv %lld cells %lld group %d tokens %d kv head %d/%d swa %lld%s",
             (long long)c->dk, (long long)c->dv, (long long)c->n_cells, c->group, c->n_tok, c->kvh, c->n_kv,
             (long long)c->swa, c->empty_query ? " empty query" : "");
    return buf;
}

// Reference tile == kern_attn_head per query, exactly; and both near exact math.
static void check_reference(const struct attn_case *c, struct attn_data *a) {
    const struct kern_attn_tile *t = &a->tile;
    float *head_out = xcalloc((size_t)c->dv, sizeof(float));
    float *head_scratch = xcalloc((size_t)c->n_cells, sizeof(float));
    double *sc = xcalloc((size_t)c->n_cells, sizeof(double));
    int mismatches = 0;
    double worst_exact = 0;
    for (int r = 0; r < t->n_q; r++) {
        const int32_t b = t->begin[r], e = t->end[r];
        kern_attn_head(t->q[r], t->k, t->k_stride, t->v, t->v_stride, t->cells + b, e - b, c->dk, c->dv,
                       t->scale, head_scratch, head_out);
        for (int64_t d = 0; d < c->dv; d++) mismatches += memcmp(&head_out[d], &t->out[r][d], sizeof(float)) != 0;
        // Exact attention in double, no fp16 rounding of q or p.
        double max = -INFINITY, sum = 0;
        for (int32_t j = b; j < e; j++) {
            const fp16_t *kr = t->k + (size_t)t->cells[j] * t->k_stride;
            double s = 0;
            for (int64_t d = 0; d < c->dk; d++) s += (double)t->q[r][d] * fp16_to_fp32(kr[d]);
            sc[j] = s * t->scale;
            if (sc[j] > max) max = sc[j];
        }
        for (int32_t j = b; j < e; j++) sum += sc[j] = exp(sc[j] - max);
        for (int64_t d = 0; d < c->dv; d++) {
            double o = 0;
            for (int32_t j = b; j < e; j++) o += sc[j] / sum * fp16_to_fp32(t->v[(size_t)t->cells[j] * t->v_stride + (size_t)d]);
            const double diff = fabs(o - t->out[r][d]);
            if (diff > worst_exact) worst_exact = diff;
        }
    }
    CHECK(mismatches == 0, "%s: reference tile differs from kern_attn_head in %d values", case_name(c), mismatches);
    // fp16 rounding of q and of every probability: relative errors of ~2^-11 each.
    CHECK(worst_exact <= 5e-3 * a->v_max, "%s: reference %.3g from exact attention (|V| <= %.3g)", case_name(c),
          worst_exact, a->v_max);
    free(head_out);
    free(head_scratch);
    free(sc);
}

static double worst_max_err, worst_rms_err; // over all levels and cases, relative to max|V|

// A level's tile against the reference tile. Differences come only from float
// summation order: a score differing in its last bits can round a probability to
// the neighbouring fp16 value (2^-11 relative), so single outputs may move by up
// to ~1e-3 max|V| in theory (every probability off by one fp16 step); measured
// worst: 4e-5 max, 3e-6 rms, and the bounds below are ~12x that. A wrong
// cell, range, scale or stride moves outputs by 1e-2 .. 1 of max|V|.
static void check_level(const struct kern_level *lv, const struct attn_case *c, struct attn_data *a) {
    const int64_t n = (int64_t)a->tile.n_q * c->dv;
    for (int64_t i = 0; i < n; i++) a->out[i] = NAN; // kern_attn must overwrite every value
    set_out(a, a->out, c->dv);
    kern_attn(lv->ops(), &a->tile, a->scratch);
    double max_err = 0, sq = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a->out[i] - a->ref[i]);
        if (!(e <= max_err)) { // NaN-safe
            max_err = isnan(e) ? INFINITY : e;
            bad = i;
        }
        sq += e * e;
    }
    const double rms = sqrt(sq / (double)n) / a->v_max, mx = max_err / a->v_max;
    if (mx > worst_max_err) worst_max_err = mx;
    if (rms > worst_rms_err) worst_rms_err = rms;
    CHECK(mx <= 5e-4 && rms <= 5e-5, "level %s, %s: max error %.3g, rms %.3g (x max|V|) at value %lld: %g vs %g",
          lv->name, case_name(c), mx, rms, (long long)bad, bad >= 0 ? a->out[bad] : 0.0, bad >= 0 ? a->ref[bad] : 0.0);
}

// Tile invariance at a level: each query of the tile computed in a tile of its
// own (one query: no staging, another blocking) gives the same bits as in the
// whole tile. A token's attention must not depend on the tokens beside it
// (batch invariance: the last token of a prompt is computed in a prompt tile,
// the same token generated alone in a tile of its own).
static void check_tile_invariance(const struct kern_level *lv, const struct attn_case *c, struct attn_data *a) {
    const struct kern_attn_tile whole = a->tile;
    const int64_t n = (int64_t)whole.n_q * c->dv;
    float *alone = xcalloc((size_t)n, sizeof(float));
    set_out(a, a->out, c->dv);
    kern_attn(lv->ops(), &a->tile, a->scratch);
    for (int r = 0; r < whole.n_q; r++) {
        struct kern_attn_tile one = whole;
        one.n_q = 1;
        one.q[0] = whole.q[r];
        one.out[0] = alone + (size_t)r * (size_t)c->dv;
        one.begin[0] = whole.begin[r];
        one.end[0] = whole.end[r];
        kern_attn(lv->ops(), &one, a->scratch);
    }
    a->tile = whole;
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) mismatches += memcmp(&alone[i], &a->out[i], sizeof(float)) != 0;
    CHECK(mismatches == 0, "level %s, %s: %d of %lld values differ when each query is alone", lv->name,
          case_name(c), mismatches, (long long)n);
    free(alone);
}

// The tile split as a generation step splits it among threads (forward.c): scores
// in three uneven ranges of the span, each with its own q scratch, the softmax in
// two groups of rows, the outputs in slices of 24 values, last first: the same
// bits as kern_attn.
static void check_split(const struct kern_level *lv, const struct attn_case *c, struct attn_data *a) {
    const struct kern_ops *ops = lv->ops();
    const int64_t n = (int64_t)a->tile.n_q * c->dv;
    float *split = xcalloc((size_t)n, sizeof(float));
    set_out(a, a->out, c->dv);
    kern_attn(ops, &a->tile, a->scratch);
    int64_t j0, j1;
    kern_attn_span(&a->tile, &j0, &j1);
    const int64_t span = j1 > j0 ? j1 - j0 : 0;
    float *s = xcalloc((size_t)(a->tile.n_q * span + 1), sizeof(float));
    float *qh = xcalloc((size_t)(a->tile.n_q * c->dk), sizeof(float));
    set_out(a, split, c->dv);
    for (int64_t i = 0; i < n; i++) split[i] = NAN; // every value must be written
    if (span > 0) {
        const int64_t cut[4] = {j0, j0 + span / 3 + 1 < j1 ? j0 + span / 3 + 1 : j1, j0 + 2 * span / 3, j1};
        for (int part = 2; part >= 0; part--)
            if (cut[part + 1] > cut[part]) kern_attn_scores(ops, &a->tile, j0, j1, cut[part], cut[part + 1], s, qh);
        kern_attn_probs(ops, &a->tile, j0, j1, a->tile.n_q / 2, a->tile.n_q, s);
        kern_attn_probs(ops, &a->tile, j0, j1, 0, a->tile.n_q / 2, s);
    }
    for (int64_t d0 = (c->dv - 1) / 24 * 24; d0 >= 0; d0 -= 24)
        kern_attn_values(ops, &a->tile, j0, j1, s, d0, d0 + 24 < c->dv ? d0 + 24 : c->dv);
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) mismatches += memcmp(&split[i], &a->out[i], sizeof(float)) != 0;
    CHECK(mismatches == 0, "level %s, %s: %d of %lld values differ when the tile is split", lv->name, case_name(c),
          mismatches, (long long)n);
    free(split), free(s), free(qh);
}

// One case: the reference tile against kern_attn_head and exact math, then every
// level the CPU runs against the reference (and, for tiles of several blocks of
// queries, against each query alone).
static void run_case(const struct attn_case *c, const struct cpu_features *f, const struct kern_level *levels,
                     int n_levels) {
    struct attn_data a;
    make_case(c, &a);
    set_out(&a, a.ref, c->dv);
    kern_attn(kern_generic_ops(), &a.tile, a.scratch);
    check_reference(c, &a);
    if (c->empty_query)
        for (int64_t d = 0; d < c->dv * c->group; d++)
            CHECK(a.ref[d] == 0.0f, "%s: a query that sees no cell gives zeros", case_name(c));
    for (int li = 0; li < n_levels; li++)
        if (levels[li].supported(f)) {
            check_level(&levels[li], c, &a);
            check_split(&levels[li], c, &a);
            if (c->group * c->n_tok > 4) check_tile_invariance(&levels[li], c, &a);
        }
    free_case(&a);
}

// A level's softmax row against the reference: the exp may differ by an ulp or so,
// so a probability may land on the neighbouring fp16 value, never further. Scores
// span wide ranges (exp underflow for far-below-max ones) and lengths cover tails.
static void check_softmax(const struct kern_level *lv) {
    const struct kern_ops *ops = lv->ops();
    if (!ops->attn_softmax) return;
    float s[300], ref[300], out[300];
    int bad = 0, differ = 0, total = 0;
    for (int n = 1; n <= 300; n += n < 40 ? 1 : 37) {
        const double spread = n % 3 == 0 ? 200.0 : n % 3 == 1 ? 20.0 : 1.0;
        for (int j = 0; j < n; j++) s[j] = (float)((rng_uniform() - 0.5) * spread);
        if (n > 5) s[n / 2] = s[0] - 87.0f; // near the underflow boundary
        memcpy(ref, s, sizeof(float) * (size_t)n);
        memcpy(out, s, sizeof(float) * (size_t)n);
        kern_attn_softmax_ref(ref, n);
        ops->attn_softmax(out, n);
        double sum = 0;
        for (int j = 0; j < n; j++) {
            sum += out[j];
            differ += out[j] != ref[j];
            total++;
            // One fp16 step of ref (relative 2^-10 for normals, 2^-24 absolute below).
            const double step = fmax(fabs(ref[j]) * 0x1.0p-10, 0x1.0p-24);
            if (!(fabs((double)out[j] - ref[j]) <= step) || out[j] != fp16_to_fp32(fp32_to_fp16(out[j]))) {
                if (!bad) fprintf(stderr, "level %s softmax n=%d [%d]: %g vs %g\n", lv->name, n, j, out[j], ref[j]);
                bad++;
            }
        }
        CHECK(fabs(sum - 1.0) < 1e-2, "level %s softmax n=%d sums to %g", lv->name, n, sum);
    }
    CHECK(bad == 0, "level %s: %d softmax values more than one fp16 step from the reference", lv->name, bad);
    // An exp within an ulp or two of expf rarely moves a value across an fp16 rounding
    // boundary (measured: 0 .. 0.3%); a 1e-4 relative error moves ~10%.
    CHECK(differ * 100 <= total * 2, "level %s: %d of %d softmax values differ from the reference", lv->name,
          differ, total);
    if (differ * 100 > total * 2 || getenv("ATTN_TEST_VERBOSE"))
        fprintf(stderr, "level %s softmax: %d of %d values differ\n", lv->name, differ, total);
}

int main(void) {
    struct cpu_features f;
    cpu_detect(&f);
    const struct kern_level *levels;
    const int n_levels = kern_levels(&levels);

    static const int64_t dims[][2] = {{64, 64}, {80, 80}, {128, 128}, {256, 256}, {36, 36}, {100, 52}, {8, 24}, {3, 2}};
    static const int64_t cell_counts[] = {1, 2, 3, 7, 16, 33, 100, 257, 1000};
    static const int groups[] = {1, 4, 8};
    int cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ci = 0; ci < sizeof cell_counts / sizeof cell_counts[0]; ci++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
                const int64_t n_cells = cell_counts[ci];
                // Larger cases only for the common head dims, to keep the test fast.
                if (n_cells == 1000 && di >= 4) continue;
                const int group = groups[gi];
                const int variant = (int)(di + ci + gi) % 4;
                struct attn_case c = {
                    .dk = dims[di][0], .dv = dims[di][1], .n_cells = n_cells, .group = group,
                    .n_tok = variant == 0 ? 1 : variant == 1 ? KERN_ATTN_MAX_Q / group : 1 + 2 * variant,
                    .n_kv = variant == 2 ? 3 : 1,
                    .swa = variant == 3 ? n_cells / 3 : 0,
                    .empty_query = variant == 1 && n_cells > 1,
                };
                if (c.n_tok * c.group > KERN_ATTN_MAX_Q) c.n_tok = KERN_ATTN_MAX_Q / c.group;
                c.kvh = c.n_kv - 1;
                run_case(&c, &f, levels, n_levels);
                cases++;
            }
    // Tiny heads over a long span: thousands of rows fit a kernel's blocks of rows.
    for (int group = 1; group <= 4; group += 3) {
        const struct attn_case c = {.dk = 3, .dv = 2, .n_cells = 3000, .group = group, .n_tok = 32 / group, .n_kv = 1};
        run_case(&c, &f, levels, n_levels);
        cases++;
    }
    for (int li = 0; li < n_levels; li++)
        if (levels[li].supported(&f)) check_softmax(&levels[li]);
    char tested[256] = "";
    for (int li = 0; li < n_levels; li++)
        if (levels[li].supported(&f)) {
            strncat(tested, " ", sizeof tested - strlen(tested) - 1);
            strncat(tested, levels[li].name, sizeof tested - strlen(tested) - 1);
        }
    printf("attention: %d cases, levels:%s; worst level error %.3g max, %.3g rms (x max|V|)\n", cases, tested,
           worst_max_err, worst_rms_err);
    return CHECK_DONE();
}
