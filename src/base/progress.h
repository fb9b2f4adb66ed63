// Progress of long work (copying a model, rearranging its weights), reported
// as `done` of `total` units with a short name of the stage; the app layer
// draws it. A NULL progress, or one with no fn, reports nothing.
#ifndef LLMFILE_BASE_PROGRESS_H
#define LLMFILE_BASE_PROGRESS_H

#include <stdint.h>

struct progress {
    void (*fn)(void *ctx, const char *stage, uint64_t done, uint64_t total);
    void *ctx;
};

static inline void progress_report(const struct progress *p, const char *stage, uint64_t done, uint64_t total) {
    if (p && p->fn) p->fn(p->ctx, stage, done, total);
}

#endif
