// WordPiece (tokenizer.ggml.model = bert). Work in progress.
#include "tok_internal.h"

int tok_wpm_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o, llm_err *err) {
    (void)v;
    (void)text;
    (void)len;
    (void)o;
    return err_set(err, "WordPiece is not implemented yet");
}
