// The traits table, and the plain float types F32, F16 and BF16.
#include "quant/quant.h"

#include "quant/quant_impl.h"

QUANT_NO_FP_CONTRACT

static const struct quant_traits traits[QUANT_TYPE_COUNT] = {
    [QUANT_F32] = {"f32", 1, sizeof(float), QUANT_F32,
                   quant_f32_to_f32, quant_f32_from_f32, quant_f32_vec_dot},
    [QUANT_F16] = {"f16", 1, sizeof(fp16_t), QUANT_F16,
                   quant_f16_to_f32, quant_f16_from_f32, quant_f16_vec_dot},
    [QUANT_BF16] = {"bf16", 1, sizeof(bf16_t), QUANT_BF16,
                    quant_bf16_to_f32, quant_bf16_from_f32, quant_bf16_vec_dot},
    [QUANT_Q4_0] = {"q4_0", QUANT_QK, sizeof(block_q4_0), QUANT_Q8_0,
                    quant_q4_0_to_f32, quant_q4_0_from_f32, quant_q4_0_vec_dot},
    [QUANT_Q4_1] = {"q4_1", QUANT_QK, sizeof(block_q4_1), QUANT_Q8_1,
                    quant_q4_1_to_f32, quant_q4_1_from_f32, quant_q4_1_vec_dot},
    [QUANT_Q5_0] = {"q5_0", QUANT_QK, sizeof(block_q5_0), QUANT_Q8_0,
                    quant_q5_0_to_f32, quant_q5_0_from_f32, quant_q5_0_vec_dot},
    [QUANT_Q5_1] = {"q5_1", QUANT_QK, sizeof(block_q5_1), QUANT_Q8_1,
                    quant_q5_1_to_f32, quant_q5_1_from_f32, quant_q5_1_vec_dot},
    [QUANT_Q8_0] = {"q8_0", QUANT_QK, sizeof(block_q8_0), QUANT_Q8_0,
                    quant_q8_0_to_f32, quant_q8_0_from_f32, quant_q8_0_vec_dot},
    [QUANT_Q8_1] = {"q8_1", QUANT_QK, sizeof(block_q8_1), QUANT_Q8_1,
                    quant_q8_1_to_f32, quant_q8_1_from_f32, NULL},
    [QUANT_Q2_K] = {"q2_K", QUANT_QK_K, sizeof(block_q2_K), QUANT_Q8_K,
                    quant_q2_K_to_f32, quant_q2_K_from_f32, quant_q2_K_vec_dot},
    [QUANT_Q3_K] = {"q3_K", QUANT_QK_K, sizeof(block_q3_K), QUANT_Q8_K,
                    quant_q3_K_to_f32, quant_q3_K_from_f32, quant_q3_K_vec_dot},
    [QUANT_Q4_K] = {"q4_K", QUANT_QK_K, sizeof(block_q4_K), QUANT_Q8_K,
                    quant_q4_K_to_f32, quant_q4_K_from_f32, quant_q4_K_vec_dot},
    [QUANT_Q5_K] = {"q5_K", QUANT_QK_K, sizeof(block_q5_K), QUANT_Q8_K,
                    quant_q5_K_to_f32, quant_q5_K_from_f32, quant_q5_K_vec_dot},
    [QUANT_Q6_K] = {"q6_K", QUANT_QK_K, sizeof(block_q6_K), QUANT_Q8_K,
                    quant_q6_K_to_f32, quant_q6_K_from_f32, quant_q6_K_vec_dot},
    [QUANT_Q8_K] = {"q8_K", QUANT_QK_K, sizeof(block_q8_K), QUANT_Q8_K,
                    quant_q8_K_to_f32, quant_q8_K_from_f32, NULL},
};

const struct quant_traits *quant_get(int type) {
    if (type < 0 || type >= QUANT_TYPE_COUNT || traits[type].name == NULL) return NULL;
    return &traits[type];
}

size_t quant_row_bytes(int type, int64_t n) {
    const struct quant_traits *t = quant_get(type);
    if (t == NULL || n < 0 || n % t->block_elems != 0) return 0;
    const uint64_t blocks = (uint64_t)(n / t->block_elems);
    if (blocks > SIZE_MAX / t->block_bytes) return 0; // would overflow size_t
    return (size_t)blocks * t->block_bytes;
}

// ---- F32 --------------------------------------------------------------------

void quant_f32_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const float *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = x[i];
}

void quant_f32_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    float *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = src[i];
}

// Like ggml_vec_dot_f32's scalar path: float products, summed in double.
float quant_f32_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const float *x = w, *y = act;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

// ---- F16 --------------------------------------------------------------------

void quant_f16_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const fp16_t *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(x[i]);
}

void quant_f16_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    fp16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(src[i]);
}

float quant_f16_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const fp16_t *x = w, *y = act;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
    return (float)sum;
}

// ---- BF16 -------------------------------------------------------------------

void quant_bf16_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const bf16_t *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(x[i]);
}

void quant_bf16_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    bf16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = fp32_to_bf16(src[i]);
}

float quant_bf16_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const bf16_t *x = w, *y = act;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return (float)sum;
}
