// The 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
// Quantizers reproduce ggml's quantize_row_*_ref bit for bit; dots reproduce
// the arithmetic of ggml's scalar ggml_vec_dot_*_generic (exact integer sums
// per block, then one float scale per block, accumulated in float).
#include <math.h>
#include <string.h>

#include "quant/quant_impl.h"

QUANT_NO_FP_CONTRACT

#define QK QUANT_QK

// Absolute maximum of a block, and the signed value that has it (the first
// one, if several tie).
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

static void min_max(const float *x, int n, float *min_out, float *max_out) {
    float min = x[0], max = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

static uint32_t load_u32le(const uint8_t b[4]) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void store_u32le(uint8_t b[4], uint32_t v) {
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}

// The unsigned 4-bit (q4) or 5-bit (q5) quant of value j (0..31) of a block.
static inline int nibble(const uint8_t *qs, int j) {
    return j < QK / 2 ? qs[j] & 0x0F : qs[j - QK / 2] >> 4;
}
static inline int fifth_bit(uint32_t qh, int j) { return (int)((qh >> j) & 1u) << 4; }

// ---- Q4_0 -------------------------------------------------------------------

void quant_q4_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)(nibble(b[i].qs, j) - 8) * d;
    }
}

void quant_q4_0_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        float amax;
        const float max = signed_absmax(src, QK, &amax);
        const float d = max / -8;  // so the extreme value maps to q = 0 (value -8*d = max)
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int8_t)(src[j] * id + 8.5f), q1 = (int8_t)(src[j + QK / 2] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

float quant_q4_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += (nibble(x[i].qs, j) - 8) * y[i].qs[j];
        sum += (float)sumi * fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d);
    }
    return sum;
}

// ---- Q4_1 -------------------------------------------------------------------

void quant_q4_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < QK; j++) {
            const float scaled = (float)nibble(b[i].qs, j) * d;
            dst[j] = scaled + m;
        }
    }
}

void quant_q4_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        float min, max;
        min_max(src, QK, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int8_t)((src[j] - min) * id + 0.5f);
            int q1 = (int8_t)((src[j + QK / 2] - min) * id + 0.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

float quant_q4_1_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += nibble(x[i].qs, j) * y[i].qs[j];
        // sum_j (d_x q_j + m_x) * d_y a_j = d_x d_y sum_j q_j a_j + m_x * s_y
        const float scaled = fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * (float)sumi;
        const float offset = fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
        sum += scaled + offset;
    }
    return sum;
}

// ---- Q5_0 -------------------------------------------------------------------

void quant_q5_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK; j++)
            dst[j] = (float)((nibble(b[i].qs, j) | fifth_bit(qh, j)) - 16) * d;
    }
}

void quant_q5_0_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        float amax;
        const float max = signed_absmax(src, QK, &amax);
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int q0 = (int8_t)(src[j] * id + 16.5f), q1 = (int8_t)(src[j + QK / 2] * id + 16.5f);
            if (q0 > 31) q0 = 31;
            if (q1 > 31) q1 = 31;
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

float quant_q5_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_u32le(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK; j++)
            sumi += ((nibble(x[i].qs, j) | fifth_bit(qh, j)) - 16) * y[i].qs[j];
        sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)sumi;
    }
    return sum;
}

// ---- Q5_1 -------------------------------------------------------------------

void quant_q5_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        const uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK; j++) {
            const float scaled = (float)(nibble(b[i].qs, j) | fifth_bit(qh, j)) * d;
            dst[j] = scaled + m;
        }
    }
}

void quant_q5_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        float min, max;
        min_max(src, QK, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            // (x - min) * id lies in [0, 31] up to rounding, so no clamp is needed
            // (ggml has none either).
            const unsigned q0 = (uint8_t)((src[j] - min) * id + 0.5f);
            const unsigned q1 = (uint8_t)((src[j + QK / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= ((q0 >> 4) & 1u) << j;
            qh |= ((q1 >> 4) & 1u) << (j + QK / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

float quant_q5_1_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_u32le(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += (nibble(x[i].qs, j) | fifth_bit(qh, j)) * y[i].qs[j];
        const float scaled = (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)sumi;
        const float offset = fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
        sum += scaled + offset;
    }
    return sum;
}

// ---- Q8_0 -------------------------------------------------------------------

void quant_q8_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

// Shared by Q8_0 and Q8_1: d = amax/127, q = x * (127/amax) rounded half to even.
// That is how llama.cpp's x86 SIMD code quantizes activations (its scalar reference
// uses 1/d and rounds halves away); the real default model's massive activations
// make the last-bit difference visible in the logits, so every level does this.
// Returns d (before fp16 rounding) and the sum of the quants.
static float quantize_q8_block(const float *x, int8_t *qs, int *sum_out) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = (int8_t)nearbyintf(x[j] * id);
        sum += qs[j];
    }
    *sum_out = sum;
    return d;
}

void quant_q8_0_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        int sum;
        y[i].d = fp32_to_fp16(quantize_q8_block(src, y[i].qs, &sum));
    }
}

float quant_q8_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q8_0 *x = w, *y = act;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (float)sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sum;
}

// ---- Q8_1 -------------------------------------------------------------------

void quant_q8_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

void quant_q8_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        int sum;
        const float d = quantize_q8_block(src, y[i].qs, &sum);
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16((float)sum * d);
    }
}
