// The 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
// Quantizers reproduce ggml's quantize_row_*_ref bit for bit; dots reproduce
// the arithmetic of ggml's scalar ggml_vec_dot_*_generic (exact integer sums
// per block, then one float scale per block, accumulated in float).
//
// As in quant_k.c, each type has an unpack routine that turns a block into its
// integer quants and float scales; the dequantizers and dots are written once
// on top of it.
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

// The quants of a 4-bit (qh NULL) or 5-bit block, minus offset, into q[0..31]:
// value j's low 4 bits are the low (j < 16) or high nibble of qs[j % 16]; its
// bit 4 is bit j of the little-endian uint32 qh.
static inline void unpack_bits(const uint8_t qs[QK / 2], const uint8_t *qh, int offset, int8_t q[QK]) {
    const uint32_t high = qh ? load_u32le(qh) : 0;
    for (int j = 0; j < QK / 2; j++) {
        q[j] = (int8_t)(((qs[j] & 0x0F) | (int)((high >> j) & 1u) << 4) - offset);
        q[j + QK / 2] = (int8_t)(((qs[j] >> 4) | (int)((high >> (j + QK / 2)) & 1u) << 4) - offset);
    }
}

// ---- Unpacking ----------------------------------------------------------------

// A block unpacked: value j = d * q[j], plus m for the types with a min (Q4_1, Q5_1).
struct q_block {
    float d, m;
    int8_t q[QK]; // Q4_0: [-8,7], Q5_0: [-16,15], Q4_1: [0,15], Q5_1: [0,31], Q8_*: as stored
};

// Each type's unpacker: block i of a row of that type into *u.
typedef void q_unpack_fn(const void *row, int64_t i, struct q_block *u);

static void q4_0_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q4_0 *b = (const block_q4_0 *)row + i;
    u->d = fp16_to_fp32(b->d);
    unpack_bits(b->qs, NULL, 8, u->q);
}

static void q4_1_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q4_1 *b = (const block_q4_1 *)row + i;
    u->d = fp16_to_fp32(b->d);
    u->m = fp16_to_fp32(b->m);
    unpack_bits(b->qs, NULL, 0, u->q);
}

static void q5_0_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q5_0 *b = (const block_q5_0 *)row + i;
    u->d = fp16_to_fp32(b->d);
    unpack_bits(b->qs, b->qh, 16, u->q);
}

static void q5_1_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q5_1 *b = (const block_q5_1 *)row + i;
    u->d = fp16_to_fp32(b->d);
    u->m = fp16_to_fp32(b->m);
    unpack_bits(b->qs, b->qh, 0, u->q);
}

static void q8_0_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q8_0 *b = (const block_q8_0 *)row + i;
    u->d = fp16_to_fp32(b->d);
    memcpy(u->q, b->qs, QK);
}

static void q8_1_unpack(const void *row, int64_t i, struct q_block *u) {
    const block_q8_1 *b = (const block_q8_1 *)row + i;
    u->d = fp16_to_fp32(b->d);
    memcpy(u->q, b->qs, QK);
}

// ---- Dequantizing ---------------------------------------------------------------

// value = d*q (Q4_0, Q5_0, Q8_0, Q8_1).
static inline void scaled_to_f32(q_unpack_fn *unpack, const void *src, float *dst, int64_t n) {
    struct q_block u;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        unpack(src, i, &u);
        for (int j = 0; j < QK; j++) dst[j] = (float)u.q[j] * u.d;
    }
}

// value = d*q + m (Q4_1, Q5_1).
static inline void offset_to_f32(q_unpack_fn *unpack, const void *src, float *dst, int64_t n) {
    struct q_block u;
    for (int64_t i = 0; i < n / QK; i++, dst += QK) {
        unpack(src, i, &u);
        for (int j = 0; j < QK; j++) {
            const float scaled = (float)u.q[j] * u.d;
            dst[j] = scaled + u.m;
        }
    }
}

void quant_q4_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    scaled_to_f32(q4_0_unpack, src, dst, n);
}
void quant_q4_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    offset_to_f32(q4_1_unpack, src, dst, n);
}
void quant_q5_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    scaled_to_f32(q5_0_unpack, src, dst, n);
}
void quant_q5_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    offset_to_f32(q5_1_unpack, src, dst, n);
}
void quant_q8_0_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    scaled_to_f32(q8_0_unpack, src, dst, n);
}
void quant_q8_1_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    scaled_to_f32(q8_1_unpack, src, dst, n);
}

// ---- Dots -----------------------------------------------------------------------

// sum_j q[j] * a[j], exact.
static int block_isum(const int8_t *q, const int8_t *a) {
    int sum = 0;
    for (int j = 0; j < QK; j++) sum += q[j] * a[j];
    return sum;
}

// Q4_0 . Q8_0: ggml scales each block's sum by d_x, then by d_y.
float quant_q4_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q8_0 *y = act;
    struct q_block u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        q4_0_unpack(w, i, &u);
        sum += (float)block_isum(u.q, y[i].qs) * u.d * fp16_to_fp32(y[i].d);
    }
    return sum;
}

// Q5_0 and Q8_0 . Q8_0: each block's sum times d_x * d_y.
static inline float dot_q8_0(q_unpack_fn *unpack, int64_t n, const void *w, const block_q8_0 *y) {
    struct q_block u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack(w, i, &u);
        sum += (u.d * fp16_to_fp32(y[i].d)) * (float)block_isum(u.q, y[i].qs);
    }
    return sum;
}

// Q4_1 and Q5_1 . Q8_1:
// sum_j (d_x q_j + m_x) * d_y a_j = d_x d_y sum_j q_j a_j + m_x * s_y.
static inline float dot_q8_1(q_unpack_fn *unpack, int64_t n, const void *w, const block_q8_1 *y) {
    struct q_block u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack(w, i, &u);
        const float scaled = (u.d * fp16_to_fp32(y[i].d)) * (float)block_isum(u.q, y[i].qs);
        const float offset = u.m * fp16_to_fp32(y[i].s);
        sum += scaled + offset;
    }
    return sum;
}

float quant_q4_1_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return dot_q8_1(q4_1_unpack, n, w, act);
}
float quant_q5_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return dot_q8_0(q5_0_unpack, n, w, act);
}
float quant_q5_1_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return dot_q8_1(q5_1_unpack, n, w, act);
}
float quant_q8_0_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return dot_q8_0(q8_0_unpack, n, w, act);
}

// ---- Quantizing -----------------------------------------------------------------

// Inverse of unpack_bits: the low 4 bits of quants q[0..31] into qs.
static void put_nibbles(uint8_t qs[QK / 2], const int q[QK]) {
    for (int j = 0; j < QK / 2; j++) qs[j] = (uint8_t)((q[j] & 0x0F) | (q[j + QK / 2] & 0x0F) << 4);
}

// Inverse of unpack_bits: bit 4 of quants q[0..31] into the little-endian qh.
static void put_fifth_bits(uint8_t qh[4], const int q[QK]) {
    uint32_t bits = 0;
    for (int j = 0; j < QK; j++) bits |= (uint32_t)((q[j] >> 4) & 1) << j;
    store_u32le(qh, bits);
}

// Q4_0 (nhalf 8) and Q5_0 (nhalf 16): d = max / -nhalf for the value max of
// largest magnitude, so that it maps to q = 0 (value -nhalf*d); q = x/d + nhalf
// rounded half up, at most 2*nhalf - 1. Stores d, the low 4 bits of each q in
// qs and, for Q5_0 (qh not NULL), bit 4 in qh.
static void sym_quantize(const float *x, int nhalf, fp16_t *d_out, uint8_t qs[QK / 2], uint8_t *qh) {
    float amax;
    const float max = signed_absmax(x, QK, &amax);
    const float d = max / (float)-nhalf;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float offset = (float)nhalf + 0.5f;
    int q[QK];
    for (int j = 0; j < QK; j++) {
        q[j] = (int8_t)(x[j] * id + offset);
        if (q[j] > 2 * nhalf - 1) q[j] = 2 * nhalf - 1;
    }
    *d_out = fp32_to_fp16(d);
    put_nibbles(qs, q);
    if (qh) put_fifth_bits(qh, q);
}

// Q4_1 (nmax 15) and Q5_1 (nmax 31): the block's range in nmax steps of d from
// its min; q = (x - min)/d rounded half up, at most nmax (ggml clamps Q4_1 only:
// (x - min)/d never exceeds nmax by a rounding step, so for Q5_1 the clamp
// changes nothing). Stores d, the min, and the bits as sym_quantize.
static void asym_quantize(const float *x, int nmax, fp16_t *d_out, fp16_t *m_out, uint8_t qs[QK / 2],
                          uint8_t *qh) {
    float min, max;
    min_max(x, QK, &min, &max);
    const float d = (max - min) / (float)nmax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int q[QK];
    for (int j = 0; j < QK; j++) {
        q[j] = (int8_t)((x[j] - min) * id + 0.5f);
        if (q[j] > nmax) q[j] = nmax;
    }
    *d_out = fp32_to_fp16(d);
    *m_out = fp32_to_fp16(min);
    put_nibbles(qs, q);
    if (qh) put_fifth_bits(qh, q);
}

void quant_q4_0_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) sym_quantize(src, 8, &y[i].d, y[i].qs, NULL);
}

void quant_q4_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) asym_quantize(src, 15, &y[i].d, &y[i].m, y[i].qs, NULL);
}

void quant_q5_0_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) sym_quantize(src, 16, &y[i].d, y[i].qs, y[i].qh);
}

void quant_q5_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) asym_quantize(src, 31, &y[i].d, &y[i].m, y[i].qs, y[i].qh);
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

void quant_q8_1_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, src += QK) {
        int sum;
        const float d = quantize_q8_block(src, y[i].qs, &sum);
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16((float)sum * d);
    }
}
