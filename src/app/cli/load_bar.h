// A bar on stderr while a model loads (the copy onto huge pages, then the
// rearranging of its weights), when stderr is a terminal:
//   loading tinyllama-F16.gguf: copying  45% [#########           ]
// redrawn when the percentage moves and erased when the load ends.
#ifndef LLMFILE_APP_LOAD_BAR_H
#define LLMFILE_APP_LOAD_BAR_H

#include <stdbool.h>

#include "base/progress.h"

struct load_bar {
    const char *name;  // the model file's name, without its directory
    const char *stage; // the stage last drawn, or NULL
    int percent;       // the percentage last drawn
    bool drawn;        // a line is on the terminal
};

// The progress to hand to engine_params for model_path: {0} (no bar) unless
// stderr is a terminal.
struct progress load_bar_start(struct load_bar *b, const char *model_path);
// Erases the bar, if one was drawn.
void load_bar_end(struct load_bar *b);

#endif
