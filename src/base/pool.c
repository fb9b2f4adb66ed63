#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

// Waiting threads spin on a flag (with pause: cheap for the sibling hyperthread and
// the power budget) for up to SPIN_NS, which covers the gaps between the many short
// jobs of one token, and then sleep on a condition variable, so an idle pool (a
// server between requests, a user reading) costs no CPU. No sched_yield: on a busy
// machine it hands the core around in syscalls without helping the late thread.
enum { SPIN_NS = 50 * 1000, SPINS_PER_CLOCK_CHECK = 64 };

struct pool {
    int n_threads;
    pthread_t *threads;      // [n_threads - 1] workers (thread 0 is the caller)
    pool_fn fn;
    void *ctx;
    atomic_uint generation;  // bumped once per job; workers wait for a change
    atomic_int pending;      // workers that have not finished the current job
    atomic_bool stop;
    atomic_int n_sleeping;   // workers blocked (or about to block) on wake
    bool caller_sleeping;    // the caller blocks on done (guarded by lock)
    pthread_mutex_t lock;    // guards both condition variables
    pthread_cond_t wake;     // workers: a new job (or stop)
    pthread_cond_t done;     // caller: the last worker finished
};

struct worker_arg {
    struct pool *pool;
    int ith;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Spins until cond(p) holds or SPIN_NS pass; returns whether it holds.
static bool spin_until(struct pool *p, bool (*cond)(struct pool *, unsigned), unsigned arg) {
    int64_t start = 0;
    for (int spins = 1;; spins++) {
        if (cond(p, arg)) return true;
        cpu_relax();
        if (spins % SPINS_PER_CLOCK_CHECK == 0) {
            const int64_t t = now_ns();
            if (!start) start = t;
            else if (t - start > SPIN_NS) return cond(p, arg);
        }
    }
}

static bool job_posted(struct pool *p, unsigned seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
           atomic_load_explicit(&p->stop, memory_order_acquire);
}

static bool job_done(struct pool *p, unsigned unused) {
    (void)unused;
    return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

static void *worker_main(void *arg_) {
    struct worker_arg arg = *(struct worker_arg *)arg_;
    free(arg_);
    struct pool *p = arg.pool;
    unsigned seen = 0;
    for (;;) {
        if (!spin_until(p, job_posted, seen)) {
            // Announce the sleep before the last check (both seq_cst): pool_run bumps
            // the generation before it reads n_sleeping, so one of us sees the other.
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        p->fn(p->ctx, arg.ith, p->n_threads);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            // The last one: the caller's flag is read under the lock it is set under, so
            // either the caller sees pending == 0 before it would wait, or it waits and is
            // signalled. (A store then a load of two atomics, as this was, needs the
            // store-load order of seq_cst, which qemu-aarch64 does not keep on an x86-64
            // host: pool_run hung there in 2 of 3 runs of 200000 jobs.)
            pthread_mutex_lock(&p->lock);
            if (p->caller_sleeping) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

int pool_create(struct pool **out, int n_threads, llm_err *err) {
    if (n_threads < 1) return err_set(err, "thread count must be at least 1 (got %d)", n_threads);
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, "out of memory creating thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return err_set(err, "out of memory creating thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *arg = malloc(sizeof *arg);
        if (arg) *arg = (struct worker_arg){p, i};
        int rc = arg ? pthread_create(&p->threads[i - 1], NULL, worker_main, arg) : ENOMEM;
        if (rc != 0) {
            free(arg);
            p->n_threads = i; // destroy joins only the workers that exist
            pool_destroy(p);
            return err_set(err, "cannot start thread %d of %d: %s", i, n_threads, strerror(rc));
        }
    }
    *out = p;
    return 0;
}

void pool_destroy(struct pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

int pool_size(const struct pool *p) { return p->n_threads; }

void pool_run(struct pool *p, pool_fn fn, void *ctx) {
    if (p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); // seq_cst: ordered before the n_sleeping read
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    fn(ctx, 0, p->n_threads);
    if (spin_until(p, job_done, 0)) return;
    pthread_mutex_lock(&p->lock);
    p->caller_sleeping = true; // under the lock the last worker reads it under
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->lock);
    p->caller_sleeping = false;
    pthread_mutex_unlock(&p->lock);
}

int cpu_physical_cores(void) {
    long logical = sysconf(_SC_NPROCESSORS_ONLN);
    if (logical < 1) logical = 1;
    // SMT siblings of cpu0 tell how many logical CPUs share a core.
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "r");
    int siblings = 1;
    if (f) {
        char buf[128];
        if (fgets(buf, sizeof buf, f)) {
            int a, b;
            if (sscanf(buf, "%d-%d", &a, &b) == 2 && b > a) siblings = b - a + 1;
            else if (strchr(buf, ',')) siblings = 2;
        }
        fclose(f);
    }
    long cores = logical / siblings;
    return cores < 1 ? 1 : (int)cores;
}
