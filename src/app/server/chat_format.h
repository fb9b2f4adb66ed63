// Chat messages -> prompt tokens through the model's chat template (its GGUF
// key tokenizer.chat_template, rendered by src/chat as Python's jinja2 renders
// it for transformers and llama.cpp).
//
// Safety: only the template's own markup may become control tokens. The
// renderer reports which bytes of the prompt came from the messages; those are
// tokenized without special-token recognition, the rest with it, and the text
// is split only at control tokens of the markup (tok_encode_segments), so
// ordinary prompts get exactly the ids llama.cpp gives for the whole text. A
// user who types "<end_of_turn>" gets those characters, not the token.
#ifndef LLMFILE_APP_SERVER_CHAT_FORMAT_H
#define LLMFILE_APP_SERVER_CHAT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/engine.h"

struct chat_msg {
    const char *role;    // "system", "user" or "assistant" ("developer" is passed as "system")
    const char *content; // UTF-8, not NUL-terminated
    size_t len;
};

struct server_chat; // the parsed template and the model's bos/eos text

// Loads the template: template_path's text if given (--chat-template-file; a
// template that does not work is then an error), else the model's. A model
// template that is missing, does not parse, or cannot render a probe
// conversation is replaced by a built-in one chosen by the vocabulary (Gemma
// turn tokens: gemma, Llama 3 header tokens: llama3, else ChatML); *warning then
// says why (one line), else it is "". Returns 0, or -1 with err.
int server_chat_init(struct server_chat **out, const struct engine *e, const char *template_path, char *warning,
                     size_t warning_cap, llm_err *err);
void server_chat_free(struct server_chat *c);

// "jinja" (the model's or the given template) or "<name> (fallback)", for /props and logs.
const char *server_chat_format_name(const struct server_chat *c);
const char *server_chat_template_source(const struct server_chat *c);

// Renders msgs[0..n) and tokenizes the result. As llama.cpp does, a leading BOS
// (trailing EOS) text is taken off the rendered text when the tokenizer adds
// that token itself. On success returns 0 and sets *tokens_out (malloc'd,
// *n_tokens_out long) and, if prompt_out is non-NULL, *prompt_out and
// *prompt_len (the malloc'd prompt text, NUL-terminated). A template error
// (e.g. raise_exception for a role order it refuses) returns -1 with the
// template's message.
int server_format_chat(const struct server_chat *c, const struct engine *e, const struct chat_msg *msgs, int n,
                       bool add_generation_prompt, char **prompt_out, size_t *prompt_len, int32_t **tokens_out,
                       int32_t *n_tokens_out, llm_err *err);

#endif
