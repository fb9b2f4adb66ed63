#include "app/cli/load_bar.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { BAR_WIDTH = 20 };

struct load_bar {
    const char *name;  // the model file's name, without its directory
    const char *stage; // the stage last drawn, or NULL
    int percent;       // the percentage last drawn
    bool drawn;        // a line is on the terminal
};

static void load_bar_draw(void *ctx, const char *stage, uint64_t done, uint64_t total) {
    struct load_bar *b = ctx;
    const int percent = total ? (int)(done >= total ? 100 : done * 100 / total) : 100;
    if (b->drawn && b->percent == percent && b->stage && strcmp(b->stage, stage) == 0) return;
    char bar[BAR_WIDTH + 1];
    const int filled = percent * BAR_WIDTH / 100;
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, ' ', (size_t)(BAR_WIDTH - filled));
    bar[BAR_WIDTH] = '\0';
    fprintf(stderr, "\r\033[Kloading %s: %s %3d%% [%s]", b->name, stage, percent, bar);
    fflush(stderr);
    b->stage = stage;
    b->percent = percent;
    b->drawn = true;
}

int engine_load_with_bar(struct engine **out, struct engine_params *p, llm_err *err) {
    const char *slash = p->model_path ? strrchr(p->model_path, '/') : NULL;
    struct load_bar b = {slash ? slash + 1 : p->model_path ? p->model_path : "", NULL, -1, false};
    p->progress = isatty(STDERR_FILENO) ? (struct progress){load_bar_draw, &b} : (struct progress){0};
    const int rc = engine_load(out, p, err);
    p->progress = (struct progress){0}; // b goes out of scope
    if (b.drawn) { // erased, for what follows on the line
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    return rc;
}
