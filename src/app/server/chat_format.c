#include "chat_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

struct server_chat {
    struct chat_template *tmpl;
    char *source;       // the template text
    char name[32];      // "jinja" or "<built-in> (fallback)"
    char bos[64], eos[64]; // the vocabulary's BOS/EOS text ("" if none), as the template's bos_token/eos_token
};

// Built-in templates for models without a usable one, chosen by the turn
// tokens of their vocabulary (ChatML, the last resort, comes from src/chat).
// Gemma: system text opens the first user turn, the assistant is "model".
static const char gemma_src[] =
    "{{- bos_token -}}"
    "{%- set system = '' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] + '\\n\\n' -%}{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' -}}"
    "{%- if loop.first -%}{{- system -}}{%- endif -%}"
    "{{- message['content'] | trim -}}{{- '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}";

static const char llama3_src[] =
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim -}}"
    "{{- '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}";

static bool has_tokens(const struct tok_vocab *v, const char *a, const char *b) {
    return tok_find(v, a, strlen(a)) >= 0 && tok_find(v, b, strlen(b)) >= 0;
}

// A token's text for bos_token / eos_token (control tokens spelled out, as llama.cpp passes them).
static void token_text(const struct tok_vocab *v, int32_t id, char *buf, size_t cap) {
    int n = id >= 0 ? tok_piece(v, id, buf, cap - 1, true) : 0;
    buf[n >= 0 && (size_t)n < cap ? n : 0] = 0;
}

// Renders msgs into out (spans tell message text from markup).
static int render(const struct server_chat *c, const struct chat_msg *msgs, int n, bool add_generation_prompt,
                  struct chat_output *out, llm_err *err) {
    struct chat_doc *d = chat_doc_new();
    if (!d) return err_set(err, "out of memory");
    struct chat_value *list = chat_new_array(d);
    int rc = list ? 0 : err_set(err, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        const char *role = !strcmp(msgs[i].role, "developer") ? "system" : msgs[i].role;
        struct chat_value *m = chat_new_object(d);
        if (!m || chat_object_set(d, m, "role", chat_new_string(d, role, strlen(role), true)) ||
            chat_object_set(d, m, "content", chat_new_string(d, msgs[i].content, msgs[i].len, true)) ||
            chat_array_push(d, list, m))
            rc = err_set(err, "out of memory");
    }
    struct chat_value *ctx = rc ? NULL : chat_new_context(d, list, add_generation_prompt, c->bos, c->eos);
    if (!rc && !ctx) rc = err_set(err, "out of memory");
    if (!rc) rc = chat_template_render(c->tmpl, ctx, NULL, out, err);
    chat_doc_free(d);
    return rc;
}

// Checks that t renders a usual conversation and shows its last message. Some
// templates refuse a system message (raise_exception): then without one.
static int probe(const struct server_chat *c, llm_err *err) {
    static const struct chat_msg conv[] = {{"system", "You are a helpful assistant.", 28},
                                           {"user", "Hello!", 6},
                                           {"assistant", "Hi! How can I help?", 19},
                                           {"user", "Tell me a joke.", 15}};
    struct chat_output out = {0};
    llm_err first;
    if (render(c, conv, 4, true, &out, &first) && render(c, conv + 1, 3, true, &out, err)) {
        *err = first;
        return -1;
    }
    const bool shown = memmem(out.text, out.len, conv[3].content, conv[3].len) != NULL;
    chat_output_free(&out);
    return shown ? 0 : err_set(err, "it leaves the messages out of the prompt");
}

static int use_template(struct server_chat *c, const char *src, size_t len, llm_err *err) {
    chat_template_free(c->tmpl);
    c->tmpl = NULL;
    free(c->source);
    c->source = strndup(src, len);
    if (!c->source) return err_set(err, "out of memory");
    return chat_template_parse(src, len, &c->tmpl, err) || probe(c, err) ? -1 : 0;
}

static char *read_text_file(const char *path, size_t *len, llm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "cannot open the chat template %s", path), NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            char *p = cap < (16u << 20) ? realloc(buf, (cap = cap ? 2 * cap : 4096) + 1) : NULL;
            if (!p) {
                free(buf);
                fclose(f);
                return err_set(err, "the chat template %s is too large (16 MiB at most)", path), NULL;
            }
            buf = p;
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    const bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return err_set(err, "cannot read the chat template %s", path), NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int server_chat_init(struct server_chat **out, const struct engine *e, const char *template_path, char *warning,
                     size_t warning_cap, llm_err *err) {
    *out = NULL;
    warning[0] = 0;
    struct server_chat *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, "out of memory");
    const struct tok_vocab *v = engine_vocab(e);
    token_text(v, tok_bos(v), c->bos, sizeof c->bos);
    token_text(v, tok_eos(v), c->eos, sizeof c->eos);
    snprintf(c->name, sizeof c->name, "jinja");

    if (template_path) {
        size_t len;
        char *src = read_text_file(template_path, &len, err);
        const int rc = src ? use_template(c, src, len, err) : -1;
        if (rc && src) err_prefix(err, "the chat template %s does not work", template_path);
        free(src);
        if (rc) {
            server_chat_free(c);
            return -1;
        }
        *out = c;
        return 0;
    }
    const struct gguf_file *f = &engine_model(e)->file;
    struct gguf_str src = {0};
    llm_err why;
    const int found = f->base ? gguf_get_str(f, "tokenizer.chat_template", &src, &why) : 0;
    if (found == 0) err_set(&why, "the model has no chat template");
    else if (found < 0) { // a key of the wrong type: why says so
    } else if (use_template(c, src.ptr, src.len, &why)) err_prefix(&why, "the model's chat template does not work");
    else {
        *out = c;
        return 0;
    }
    const char *name = has_tokens(v, "<start_of_turn>", "<end_of_turn>")          ? "gemma"
                       : has_tokens(v, "<|start_header_id|>", "<|end_header_id|>") ? "llama3"
                                                                                   : "chatml";
    const char *builtin = !strcmp(name, "gemma") ? gemma_src : !strcmp(name, "llama3") ? llama3_src
                                                                                      : chat_template_chatml();
    snprintf(c->name, sizeof c->name, "%s (fallback)", name);
    snprintf(warning, warning_cap, "%s; using the built-in %s chat template", why.msg, name);
    if (use_template(c, builtin, strlen(builtin), err)) { // a bug in the built-in template
        server_chat_free(c);
        return err_prefix(err, "the built-in %s chat template", name);
    }
    *out = c;
    return 0;
}

void server_chat_free(struct server_chat *c) {
    if (!c) return;
    chat_template_free(c->tmpl);
    free(c->source);
    free(c);
}

const char *server_chat_format_name(const struct server_chat *c) { return c->name; }
const char *server_chat_template_source(const struct server_chat *c) { return c->source; }

int server_format_chat(const struct server_chat *c, const struct engine *e, const struct chat_msg *msgs, int n,
                       bool add_generation_prompt, char **prompt_out, size_t *prompt_len, int32_t **tokens_out,
                       int32_t *n_tokens_out, llm_err *err) {
    struct chat_output out = {0};
    if (render(c, msgs, n, add_generation_prompt, &out, err)) return err_prefix(err, "chat template");
    // The tokenizer adds BOS (EOS) itself: drop the template's (llama.cpp does the same).
    const struct tok_vocab *v = engine_vocab(e);
    size_t start = 0, end = out.len;
    const size_t nb = strlen(c->bos), ne = strlen(c->eos);
    if (tok_add_bos(v) && nb && end >= nb && !memcmp(out.text, c->bos, nb)) start = nb;
    if (tok_add_eos(v) && ne && end - start >= ne && !memcmp(out.text + end - ne, c->eos, ne)) end -= ne;
    // Spans clipped to [start, end) become tokenizer segments.
    struct tok_segment *segs = malloc((out.n_spans + 1) * sizeof *segs);
    size_t n_segs = 0;
    int rc = segs ? 0 : err_set(err, "out of memory");
    for (size_t i = 0; i < out.n_spans && !rc; i++) {
        const size_t a = out.spans[i].off > start ? out.spans[i].off : start;
        const size_t b = out.spans[i].off + out.spans[i].len < end ? out.spans[i].off + out.spans[i].len : end;
        if (a < b) segs[n_segs++] = (struct tok_segment){out.text + a, b - a, !out.spans[i].from_user};
    }
    int ntok = rc ? -1 : engine_tokenize_segments(e, segs, n_segs, true, tokens_out, err);
    free(segs);
    if (ntok < 0) {
        chat_output_free(&out);
        return -1;
    }
    *n_tokens_out = ntok;
    if (prompt_out) {
        memmove(out.text, out.text + start, end - start);
        out.text[end - start] = 0;
        *prompt_out = out.text; // ownership moves to the caller
        *prompt_len = end - start;
        out.text = NULL;
    }
    chat_output_free(&out);
    return 0;
}
