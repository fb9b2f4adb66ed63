#include "base/pool.h"
#include "check.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct job {
    long n;
    int *hits;       // [n] how often each index was visited
    atomic_int calls;
};

static void visit(void *ctx, int ith, int nth) {
    struct job *j = ctx;
    long b, e;
    pool_split(j->n, ith, nth, &b, &e);
    for (long i = b; i < e; i++) j->hits[i]++;
    atomic_fetch_add(&j->calls, 1);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

// Thread ith sleeps us[ith] microseconds: one thread finishing long after the
// others sends the caller (or the workers) past spinning into a blocking wait.
struct slow_job {
    long us[4];
    atomic_int calls;
};

static void slow(void *ctx, int ith, int nth) {
    (void)nth;
    struct slow_job *j = ctx;
    if (j->us[ith]) sleep_us(j->us[ith]);
    atomic_fetch_add(&j->calls, 1);
}

static void count(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    atomic_fetch_add((atomic_long *)ctx, 1);
}

static void hung(int sig) {
    (void)sig;
    static const char msg[] = "test_pool: pool_run hung (a lost wake-up)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

int main(void) {
    {
        // Many short jobs, the caller now and then busy long enough for the workers
        // to fall asleep: every hand-over between spinning and sleeping, many times.
        // Under qemu-aarch64 300000 of them hung 1 run in 4 (a stand-alone loop of
        // 200000, 2 in 4) before the last worker read the caller's flag under the
        // lock (pool.c). A hang ends the test through the alarm.
        signal(SIGALRM, hung);
        alarm(120);
        struct pool *p;
        llm_err err;
        CHECK(pool_create(&p, 3, &err) == 0, "create: %s", err.msg);
        atomic_long calls = 0;
        // TEST_POOL_JOBS: tests/test_qemu.py asks for 300000 (20000 take ~1.5 s here, 3
        // threads on 2 cores spinning in turn)
        const char *env = getenv("TEST_POOL_JOBS");
        const long jobs = env && atol(env) > 0 ? atol(env) : 20000;
        for (long i = 0; i < jobs; i++) {
            pool_run(p, count, &calls);
            if (i % 97 == 0) {
                volatile long s = 0;
                for (long k = 0; k < 30000 * (i % 5); k++) s += k;
            }
        }
        CHECK(atomic_load(&calls) == 3 * jobs, "%ld calls for %ld jobs", (long)atomic_load(&calls), jobs);
        pool_destroy(p);
        alarm(0);
    }
    {
        // Waits longer than the spinning phase, on either side, still end.
        struct pool *p;
        llm_err err;
        CHECK(pool_create(&p, 3, &err) == 0, "create: %s", err.msg);
        for (int round = 0; round < 12; round++) {
            struct slow_job j = {.us = {0, 0, 0, 0}};
            j.us[round % 3] = round % 2 ? 3000 : 200; // caller or a worker is late
            pool_run(p, slow, &j);
            CHECK(atomic_load(&j.calls) == 3, "round %d: %d calls", round, atomic_load(&j.calls));
            if (round % 4 == 3) sleep_us(5000); // workers fall asleep between jobs
        }
        // An idle pool sleeps: its threads use (almost) no CPU while nothing runs.
        struct slow_job j = {.us = {0, 0, 0, 0}};
        pool_run(p, slow, &j);
        const double c0 = cpu_seconds();
        sleep_us(300 * 1000);
        const double used = cpu_seconds() - c0;
        CHECK(used < 0.03, "idle pool used %.3f s of CPU in 0.3 s", used);
        pool_destroy(p);
    }

    for (int nt = 1; nt <= 4; nt++) {
        struct pool *p;
        llm_err err;
        CHECK(pool_create(&p, nt, &err) == 0, "create %d: %s", nt, err.msg);
        static int hits[1001];
        for (int round = 0; round < 300; round++) {
            struct job j = {.n = 1001 - round % 7, .hits = hits};
            for (long i = 0; i < j.n; i++) hits[i] = 0;
            pool_run(p, visit, &j);
            int bad = 0;
            for (long i = 0; i < j.n; i++) bad += hits[i] != 1;
            if (bad || atomic_load(&j.calls) != nt) {
                CHECK(0, "round %d threads %d: %d indices not visited once, %d calls", round, nt, bad,
                      atomic_load(&j.calls));
                break;
            }
        }
        CHECK(pool_size(p) == nt, "size");
        pool_destroy(p);
    }
    llm_err err;
    struct pool *p;
    CHECK(pool_create(&p, 0, &err) == -1, "zero threads rejected");
    CHECK(cpu_physical_cores() >= 1, "cores");
    return CHECK_DONE();
}
