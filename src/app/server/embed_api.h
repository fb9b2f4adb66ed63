// TEMPORARY (remove when src/runtime/engine.h declares these): the embedding
// API the engine is getting from the BERT-encoder work. The server is written
// against it; embed_stub.c gives weak placeholder definitions until then.
#ifndef LLMFILE_APP_SERVER_EMBED_API_H
#define LLMFILE_APP_SERVER_EMBED_API_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine.h"

// Pooled embedding of tokens[0..n) into out[engine_n_embd(e)]; L2-normalized if
// normalize. 0, or -1 with err.
int engine_embed(struct engine *e, const int32_t *tokens, int32_t n, float *out, bool normalize, llm_err *err);
// Width of an embedding; <= 0 when the engine cannot embed.
int64_t engine_n_embd(const struct engine *e);

#endif
