#include "base/pool.h"
#include "check.h"

#include <stdatomic.h>

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

int main(void) {
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
