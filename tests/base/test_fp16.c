#include "base/fp16.h"
#include "check.h"

#include <math.h>

int main(void) {
    // Every half value round-trips exactly through float.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_fp32((fp16_t)h);
        if (isnan(f)) continue;
        if (fp32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d half values do not round-trip", bad);
    CHECK(fp16_to_fp32(0x3c00) == 1.0f, "1.0");
    CHECK(fp16_to_fp32(0xc000) == -2.0f, "-2.0");
    CHECK(fp16_to_fp32(0x0001) == 0x1.0p-24f, "smallest subnormal");
    CHECK(fp32_to_fp16(65520.0f) == 0x7c00, "overflow rounds to inf");
    CHECK(fp32_to_fp16(1.0f + 0x1.0p-11f) == 0x3c00, "tie rounds to even (down)");
    CHECK(fp32_to_fp16(1.0f + 3 * 0x1.0p-11f) == 0x3c02, "tie rounds to even (up)");
    CHECK(bf16_to_fp32(fp32_to_bf16(1.5f)) == 1.5f, "bf16 exact");
    CHECK(fp32_to_bf16(fp32_from_bits(0x3f808000u)) == 0x3f80, "bf16 tie to even");
    CHECK(fp32_to_bf16(fp32_from_bits(0x3f818000u)) == 0x3f82, "bf16 tie to even up");
    return CHECK_DONE();
}
