// Internal to quant/: the per-type reference routines that quant.c puts in the
// traits table. Other layers go through quant_get().
#ifndef LLMFILE_QUANT_QUANT_IMPL_H
#define LLMFILE_QUANT_QUANT_IMPL_H

#include "quant/quant.h"

// Under clang, keep a*b+c from being fused into one FMA instruction where the
// target has one, so results match ggml's scalar code (and numpy) to the bit.
// GCC in ISO C mode (-std=c11) already does not contract.
#if defined(__clang__)
#define QUANT_NO_FP_CONTRACT _Pragma("STDC FP_CONTRACT OFF")
#else
#define QUANT_NO_FP_CONTRACT
#endif

#define QUANT_DECLARE(T)                                                              \
    void quant_##T##_to_f32(const void *restrict src, float *restrict dst, int64_t n);  \
    void quant_##T##_from_f32(const float *restrict src, void *restrict dst, int64_t n); \
    float quant_##T##_vec_dot(int64_t n, const void *restrict w, const void *restrict act);

QUANT_DECLARE(f32)
QUANT_DECLARE(f16)
QUANT_DECLARE(bf16)
QUANT_DECLARE(q4_0)
QUANT_DECLARE(q4_1)
QUANT_DECLARE(q5_0)
QUANT_DECLARE(q5_1)
QUANT_DECLARE(q8_0)
QUANT_DECLARE(q8_1)
QUANT_DECLARE(q2_K)
QUANT_DECLARE(q3_K)
QUANT_DECLARE(q4_K)
QUANT_DECLARE(q5_K)
QUANT_DECLARE(q6_K)
QUANT_DECLARE(q8_K)

#undef QUANT_DECLARE

#endif
