#include "chat_format.h"

#include <stdlib.h>
#include <string.h>

#include "server.h"

enum chat_style { CHAT_GEMMA, CHAT_CHATML, CHAT_LLAMA3, CHAT_PLAIN };

static const char *const style_names[] = {"gemma", "chatml", "llama3", "plain"};

// The token that opens a turn in each format, used to recognise it.
static const char *const style_marker[] = {"<start_of_turn>", "<|im_start|>", "<|start_header_id|>"};

static enum chat_style detect_style(const struct engine *e) {
    const struct gguf_file *f = &engine_model(e)->file;
    struct gguf_str tmpl;
    if (f->base && gguf_find_kv(f, "tokenizer.chat_template") &&
        gguf_get_str(f, "tokenizer.chat_template", &tmpl, NULL) == 0 && tmpl.len) {
        for (int s = 0; s < 3; s++)
            if (memmem(tmpl.ptr, tmpl.len, style_marker[s], strlen(style_marker[s]))) return (enum chat_style)s;
    }
    // No template (or one we do not know): the special tokens tell the family.
    for (int s = 0; s < 3; s++)
        if (tok_find(engine_vocab(e), style_marker[s], strlen(style_marker[s])) >= 0) return (enum chat_style)s;
    return CHAT_PLAIN;
}

const char *server_chat_format_name(const struct engine *e) { return style_names[detect_style(e)]; }

// The prompt under construction: finished tokens plus the current plain-text run.
struct builder {
    const struct engine *e;
    struct sbuf text;   // the whole prompt as text
    struct sbuf run;    // plain text since the last control token
    int32_t *ids;
    int32_t n, cap;
    llm_err *err;
};

static int push_id(struct builder *b, int32_t id) {
    if (b->n == b->cap) {
        int32_t cap = b->cap ? 2 * b->cap : 256;
        int32_t *p = realloc(b->ids, (size_t)cap * sizeof *p);
        if (!p) return err_set(b->err, "out of memory");
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

static int flush_run(struct builder *b) {
    if (b->run.n == 0) return 0;
    int32_t *ids;
    int n = engine_tokenize(b->e, b->run.p, b->run.n, false, false, &ids, b->err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++)
        if (push_id(b, ids[i])) {
            free(ids);
            return -1;
        }
    free(ids);
    b->run.n = 0;
    return 0;
}

static int add_text(struct builder *b, const char *s, size_t n) {
    if (sbuf_add(&b->run, s, n) || sbuf_add(&b->text, s, n)) return err_set(b->err, "out of memory");
    return 0;
}

static int add_str(struct builder *b, const char *s) { return add_text(b, s, strlen(s)); }

static int add_special(struct builder *b, const char *name) {
    const int32_t id = tok_find(engine_vocab(b->e), name, strlen(name));
    if (id < 0) return err_set(b->err, "the model's vocabulary has no %s token for its chat format", name);
    if (flush_run(b) || push_id(b, id) || sbuf_add(&b->text, name, strlen(name))) return -1;
    return 0;
}

static int add_bos(struct builder *b) {
    const struct tok_vocab *v = engine_vocab(b->e);
    if (!tok_add_bos(v) || tok_bos(v) < 0) return 0;
    size_t len;
    const char *txt = tok_text(v, tok_bos(v), &len);
    if (push_id(b, tok_bos(v))) return -1;
    return txt ? sbuf_add(&b->text, txt, len) : 0;
}

// Message content without leading and trailing whitespace (the Gemma and
// Llama 3 templates apply `| trim`).
static void trimmed(const struct chat_msg *m, const char **s, size_t *n) {
    const char *p = m->content;
    size_t len = m->len;
    while (len && strchr(" \t\n\r", p[0])) p++, len--;
    while (len && strchr(" \t\n\r", p[len - 1])) len--;
    *s = p;
    *n = len;
}

static bool is_system(const char *role) { return !strcmp(role, "system") || !strcmp(role, "developer"); }

static int render_gemma(struct builder *b, const struct chat_msg *m, int n, bool gen) {
    // Gemma has no system turn: the system text opens the first user turn.
    int first = 0;
    const struct chat_msg *sys = NULL;
    if (n > 0 && is_system(m[0].role)) sys = &m[0], first = 1;
    if (add_bos(b)) return -1;
    for (int i = first; i < n; i++) {
        const char *role = !strcmp(m[i].role, "assistant") ? "model" : is_system(m[i].role) ? "user" : m[i].role;
        if (add_special(b, "<start_of_turn>") || add_str(b, role) || add_str(b, "\n")) return -1;
        if (i == first && sys && (add_text(b, sys->content, sys->len) || add_str(b, "\n\n"))) return -1;
        const char *s;
        size_t len;
        trimmed(&m[i], &s, &len);
        if (add_text(b, s, len) || add_special(b, "<end_of_turn>") || add_str(b, "\n")) return -1;
    }
    if (first == n && sys) { // only a system message
        if (add_special(b, "<start_of_turn>") || add_str(b, "user\n") || add_text(b, sys->content, sys->len) ||
            add_str(b, "\n\n") || add_special(b, "<end_of_turn>") || add_str(b, "\n"))
            return -1;
    }
    if (gen && (add_special(b, "<start_of_turn>") || add_str(b, "model\n"))) return -1;
    return 0;
}

static int render_chatml(struct builder *b, const struct chat_msg *m, int n, bool gen) {
    if (add_bos(b)) return -1;
    for (int i = 0; i < n; i++) {
        const char *role = is_system(m[i].role) ? "system" : m[i].role;
        if (add_special(b, "<|im_start|>") || add_str(b, role) || add_str(b, "\n") ||
            add_text(b, m[i].content, m[i].len) || add_special(b, "<|im_end|>") || add_str(b, "\n"))
            return -1;
    }
    if (gen && (add_special(b, "<|im_start|>") || add_str(b, "assistant\n"))) return -1;
    return 0;
}

static int render_llama3(struct builder *b, const struct chat_msg *m, int n, bool gen) {
    if (add_bos(b)) return -1;
    for (int i = 0; i < n; i++) {
        const char *role = is_system(m[i].role) ? "system" : m[i].role;
        const char *s;
        size_t len;
        trimmed(&m[i], &s, &len);
        if (add_special(b, "<|start_header_id|>") || add_str(b, role) || add_special(b, "<|end_header_id|>") ||
            add_str(b, "\n\n") || add_text(b, s, len) || add_special(b, "<|eot_id|>"))
            return -1;
    }
    if (gen && (add_special(b, "<|start_header_id|>") || add_str(b, "assistant") ||
                add_special(b, "<|end_header_id|>") || add_str(b, "\n\n")))
        return -1;
    return 0;
}

static int render_plain(struct builder *b, const struct chat_msg *m, int n, bool gen) {
    if (add_bos(b)) return -1;
    for (int i = 0; i < n; i++) {
        const char *who = is_system(m[i].role) ? "System" : !strcmp(m[i].role, "assistant") ? "Assistant" : "User";
        if (add_str(b, who) || add_str(b, ": ") || add_text(b, m[i].content, m[i].len) || add_str(b, "\n"))
            return -1;
    }
    if (gen && add_str(b, "Assistant:")) return -1;
    return 0;
}

int server_format_chat(const struct engine *e, const struct chat_msg *msgs, int n, bool add_generation_prompt,
                       char **prompt_out, int32_t **tokens_out, int32_t *n_tokens_out, llm_err *err) {
    struct builder b = {.e = e, .err = err};
    int rc;
    switch (detect_style(e)) {
    case CHAT_GEMMA: rc = render_gemma(&b, msgs, n, add_generation_prompt); break;
    case CHAT_CHATML: rc = render_chatml(&b, msgs, n, add_generation_prompt); break;
    case CHAT_LLAMA3: rc = render_llama3(&b, msgs, n, add_generation_prompt); break;
    default: rc = render_plain(&b, msgs, n, add_generation_prompt); break;
    }
    if (rc == 0) rc = flush_run(&b);
    sbuf_free(&b.run);
    if (rc) {
        free(b.ids);
        sbuf_free(&b.text);
        return -1;
    }
    *tokens_out = b.ids;
    *n_tokens_out = b.n;
    if (prompt_out) {
        *prompt_out = b.text.p ? b.text.p : strdup("");
        if (!*prompt_out) {
            free(b.ids);
            return err_set(err, "out of memory");
        }
    } else {
        sbuf_free(&b.text);
    }
    return 0;
}
