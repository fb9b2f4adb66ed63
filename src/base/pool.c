#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

// Workers spin (cheap wake-up between the hundreds of jobs of one token), then
// yield (so an oversubscribed core still runs the thread that has work), then sleep.
enum { SPIN_ITERATIONS = 1 << 12, YIELD_ITERATIONS = 1 << 10 };

struct pool {
    int n_threads;
    pthread_t *threads;      // [n_threads - 1] workers (thread 0 is the caller)
    pool_fn fn;
    void *ctx;
    atomic_uint generation;  // bumped once per job; workers wait for a change
    atomic_int pending;      // workers that have not finished the current job
    atomic_bool stop;
    pthread_mutex_t lock;    // guards sleeping on wake
    pthread_cond_t wake;
    int n_sleeping;          // workers blocked on wake (under lock)
};

struct worker_arg {
    struct pool *pool;
    int ith;
};

static void *worker_main(void *arg_) {
    struct worker_arg arg = *(struct worker_arg *)arg_;
    free(arg_);
    struct pool *p = arg.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_ITERATIONS + YIELD_ITERATIONS) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->lock);
            p->n_sleeping++;
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = gen;
        p->fn(p->ctx, arg.ith, p->n_threads);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

int pool_create(struct pool **out, int n_threads, llm_err *err) {
    if (n_threads < 1) return err_set(err, "thread count must be at least 1 (got %d)", n_threads);
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, "out of memory creating thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
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
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->n_sleeping) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    fn(ctx, 0, p->n_threads);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; spins++) {
        if (spins < SPIN_ITERATIONS) cpu_relax();
        else sched_yield(); // a worker may be waiting for this core
    }
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
