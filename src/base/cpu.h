// CPU feature detection (CPUID + XGETBV on x86-64, HWCAP on ARM64). Compiled for
// the baseline so it runs on every CPU.
#ifndef LLMFILE_BASE_CPU_H
#define LLMFILE_BASE_CPU_H

#include <stdbool.h>
#include <stddef.h>

struct cpu_features {
    char vendor[13];
    char brand[49];
    // x86-64
    bool sse3, ssse3, sse41, sse42, popcnt, avx, f16c, fma, avx2, bmi2;
    bool avx512f, avx512bw, avx512dq, avx512vl, avx512vnni, avx512bf16, avx512fp16;
    bool os_avx, os_avx512; // the OS saves YMM / ZMM state (XGETBV)
    // ARM64
    bool asimd, dotprod, fp16, i8mm;
};

void cpu_detect(struct cpu_features *f);
// Space-separated list of the features present, for --cpu-info.
void cpu_features_string(const struct cpu_features *f, char *buf, size_t cap);

#endif
