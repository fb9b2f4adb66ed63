// How a GEMV's weight rows are shared among threads (used by matmul.c).
// GEMV is bound by memory bandwidth, so each thread owns a contiguous share
// of the rows and takes its chunks in order: its weights stream as one
// sequence, and the kernels' prefetch runs on into its next chunk (a shared
// counter handing out chunks measured 7-13% slower, as every chunk then
// starts a stream anew). A thread that has finished its share steals chunks
// from the back of another's, so a thread that loses its core still holds up
// no more than a chunk.
#ifndef LLM_KERN_ROWS_H
#define LLM_KERN_ROWS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/pool.h"

// A thread's share: the chunks [lo, hi), packed as lo | hi << 32 so that the
// owner (taking from the front) and other threads (stealing from the back)
// agree by one compare-and-swap. Its own cache line: all threads update
// their shares at once.
struct kern_rows {
    _Alignas(64) atomic_uint_least64_t span;
};

// Shares n_chunks (< 2^32) among nth threads, in order.
static inline void rows_split(struct kern_rows *rows, int nth, long n_chunks) {
    for (int t = 0; t < nth; t++) {
        long b, e;
        pool_split(n_chunks, t, nth, &b, &e);
        atomic_store_explicit(&rows[t].span, (uint64_t)b | (uint64_t)e << 32, memory_order_relaxed);
    }
}

// Takes the first (front) or last chunk of a share, if it has one.
static inline bool rows_take(struct kern_rows *r, bool front, long *chunk) {
    uint64_t s = atomic_load_explicit(&r->span, memory_order_relaxed);
    for (;;) {
        const uint64_t lo = s & 0xFFFFFFFFu, hi = s >> 32;
        if (lo >= hi) return false;
        const uint64_t n = front ? (lo + 1) | hi << 32 : lo | (hi - 1) << 32;
        if (atomic_compare_exchange_weak_explicit(&r->span, &s, n, memory_order_relaxed, memory_order_relaxed)) {
            *chunk = (long)(front ? lo : hi - 1);
            return true;
        }
    }
}

// The next chunk for thread ith: the front of its own share, else the back of
// the next thread's that has one left.
static inline bool rows_next(struct kern_rows *rows, int ith, int nth, long *chunk) {
    if (rows_take(&rows[ith], true, chunk)) return true;
    for (int i = 1; i < nth; i++)
        if (rows_take(&rows[(ith + i) % nth], false, chunk)) return true;
    return false;
}

#endif
