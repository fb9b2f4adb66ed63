// fp16 -> f32 by table, for the x86 levels without F16C (SSE2 to AVX): every
// quantized block carries an fp16 scale, and there the portable conversion
// (base/fp16.h, a dozen integer and float operations) costs more than the
// block's dot product. One load instead; the scales of a model use few of the
// table's lines.
#include <pthread.h>

#include "kern.h"

float kern_f16_table[1 << 16];

static void fill(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) kern_f16_table[h] = fp16_to_fp32((fp16_t)h);
}

void kern_f16_table_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill);
}
