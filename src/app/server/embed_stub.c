// TEMPORARY STUB — delete this file (and embed_api.h) when the engine gains
// engine_embed / engine_n_embd. The definitions are weak, so the real ones
// replace them at link time even before this file is removed. While the stub
// is in use, engine_n_embd says 0 and the embedding endpoints answer 501.
#include "embed_api.h"

__attribute__((weak)) int engine_embed(struct engine *e, const int32_t *tokens, int32_t n, float *out,
                                       bool normalize, llm_err *err) {
    (void)e, (void)tokens, (void)n, (void)out, (void)normalize;
    return err_set(err, "embeddings are not implemented in this build");
}

__attribute__((weak)) int64_t engine_n_embd(const struct engine *e) {
    (void)e;
    return 0;
}
