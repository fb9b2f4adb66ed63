// The machine's physical limits, for bench/tinyblas_vs_llamacpp.py: memory read
// bandwidth (T threads streaming a buffer far larger than the caches: the best
// pass of 0.1 s over a buffer on 4 KB pages and one on 2 MB huge pages, where
// llmfile copies small models, and the sustained rate, all the huge-page passes'
// bytes over their time, about a second: on a shared host single passes swing
// from 22 to 33 GB/s within that second, and a generation run of seconds sees
// the average, not the best of them) and peak
// arithmetic rates (fp32 FMA, bf16 dot, int8 dot) with T threads. Built by the
// bench script with -O3 -march=native (at -O2 GCC keeps the 12 accumulators in
// memory and measures store forwarding, a third of the FMA rate); prints one JSON object.
//   limits [threads] [buffer MiB]
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct job {
    int kind;            // 0 bandwidth, 1 fp32 fma, 2 bf16, 3 int8
    const char *buf;     // this thread's slice (bandwidth)
    size_t bytes;
    long iters;
    pthread_barrier_t *start;
    double sink;
};

static double read_slice(const char *p, size_t n) {
#if defined(__AVX512F__)
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
        c = _mm512_xor_si512(c, _mm512_load_si512(p + i + 128));
        d = _mm512_xor_si512(d, _mm512_load_si512(p + i + 192));
    }
    a = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
    return (double)_mm512_reduce_add_epi32(a);
#elif defined(__AVX2__)
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (double)_mm256_extract_epi32(a, 0);
#else
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) { uint64_t v; memcpy(&v, p + i, 8); s ^= v; }
    return (double)s;
#endif
}

// Ops per instruction x 12 independent accumulators per iteration; returns ops done.
static double compute(int kind, long iters, double *sink) {
#if defined(__AVX512F__)
    __m512 f[12];
    __m512i q[12];
    for (int i = 0; i < 12; i++) f[i] = _mm512_set1_ps(1e-7f * i), q[i] = _mm512_set1_epi32(i);
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-9f);
    const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
    double ops_per = 0;
    if (kind == 1) {
        for (long it = 0; it < iters; it++)
            for (int i = 0; i < 12; i++) f[i] = _mm512_fmadd_ps(f[i], x, y);
        ops_per = 32; // 16 lanes x (mul + add)
    }
#if defined(__AVX512BF16__)
    if (kind == 2) {
        const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f80);
        for (long it = 0; it < iters; it++)
            for (int i = 0; i < 12; i++) f[i] = _mm512_dpbf16_ps(f[i], a, b);
        ops_per = 64; // 32 bf16 pairs x (mul + add)
    }
#endif
#if defined(__AVX512VNNI__)
    if (kind == 3) {
        for (long it = 0; it < iters; it++)
            for (int i = 0; i < 12; i++) q[i] = _mm512_dpbusd_epi32(q[i], u, s);
        ops_per = 128; // 64 byte pairs x (mul + add)
    }
#endif
    float acc = 0;
    for (int i = 0; i < 12; i++) acc += _mm512_reduce_add_ps(f[i]) + (float)_mm512_reduce_add_epi32(q[i]);
    *sink = acc;
    return ops_per * 12.0 * (double)iters;
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 f[12];
    for (int i = 0; i < 12; i++) f[i] = _mm256_set1_ps(1e-7f * i);
    const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-9f);
    if (kind != 1) return 0;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) f[i] = _mm256_fmadd_ps(f[i], x, y);
    float acc = 0, t[8];
    for (int i = 0; i < 12; i++) { _mm256_storeu_ps(t, f[i]); acc += t[0]; }
    *sink = acc;
    return 16.0 * 12.0 * (double)iters;
#else
    (void)kind, (void)iters, (void)sink;
    return 0;
#endif
}

static void *worker(void *arg) {
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    if (j->kind == 0) {
        for (long i = 0; i < j->iters; i++) j->sink += read_slice(j->buf, j->bytes);
    } else {
        double s;
        j->sink = compute(j->kind, j->iters, &s) + s * 0;
    }
    return NULL;
}

// Runs `kind` on T threads; returns units per second (bytes or ops), best of `reps`,
// and in *mean (if not NULL) all reps' units over their time.
static double measure(int kind, int threads, char *buf, size_t bytes, long iters, int reps, double *mean) {
    double best = 0, all_units = 0, all_time = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t tid[64];
        struct job jobs[64];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
        const size_t slice = bytes / (size_t)threads / 256 * 256;
        for (int t = 0; t < threads; t++) {
            jobs[t] = (struct job){kind, buf + (size_t)t * slice, slice, iters, &start, 0};
            pthread_create(&tid[t], NULL, worker, &jobs[t]);
        }
        pthread_barrier_wait(&start);
        const double t0 = now();
        double units = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            units += kind == 0 ? (double)slice * (double)iters : jobs[t].sink;
        }
        const double took = now() - t0, rate = units / took;
        pthread_barrier_destroy(&start);
        if (rate > best) best = rate;
        all_units += units, all_time += took;
    }
    if (mean) *mean = all_units / all_time;
    return best;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    if (threads < 1 || threads > 64 || mib < 64) {
        fprintf(stderr, "usage: limits [threads 1..64] [buffer MiB >= 64]\n");
        return 2;
    }
    const size_t bytes = mib << 20;
    double bw = 0, sustained = 0;
    char *buf = NULL;
    for (int huge = 0; huge < 2; huge++) { // 4 KB pages, then 2 MB pages (where the system has them)
        free(buf);
        buf = aligned_alloc((size_t)2 << 20, bytes);
        if (!buf) { fprintf(stderr, "limits: out of memory\n"); return 1; }
        (void)madvise(buf, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        memset(buf, 1, bytes); // fault the pages in before timing
        const double b = measure(0, threads, buf, bytes, 3, huge ? 10 : 5, huge ? &sustained : NULL);
        if (b > bw) bw = b;
    }
    const long iters = 20 * 1000 * 1000;
    const double fp32 = measure(1, threads, buf, bytes, iters, 3, NULL);
    const double bf16 = measure(2, threads, buf, bytes, iters, 3, NULL);
    const double int8 = measure(3, threads, buf, bytes, iters, 3, NULL);
    printf("{\"threads\": %d, \"bandwidth_gbs\": %.2f, \"bandwidth_sustained_gbs\": %.2f, \"fp32_gflops\": %.1f, "
           "\"bf16_gflops\": %.1f, \"int8_gops\": %.1f}\n",
           threads, bw / 1e9, sustained / 1e9, fp32 / 1e9, bf16 / 1e9, int8 / 1e9);
    free(buf);
    return 0;
}
