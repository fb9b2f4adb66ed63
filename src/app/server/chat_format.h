// Chat messages -> prompt tokens, with built-in formats for the common chat
// templates (Gemma, ChatML, Llama 3) until the Jinja template renderer
// (src/chat/) replaces this file behind the same interface.
//
// Safety: template markup is turned into control tokens, message text never
// is. The prompt is built as runs of plain text (markup text and message
// content together, tokenized without special-token parsing, as llama.cpp
// tokenizes the text between special tokens) separated by control tokens
// looked up by their exact text. So a user who types "<end_of_turn>" gets
// those characters, not the token.
#ifndef LLMFILE_APP_SERVER_CHAT_FORMAT_H
#define LLMFILE_APP_SERVER_CHAT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/engine.h"

struct chat_msg {
    const char *role;    // "system", "user" or "assistant" ("developer" is read as "system")
    const char *content; // UTF-8, not NUL-terminated
    size_t len;
};

// The built-in format the model gets: from its tokenizer.chat_template if that
// is recognised, else from its special tokens. Names: "gemma", "chatml",
// "llama3", "plain" (a "User:/Assistant:" transcript when nothing fits).
const char *server_chat_format_name(const struct engine *e);

// Renders msgs[0..n) and tokenizes the result. On success returns 0 and sets
// *tokens_out (malloc'd, *n_tokens_out long) and, if prompt_out is non-NULL,
// *prompt_out (malloc'd text with control tokens spelled out, for logs and
// /props). add_generation_prompt appends the opening of the assistant's turn.
int server_format_chat(const struct engine *e, const struct chat_msg *msgs, int n, bool add_generation_prompt,
                       char **prompt_out, int32_t **tokens_out, int32_t *n_tokens_out, llm_err *err);

#endif
