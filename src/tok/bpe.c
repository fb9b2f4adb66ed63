// Byte-level BPE (tokenizer.ggml.model = gpt2). Work in progress.
#include "tok_internal.h"

int tok_bpe_load(struct tok_vocab *v, const struct gguf_file *f, llm_err *err) {
    (void)v;
    (void)f;
    (void)err;
    return 0;
}

int tok_bpe_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o, llm_err *err) {
    (void)v;
    (void)text;
    (void)len;
    (void)o;
    return err_set(err, "byte-level BPE is not implemented yet");
}
