// The K-quants (Q2_K .. Q6_K) and their activation type Q8_K, in super-blocks
// of 256 values.
//
// Each weight type has an unpack routine that turns a super-block into a
// struct k_block: plain integer quants q[256], integer scales (and mins) per 16
// values, and the float super-block scales. The dequantizers and dots are
// written once on top of it, shared by the types that compute alike (likewise
// the quantizers, one routine per type for a super-block). The dots reproduce
// the arithmetic of ggml's scalar ggml_vec_dot_*_q8_K_generic, including its
// eight float accumulation lanes, so results match it bit for bit.
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quant/quant_impl.h"

QUANT_NO_FP_CONTRACT

#define QK_K QUANT_QK_K

// ---- Unpacking ----------------------------------------------------------------

// Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes. Sub-blocks 0..3
// keep theirs in the low 6 bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks
// 4..7 keep the low 4 bits in byte 8+j-4 (scale: low nibble, min: high nibble)
// and the top 2 bits in the spare top bits of bytes j-4 (scale) and j (min).
static void k4_scale_min(const uint8_t s[12], int j, int *scale, int *min) {
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *min = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

// Q3_K: 16 six-bit scales (stored +32) in 12 bytes: low 4 bits of scale j are the
// low (j < 8) or high (j >= 8) nibble of byte j%8; the top 2 bits are bits
// 2*(j/4) of byte 8 + j%4. Returns the signed scale.
static int q3_K_scale(const uint8_t s[12], int j) {
    const int lo = (s[j % 8] >> (4 * (j / 8))) & 0x0F;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

// Value e of Q2_K/Q3_K's 2-bit low part: bits 2*((e%128)/32) of qs[32*(e/128) + e%32].
static inline int two_bits(const uint8_t *qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

// Value e of Q4_K/Q5_K's 4-bit low part: nibble (e/32)%2 of qs[32*(e/64) + e%32].
static inline int four_bits(const uint8_t *qs, int e) {
    return (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0x0F;
}

// A super-block unpacked: what the dequantizers and dots below work on.
struct k_block {
    float d, dmin;          // super-block scale; scale of the mins (Q2_K, Q4_K, Q5_K)
    int8_t q[QK_K];         // plain integer quants
    int scale[16], min[16]; // per 16 values (Q4_K, Q5_K: their sub-blocks of 32 twice)
};

// Each type's unpacker: super-block i of a row of that type into *u.
typedef void k_unpack_fn(const void *row, int64_t i, struct k_block *u);

// Q2_K: q in [0,3]; scale[i], min[i] per 16 values.
static void q2_K_unpack(const void *row, int64_t i, struct k_block *u) {
    const block_q2_K *b = (const block_q2_K *)row + i;
    u->d = fp16_to_fp32(b->d);
    u->dmin = fp16_to_fp32(b->dmin);
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)two_bits(b->qs, e);
    for (int j = 0; j < 16; j++) {
        u->scale[j] = b->scales[j] & 0x0F;
        u->min[j] = b->scales[j] >> 4;
    }
}

// Q3_K: q in [-4,3]; signed scale[i] per 16 values.
static void q3_K_unpack(const void *row, int64_t i, struct k_block *u) {
    const block_q3_K *b = (const block_q3_K *)row + i;
    u->d = fp16_to_fp32(b->d);
    for (int e = 0; e < QK_K; e++) {
        const int high = (b->hmask[e % 32] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(two_bits(b->qs, e) - (high ? 0 : 4));
    }
    for (int j = 0; j < 16; j++) u->scale[j] = q3_K_scale(b->scales, j);
}

// Q4_K/Q5_K's eight scales and mins of 32 values, stored per 16 in u.
static void k4_unpack_scales(const uint8_t s[12], struct k_block *u) {
    for (int j = 0; j < 8; j++) {
        k4_scale_min(s, j, &u->scale[2 * j], &u->min[2 * j]);
        u->scale[2 * j + 1] = u->scale[2 * j];
        u->min[2 * j + 1] = u->min[2 * j];
    }
}

// Q4_K: q in [0,15]; scale, min per 32 values.
static void q4_K_unpack(const void *row, int64_t i, struct k_block *u) {
    const block_q4_K *b = (const block_q4_K *)row + i;
    u->d = fp16_to_fp32(b->d);
    u->dmin = fp16_to_fp32(b->dmin);
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)four_bits(b->qs, e);
    k4_unpack_scales(b->scales, u);
}

// Q5_K: q in [0,31]; scale, min per 32 values.
static void q5_K_unpack(const void *row, int64_t i, struct k_block *u) {
    const block_q5_K *b = (const block_q5_K *)row + i;
    u->d = fp16_to_fp32(b->d);
    u->dmin = fp16_to_fp32(b->dmin);
    for (int e = 0; e < QK_K; e++) {
        const int high = (b->qh[e % 32] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(four_bits(b->qs, e) | high << 4);
    }
    k4_unpack_scales(b->scales, u);
}

// Q6_K: q in [-32,31]; signed scale per 16 values (b->scales). Within each half
// of 128 values, quarter k (32 values) takes its low 4 bits from nibble k/2 of
// ql[64*half + 32*(k%2) + l] and its high 2 bits from bits 2k of qh[32*half + l].
static void q6_K_unpack(const void *row, int64_t i, struct k_block *u) {
    const block_q6_K *b = (const block_q6_K *)row + i;
    u->d = fp16_to_fp32(b->d);
    for (int e = 0; e < QK_K; e++) {
        const int half = e / 128, k = (e % 128) / 32, l = e % 32;
        const int lo = (b->ql[64 * half + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
        const int hi = (b->qh[32 * half + l] >> (2 * k)) & 3;
        u->q[e] = (int8_t)((lo | hi << 4) - 32);
    }
    for (int j = 0; j < 16; j++) u->scale[j] = b->scales[j];
}

// ---- Dequantizing ---------------------------------------------------------------

// Types with mins (Q2_K, Q4_K, Q5_K): value = d*scale*q - dmin*min.
static void k_min_to_f32(k_unpack_fn *unpack, const void *src, float *dst, int64_t n) {
    struct k_block u;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        unpack(src, i, &u);
        for (int e = 0; e < QK_K; e++) {
            const float dl = u.d * (float)u.scale[e / 16], ml = u.dmin * (float)u.min[e / 16];
            const float scaled = dl * (float)u.q[e];
            dst[e] = scaled - ml;
        }
    }
}

// Symmetric types (Q3_K, Q6_K): value = d*scale*q.
static void k_sym_to_f32(k_unpack_fn *unpack, const void *src, float *dst, int64_t n) {
    struct k_block u;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        unpack(src, i, &u);
        for (int e = 0; e < QK_K; e++) dst[e] = (u.d * (float)u.scale[e / 16]) * (float)u.q[e];
    }
}

void quant_q2_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    k_min_to_f32(q2_K_unpack, src, dst, n);
}
void quant_q3_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    k_sym_to_f32(q3_K_unpack, src, dst, n);
}
void quant_q4_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    k_min_to_f32(q4_K_unpack, src, dst, n);
}
void quant_q5_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    k_min_to_f32(q5_K_unpack, src, dst, n);
}
void quant_q6_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    k_sym_to_f32(q6_K_unpack, src, dst, n);
}

// ---- Dots -----------------------------------------------------------------------

// Adds scale(e) * q[e] * a[e] into eight integer lanes by e % 8, as ggml's
// generic code does (scale per 16 values).
static void lanes_accumulate(int32_t lane[8], const int8_t *q, const int8_t *a, const int *scale) {
    for (int l = 0; l < 8; l++) lane[l] = 0;
    for (int e = 0; e < QK_K; e++) lane[e % 8] += scale[e / 16] * (q[e] * a[e]);
}

// sum_i bsums[i] * min[i]: the activations' sums (per 16 values) times the mins.
static int mins_dot(const block_q8_K *y, const int *min) {
    int sum = 0;
    for (int i = 0; i < QK_K / 16; i++) sum += y->bsums[i] * min[i];
    return sum;
}

// The dots of Q3_K .. Q6_K: per super-block, the integer lanes of
// lanes_accumulate, each scaled by d * y.d into its own float sum; with mins
// (Q4_K, Q5_K), dmin * y.d * mins_dot is subtracted straight from the running
// sum. The eight float sums are added to it at the end.
static float k_lanes_dot(k_unpack_fn *unpack, bool mins, int64_t n, const void *w, const block_q8_K *y) {
    struct k_block u;
    int32_t lane[8];
    float sums[8] = {0}, sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack(w, i, &u);
        lanes_accumulate(lane, u.q, y[i].qs, u.scale);
        const float d = u.d * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)lane[l];
        if (mins) {
            const int summs = mins_dot(&y[i], u.min);
            const float dm = u.dmin * y[i].d;
            sum -= dm * (float)summs;
        }
    }
    for (int l = 0; l < 8; l++) sum += sums[l];
    return sum;
}

// Q2_K sums each super-block in one integer, as ggml's generic code does.
float quant_q2_K_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    const block_q8_K *y = act;
    struct k_block u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q2_K_unpack(w, i, &u);
        int isum = 0;
        for (int e = 0; e < QK_K; e++) isum += u.scale[e / 16] * (u.q[e] * y[i].qs[e]);
        const int summs = mins_dot(&y[i], u.min);
        const float dall = y[i].d * u.d;
        const float dmin = y[i].d * u.dmin;
        const float a = dall * (float)isum, b = dmin * (float)summs;
        sum += a - b;
    }
    return sum;
}

float quant_q3_K_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return k_lanes_dot(q3_K_unpack, false, n, w, act);
}
float quant_q4_K_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return k_lanes_dot(q4_K_unpack, true, n, w, act);
}
float quant_q5_K_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return k_lanes_dot(q5_K_unpack, true, n, w, act);
}
float quant_q6_K_vec_dot(int64_t n, const void *restrict w, const void *restrict act) {
    return k_lanes_dot(q6_K_unpack, false, n, w, act);
}

// ---- Simple quantizers for the K-quants ------------------------------------------
//
// These are straightforward, not ggml's: each sub-block gets the scale (and
// min) that spans its values, the sub-block scales are quantized against one
// fp16 super-block scale, and every value is rounded to the nearest level of
// the stored (already rounded) scales. ggml's quantizers search for scales that
// minimise the error, so they produce different (slightly better) bytes; ours
// exist so that tests and tools can make K-quant data from floats.

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static int round_int(float x) { return (int)lrintf(x); }

// Asymmetric sub-blocks (Q2_K, Q4_K, Q5_K): value = d*sc*q - dmin*m with q in
// [0,nmax], sc and m in [0,smax]. Fills q[256], sc[nsub], m[nsub]; returns d and
// dmin as stored.
static void k_quantize_asym(const float *x, int nsub, int nmax, int smax, uint8_t *q, int *sc,
                            int *m, fp16_t *d_out, fp16_t *dmin_out) {
    const int len = QK_K / nsub;
    float scale[16], minv[16], max_scale = 0.0f, max_min = 0.0f;
    for (int i = 0; i < nsub; i++) {
        float lo = 0.0f, hi = x[i * len]; // the min is kept <= 0 (stored negated)
        for (int j = 0; j < len; j++) {
            lo = fminf(lo, x[i * len + j]);
            hi = fmaxf(hi, x[i * len + j]);
        }
        scale[i] = (hi - lo) / (float)nmax;
        minv[i] = -lo;
        max_scale = fmaxf(max_scale, scale[i]);
        max_min = fmaxf(max_min, minv[i]);
    }
    *d_out = fp32_to_fp16(max_scale / (float)smax);
    *dmin_out = fp32_to_fp16(max_min / (float)smax);
    const float d = fp16_to_fp32(*d_out), dmin = fp16_to_fp32(*dmin_out);
    for (int i = 0; i < nsub; i++) {
        sc[i] = d > 0.0f ? clampi(round_int(scale[i] / d), 0, smax) : 0;
        m[i] = dmin > 0.0f ? clampi(round_int(minv[i] / dmin), 0, smax) : 0;
        const float step = d * (float)sc[i], offset = dmin * (float)m[i];
        for (int j = 0; j < len; j++) {
            const int v = step > 0.0f ? round_int((x[i * len + j] + offset) / step) : 0;
            q[i * len + j] = (uint8_t)clampi(v, 0, nmax);
        }
    }
}

// Symmetric sub-blocks (Q3_K, Q6_K): value = d*sc*(q - nhalf), q - nhalf in
// [-nhalf, nhalf-1], sc in [-shalf, shalf-1]. Fills q[256] (offset by nhalf)
// and sc[16]; returns d as stored.
static fp16_t k_quantize_sym(const float *x, int nhalf, int shalf, uint8_t *q, int *sc) {
    float scale[16], max_scale = 0.0f, amax_scale = 0.0f;
    for (int i = 0; i < 16; i++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 16; j++) {
            if (fabsf(x[i * 16 + j]) > amax) {
                amax = fabsf(x[i * 16 + j]);
                max = x[i * 16 + j];
            }
        }
        scale[i] = max / (float)-nhalf; // the extreme value maps to -nhalf
        if (fabsf(scale[i]) > amax_scale) {
            amax_scale = fabsf(scale[i]);
            max_scale = scale[i];
        }
    }
    const fp16_t dh = fp32_to_fp16(max_scale / (float)-shalf);
    const float d = fp16_to_fp32(dh);
    for (int i = 0; i < 16; i++) {
        sc[i] = d != 0.0f ? clampi(round_int(scale[i] / d), -shalf, shalf - 1) : 0;
        const float step = d * (float)sc[i];
        for (int j = 0; j < 16; j++) {
            const int v = step != 0.0f ? round_int(x[i * 16 + j] / step) : 0;
            q[i * 16 + j] = (uint8_t)(clampi(v, -nhalf, nhalf - 1) + nhalf);
        }
    }
    return dh;
}

// Inverse of k4_scale_min for all eight sub-blocks.
static void k4_pack_scales(uint8_t s[12], const int *sc, const int *m) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= (uint8_t)sc[j];
            s[j + 4] |= (uint8_t)m[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0x0F) | (m[j] & 0x0F) << 4);
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

// Inverse of two_bits / four_bits: or value e's bits into place.
static void put_two_bits(uint8_t *qs, int e, int v) {
    qs[32 * (e / 128) + e % 32] |= (uint8_t)((v & 3) << (2 * ((e % 128) / 32)));
}
static void put_four_bits(uint8_t *qs, int e, int v) {
    qs[32 * (e / 64) + e % 32] |= (uint8_t)((v & 0x0F) << (4 * ((e / 32) % 2)));
}

// Each type's quantizer: 256 floats into super-block i of a row of that type
// (zeroed before, so the bits can be or-ed into place).
typedef void k_quantize_fn(const float *x, void *row, int64_t i);

static void k_from_f32(k_quantize_fn *quantize, size_t block_bytes, const float *src, void *dst,
                       int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        memset((char *)dst + (size_t)i * block_bytes, 0, block_bytes);
        quantize(src, dst, i);
    }
}

static void q2_K_quantize(const float *x, void *row, int64_t i) {
    block_q2_K *y = (block_q2_K *)row + i;
    uint8_t q[QK_K];
    int sc[16], m[16];
    k_quantize_asym(x, 16, 3, 15, q, sc, m, &y->d, &y->dmin);
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(sc[j] | m[j] << 4);
    for (int e = 0; e < QK_K; e++) put_two_bits(y->qs, e, q[e]);
}

static void q3_K_quantize(const float *x, void *row, int64_t i) {
    block_q3_K *y = (block_q3_K *)row + i;
    uint8_t q[QK_K];
    int sc[16];
    y->d = k_quantize_sym(x, 4, 32, q, sc);
    for (int j = 0; j < 16; j++) { // inverse of q3_K_scale
        const int v = sc[j] + 32;
        y->scales[j % 8] |= (uint8_t)((v & 0x0F) << (4 * (j / 8)));
        y->scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < QK_K; e++) {
        put_two_bits(y->qs, e, q[e]);
        y->hmask[e % 32] |= (uint8_t)((q[e] >> 2) << (e / 32));
    }
}

// What Q4_K and Q5_K store alike: d, dmin, the packed scales and mins, and the
// low 4 bits of each quant. Leaves the quants, in [0, nmax], in q for Q5_K's
// fifth bit.
static void k4_quantize(const float *x, int nmax, fp16_t *d, fp16_t *dmin, uint8_t scales[12],
                        uint8_t qs[QK_K / 2], uint8_t q[QK_K]) {
    int sc[8], m[8];
    k_quantize_asym(x, 8, nmax, 63, q, sc, m, d, dmin);
    k4_pack_scales(scales, sc, m);
    for (int e = 0; e < QK_K; e++) put_four_bits(qs, e, q[e]);
}

static void q4_K_quantize(const float *x, void *row, int64_t i) {
    block_q4_K *y = (block_q4_K *)row + i;
    uint8_t q[QK_K];
    k4_quantize(x, 15, &y->d, &y->dmin, y->scales, y->qs, q);
}

static void q5_K_quantize(const float *x, void *row, int64_t i) {
    block_q5_K *y = (block_q5_K *)row + i;
    uint8_t q[QK_K];
    k4_quantize(x, 31, &y->d, &y->dmin, y->scales, y->qs, q);
    for (int e = 0; e < QK_K; e++) y->qh[e % 32] |= (uint8_t)((q[e] >> 4) << (e / 32));
}

static void q6_K_quantize(const float *x, void *row, int64_t i) {
    block_q6_K *y = (block_q6_K *)row + i;
    uint8_t q[QK_K];
    int sc[16];
    y->d = k_quantize_sym(x, 32, 128, q, sc);
    for (int j = 0; j < 16; j++) y->scales[j] = (int8_t)sc[j];
    for (int e = 0; e < QK_K; e++) { // inverse of q6_K_unpack
        const int half = e / 128, k = (e % 128) / 32, l = e % 32;
        y->ql[64 * half + 32 * (k % 2) + l] |= (uint8_t)((q[e] & 0x0F) << (4 * (k / 2)));
        y->qh[32 * half + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
    }
}

void quant_q2_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    k_from_f32(q2_K_quantize, sizeof(block_q2_K), src, dst, n);
}
void quant_q3_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    k_from_f32(q3_K_quantize, sizeof(block_q3_K), src, dst, n);
}
void quant_q4_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    k_from_f32(q4_K_quantize, sizeof(block_q4_K), src, dst, n);
}
void quant_q5_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    k_from_f32(q5_K_quantize, sizeof(block_q5_K), src, dst, n);
}
void quant_q6_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    k_from_f32(q6_K_quantize, sizeof(block_q6_K), src, dst, n);
}

// ---- Q8_K -----------------------------------------------------------------------

void quant_q8_K_to_f32(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int e = 0; e < QK_K; e++) dst[e] = b[i].d * (float)b[i].qs[e];
}

// As ggml's quantize_row_q8_K_ref: the value of largest magnitude maps to -127
// (so d has the opposite sign of that value), rounding half to even. An all-zero
// block gets d = 0 and zero quants and sums.
void quant_q8_K_from_f32(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int e = 0; e < QK_K; e++) {
            if (fabsf(src[e]) > amax) {
                amax = fabsf(src[e]);
                max = src[e];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0.0f) continue;
        const float iscale = -127.0f / max;
        for (int e = 0; e < QK_K; e++) {
            const long v = lrintf(iscale * src[e]); // default rounding: half to even
            y[i].qs[e] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) sum += y[i].qs[e];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}
