// Persistent thread pool. pool_run() runs fn on every thread (the caller is
// thread 0) and returns when all are done. Workers spin briefly between jobs
// (a forward pass issues hundreds of short jobs per token) and then sleep.
#ifndef LLMFILE_BASE_POOL_H
#define LLMFILE_BASE_POOL_H

#include "err.h"

typedef void (*pool_fn)(void *ctx, int ith, int nth);

struct pool;

// n_threads >= 1 (1 means: no workers, the caller does everything).
int  pool_create(struct pool **out, int n_threads, llm_err *err);
void pool_destroy(struct pool *p);
int  pool_size(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *ctx);

// Splits [0, n) into nth nearly equal parts; sets [*begin, *end) for part ith.
static inline void pool_split(long n, int ith, int nth, long *begin, long *end) {
    long per = n / nth, extra = n % nth;
    *begin = ith * per + (ith < extra ? ith : extra);
    *end = *begin + per + (ith < extra);
}

// Number of physical cores (logical CPUs divided by SMT siblings), at least 1.
int cpu_physical_cores(void);

#endif
