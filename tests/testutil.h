// Helpers shared by the C unit tests (libc only): a seeded random number
// generator, allocation that exits on failure, and reading a whole file.
#ifndef LLMFILE_TESTS_TESTUTIL_H
#define LLMFILE_TESTS_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// The state of the splitmix64 generator below; every test binary starts from
// the same seed unless it calls rng_seed.
static inline uint64_t *rng_splitmix_state(void) {
    static uint64_t state = 0x9E3779B97F4A7C15u;
    return &state;
}

static inline void rng_seed(uint64_t seed) { *rng_splitmix_state() = seed; }

static inline uint64_t rng_next(void) { // splitmix64
    uint64_t z = (*rng_splitmix_state() += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static inline double rng_uniform(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; } // [0,1)

// Standard normal (Box-Muller).
static inline float rng_normal(void) {
    const double u1 = rng_uniform() + 0x1.0p-60, u2 = rng_uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static inline void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

// The file's bytes with a terminating 0 (not counted in *len), malloc'd; NULL
// if it cannot be read.
static inline char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

#endif
