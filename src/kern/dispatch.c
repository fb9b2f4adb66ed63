// Chooses the kernel level at start-up: the best one the CPU (and the OS, for
// wide registers) supports, capped by --cpu-level / LLMFILE_CPU_LEVEL.
#include <stdio.h>
#include <string.h>

#include "kern.h"

#if defined(KERN_ONLY_LEVEL_OPS)
// `make native`: one level compiled with -march=native, no run-time choice.
const struct kern_ops *KERN_ONLY_LEVEL_OPS(void);
static bool has_native(const struct cpu_features *f) { (void)f; return true; }
static const struct kern_level LEVELS[] = {{"native", "-march=native build of one level", has_native, KERN_ONLY_LEVEL_OPS}};
#elif defined(__x86_64__)
const struct kern_ops *kern_ops_sse2(void);
const struct kern_ops *kern_ops_ssse3(void);
const struct kern_ops *kern_ops_sse42(void);
const struct kern_ops *kern_ops_avx(void);
const struct kern_ops *kern_ops_avx2(void);
const struct kern_ops *kern_ops_avx512(void);
const struct kern_ops *kern_ops_avx512vnni(void);
const struct kern_ops *kern_ops_avx512fp16(void);

static bool has_sse2(const struct cpu_features *f) { (void)f; return true; }
static bool has_ssse3(const struct cpu_features *f) { return f->sse3 && f->ssse3; }
static bool has_sse42(const struct cpu_features *f) { return has_ssse3(f) && f->sse41 && f->sse42 && f->popcnt; }
static bool has_avx(const struct cpu_features *f) { return has_sse42(f) && f->avx && f->os_avx; }
static bool has_avx2(const struct cpu_features *f) { return has_avx(f) && f->avx2 && f->fma && f->f16c && f->bmi2; }
static bool has_avx512(const struct cpu_features *f) {
    return has_avx2(f) && f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->os_avx512;
}
static bool has_avx512vnni(const struct cpu_features *f) { return has_avx512(f) && f->avx512vnni && f->avx512bf16; }
static bool has_avx512fp16(const struct cpu_features *f) { return has_avx512vnni(f) && f->avx512fp16; }

static const struct kern_level LEVELS[] = {
    {"sse2", "x86-64 baseline: SSE2 (K8, 2003)", has_sse2, kern_ops_sse2},
    {"ssse3", "SSSE3 (Core 2)", has_ssse3, kern_ops_ssse3},
    {"sse42", "SSE4.2 + POPCNT (Nehalem)", has_sse42, kern_ops_sse42},
    {"avx", "AVX (Sandy Bridge)", has_avx, kern_ops_avx},
    {"avx2", "AVX2 + FMA + F16C (Haswell, Zen 1-3)", has_avx2, kern_ops_avx2},
    {"avx512", "AVX-512 F/BW/DQ/VL (Skylake-X)", has_avx512, kern_ops_avx512},
    {"avx512vnni", "AVX-512 VNNI + BF16 (Zen 4, Zen 5)", has_avx512vnni, kern_ops_avx512vnni},
    {"avx512fp16", "AVX-512 FP16 (Sapphire Rapids and later)", has_avx512fp16, kern_ops_avx512fp16},
};
#elif defined(__aarch64__)
const struct kern_ops *kern_ops_armv8_0(void);
const struct kern_ops *kern_ops_armv8_2_dotprod(void);
const struct kern_ops *kern_ops_armv8_6_i8mm(void);

static bool has_v80(const struct cpu_features *f) { (void)f; return true; }
static bool has_dotprod(const struct cpu_features *f) { return f->dotprod && f->fp16; }
static bool has_i8mm(const struct cpu_features *f) { return has_dotprod(f) && f->i8mm; }

static const struct kern_level LEVELS[] = {
    {"armv8.0", "ARMv8.0 NEON (Cortex-A53)", has_v80, kern_ops_armv8_0},
    {"armv8.2", "ARMv8.2 dotprod + fp16 (Cortex-A76)", has_dotprod, kern_ops_armv8_2_dotprod},
    {"armv8.6", "ARMv8.6 i8mm (Graviton 3, Apple M2)", has_i8mm, kern_ops_armv8_6_i8mm},
};
#else
static bool has_generic(const struct cpu_features *f) { (void)f; return true; }
static const struct kern_level LEVELS[] = {{"generic", "portable C", has_generic, kern_generic_ops}};
#endif

int kern_levels(const struct kern_level **out) {
    *out = LEVELS;
    return (int)(sizeof LEVELS / sizeof LEVELS[0]);
}

int kern_select(const struct cpu_features *f, const char *cap, const struct kern_level **out,
                llm_err *err) {
    const int n = (int)(sizeof LEVELS / sizeof LEVELS[0]);
    int limit = n - 1;
    if (cap && *cap) {
        limit = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(cap, LEVELS[i].name) == 0) limit = i;
        if (limit < 0) {
            char names[256] = "";
            for (int i = 0; i < n; i++) {
                strncat(names, LEVELS[i].name, sizeof names - strlen(names) - 1);
                if (i + 1 < n) strncat(names, ", ", sizeof names - strlen(names) - 1);
            }
            return err_set(err, "unknown CPU level '%s' (levels: %s)", cap, names);
        }
    }
    int best = 0;
    for (int i = 0; i <= limit; i++)
        if (LEVELS[i].supported(f)) best = i;
    *out = &LEVELS[best];
    return 0;
}
