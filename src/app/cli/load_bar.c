#include "app/cli/load_bar.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { BAR_WIDTH = 20 };

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

struct progress load_bar_start(struct load_bar *b, const char *model_path) {
    const char *slash = model_path ? strrchr(model_path, '/') : NULL;
    *b = (struct load_bar){slash ? slash + 1 : model_path ? model_path : "", NULL, -1, false};
    if (!isatty(STDERR_FILENO)) return (struct progress){0};
    return (struct progress){load_bar_draw, b};
}

void load_bar_end(struct load_bar *b) {
    if (!b->drawn) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    b->drawn = false;
}
