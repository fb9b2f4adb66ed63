// The GEMV row shares (src/kern/rows.h): every chunk is taken exactly once,
// a thread takes its own share front to back (several chunks at once, at most
// `most` and a quarter of what is left), and a thread that has run out steals
// single chunks from the back of the others'; also with threads racing for real.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "kern/rows.h"

enum { MAX_THREADS = 4, MAX_CHUNKS = 4000 };

// One thread alone drains every share: first its own in order, then the others' from the back.
static void check_single_drain(int nth, long n_chunks, int ith, long most) {
    struct kern_rows rows[MAX_THREADS];
    rows_split(rows, nth, n_chunks);
    int seen[64] = {0};
    long c, count, taken = 0;
    long own_b, own_e;
    pool_split(n_chunks, ith, nth, &own_b, &own_e);
    while (rows_next(rows, ith, nth, most, &c, &count)) {
        CHECK(c >= 0 && count >= 1 && c + count <= n_chunks, "chunks [%ld, +%ld) of %ld", c, count, n_chunks);
        if (c < 0 || count < 1 || c + count > n_chunks) return;
        const long own_left = own_e - own_b - taken;
        if (own_left > 0) {
            CHECK(c == own_b + taken, "own share out of order: %ld, want %ld", c, own_b + taken);
            const long quarter = own_left / 4 > 1 ? own_left / 4 : 1;
            CHECK(count <= most && count <= quarter, "took %ld of %ld left (most %ld)", count, own_left, most);
        } else {
            CHECK(count == 1, "stole %ld chunks at once", count);
            CHECK(c < own_b || c >= own_e, "chunk %ld of the own share taken late", c);
        }
        for (long i = c; i < c + count; i++) seen[i]++;
        taken += count;
    }
    CHECK(taken == n_chunks, "%d threads, %ld chunks: took %ld", nth, n_chunks, taken);
    for (long i = 0; i < n_chunks; i++) CHECK(seen[i] == 1, "chunk %ld taken %d times", i, seen[i]);
}

// The first steal from a share takes its last chunk.
static void check_steal_takes_back(void) {
    struct kern_rows rows[2];
    rows_split(rows, 2, 10); // thread 0: [0, 5), thread 1: [5, 10)
    long c, n;
    for (int i = 0; i < 5; i++) CHECK(rows_next(rows, 0, 2, 1, &c, &n) && c == i, "own chunk %d: got %ld", i, c);
    CHECK(rows_next(rows, 0, 2, 1, &c, &n) && c == 9, "first steal: got %ld, want 9", c);
    CHECK(rows_next(rows, 1, 2, 1, &c, &n) && c == 5, "owner after a steal: got %ld, want 5", c);
    CHECK(rows_next(rows, 0, 2, 1, &c, &n) && c == 8, "second steal: got %ld, want 8", c);
}

// Several at once: a quarter of the share's rest, at most `most`, down to single chunks at its end.
static void check_take_many(void) {
    struct kern_rows rows[2];
    rows_split(rows, 2, 80); // thread 0: [0, 40)
    static const long want[][2] = {{0, 8}, {8, 8}, {16, 6}, {22, 4}, {26, 3}, {29, 2}, {31, 2}, {33, 1}};
    long c, n;
    for (int i = 0; i < 8; i++)
        CHECK(rows_next(rows, 0, 2, 8, &c, &n) && c == want[i][0] && n == want[i][1], "take %d: [%ld, +%ld), want [%ld, +%ld)",
              i, c, n, want[i][0], want[i][1]);
    CHECK(rows_next(rows, 1, 2, 8, &c, &n) && c == 40 && n == 8, "the other share untouched: [%ld, +%ld)", c, n);
}

struct race {
    struct kern_rows *rows;
    int nth, ith;
    long most;
    long n_chunks;
    atomic_int *counts; // [n_chunks] times each chunk was taken
};

static void *race_thread(void *arg) {
    struct race *r = arg;
    long c, n;
    while (rows_next(r->rows, r->ith, r->nth, r->most, &c, &n))
        for (long i = c; i < c + n; i++)
            if (i >= 0 && i < r->n_chunks) atomic_fetch_add(&r->counts[i], 1);
    return NULL;
}

// Threads racing for the chunks (with thread 0 late, so that others steal from it).
static void check_race(int nth, long n_chunks, long most) {
    struct kern_rows rows[MAX_THREADS];
    static atomic_int counts[MAX_CHUNKS];
    for (long i = 0; i < n_chunks; i++) atomic_store(&counts[i], 0);
    rows_split(rows, nth, n_chunks);
    pthread_t th[MAX_THREADS];
    struct race rs[MAX_THREADS];
    for (int t = nth - 1; t >= 0; t--) {
        rs[t] = (struct race){rows, nth, t, most, n_chunks, counts};
        pthread_create(&th[t], NULL, race_thread, &rs[t]);
    }
    for (int t = 0; t < nth; t++) pthread_join(th[t], NULL);
    int bad = 0;
    for (long i = 0; i < n_chunks; i++) bad += atomic_load(&counts[i]) != 1;
    CHECK(bad == 0, "%d threads, %ld chunks, most %ld: %d chunks not taken exactly once", nth, n_chunks, most, bad);
}

int main(void) {
    for (int nth = 1; nth <= MAX_THREADS; nth++)
        for (long n = 0; n <= 60; n++)
            for (int ith = 0; ith < nth; ith++)
                for (long most = 1; most <= 9; most += 4) check_single_drain(nth, n, ith, most);
    check_steal_takes_back();
    check_take_many();
    for (int rep = 0; rep < 50; rep++)
        for (int nth = 2; nth <= MAX_THREADS; nth++) check_race(nth, MAX_CHUNKS, rep % 2 ? 8 : 1);
    return CHECK_DONE();
}
