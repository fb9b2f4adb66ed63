// A bar on stderr while a model loads (the copy onto huge pages, then the
// rearranging of its weights), when stderr is a terminal:
//   loading tinyllama-F16.gguf: copying  45% [#########           ]
// redrawn when the percentage moves and erased when the load ends.
#ifndef LLMFILE_APP_LOAD_BAR_H
#define LLMFILE_APP_LOAD_BAR_H

#include "runtime/engine.h"

// engine_load(out, p, err) with the bar drawn through p->progress during the load.
int engine_load_with_bar(struct engine **out, struct engine_params *p, llm_err *err);

#endif
