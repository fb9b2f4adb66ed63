// How a GEMV's weight rows are shared among threads (used by matmul.c).
// GEMV is bound by memory bandwidth, so each thread owns a contiguous share
// of the rows and takes its chunks in order: its weights stream as one
// sequence, and the kernels' prefetch runs on into its next chunk (a shared
// counter handing out chunks measured 7-13% slower, as every chunk then
// starts a stream anew). It takes several at once while many are left (one
// locked update and one kernel call for them: Gemma 3's generation +5-7%).
// A thread that has finished its share steals chunks one by one from the back
// of another's, so a thread that loses its core still holds up little.
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

// Takes chunks from a share: from the front up to `most` at once (at most a
// quarter of what is left, so others still find chunks to steal near the
// end), or from the back one. *first and *count: what it took, if anything.
static inline bool rows_take(struct kern_rows *r, bool front, long most, long *first, long *count) {
    uint64_t s = atomic_load_explicit(&r->span, memory_order_relaxed);
    for (;;) {
        const uint64_t lo = s & 0xFFFFFFFFu, hi = s >> 32;
        if (lo >= hi) return false;
        uint64_t take = 1;
        if (front && (hi - lo) / 4 > take) take = (hi - lo) / 4 < (uint64_t)most ? (hi - lo) / 4 : (uint64_t)most;
        const uint64_t n = front ? (lo + take) | hi << 32 : lo | (hi - 1) << 32;
        if (atomic_compare_exchange_weak_explicit(&r->span, &s, n, memory_order_relaxed, memory_order_relaxed)) {
            *first = (long)(front ? lo : hi - 1);
            *count = (long)take;
            return true;
        }
    }
}

// The next chunks for thread ith: from the front of its own share (up to
// `most` in a row), else the back chunk of the next thread's that has one left.
static inline bool rows_next(struct kern_rows *rows, int ith, int nth, long most, long *first, long *count) {
    if (rows_take(&rows[ith], true, most, first, count)) return true;
    for (int i = 1; i < nth; i++)
        if (rows_take(&rows[(ith + i) % nth], false, 1, first, count)) return true;
    return false;
}

#endif
