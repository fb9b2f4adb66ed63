#include "cpu.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

void cpu_detect(struct cpu_features *f) {
    memset(f, 0, sizeof *f);
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    memcpy(f->vendor, &r[1], 4);
    memcpy(f->vendor + 4, &r[3], 4);
    memcpy(f->vendor + 8, &r[2], 4);
    cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            cpuid(0x80000002u + i, 0, r);
            memcpy(f->brand + 16 * i, r, 16);
        }
    }
    if (max_leaf < 1) return;
    cpuid(1, 0, r);
    const unsigned ecx1 = r[2];
    f->sse3 = ecx1 & (1u << 0);
    f->ssse3 = ecx1 & (1u << 9);
    f->fma = ecx1 & (1u << 12);
    f->sse41 = ecx1 & (1u << 19);
    f->sse42 = ecx1 & (1u << 20);
    f->popcnt = ecx1 & (1u << 23);
    const bool osxsave = ecx1 & (1u << 27);
    f->avx = ecx1 & (1u << 28);
    f->f16c = ecx1 & (1u << 29);
    if (osxsave) {
        const unsigned long long xcr0 = xgetbv0();
        f->os_avx = (xcr0 & 0x6) == 0x6;          // XMM and YMM state
        f->os_avx512 = (xcr0 & 0xe6) == 0xe6;     // plus opmask, ZMM_Hi256, Hi16_ZMM
    }
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        f->bmi2 = r[1] & (1u << 8);
        f->avx2 = r[1] & (1u << 5);
        f->avx512f = r[1] & (1u << 16);
        f->avx512dq = r[1] & (1u << 17);
        f->avx512bw = r[1] & (1u << 30);
        f->avx512vl = r[1] & (1u << 31);
        f->avx512vnni = r[2] & (1u << 11);
        f->avx512fp16 = r[3] & (1u << 23);
        const unsigned max_sub = r[0];
        if (max_sub >= 1) {
            cpuid(7, 1, r);
            f->avx512bf16 = r[0] & (1u << 5);
        }
    }
}

#elif defined(__aarch64__)
#include <sys/auxv.h>

void cpu_detect(struct cpu_features *f) {
    memset(f, 0, sizeof *f);
    strcpy(f->vendor, "ARM");
    const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    f->asimd = hwcap & (1ul << 1);
    f->fp16 = (hwcap & (1ul << 9)) && (hwcap & (1ul << 10)); // FPHP and ASIMDHP
    f->dotprod = hwcap & (1ul << 20);                         // ASIMDDP
    f->i8mm = hwcap2 & (1ul << 13);                           // HWCAP2_I8MM
}

#else
void cpu_detect(struct cpu_features *f) { memset(f, 0, sizeof *f); }
#endif

void cpu_features_string(const struct cpu_features *f, char *buf, size_t cap) {
    const struct {
        bool on;
        const char *name;
    } list[] = {
        {f->sse3, "sse3"},         {f->ssse3, "ssse3"},     {f->sse41, "sse4.1"},
        {f->sse42, "sse4.2"},      {f->popcnt, "popcnt"},   {f->avx, "avx"},
        {f->f16c, "f16c"},         {f->fma, "fma"},         {f->avx2, "avx2"},
        {f->bmi2, "bmi2"},         {f->avx512f, "avx512f"}, {f->avx512bw, "avx512bw"},
        {f->avx512dq, "avx512dq"}, {f->avx512vl, "avx512vl"}, {f->avx512vnni, "avx512vnni"},
        {f->avx512bf16, "avx512bf16"}, {f->avx512fp16, "avx512fp16"},
        {f->os_avx, "os-saves-ymm"}, {f->os_avx512, "os-saves-zmm"},
        {f->asimd, "asimd"},       {f->dotprod, "dotprod"}, {f->fp16, "fp16"},
        {f->i8mm, "i8mm"},
    };
    size_t used = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (!list[i].on) continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? " " : "", list[i].name);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
}
