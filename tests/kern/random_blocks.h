// Random but valid quantized blocks for the kernel tests (test_levels.c,
// test_gemm.c): random bytes with finite scales. Uses testutil.h's generator.
#ifndef LLMFILE_TESTS_KERN_RANDOM_BLOCKS_H
#define LLMFILE_TESTS_KERN_RANDOM_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "quant/quant.h"
#include "testutil.h"

static inline fp16_t random_scale16(void) { return fp32_to_fp16((float)(rng_normal() * 0.05)); }

static inline void put16(uint8_t *p, fp16_t v) { memcpy(p, &v, 2); }

// Overwrites the float fields of random block bytes with finite values, and
// keeps int8 quants in [-127, 127] (what every quantizer produces; the sign
// trick of the SIMD kernels, like ggml's, does not take -128).
static inline void sanitize_block(int type, uint8_t *b) {
    switch (type) {
    case QUANT_Q4_0: case QUANT_Q5_0: put16(b, random_scale16()); break;
    case QUANT_Q4_1: case QUANT_Q5_1: put16(b, random_scale16()); put16(b + 2, random_scale16()); break;
    case QUANT_Q8_0:
        put16(b, random_scale16());
        for (int j = 2; j < 34; j++) if (b[j] == 0x80) b[j] = 0x81;
        break;
    case QUANT_Q2_K: put16(b + 80, random_scale16()); put16(b + 82, random_scale16()); break;
    case QUANT_Q3_K: put16(b + 108, random_scale16()); break;
    case QUANT_Q4_K: case QUANT_Q5_K: put16(b, random_scale16()); put16(b + 2, random_scale16()); break;
    case QUANT_Q6_K: put16(b + 208, random_scale16()); break;
    default: break;
    }
}

#endif
