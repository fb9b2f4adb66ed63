// Reference row ops. They follow ggml's order of evaluation (double sums in
// norms and softmax, fp16 rounding where ggml rounds) so logits match llama.cpp.
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kern.h"

void kern_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]); // float product, as ggml
    const float scale = 1.0f / sqrtf((float)(sum / n) + eps);
    if (w)
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
    else
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale;
}

void kern_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const float mean = (float)sum / (float)n; // ggml rounds the sum to float first
    double var = 0;
    for (int64_t i = 0; i < n; i++) {
        const float d = x[i] - mean;
        out[i] = d;
        var += (double)(d * d); // float square, double sum
    }
    const float scale = 1.0f / sqrtf((float)(var / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) {
        float y = out[i] * scale;
        if (w) y *= w[i];
        if (b) y += b[i];
        out[i] = y;
    }
}

void kern_rope_angles(float *cs, int64_t n_dims, int32_t pos, float freq_base, float freq_scale) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_dims);
    float theta = (float)pos;
    for (int64_t i = 0; i < n_dims / 2; i++) {
        const float angle = theta * freq_scale;
        cs[2 * i] = cosf(angle);
        cs[2 * i + 1] = sinf(angle);
        theta *= theta_scale;
    }
}

void kern_rope_apply(float *x, int64_t n_dims, const float *cs, bool neox) {
    const int64_t half = n_dims / 2;
    for (int64_t i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + half] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void kern_rope(float *x, int64_t n_dims, int32_t pos, float freq_base, float freq_scale, bool neox) {
    float cs[KERN_MAX_HEAD_DIM];
    if (n_dims > KERN_MAX_HEAD_DIM) n_dims = KERN_MAX_HEAD_DIM; // the loader rejects larger heads
    kern_rope_angles(cs, n_dims, pos, freq_base, freq_scale);
    kern_rope_apply(x, n_dims, cs, neox);
}

// ggml evaluates GELU through a table indexed by the input rounded to half and
// holding half results; reproducing it keeps our logits on llama.cpp's.
static fp16_t gelu_table[1 << 16];
static float gelu_table_f32[1 << 16]; // the same values widened, for SIMD gathers
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    for (uint32_t i = 0; i < (1u << 16); i++) {
        const float x = fp16_to_fp32((fp16_t)i);
        const float y = 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = fp32_to_fp16(y);
        gelu_table_f32[i] = fp16_to_fp32(gelu_table[i]);
    }
}

const float *kern_gelu_table_f32(void) {
    pthread_once(&gelu_once, gelu_table_init);
    return gelu_table_f32;
}

void kern_geglu(float *out, const float *gate, const float *up, int64_t n) {
    pthread_once(&gelu_once, gelu_table_init);
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        float act;
        if (g <= -10.0f) act = 0.0f;
        else if (g >= 10.0f) act = g;
        else act = fp16_to_fp32(gelu_table[fp32_to_fp16(g)]);
        out[i] = act * up[i];
    }
}

void kern_gelu(float *out, const float *x, int64_t n) {
    pthread_once(&gelu_once, gelu_table_init);
    for (int64_t i = 0; i < n; i++) {
        const float g = x[i];
        if (g <= -10.0f) out[i] = 0.0f;
        else if (g >= 10.0f) out[i] = g;
        else out[i] = fp16_to_fp32(gelu_table[fp32_to_fp16(g)]);
    }
}

void kern_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

// The softmax's exponentials: x[j] = expf(x[j] - max), summed in double. Returns
// 1/sum, or 0 if the sum is 0.
static float exp_inv_sum(float *x, int64_t n, float max) {
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        const float e = expf(x[j] - max);
        x[j] = e;
        sum += e;
    }
    return sum > 0 ? (float)(1.0 / sum) : 0.0f;
}

void kern_attn_head(const float *q, const fp16_t *k, size_t k_stride, const fp16_t *v,
                    size_t v_stride, const int32_t *cells, int64_t n_cells, int64_t head_dim_k,
                    int64_t head_dim_v, float scale, float *scratch, float *out) {
    // ggml multiplies K (fp16) by Q rounded to fp16, and V by the probabilities
    // rounded to fp16; sums are float.
    float qh[KERN_MAX_HEAD_DIM];
    for (int64_t d = 0; d < head_dim_k; d++) qh[d] = fp16_to_fp32(fp32_to_fp16(q[d]));
    float max = -INFINITY;
    for (int64_t j = 0; j < n_cells; j++) {
        const fp16_t *kr = k + (size_t)cells[j] * k_stride;
        float s = 0;
        for (int64_t d = 0; d < head_dim_k; d++) s += qh[d] * fp16_to_fp32(kr[d]);
        s *= scale;
        scratch[j] = s;
        if (s > max) max = s;
    }
    const float inv = exp_inv_sum(scratch, n_cells, max);
    for (int64_t d = 0; d < head_dim_v; d++) out[d] = 0;
    for (int64_t j = 0; j < n_cells; j++) {
        const float p = fp16_to_fp32(fp32_to_fp16(scratch[j] * inv));
        const fp16_t *vr = v + (size_t)cells[j] * v_stride;
        for (int64_t d = 0; d < head_dim_v; d++) out[d] += p * fp16_to_fp32(vr[d]);
    }
}

// a.b with 8 running sums (lanes the compiler keeps in vector registers), as
// SIMD dot products sum; the order differs from a serial sum only by rounding.
static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void kern_attn_head_f32(const float *q, const float *k, size_t k_stride, const float *v, size_t v_stride,
                        const int32_t *rows, int64_t n_rows, int64_t head_dim, float scale, float *scratch,
                        float *out) {
    float max = -INFINITY;
    for (int64_t j = 0; j < n_rows; j++) {
        float s = dot_f32(q, k + (size_t)rows[j] * k_stride, head_dim) * scale;
        scratch[j] = s;
        if (s > max) max = s;
    }
    const float inv = exp_inv_sum(scratch, n_rows, max);
    float acc[KERN_MAX_HEAD_DIM]; // local, so the loop below vectorizes (out could alias v)
    for (int64_t d = 0; d < head_dim; d++) acc[d] = 0;
    for (int64_t j = 0; j < n_rows; j++) {
        const float p = scratch[j] * inv;
        const float *vr = v + (size_t)rows[j] * v_stride;
        int64_t d = 0;
        for (; d + 8 <= head_dim; d += 8) // fixed-width blocks: vectorized at -O2
            for (int l = 0; l < 8; l++) acc[d + l] += p * vr[d + l];
        for (; d < head_dim; d++) acc[d] += p * vr[d];
    }
    for (int64_t d = 0; d < head_dim; d++) out[d] = acc[d];
}

// ---- Attention tiles ---------------------------------------------------------------
// Reference kernels: the same arithmetic as kern_attn_head, one query at a time.

static float round_fp16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

void kern_attn_qk_ref(const struct kern_attn_tile *t, int64_t j0, int64_t j1, float *s,
                      int64_t s_stride, float *qh) {
    const int64_t dk = t->head_dim_k;
    for (int r = 0; r < t->n_q; r++)
        for (int64_t d = 0; d < dk; d++) qh[r * dk + d] = round_fp16(t->q[r][d]);
    for (int r = 0; r < t->n_q; r++)
        for (int64_t j = j0; j < j1; j++) {
            const fp16_t *kr = t->k + (size_t)t->cells[j] * t->k_stride;
            float sum = 0;
            for (int64_t d = 0; d < dk; d++) sum += qh[r * dk + d] * fp16_to_fp32(kr[d]);
            s[r * s_stride + (j - j0)] = sum * t->scale;
        }
}

void kern_attn_softmax_ref(float *p, int64_t n) {
    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++) max = p[j] > max ? p[j] : max;
    const float inv = exp_inv_sum(p, n, max);
    for (int64_t j = 0; j < n; j++) p[j] = round_fp16(p[j] * inv);
}

void kern_attn_pv_ref(const struct kern_attn_tile *t, int64_t j0, int64_t j1, const float *p,
                      int64_t p_stride, float *const *acc) {
    for (int r = 0; r < t->n_q; r++)
        for (int64_t j = j0; j < j1; j++) {
            const float pj = p[r * p_stride + (j - j0)];
            const fp16_t *vr = t->v + (size_t)t->cells[j] * t->v_stride;
            for (int64_t d = 0; d < t->head_dim_v; d++) acc[r][d] += pj * fp16_to_fp32(vr[d]);
        }
}

void kern_attn_span(const struct kern_attn_tile *t, int64_t *j0, int64_t *j1) {
    *j0 = t->begin[0], *j1 = t->end[0];
    for (int r = 1; r < t->n_q; r++) {
        if (t->begin[r] < *j0) *j0 = t->begin[r];
        if (t->end[r] > *j1) *j1 = t->end[r];
    }
}

void kern_attn_scores(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1, int64_t a,
                      int64_t b, float *s, float *qh) {
    (ops->attn_qk ? ops->attn_qk : kern_attn_qk_ref)(t, a, b, s + (a - j0), j1 - j0, qh);
}

void kern_attn_probs(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1, int r0,
                     int r1, float *s) {
    const int64_t span = j1 - j0;
    for (int r = r0; r < r1; r++) {
        float *row = s + (size_t)r * (size_t)span;
        const int64_t b = t->begin[r] - j0, e = t->end[r] - j0;
        if (e <= b) {
            memset(row, 0, (size_t)span * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < b; j++) row[j] = 0;
        for (int64_t j = e; j < span; j++) row[j] = 0;
        (ops->attn_softmax ? ops->attn_softmax : kern_attn_softmax_ref)(row + b, e - b);
    }
}

void kern_attn_values(const struct kern_ops *ops, const struct kern_attn_tile *t, int64_t j0, int64_t j1,
                      const float *s, int64_t d0, int64_t d1) {
    // The same tile over values [d0, d1) of every V row and output: each output
    // value's sum over the cells is computed alone, in the same order.
    struct kern_attn_tile part = *t;
    part.v = t->v + d0;
    part.head_dim_v = d1 - d0;
    for (int r = 0; r < t->n_q; r++) {
        part.out[r] = t->out[r] + d0;
        memset(part.out[r], 0, (size_t)(d1 - d0) * sizeof(float));
    }
    if (j1 > j0) (ops->attn_pv ? ops->attn_pv : kern_attn_pv_ref)(&part, j0, j1, s, j1 - j0, part.out);
}

void kern_attn(const struct kern_ops *ops, const struct kern_attn_tile *t, float *scratch) {
    int64_t j0, j1;
    kern_attn_span(t, &j0, &j1);
    // Every query is scored against the tile's whole span (one pass over K for all);
    // positions a query does not see get probability 0.
    float *s = scratch, *qh = scratch + (size_t)t->n_q * (size_t)(j1 > j0 ? j1 - j0 : 0);
    if (j1 > j0) {
        kern_attn_scores(ops, t, j0, j1, j0, j1, s, qh);
        kern_attn_probs(ops, t, j0, j1, 0, t->n_q, s);
    }
    kern_attn_values(ops, t, j0, j1, s, 0, t->head_dim_v);
}
