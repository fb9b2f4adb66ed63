// quant/: tensor element types. Block structs bit-compatible with ggml/GGUF, a
// traits table per type, and plain-C reference dequantize / quantize / dot
// routines. Every SIMD kernel in kern/ is tested against these.
//
// The enum values are the GGUF (ggml) type ids, so a tensor's type field from a
// .gguf file can be passed to quant_get() directly.
#ifndef LLMFILE_QUANT_QUANT_H
#define LLMFILE_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/fp16.h"

enum quant_type {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q8_1 = 9,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15,
    QUANT_BF16 = 30,
    QUANT_TYPE_COUNT = 40, // upper bound on ids; not every id below it is supported
};

// ---- Block layouts (identical to ggml's block_* structs) -------------------
// "value" below means the dequantized float; q is the stored integer quant.

#define QUANT_QK 32     // values per block of the legacy types (Q4_0 .. Q8_1)
#define QUANT_QK_K 256  // values per super-block of the K-quants

// Q4_0: value = d * (q - 8), q in [0,15]. qs[j] holds value j (low nibble) and
// value j+16 (high nibble).
typedef struct {
    fp16_t d;
    uint8_t qs[QUANT_QK / 2];
} block_q4_0;

// Q4_1: value = d * q + m, q in [0,15]; nibble order as Q4_0.
typedef struct {
    fp16_t d;
    fp16_t m;
    uint8_t qs[QUANT_QK / 2];
} block_q4_1;

// Q5_0: value = d * (q - 16), q in [0,31]. Low 4 bits as Q4_0; bit 4 of value j
// is bit j of the little-endian uint32 qh.
typedef struct {
    fp16_t d;
    uint8_t qh[4];
    uint8_t qs[QUANT_QK / 2];
} block_q5_0;

// Q5_1: value = d * q + m, q in [0,31]; bit layout as Q5_0.
typedef struct {
    fp16_t d;
    fp16_t m;
    uint8_t qh[4];
    uint8_t qs[QUANT_QK / 2];
} block_q5_1;

// Q8_0: value = d * q.
typedef struct {
    fp16_t d;
    int8_t qs[QUANT_QK];
} block_q8_0;

// Q8_1 (activations): value = d * q; s = d * sum(q), rounded to fp16.
typedef struct {
    fp16_t d;
    fp16_t s;
    int8_t qs[QUANT_QK];
} block_q8_1;

// Q2_K: 16 sub-blocks of 16. scales[i]: low nibble = scale, high nibble = min of
// sub-block i; value = d*scale*q - dmin*min, q in [0,3]. Value e (0..255) is
// bits 2*((e%128)/32) of qs[32*(e/128) + e%32].
typedef struct {
    uint8_t scales[QUANT_QK_K / 16];
    uint8_t qs[QUANT_QK_K / 4];
    fp16_t d;
    fp16_t dmin;
} block_q2_K;

// Q3_K: 16 sub-blocks of 16, 6-bit signed scales (stored +32) packed in 12
// bytes; value = d*(scale-32)*(q - 4*!hbit), low 2 bits laid out as Q2_K, high
// bit of value e is bit (e/32) of hmask[e%32].
typedef struct {
    uint8_t hmask[QUANT_QK_K / 8];
    uint8_t qs[QUANT_QK_K / 4];
    uint8_t scales[12];
    fp16_t d;
} block_q3_K;

// Q4_K: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes;
// value = d*scale*q - dmin*min, q in [0,15]. Value e is nibble (e/32)%2 of
// qs[32*(e/64) + e%32].
typedef struct {
    fp16_t d;
    fp16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QUANT_QK_K / 2];
} block_q4_K;

// Q5_K: as Q4_K plus a fifth bit: bit (e/32) of qh[e%32].
typedef struct {
    fp16_t d;
    fp16_t dmin;
    uint8_t scales[12];
    uint8_t qh[QUANT_QK_K / 8];
    uint8_t qs[QUANT_QK_K / 2];
} block_q5_K;

// Q6_K: 16 sub-blocks of 16, int8 scales; value = d*scale*(q - 32), q in [0,63].
typedef struct {
    uint8_t ql[QUANT_QK_K / 2]; // low 4 bits
    uint8_t qh[QUANT_QK_K / 4]; // high 2 bits
    int8_t scales[QUANT_QK_K / 16];
    fp16_t d;
} block_q6_K;

// Q8_K (activations for K-quant dots): value = d * q; bsums[i] = sum of
// qs[16*i .. 16*i+15].
typedef struct {
    float d;
    int8_t qs[QUANT_QK_K];
    int16_t bsums[QUANT_QK_K / 16];
} block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

// ---- Traits -----------------------------------------------------------------

// n: number of values, a multiple of block_elems.
typedef void (*quant_to_f32_fn)(const void *restrict src, float *restrict dst, int64_t n);
typedef void (*quant_from_f32_fn)(const float *restrict src, void *restrict dst, int64_t n);
// Dot product of n weights of this type with n activations of vec_dot_type.
typedef float (*quant_vec_dot_fn)(int64_t n, const void *restrict w, const void *restrict act);

struct quant_traits {
    const char *name;             // ggml's name: "f32", "q4_K", ...
    int64_t block_elems;          // values per block (1 for F32/F16/BF16)
    size_t block_bytes;           // bytes per block
    enum quant_type vec_dot_type; // type activations are converted to for vec_dot
    quant_to_f32_fn to_f32;       // dequantize
    quant_from_f32_fn from_f32;   // quantize: bit-identical to ggml's *_ref, except the
                                  // K-quants (Q2_K..Q6_K), which use a simpler quantizer
    quant_vec_dot_fn vec_dot;     // scalar reference dot, same arithmetic as ggml's
                                  // generic C; NULL for the activation-only Q8_1/Q8_K
};

// Traits of a type id, or NULL if the id is unknown or unsupported.
const struct quant_traits *quant_get(int type);

// Bytes taken by n values of a type (n a multiple of the block size);
// 0 if the type is unsupported or n is not a multiple of the block size.
size_t quant_row_bytes(int type, int64_t n);

#endif
