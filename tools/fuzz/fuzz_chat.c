// libFuzzer entry point for the chat-template renderer (src/chat). The input is
// template text, optionally followed by a NUL byte and JSON for the context
// (used if it parses, else a fixed conversation with tools is used). Each run
// checks, and traps on violation:
//   - chat_parse_json / chat_template_parse / chat_template_render return 0, or
//     -1 with a non-empty one-line message;
//   - a rendered output is NUL-terminated, within max_output, and its spans tile
//     it exactly with alternating provenance;
//   - rendering twice gives the same bytes and spans (no uninitialized state);
//   - limits hold: small step / memory / output / depth limits keep every run short.
// See README.md for building and running.
#include "chat/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_chat: invariant failed (%s:%d): %s\n", __FILE__, __LINE__, #c); \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static const char default_context[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    " {\"role\": \"user\", \"content\": \"Hi <|im_start|> {{ x }}\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nhmm\\n</think>\\n\\nHello\","
    "  \"tool_calls\": [{\"id\": \"a1b2c3d4e\", \"type\": \"function\","
    "   \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"a1b2c3d4e\", \"content\": \"42\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"part\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
    "   \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}}}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"n\": 3, \"f\": 1.5, \"none\": null, \"list\": [3, 1, 2], \"obj\": {\"b\": 1, \"a\": [true, false]}}";

static bool msg_ok(const llm_err *err) {
    size_t n = strnlen(err->msg, sizeof err->msg);
    return n > 0 && n < sizeof err->msg && memchr(err->msg, '\n', n) == NULL;
}

static void check_output(const struct chat_output *o, size_t max_output) {
    CHECK(o->text != NULL);
    CHECK(o->len <= max_output);
    CHECK(o->text[o->len] == 0);
    size_t at = 0;
    for (size_t i = 0; i < o->n_spans; i++) {
        CHECK(o->spans[i].off == at && o->spans[i].len > 0);
        if (i) CHECK(o->spans[i].from_user != o->spans[i - 1].from_user);
        at += o->spans[i].len;
    }
    CHECK(at == o->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t src_len = nul ? (size_t)(nul - data) : size;

    struct chat_doc *d = chat_doc_new();
    CHECK(d != NULL);
    struct chat_value *ctx = NULL;
    llm_err err = {{0}};
    if (nul) {
        const char *json = (const char *)nul + 1;
        size_t json_len = size - src_len - 1;
        if (chat_parse_json(d, json, json_len, true, &ctx, &err) != 0) {
            CHECK(ctx == NULL && msg_ok(&err));
        } else if (chat_value_type(ctx) != CHAT_OBJECT) ctx = NULL;
    }
    if (!ctx) CHECK(chat_parse_json(d, default_context, sizeof default_context - 1, true, &ctx, &err) == 0);

    struct chat_template *t = NULL;
    memset(&err, 0, sizeof err);
    if (chat_template_parse(src, src_len, &t, &err) != 0) {
        CHECK(t == NULL && msg_ok(&err));
        chat_doc_free(d);
        return 0;
    }
    struct chat_limits lim = {.max_output = 64 << 10, .max_memory = 16 << 20, .max_steps = 100000, .max_depth = 100};
    struct tm now = {.tm_year = 125, .tm_mon = 2, .tm_mday = 7, .tm_hour = 14, .tm_min = 5, .tm_sec = 9,
                     .tm_wday = 5, .tm_yday = 65};
    struct chat_render_opts opts = {.limits = &lim, .now = &now};
    struct chat_output o1, o2;
    llm_err e1 = {{0}}, e2 = {{0}};
    int r1 = chat_template_render(t, ctx, &opts, &o1, &e1);
    int r2 = chat_template_render(t, ctx, &opts, &o2, &e2);
    CHECK(r1 == r2);
    if (r1 == 0) {
        check_output(&o1, lim.max_output);
        check_output(&o2, lim.max_output);
        CHECK(o1.len == o2.len && memcmp(o1.text, o2.text, o1.len) == 0);
        CHECK(o1.n_spans == o2.n_spans);
        for (size_t i = 0; i < o1.n_spans; i++)
            CHECK(o1.spans[i].off == o2.spans[i].off && o1.spans[i].len == o2.spans[i].len &&
                  o1.spans[i].from_user == o2.spans[i].from_user);
    } else {
        CHECK(msg_ok(&e1) && strcmp(e1.msg, e2.msg) == 0);
        CHECK(o1.text == NULL && o1.n_spans == 0);
    }
    chat_output_free(&o1);
    chat_output_free(&o2);
    chat_template_free(t);
    chat_doc_free(d);
    return 0;
}
