// Reference row ops. They follow ggml's order of evaluation (double sums in
// norms and softmax, fp16 rounding where ggml rounds) so logits match llama.cpp.
#include <math.h>
#include <pthread.h>

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

void kern_rope(float *x, int64_t n_dims, int32_t pos, float freq_base, float freq_scale, bool neox) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_dims);
    float theta = (float)pos;
    const int64_t half = n_dims / 2;
    for (int64_t i = 0; i < half; i++) {
        const float angle = theta * freq_scale;
        const float c = cosf(angle), s = sinf(angle);
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + half] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
        theta *= theta_scale;
    }
}

// ggml evaluates GELU through a table indexed by the input rounded to half and
// holding half results; reproducing it keeps our logits on llama.cpp's.
static fp16_t gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    for (uint32_t i = 0; i < (1u << 16); i++) {
        const float x = fp16_to_fp32((fp16_t)i);
        const float y = 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = fp32_to_fp16(y);
    }
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
    double sum = 0;
    for (int64_t j = 0; j < n_cells; j++) {
        const float e = expf(scratch[j] - max);
        scratch[j] = e;
        sum += e;
    }
    const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
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
    double sum = 0;
    for (int64_t j = 0; j < n_rows; j++) {
        const float e = expf(scratch[j] - max);
        scratch[j] = e;
        sum += e;
    }
    const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
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
