// The HTTP thread: routes, request checking, replies (JSON and server-sent
// events), CORS, API keys, client disconnects and shutdown.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "chat_format.h"
#include "server.h"

#define LLMFILE_VERSION "0.1.0"

extern const unsigned char server_page_html[];
extern const unsigned long server_page_html_len;

// Reply state of one queued task.
struct http_ctx {
    struct server *s;
    struct task *task;
    struct evhttp_request *req;   // NULL once the client is gone and the request freed
    struct evhttp_connection *evcon;
    struct event *watch;          // non-streaming: notices a client that hangs up while waiting
    bool started;                 // streaming: headers sent
    bool client_gone;
    bool include_usage;           // stream_options.include_usage
    bool base64;                  // embeddings: encoding_format base64
    bool embed_many;              // embeddings: the input was a list (llamafile's /embedding then answers "results")
    char *echo;                   // completions echo: the prompt text to put first
    char id[48];
    int64_t created;
    double t0;
    const char *path;
    struct http_ctx *prev, *next; // live list
};

static struct {
    struct server *s;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct event *notify_ev, *sig_int, *sig_term, *quit_timer;
    struct http_ctx *live;        // tasks queued or running
    int n_live;
    int n_signals;
    int64_t t_start;
} g;

// ---- small helpers ---------------------------------------------------------

// Errors found while reading a request: an HTTP status, the OpenAI error type,
// a message and the offending parameter.
struct perr {
    int status;
    const char *type;
    const char *code;
    char param[64];
    char msg[400];
};

__attribute__((format(printf, 3, 4))) static int bad(struct perr *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    if (!e->status) e->status = 400;
    if (!e->type) e->type = "invalid_request_error";
    return -1;
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 501: return "not_supported_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

// A JSON string of text that may hold invalid UTF-8 (bad bytes become U+FFFD).
static json_t *json_text(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    struct sbuf b = {0};
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *probe = len && i + len <= n ? json_stringn(s + i, len) : NULL;
        if (probe) {
            sbuf_add(&b, s + i, len);
            json_decref(probe);
            i += len;
        } else {
            sbuf_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    j = json_stringn(b.p ? b.p : "", b.n);
    sbuf_free(&b);
    return j;
}

static void add_header(struct evhttp_request *req, const char *k, const char *v) {
    evhttp_add_header(evhttp_request_get_output_headers(req), k, v);
}

static void send_body(struct evhttp_request *req, int status, const char *type, const char *body, size_t n) {
    struct evbuffer *buf = evbuffer_new();
    if (buf) evbuffer_add(buf, body, n);
    add_header(req, "Content-Type", type);
    evhttp_send_reply(req, status, NULL, buf);
    if (buf) evbuffer_free(buf);
}

// Sends j (and drops the reference).
static void send_json(struct evhttp_request *req, int status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        const char *oom = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        send_body(req, 500, "application/json", oom, strlen(oom));
        return;
    }
    send_body(req, status, "application/json; charset=utf-8", s, strlen(s));
    free(s);
}

static json_t *error_json(int status, const char *type, const char *msg, const char *param, const char *code) {
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", msg, "type", type ? type : error_type(status),
                     "param", param && *param ? param : NULL, "code", code);
}

static void send_error(struct evhttp_request *req, int status, const char *msg, const char *param, const char *code) {
    send_json(req, status, error_json(status, NULL, msg, param, code));
}

static void send_perr(struct evhttp_request *req, const struct perr *e) {
    send_json(req, e->status, error_json(e->status, e->type, e->msg, e->param, e->code));
}

static void log_request(const char *method, const char *path, int status, double t0, const struct task *t) {
    if (t)
        fprintf(stderr, "llmfile server: %s %s %d %.0f ms (slot %d, prompt %d tokens, %d cached, generated %d)\n",
                method, path, status, server_now_ms() - t0, t->slot_id, t->n_prompt, t->n_cached, t->n_gen);
    else if (g.s->cfg.verbose || status >= 400)
        fprintf(stderr, "llmfile server: %s %s %d %.0f ms\n", method, path, status, server_now_ms() - t0);
}

// ---- reading JSON fields -----------------------------------------------------

static bool is_set(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return v && !json_is_null(v);
}

static int check_fields(const json_t *o, const char *const *allowed, struct perr *e) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(key, allowed[i]);
        if (!ok) return bad(e, key, "unknown field '%s'", key);
    }
    return 0;
}

static int get_num(const json_t *o, const char *key, double lo, double hi, double *out, struct perr *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(e, key, "'%s' must be a number", key);
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return bad(e, key, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
    *out = x;
    return 0;
}

static int get_float(const json_t *o, const char *key, double lo, double hi, float *out, struct perr *e) {
    double x = *out;
    if (get_num(o, key, lo, hi, &x, e)) return -1;
    *out = (float)x;
    return 0;
}

static int get_int(const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, struct perr *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad(e, key, "'%s' must be an integer", key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return bad(e, key, "'%s' must be between %lld and %lld, got %lld", key, (long long)lo, (long long)hi,
                   (long long)x);
    *out = x;
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool *out, struct perr *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(e, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

// Fields that clients send by habit and that change nothing here when they
// hold their neutral value; any other value is refused rather than ignored.
static int check_neutral(const json_t *o, struct perr *e) {
    const json_t *v;
    if ((v = json_object_get(o, "logprobs")) && !json_is_null(v) && !json_is_false(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 0))
        return bad(e, "logprobs", "'logprobs' is not supported");
    if ((v = json_object_get(o, "top_logprobs")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 0))
        return bad(e, "top_logprobs", "'top_logprobs' is not supported");
    if ((v = json_object_get(o, "n_probs")) && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
        return bad(e, "n_probs", "'n_probs' is not supported");
    if ((v = json_object_get(o, "logit_bias")) && !json_is_null(v) &&
        !((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0)))
        return bad(e, "logit_bias", "'logit_bias' is not supported");
    static const char *const empty_lists[] = {"tools", "functions", "lora", "image_data"};
    for (int i = 0; i < 4; i++)
        if ((v = json_object_get(o, empty_lists[i])) && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
            return bad(e, empty_lists[i], "'%s' is not supported by this server", empty_lists[i]);
    if ((v = json_object_get(o, "tool_choice")) && !json_is_null(v) &&
        !(json_is_string(v) && (!strcmp(json_string_value(v), "none") || !strcmp(json_string_value(v), "auto"))))
        return bad(e, "tool_choice", "'tool_choice' must be \"none\" or \"auto\" (no tool calling)");
    if ((v = json_object_get(o, "grammar")) && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v)))
        return bad(e, "grammar", "'grammar' is not supported (use response_format json_object)");
    if ((v = json_object_get(o, "mirostat")) && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
        return bad(e, "mirostat", "'mirostat' is not supported");
    if ((v = json_object_get(o, "best_of")) && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        return bad(e, "best_of", "'best_of' must be 1");
    if ((v = json_object_get(o, "suffix")) && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v)))
        return bad(e, "suffix", "'suffix' is not supported");
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++) {
        double x = 0;
        if (get_num(o, penalties[i], -2, 2, &x, e)) return -1;
    }
    int64_t n = 1;
    if (get_int(o, "n", INT64_MIN, INT64_MAX, &n, e)) return -1;
    if (n != 1) return bad(e, "n", "'n' must be 1: one choice per request");
    return 0;
}

// ---- generation requests -------------------------------------------------------

static struct task *task_new(void) {
    struct task *t = calloc(1, sizeof *t);
    if (t) {
        atomic_init(&t->cancel, false);
        t->slot_id = -1;
    }
    return t;
}

// Sampling, limits, stop strings and streaming, shared by every generation endpoint.
static int parse_generation(struct server *s, const json_t *body, struct task *t, bool native, struct perr *e) {
    t->sp = sampler_defaults();
    t->cache_prompt = true;
    if (get_float(body, "temperature", 0, 100, &t->sp.temp, e) || get_float(body, "top_p", 0, 1, &t->sp.top_p, e) ||
        get_float(body, "min_p", 0, 1, &t->sp.min_p, e) ||
        get_float(body, "repeat_penalty", 0.01, 100, &t->sp.repeat_penalty, e) ||
        get_bool(body, "stream", &t->stream, e) || get_bool(body, "cache_prompt", &t->cache_prompt, e) ||
        get_bool(body, "ignore_eos", &t->ignore_eos, e))
        return -1;
    int64_t v = t->sp.top_k;
    if (get_int(body, "top_k", 0, INT32_MAX, &v, e)) return -1;
    t->sp.top_k = (int32_t)v;
    v = t->sp.repeat_last_n;
    if (get_int(body, "repeat_last_n", 0, s->n_ctx_slot, &v, e)) return -1;
    t->sp.repeat_last_n = (int32_t)v;
    v = -1;
    if (get_int(body, "seed", INT64_MIN, INT64_MAX, &v, e)) return -1;
    if (v < -1) return bad(e, "seed", "'seed' must be a non-negative integer (or -1: random)");
    t->sp.seed = v >= 0 ? (uint64_t)v : ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)t ^ (uint64_t)rand();

    // The most tokens to generate: OpenAI's max_tokens / max_completion_tokens,
    // llama.cpp's n_predict (-1: until the slot's context is full).
    int64_t max = -1;
    const char *max_name = NULL;
    static const char *const names[] = {"max_tokens", "max_completion_tokens", "n_predict"};
    for (int i = 0; i < 3; i++)
        if (is_set(body, names[i])) {
            int64_t x = -1;
            const int64_t lo = native ? -1 : 1;
            if (get_int(body, names[i], lo, INT64_MAX, &x, e)) return -1;
            if (max_name && x != max)
                return bad(e, names[i], "'%s' and '%s' disagree; give one", max_name, names[i]);
            max = x, max_name = names[i];
        }
    if (max > s->n_ctx_slot) {
        e->code = "context_length_exceeded";
        return bad(e, max_name, "'%s' is %lld but a slot's context holds %lld tokens (-c %lld / -np %d); ask for at most %lld",
                   max_name, (long long)max, (long long)s->n_ctx_slot, (long long)s->cfg.n_ctx, s->cfg.n_slots,
                   (long long)s->n_ctx_slot);
    }
    t->n_predict = max < 0 ? (int32_t)s->n_ctx_slot : (int32_t)max;

    const json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        const json_t *one = json_is_string(stop) ? stop : NULL;
        size_t n = one ? 1 : json_is_array(stop) ? json_array_size(stop) : 0;
        if (!one && !json_is_array(stop)) return bad(e, "stop", "'stop' must be a string or an array of strings");
        if (n > SERVER_MAX_STOP) return bad(e, "stop", "'stop' has %zu strings; at most %d", n, SERVER_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            const json_t *x = one ? one : json_array_get(stop, i);
            if (!json_is_string(x)) return bad(e, "stop", "'stop' must be a string or an array of strings");
            const size_t len = json_string_length(x);
            if (len == 0) continue; // an empty stop string would stop at once; clients mean "none"
            if (len > SERVER_MAX_STOP_LEN)
                return bad(e, "stop", "a stop string is %zu bytes; at most %d", len, SERVER_MAX_STOP_LEN);
            if (memchr(json_string_value(x), 0, len)) return bad(e, "stop", "a stop string holds a NUL character");
            if (!(t->stop[t->n_stop++] = strdup(json_string_value(x)))) return bad(e, NULL, "out of memory");
        }
    }
    double limit_s = s->cfg.timeout_s;
    if (native) {
        double ms = -1;
        if (get_num(body, "t_max_predict_ms", -1, 1e12, &ms, e)) return -1;
        if (ms > 0 && ms / 1e3 < limit_s) limit_s = ms / 1e3;
    }
    t->deadline_ms = server_now_ms() + limit_s * 1e3;
    return 0;
}

// Text too long to fit a slot is refused before it is tokenized (tokenizing
// megabytes on the HTTP thread would hold up every other client).
static int check_text_size(struct server *s, size_t n, const char *param, struct perr *e) {
    if (n <= s->max_prompt_bytes) return 0;
    e->code = "context_length_exceeded";
    return bad(e, param, "the prompt is %zu bytes, more than a slot's context of %lld tokens can hold; shorten it or raise -c",
               n, (long long)s->n_ctx_slot);
}

static int check_tokens(struct server *s, const json_t *arr, const char *param, int32_t **out, int32_t *n_out,
                        struct perr *e) {
    const size_t n = json_array_size(arr);
    if (n > (size_t)s->n_ctx_slot * 4 + 16) return bad(e, param, "'%s' has %zu tokens, far more than the context", param, n);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return bad(e, param, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(arr, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= s->n_vocab) {
            free(ids);
            return bad(e, param, "'%s'[%zu] is not a token id (0..%d)", param, i, s->n_vocab - 1);
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    *out = ids;
    *n_out = (int32_t)n;
    return 0;
}

static int append_ids(int32_t **dst, int32_t *n, const int32_t *src, int32_t m) {
    int32_t *p = realloc(*dst, ((size_t)*n + (size_t)m + 1) * sizeof *p);
    if (!p) return -1;
    if (m) memcpy(p + *n, src, (size_t)m * sizeof *p);
    *dst = p;
    *n += m;
    return 0;
}

// A completion prompt: a string, an array of token ids, or (llama.cpp) an
// array mixing strings and ids; an array holding one such prompt is accepted
// too. Strings are tokenized with special-token parsing, as llama.cpp does:
// whoever writes a raw prompt writes all of it.
static int parse_prompt(struct server *s, const json_t *p, struct task *t, char **text_out, struct perr *e) {
    if (!p || json_is_null(p)) return bad(e, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_array(p) && json_array_size(p) > 1 && json_is_string(json_array_get(p, 0)) &&
        json_is_string(json_array_get(p, 1)))
        return bad(e, "prompt", "'prompt' holds %zu prompts; send one per request", json_array_size(p));
    llm_err err;
    struct sbuf text = {0};
    size_t total = 0;
    if (json_is_string(p)) total = json_string_length(p);
    else if (json_is_array(p))
        for (size_t i = 0; i < json_array_size(p); i++)
            if (json_is_string(json_array_get(p, i))) total += json_string_length(json_array_get(p, i));
    if (check_text_size(s, total, "prompt", e)) return -1;
    if (json_is_string(p)) {
        int n = engine_tokenize(s->engine, json_string_value(p), json_string_length(p), true, true, &t->prompt, &err);
        if (n < 0) return bad(e, "prompt", "%s", err.msg);
        t->n_prompt = n;
        sbuf_add(&text, json_string_value(p), json_string_length(p));
    } else if (json_is_array(p)) {
        size_t i;
        json_t *x;
        bool first = true;
        json_array_foreach(p, i, x) {
            int32_t *ids = NULL, n;
            if (json_is_string(x)) {
                n = engine_tokenize(s->engine, json_string_value(x), json_string_length(x), first, true, &ids, &err);
                if (n < 0) {
                    sbuf_free(&text);
                    return bad(e, "prompt", "%s", err.msg);
                }
                sbuf_add(&text, json_string_value(x), json_string_length(x));
            } else if (json_is_integer(x)) {
                json_t *one = json_pack("[O]", x);
                int rc = check_tokens(s, one, "prompt", &ids, &n, e);
                json_decref(one);
                if (rc) {
                    snprintf(e->msg, sizeof e->msg, "'prompt'[%zu] is not a token id (0..%d)", i, s->n_vocab - 1);
                    sbuf_free(&text);
                    return -1;
                }
                char piece[256];
                int len = tok_piece(s->vocab, ids[0], piece, sizeof piece, true);
                if (len > 0 && len <= (int)sizeof piece) sbuf_add(&text, piece, (size_t)len);
            } else {
                sbuf_free(&text);
                return bad(e, "prompt", "'prompt' must be a string, or an array of token ids and strings");
            }
            first = false;
            int rc = append_ids(&t->prompt, &t->n_prompt, ids, n);
            free(ids);
            if (rc) {
                sbuf_free(&text);
                return bad(e, "prompt", "out of memory");
            }
            if (t->n_prompt > s->n_ctx_slot) break; // too long already; reported below
        }
    } else {
        return bad(e, "prompt", "'prompt' must be a string or an array of token ids");
    }
    if (text_out) *text_out = text.p ? text.p : strdup("");
    else sbuf_free(&text);
    return 0;
}

static int check_prompt_fits(struct server *s, const struct task *t, const char *param, struct perr *e) {
    if (t->n_prompt == 0) return bad(e, param, "the prompt is empty");
    if (t->n_prompt >= s->n_ctx_slot) {
        e->code = "context_length_exceeded";
        return bad(e, param, "the prompt is %d tokens but a slot's context holds %lld (-c %lld / -np %d): shorten it or raise -c",
                   t->n_prompt, (long long)s->n_ctx_slot, (long long)s->cfg.n_ctx, s->cfg.n_slots);
    }
    return 0;
}

static int parse_response_format(const json_t *body, struct task *t, struct perr *e) {
    const json_t *rf = json_object_get(body, "response_format");
    if (!rf || json_is_null(rf)) return 0;
    const json_t *type = json_object_get(rf, "type");
    if (!json_is_object(rf) || !json_is_string(type))
        return bad(e, "response_format", "'response_format' must be an object with a string 'type'");
    const char *ty = json_string_value(type);
    if (!strcmp(ty, "json_object")) t->json_object = true;
    else if (strcmp(ty, "text"))
        return bad(e, "response_format", "response_format type '%s' is not supported (\"text\" or \"json_object\")", ty);
    return 0;
}

// Chat messages: role and content (a string or an array of text parts).
static int parse_messages(struct server *s, const json_t *body, struct task *t, char **prompt_out,
                          size_t *prompt_len, struct perr *e) {
    const json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs)) return bad(e, "messages", "'messages' must be an array of messages");
    const size_t n = json_array_size(msgs);
    if (n == 0) return bad(e, "messages", "'messages' is empty");
    if (n > SERVER_MAX_MESSAGES) return bad(e, "messages", "%zu messages; at most %d", n, SERVER_MAX_MESSAGES);
    struct chat_msg *cm = calloc(n, sizeof *cm);
    char **joined = calloc(n, sizeof *joined); // contents assembled from parts
    int rc = -1;
    if (!cm || !joined) {
        bad(e, NULL, "out of memory");
        goto done;
    }
    static const char *const msg_fields[] = {"role", "content", "name", "refusal", "tool_calls", NULL};
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        char where[64];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if (!json_is_object(m)) {
            bad(e, where, "%s must be an object", where);
            goto done;
        }
        if (check_fields(m, msg_fields, e)) {
            char field[64];
            snprintf(field, sizeof field, "%s", e->param);
            bad(e, where, "unknown field '%s' in messages[%zu]", field, i);
            goto done;
        }
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        const json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls) && !(json_is_array(calls) && json_array_size(calls) == 0)) {
            bad(e, where, "%s has tool_calls: tool calling is not supported", where);
            goto done;
        }
        if (!json_is_string(role)) {
            bad(e, where, "%s.role must be a string", where);
            goto done;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && strcmp(r, "assistant")) {
            bad(e, where, "%s.role '%s' is not supported (system, developer, user, assistant)", where, r);
            goto done;
        }
        cm[i].role = r;
        if (json_is_string(content)) {
            cm[i].content = json_string_value(content);
            cm[i].len = json_string_length(content);
        } else if (json_is_array(content)) {
            struct sbuf b = {0};
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part) {
                const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(type)) {
                    sbuf_free(&b);
                    bad(e, where, "%s.content[%zu] must be an object with a 'type'", where, k);
                    goto done;
                }
                if (strcmp(json_string_value(type), "text") || !json_is_string(text)) {
                    sbuf_free(&b);
                    bad(e, where, "%s.content[%zu]: part type '%s' is not supported (text only)", where, k,
                        json_string_value(type));
                    goto done;
                }
                if ((b.n && sbuf_add(&b, "\n", 1)) || sbuf_add(&b, json_string_value(text), json_string_length(text))) {
                    sbuf_free(&b);
                    bad(e, NULL, "out of memory");
                    goto done;
                }
            }
            joined[i] = b.p;
            cm[i].content = b.p ? b.p : "";
            cm[i].len = b.n;
        } else if ((!content || json_is_null(content)) && !strcmp(r, "assistant")) {
            cm[i].content = "";
        } else {
            bad(e, where, "%s.content must be a string or an array of text parts", where);
            goto done;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += cm[i].len;
    if (check_text_size(s, total, "messages", e)) goto done;
    llm_err err;
    if (server_format_chat(s->chat, s->engine, cm, (int)n, true, prompt_out, prompt_len, &t->prompt, &t->n_prompt,
                           &err)) {
        bad(e, "messages", "%s", err.msg);
        goto done;
    }
    rc = 0;
done:
    if (joined)
        for (size_t i = 0; i < n; i++) free(joined[i]);
    free(joined);
    free(cm);
    return rc;
}

// ---- replies to generation tasks ---------------------------------------------------

static const char *finish_name(enum finish_reason f) {
    return f == FINISH_STOP_EOG || f == FINISH_STOP_WORD ? "stop" : "length";
}

static json_t *usage_json(const struct task *t) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", t->n_prompt, "completion_tokens", t->n_gen,
                     "total_tokens", t->n_prompt + t->n_gen, "prompt_tokens_details", "cached_tokens", t->n_cached);
}

static json_t *timings_json(const struct task *t) {
    const int pn = t->n_prompt - t->n_cached;
    return json_pack("{s:i,s:f,s:f,s:f,s:i,s:f,s:f,s:f}", "prompt_n", pn, "prompt_ms", t->t_prompt_ms,
                     "prompt_per_token_ms", pn ? t->t_prompt_ms / pn : 0.0, "prompt_per_second",
                     t->t_prompt_ms > 0 ? pn * 1e3 / t->t_prompt_ms : 0.0, "predicted_n", t->n_gen, "predicted_ms",
                     t->t_gen_ms, "predicted_per_token_ms", t->n_gen ? t->t_gen_ms / t->n_gen : 0.0,
                     "predicted_per_second", t->t_gen_ms > 0 ? t->n_gen * 1e3 / t->t_gen_ms : 0.0);
}

// One streamed piece (text) or, with final, the closing object of a stream
// or the whole non-streaming reply.
static json_t *gen_json(struct http_ctx *c, const char *text, size_t n, bool final) {
    const struct task *t = c->task;
    struct server *s = c->s;
    const bool stream = t->stream;
    json_t *j = NULL;
    if (t->api == API_NATIVE_COMPLETION) {
        j = json_pack("{s:i,s:o,s:b,s:i,s:s}", "index", 0, "content", json_text(text, n), "stop", final, "id_slot",
                      t->slot_id, "model", s->model_id);
        if (final) {
            const char *stop_type = t->finish == FINISH_STOP_EOG ? "eos" : t->finish == FINISH_STOP_WORD ? "word" : "limit";
            json_object_set_new(j, "tokens_predicted", json_integer(t->n_gen));
            json_object_set_new(j, "tokens_evaluated", json_integer(t->n_prompt));
            json_object_set_new(j, "tokens_cached", json_integer(t->n_cached));
            json_object_set_new(j, "stop_type", json_string(stop_type));
            json_object_set_new(j, "stopping_word", json_string(t->stop_word ? t->stop_word : ""));
            json_object_set_new(j, "truncated", json_boolean(t->finish == FINISH_CONTEXT));
            json_object_set_new(j, "timed_out", json_boolean(t->finish == FINISH_TIMEOUT));
            json_object_set_new(j, "timings", timings_json(t));
            json_object_set_new(j, "generation_settings",
                                json_pack("{s:i,s:f,s:i,s:f,s:f,s:f,s:i,s:I}", "n_ctx", (int)s->n_ctx_slot, "temperature",
                                          (double)t->sp.temp, "top_k", t->sp.top_k, "top_p", (double)t->sp.top_p, "min_p",
                                          (double)t->sp.min_p, "repeat_penalty", (double)t->sp.repeat_penalty,
                                          "n_predict", t->n_predict, "seed", (json_int_t)t->sp.seed));
            if (!stream) {
                json_t *ids = json_array();
                for (int32_t i = 0; i < t->n_gen; i++) json_array_append_new(ids, json_integer(t->gen_tokens[i]));
                json_object_set_new(j, "tokens", ids);
            }
        }
        return j;
    }
    const bool chat = t->api == API_CHAT;
    const char *object = chat ? (stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    json_t *choice;
    if (chat && stream) {
        json_t *delta = final ? json_object() : json_pack("{s:o}", "content", json_text(text, n));
        choice = json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                           final ? json_string(finish_name(t->finish)) : json_null());
    } else if (chat) {
        choice = json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role", "assistant", "content",
                           json_text(text, n), "logprobs", "finish_reason", finish_name(t->finish));
    } else {
        choice = json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "text", json_text(text, n), "logprobs", "finish_reason",
                           final ? json_string(finish_name(t->finish)) : json_null());
    }
    j = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o]}", "id", c->id, "object", object, "created", (json_int_t)c->created,
                  "model", s->model_id, "system_fingerprint", "llmfile-" LLMFILE_VERSION, "choices", choice);
    if (final && !stream) {
        json_object_set_new(j, "usage", usage_json(t));
        json_object_set_new(j, "timings", timings_json(t));
    }
    return j;
}

static void sse_send(struct http_ctx *c, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s || !c->req) {
        free(s);
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    if (buf) {
        evbuffer_add_printf(buf, "data: %s\n\n", s);
        evhttp_send_reply_chunk(c->req, buf);
        evbuffer_free(buf);
    }
    free(s);
}

static void sse_send_raw(struct http_ctx *c, const char *line) {
    struct evbuffer *buf = evbuffer_new();
    if (buf && c->req) {
        evbuffer_add(buf, line, strlen(line));
        evhttp_send_reply_chunk(c->req, buf);
    }
    if (buf) evbuffer_free(buf);
}

static void on_stream_closed(struct evhttp_connection *evcon, void *arg);
static void on_watch(evutil_socket_t fd, short what, void *arg);

static void live_remove(struct http_ctx *c) {
    if (c->prev) c->prev->next = c->next;
    else g.live = c->next;
    if (c->next) c->next->prev = c->prev;
    g.n_live--;
}

// The task is done: the last reply, logs, and freeing.
static void finish_reply(struct http_ctx *c) {
    struct task *t = c->task;
    struct server *s = c->s;
    int status = 200;
    if (c->watch) {
        event_free(c->watch);
        c->watch = NULL;
    }
    const bool gone = c->client_gone || !c->req;
    const char *msg = t->err_msg;
    if (t->finish == FINISH_CANCELLED) status = 503, msg = "the server is shutting down";
    else if (t->finish == FINISH_ERROR) status = t->err_status ? t->err_status : 500;
    if (gone) {
        status = 499; // nginx's "client closed request", for the log only
    } else if (t->stream) {
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        if (status != 200) {
            sse_send(c, error_json(status, NULL, msg, NULL, NULL));
        } else {
            sse_send(c, gen_json(c, "", 0, true));
            if (c->include_usage && t->api != API_NATIVE_COMPLETION) {
                json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->id, "object",
                                      t->api == API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                                      (json_int_t)c->created, "model", s->model_id, "choices", "usage", usage_json(t));
                sse_send(c, u);
            }
        }
        if (t->api != API_NATIVE_COMPLETION) sse_send_raw(c, "data: [DONE]\n\n");
    } else if (status != 200) {
        send_error(c->req, status, msg, NULL, NULL);
    } else if (t->kind == TASK_EMBED) {
        json_t *data = json_array();
        for (int i = 0; i < t->n_embed_inputs; i++) {
            const float *v = t->embeddings + (size_t)i * (size_t)t->n_embd;
            json_t *vec;
            if (c->base64) {
                // base64 of the little-endian float32 array, as OpenAI sends it
                static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                const unsigned char *bytes = (const unsigned char *)v;
                const size_t nb = (size_t)t->n_embd * sizeof(float);
                struct sbuf b = {0};
                for (size_t k = 0; k < nb; k += 3) {
                    const uint32_t w = (uint32_t)bytes[k] << 16 | (k + 1 < nb ? (uint32_t)bytes[k + 1] << 8 : 0) |
                                       (k + 2 < nb ? bytes[k + 2] : 0);
                    char q[4] = {b64[w >> 18 & 63], b64[w >> 12 & 63], k + 1 < nb ? b64[w >> 6 & 63] : '=',
                                 k + 2 < nb ? b64[w & 63] : '='};
                    sbuf_add(&b, q, 4);
                }
                vec = json_stringn(b.p ? b.p : "", b.n);
                sbuf_free(&b);
            } else {
                vec = json_array();
                for (int64_t k = 0; k < t->n_embd; k++) json_array_append_new(vec, json_real(v[k]));
            }
            if (t->api == API_EMBED_OPENAI)
                json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", vec));
            else
                json_array_append_new(data, json_pack("{s:i,s:o}", "index", i, "embedding", vec));
        }
        if (t->api == API_EMBED_OPENAI)
            send_json(c->req, 200, json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model",
                                             s->model_id, "usage", "prompt_tokens", t->n_prompt, "total_tokens", t->n_prompt));
        else if (c->embed_many) // llamafile's shape (what its clients, e.g. llama-index's, read)
            send_json(c->req, 200, json_pack("{s:o}", "results", data));
        else { // one input: {"embedding": [...]}
            json_t *one = json_pack("{s:O}", "embedding", json_object_get(json_array_get(data, 0), "embedding"));
            json_decref(data);
            send_json(c->req, 200, one);
        }
    } else {
        struct sbuf text = {0};
        if (c->echo) sbuf_add(&text, c->echo, strlen(c->echo));
        sbuf_add(&text, t->text.p ? t->text.p : "", t->text.n);
        send_json(c->req, 200, gen_json(c, text.p ? text.p : "", text.n, true));
        sbuf_free(&text);
    }
    if (t->stream && c->req) evhttp_send_reply_end(c->req); // frees a request whose client left
    log_request("POST", c->path, status, c->t0, t->kind == TASK_GENERATE ? t : NULL);
    live_remove(c);
    free(c->echo);
    free(c);
    task_free(t);
    if (g.s->stopping && g.n_live == 0 && !g.quit_timer) {
        struct timeval tv = {0, 200000}; // let the last replies flush
        event_base_loopexit(g.base, &tv);
    }
}

// News from the engine thread: streamed text and finished tasks.
static void on_notify(evutil_socket_t fd, short what, void *arg) {
    (void)what, (void)arg;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) {}
    struct server *s = g.s;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct task *t = s->notify_head;
        if (t) {
            s->notify_head = t->next_notify;
            t->in_notify = false;
        }
        struct sbuf pending = {0};
        bool done = false;
        if (t) {
            pending = t->pending;
            memset(&t->pending, 0, sizeof t->pending);
            done = t->done;
        }
        pthread_mutex_unlock(&s->mu);
        if (!t) break;
        struct http_ctx *c = t->http;
        if (pending.n && t->stream && !c->client_gone && c->req) {
            if (c->echo) { // completions echo: the prompt goes out with the first piece
                struct sbuf b = {0};
                sbuf_add(&b, c->echo, strlen(c->echo));
                sbuf_add(&b, pending.p, pending.n);
                sse_send(c, gen_json(c, b.p, b.n, false));
                sbuf_free(&b);
                free(c->echo);
                c->echo = NULL;
            } else {
                sse_send(c, gen_json(c, pending.p, pending.n, false));
            }
        }
        sbuf_free(&pending);
        if (done) finish_reply(c);
    }
}

static void on_stream_closed(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    struct http_ctx *c = arg;
    c->client_gone = true; // libevent detached the request; evhttp_send_reply_end frees it later
    server_cancel(c->s, c->task);
}

// A waiting non-streaming client hung up (read gives EOF) or sent more.
static void on_watch(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    struct http_ctx *c = arg;
    char byte;
    ssize_t r = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    event_free(c->watch);
    c->watch = NULL;
    if (r > 0) return; // a pipelined request: leave the connection alone
    c->client_gone = true;
    evhttp_connection_free(c->evcon); // frees the request too
    c->req = NULL;
    server_cancel(c->s, c->task);
}

// Queues a checked task and, for streams, starts the reply.
static void submit(struct server *s, struct evhttp_request *req, struct task *t, struct http_ctx *c, const char *path) {
    c->s = s;
    c->task = t;
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->created = time(NULL);
    c->t0 = server_now_ms();
    c->path = path;
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const char *prefix = t->api == API_CHAT ? "chatcmpl-" : "cmpl-";
    size_t k = strlen(prefix);
    memcpy(c->id, prefix, k);
    for (int i = 0; i < 24; i++) c->id[k++] = alnum[rand() % 62];
    c->id[k] = 0;
    t->http = c;
    if (server_submit(s, t)) {
        char msg[200];
        if (s->stopping) snprintf(msg, sizeof msg, "the server is shutting down");
        else snprintf(msg, sizeof msg, "server busy: %d slots running and %d requests waiting (the queue is full); retry later",
                      s->cfg.n_slots, s->cfg.max_queue);
        add_header(req, "Retry-After", "1");
        send_error(req, 503, msg, NULL, NULL);
        log_request("POST", path, 503, c->t0, NULL);
        free(c->echo);
        free(c);
        task_free(t);
        return;
    }
    c->next = g.live;
    if (g.live) g.live->prev = c;
    g.live = c;
    g.n_live++;
    if (t->stream) {
        add_header(req, "Content-Type", "text/event-stream; charset=utf-8");
        add_header(req, "Cache-Control", "no-cache");
        add_header(req, "X-Accel-Buffering", "no");
        evhttp_send_reply_start(req, 200, NULL);
        c->started = true;
        evhttp_connection_set_closecb(c->evcon, on_stream_closed, c);
        if (t->api == API_CHAT) {
            json_t *first = gen_json(c, "", 0, false);
            json_t *delta = json_object_get(json_array_get(json_object_get(first, "choices"), 0), "delta");
            json_object_set_new(delta, "role", json_string("assistant"));
            sse_send(c, first);
        }
    } else {
        const evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->evcon));
        c->watch = event_new(g.base, fd, EV_READ | EV_PERSIST, on_watch, c);
        if (c->watch) event_add(c->watch, NULL);
    }
}

// ---- endpoints -------------------------------------------------------------------

static const char *const common_gen_fields[] = {
    "model", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "seed", "stop", "stream",
    "cache_prompt", "ignore_eos", "n", "user", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs",
    "logit_bias", "metadata", "store", "service_tier", "options", NULL};

static int check_fields2(const json_t *body, const char *const *a, const char *const *b, struct perr *e) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        bool ok = false;
        for (int i = 0; a[i] && !ok; i++) ok = !strcmp(key, a[i]);
        for (int i = 0; b[i] && !ok; i++) ok = !strcmp(key, b[i]);
        if (!ok) return bad(e, key, "unknown field '%s'", key);
    }
    return 0;
}

// Ollama-style "options" (sent by some clients, llama-index's llamafile
// client among them): its sampling settings count as top-level fields that
// the request does not set itself; other option keys (num_ctx, ...) are
// ignored. Returns a new reference to the body to use, or NULL.
static json_t *merge_options(const json_t *body, bool native, struct perr *e) {
    const json_t *opts = json_object_get(body, "options");
    if (!opts || json_is_null(opts)) return json_incref((json_t *)body);
    if (!json_is_object(opts)) {
        bad(e, "options", "'options' must be an object");
        return NULL;
    }
    static const char *const keys[] = {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty",
                                       "repeat_last_n", "num_predict", NULL};
    json_t *merged = json_deep_copy(body);
    if (!merged) {
        bad(e, NULL, "out of memory");
        return NULL;
    }
    json_object_del(merged, "options");
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(opts, keys[i]);
        const char *to = strcmp(keys[i], "num_predict") ? keys[i] : native ? "n_predict" : "max_tokens";
        if (v && !json_is_null(v) && !is_set(merged, to)) json_object_set(merged, to, v);
    }
    return merged;
}

static void handle_generation(struct server *s, struct evhttp_request *req, const json_t *orig_body,
                              enum api_kind api, const char *path) {
    static const char *const chat_fields[] = {"messages", "max_tokens", "max_completion_tokens", "stream_options",
                                              "response_format", "tools", "tool_choice", "functions", "function_call",
                                              "parallel_tool_calls", "modalities", NULL};
    static const char *const compl_fields[] = {"prompt", "max_tokens", "stream_options", "echo", "suffix", "best_of",
                                               "response_format", NULL};
    static const char *const native_fields[] = {
        "prompt", "n_predict", "max_tokens", "return_tokens", "n_probs", "id_slot", "n_keep", "typical_p", "tfs_z",
        "penalize_nl", "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_range", "dynatemp_exponent",
        "xtc_probability", "xtc_threshold", "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
        "dry_sequence_breakers", "grammar", "json_schema", "response_format", "t_max_predict_ms", "response_fields",
        "timings_per_token", "post_sampling_probs", "lora", "image_data", "min_keep", "top_n_sigma", "samplers",
        "penalty_last_n", NULL};
    if (engine_is_encoder(s->engine)) {
        send_error(req, 501, "this model is an encoder: it only embeds (/v1/embeddings, /embedding)", NULL, NULL);
        return;
    }
    struct perr e = {0};
    struct task *t = task_new();
    struct http_ctx *c = calloc(1, sizeof *c);
    if (!t || !c) {
        free(c);
        task_free(t);
        send_error(req, 500, "out of memory", NULL, NULL);
        return;
    }
    t->kind = TASK_GENERATE;
    t->api = api;
    json_t *body = merge_options(orig_body, api == API_NATIVE_COMPLETION, &e);
    if (!body) goto fail;
    const char *const *extra = api == API_CHAT ? chat_fields : api == API_COMPLETIONS ? compl_fields : native_fields;
    if (check_fields2(body, common_gen_fields, extra, &e) || check_neutral(body, &e) ||
        parse_generation(s, body, t, api == API_NATIVE_COMPLETION, &e) || parse_response_format(body, t, &e))
        goto fail;
    if (api == API_NATIVE_COMPLETION) {
        const json_t *schema = json_object_get(body, "json_schema");
        if (schema && !json_is_null(schema)) {
            const json_t *ty = json_object_get(schema, "type");
            if (!json_is_object(schema) ||
                !(json_object_size(schema) == 0 || (json_object_size(schema) == 1 && json_is_string(ty) &&
                                                   !strcmp(json_string_value(ty), "object")))) {
                bad(&e, "json_schema", "only the schemas {} and {\"type\": \"object\"} are supported (one JSON object)");
                goto fail;
            }
            t->json_object = true;
        }
    }
    if (api != API_NATIVE_COMPLETION) {
        const json_t *so = json_object_get(body, "stream_options");
        if (so && !json_is_null(so)) {
            if (!json_is_object(so)) {
                bad(&e, "stream_options", "'stream_options' must be an object");
                goto fail;
            }
            if (get_bool(so, "include_usage", &c->include_usage, &e)) goto fail;
        }
    }
    if (api == API_CHAT) {
        const json_t *fc = json_object_get(body, "function_call");
        if (fc && !json_is_null(fc) && !(json_is_string(fc) && !strcmp(json_string_value(fc), "none"))) {
            bad(&e, "function_call", "function calling is not supported");
            goto fail;
        }
        if (parse_messages(s, body, t, NULL, NULL, &e) || check_prompt_fits(s, t, "messages", &e)) goto fail;
    } else {
        bool echo = false;
        if (api == API_COMPLETIONS && get_bool(body, "echo", &echo, &e)) goto fail;
        char *text = NULL;
        if (parse_prompt(s, json_object_get(body, "prompt"), t, echo ? &text : NULL, &e) ||
            check_prompt_fits(s, t, "prompt", &e))
            goto fail;
        c->echo = text;
    }
    json_decref(body);
    submit(s, req, t, c, path);
    return;
fail:
    json_decref(body);
    send_perr(req, &e);
    log_request("POST", path, e.status, server_now_ms(), NULL);
    free(c->echo);
    free(c);
    task_free(t);
}

static void handle_embeddings(struct server *s, struct evhttp_request *req, const json_t *body, bool openai,
                              const char *path) {
    struct perr e = {0};
    if (!s->cfg.embedding) {
        send_error(req, 501, "embeddings are disabled: start the server with --embedding", NULL, NULL);
        return;
    }
    static const char *const oa_fields[] = {"input", "model", "encoding_format", "user", "dimensions", NULL};
    static const char *const native_fields[] = {"content", "input", "model", "normalize", "embd_normalize", NULL};
    const char *key = openai ? "input" : (json_object_get(body, "content") ? "content" : "input");
    struct task *t = task_new();
    struct http_ctx *c = calloc(1, sizeof *c);
    if (!t || !c) {
        bad(&e, NULL, "out of memory");
        goto fail;
    }
    t->kind = TASK_EMBED;
    t->api = openai ? API_EMBED_OPENAI : API_EMBED_NATIVE;
    t->embed_normalize = true;
    t->deadline_ms = server_now_ms() + s->cfg.timeout_s * 1e3;
    if (check_fields(body, openai ? oa_fields : native_fields, &e) || get_bool(body, "normalize", &t->embed_normalize, &e))
        goto fail;
    if (openai) {
        const json_t *fmt = json_object_get(body, "encoding_format");
        if (fmt && !json_is_null(fmt)) {
            if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64"))) {
                bad(&e, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
                goto fail;
            }
            c->base64 = !strcmp(json_string_value(fmt), "base64");
        }
        if (is_set(body, "dimensions")) {
            bad(&e, "dimensions", "'dimensions' is not supported (the model's width is fixed)");
            goto fail;
        }
    }
    const json_t *in = json_object_get(body, key);
    if (!in || json_is_null(in)) {
        bad(&e, key, "'%s' is required", key);
        goto fail;
    }
    // One input (a string or a token list) or an array of them.
    const bool many = json_is_array(in) && json_array_size(in) > 0 && !json_is_integer(json_array_get(in, 0));
    const size_t n = many ? json_array_size(in) : 1;
    c->embed_many = many;
    if (n > 2048) {
        bad(&e, key, "%zu inputs; at most 2048 per request", n);
        goto fail;
    }
    t->embed_inputs = calloc(n, sizeof *t->embed_inputs);
    t->embed_lens = calloc(n, sizeof *t->embed_lens);
    if (!t->embed_inputs || !t->embed_lens) {
        bad(&e, NULL, "out of memory");
        goto fail;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = many ? json_array_get(in, i) : in;
        if (json_is_string(x)) total += json_string_length(x);
    }
    if (total > SERVER_MAX_TOKENIZE) {
        bad(&e, key, "%zu bytes of text; at most %d per request", total, SERVER_MAX_TOKENIZE);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *x = many ? json_array_get(in, i) : in;
        int32_t *ids = NULL, m = 0;
        if (json_is_string(x)) {
            llm_err err;
            m = engine_tokenize(s->engine, json_string_value(x), json_string_length(x), true, true, &ids, &err);
            if (m < 0) {
                bad(&e, key, "%s", err.msg);
                goto fail;
            }
        } else if (json_is_array(x)) {
            if (check_tokens(s, x, key, &ids, &m, &e)) goto fail;
        } else {
            bad(&e, key, "'%s' must be a string, an array of strings, or token ids", key);
            goto fail;
        }
        t->embed_inputs[i] = ids;
        t->embed_lens[i] = m;
        t->n_embed_inputs = (int)i + 1;
        t->n_prompt += m;
        if (m == 0 || m > engine_embed_max_tokens(s->engine)) {
            bad(&e, key, "input %zu is %d tokens; it must be 1..%lld", i, m,
                (long long)engine_embed_max_tokens(s->engine));
            goto fail;
        }
    }
    submit(s, req, t, c, path);
    return;
fail:
    send_perr(req, &e);
    if (c) free(c->echo);
    free(c);
    task_free(t);
}

// llama.cpp's /apply-template: the chat prompt as text (control tokens spelled
// out) and, as an extension, its token ids.
static void handle_apply_template(struct server *s, struct evhttp_request *req, const json_t *body) {
    struct perr e = {0};
    static const char *const fields[] = {"messages", "model", NULL};
    struct task *t = task_new();
    char *prompt = NULL;
    size_t prompt_len = 0;
    if (!t) {
        send_error(req, 500, "out of memory", NULL, NULL);
        return;
    }
    if (check_fields(body, fields, &e) || parse_messages(s, body, t, &prompt, &prompt_len, &e)) {
        send_perr(req, &e);
    } else {
        json_t *ids = json_array();
        for (int32_t i = 0; i < t->n_prompt; i++) json_array_append_new(ids, json_integer(t->prompt[i]));
        send_json(req, 200, json_pack("{s:o,s:o,s:s}", "prompt", json_text(prompt, prompt_len), "tokens", ids,
                                      "chat_format", server_chat_format_name(s->chat)));
    }
    free(prompt);
    task_free(t);
}

static void handle_tokenize(struct server *s, struct evhttp_request *req, const json_t *body) {
    struct perr e = {0};
    static const char *const fields[] = {"content", "add_special", "parse_special", "with_pieces", NULL};
    bool add_special = false, parse_special = true, with_pieces = false;
    const json_t *content = json_object_get(body, "content");
    if (check_fields(body, fields, &e) || get_bool(body, "add_special", &add_special, &e) ||
        get_bool(body, "parse_special", &parse_special, &e) || get_bool(body, "with_pieces", &with_pieces, &e)) {
        send_perr(req, &e);
        return;
    }
    if (!json_is_string(content)) {
        send_error(req, 400, "'content' must be a string", "content", NULL);
        return;
    }
    if (json_string_length(content) > SERVER_MAX_TOKENIZE) {
        char msg[160];
        snprintf(msg, sizeof msg, "'content' is %zu bytes; at most %d", json_string_length(content), SERVER_MAX_TOKENIZE);
        send_error(req, 400, msg, "content", NULL);
        return;
    }
    llm_err err;
    int32_t *ids;
    int n = engine_tokenize(s->engine, json_string_value(content), json_string_length(content), add_special,
                            parse_special, &ids, &err);
    if (n < 0) {
        send_error(req, 400, err.msg, "content", NULL);
        return;
    }
    json_t *arr = json_array();
    char piece[1024];
    for (int i = 0; i < n; i++) {
        if (!with_pieces) {
            json_array_append_new(arr, json_integer(ids[i]));
            continue;
        }
        int len = tok_piece(s->vocab, ids[i], piece, sizeof piece, true);
        if (len < 0 || len > (int)sizeof piece) len = 0;
        json_t *p = json_stringn(piece, (size_t)len);
        if (!p) { // not valid UTF-8 alone (a byte token): its bytes
            p = json_array();
            for (int k = 0; k < len; k++) json_array_append_new(p, json_integer((unsigned char)piece[k]));
        }
        json_array_append_new(arr, json_pack("{s:i,s:o}", "id", ids[i], "piece", p));
    }
    free(ids);
    send_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

static void handle_detokenize(struct server *s, struct evhttp_request *req, const json_t *body) {
    struct perr e = {0};
    static const char *const fields[] = {"tokens", NULL};
    const json_t *tokens = json_object_get(body, "tokens");
    int32_t *ids = NULL, n = 0;
    if (check_fields(body, fields, &e)) {
        send_perr(req, &e);
        return;
    }
    if (!json_is_array(tokens)) {
        send_error(req, 400, "'tokens' must be an array of token ids", "tokens", NULL);
        return;
    }
    if (check_tokens(s, tokens, "tokens", &ids, &n, &e)) {
        send_perr(req, &e);
        return;
    }
    const int64_t len = tok_decode(s->vocab, ids, (size_t)n, NULL, 0, false, true);
    char *out = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!out || tok_decode(s->vocab, ids, (size_t)n, out, (size_t)len + 1, false, true) != len) {
        free(ids);
        free(out);
        send_error(req, 500, "cannot detokenize", NULL, NULL);
        return;
    }
    send_json(req, 200, json_pack("{s:o}", "content", json_text(out, (size_t)len)));
    free(ids);
    free(out);
}

static void handle_models(struct server *s, struct evhttp_request *req) {
    const struct model_hparams *hp = engine_hparams(s->engine);
    json_t *meta = json_pack("{s:I,s:I,s:I,s:I}", "n_vocab", (json_int_t)hp->n_vocab, "n_ctx_train",
                             (json_int_t)hp->n_ctx_train, "n_embd", (json_int_t)hp->n_embd, "n_params",
                             (json_int_t)engine_model(s->engine)->n_params);
    send_json(req, 200, json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:o}]}", "object", "list", "data", "id", s->model_id,
                                  "object", "model", "created", (json_int_t)g.t_start, "owned_by", "llmfile", "meta", meta));
}

static void handle_props(struct server *s, struct evhttp_request *req) {
    const struct sampler_params d = sampler_defaults();
    send_json(req, 200,
              json_pack("{s:{s:I,s:{s:f,s:i,s:f,s:f,s:f,s:i,s:i}},s:i,s:s,s:s,s:s,s:s,s:I,s:b,s:{s:b}}",
                        "default_generation_settings", "n_ctx", (json_int_t)s->n_ctx_slot, "params", "temperature",
                        (double)d.temp, "top_k", d.top_k, "top_p", (double)d.top_p, "min_p", (double)d.min_p,
                        "repeat_penalty", (double)d.repeat_penalty, "repeat_last_n", d.repeat_last_n, "n_predict", -1,
                        "total_slots", s->cfg.n_slots, "model_path", s->cfg.engine.model_path, "chat_format",
                        server_chat_format_name(s->chat), "chat_template", server_chat_template_source(s->chat),
                        "build_info", "llmfile " LLMFILE_VERSION, "n_ctx",
                        (json_int_t)s->cfg.n_ctx, "embedding", s->cfg.embedding, "modalities", "vision", 0));
}

static void handle_metrics(struct server *s, struct evhttp_request *req) {
    pthread_mutex_lock(&s->mu);
    const struct server_metrics m = s->m;
    const int busy = s->n_busy, queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
    char buf[4096];
    int n = snprintf(buf, sizeof buf,
                     "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
                     "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total %llu\n"
                     "# HELP llamacpp:prompt_seconds_total Prompt process time.\n"
                     "# TYPE llamacpp:prompt_seconds_total counter\nllamacpp:prompt_seconds_total %.3f\n"
                     "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n"
                     "# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total %llu\n"
                     "# HELP llamacpp:tokens_predicted_seconds_total Predict process time.\n"
                     "# TYPE llamacpp:tokens_predicted_seconds_total counter\nllamacpp:tokens_predicted_seconds_total %.3f\n"
                     "# HELP llamacpp:n_decode_total Total number of engine_decode calls.\n"
                     "# TYPE llamacpp:n_decode_total counter\nllamacpp:n_decode_total %llu\n"
                     "# HELP llamacpp:n_busy_slots_per_decode Average number of tokens per decode call.\n"
                     "# TYPE llamacpp:n_busy_slots_per_decode gauge\nllamacpp:n_busy_slots_per_decode %.3f\n"
                     "# HELP llamacpp:requests_processing Number of requests processing.\n"
                     "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing %d\n"
                     "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
                     "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred %d\n"
                     "# HELP llmfile:requests_total Requests queued for the engine.\n"
                     "# TYPE llmfile:requests_total counter\nllmfile:requests_total %llu\n"
                     "# HELP llmfile:requests_rejected_busy_total Requests refused with 503 because the queue was full.\n"
                     "# TYPE llmfile:requests_rejected_busy_total counter\nllmfile:requests_rejected_busy_total %llu\n"
                     "# HELP llmfile:request_errors_total Requests that failed in the engine.\n"
                     "# TYPE llmfile:request_errors_total counter\nllmfile:request_errors_total %llu\n"
                     "# HELP llmfile:prompt_tokens_cached_total Prompt tokens re-used from a slot's cache.\n"
                     "# TYPE llmfile:prompt_tokens_cached_total counter\nllmfile:prompt_tokens_cached_total %llu\n",
                     (unsigned long long)m.prompt_tokens, m.prompt_ms / 1e3, (unsigned long long)m.gen_tokens,
                     m.gen_ms / 1e3, (unsigned long long)m.n_decode,
                     m.n_decode ? (double)m.n_decode_tokens / (double)m.n_decode : 0.0, busy, queued,
                     (unsigned long long)m.requests, (unsigned long long)m.rejected_busy, (unsigned long long)m.errors,
                     (unsigned long long)m.cached_tokens);
    send_body(req, 200, "text/plain; version=0.0.4", buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

// ---- dispatch ------------------------------------------------------------------------

// Browsers may call the API from localhost pages, from the server's own page
// (same origin) and from the --cors origin; other origins get 403, so a web
// page elsewhere cannot make the server work for it.
static bool origin_allowed(struct server *s, const char *origin, const char *host) {
    const char *extra = s->cfg.cors_origin;
    if (extra && (!strcmp(extra, "*") || !strcmp(extra, origin))) return true;
    const char *p = !strncmp(origin, "http://", 7) ? origin + 7 : !strncmp(origin, "https://", 8) ? origin + 8 : NULL;
    if (!p) return false;
    if (host && !strcmp(p, host)) return true;
    static const char *const local[] = {"localhost", "127.0.0.1", "[::1]"};
    for (int i = 0; i < 3; i++) {
        const size_t n = strlen(local[i]);
        if (strncmp(p, local[i], n)) continue;
        const char *q = p + n;
        if (!*q) return true;
        if (*q != ':' || !q[1]) continue;
        while (*++q >= '0' && *q <= '9') {}
        if (!*q) return true;
    }
    return false;
}

static bool is_loopback_name(const char *h, size_t n) {
    return (n == 9 && !strncmp(h, "localhost", 9)) || (n >= 4 && !strncmp(h, "127.", 4)) ||
           (n == 5 && !strncmp(h, "[::1]", 5)) || (n == 3 && !strncmp(h, "::1", 3));
}

// A server on a loopback address answers only requests addressed to a
// loopback name: a web page whose own name was re-pointed at 127.0.0.1 (DNS
// rebinding) sends its own name in Host and is refused.
static bool host_allowed(struct server *s, const char *host) {
    if (!is_loopback_name(s->cfg.host, strlen(s->cfg.host))) return true;
    if (!host) return true; // HTTP/1.0 without Host: not a browser
    const char *end = host[0] == '[' ? strchr(host, ']') : strchr(host, ':');
    size_t n = end ? (size_t)(end - host) + (host[0] == '[') : strlen(host);
    return is_loopback_name(host, n);
}

static bool key_ok(struct server *s, struct evhttp_request *req) {
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7)) return false;
    const char *got = auth + 7, *want = s->cfg.api_key;
    const size_t ng = strlen(got), nw = strlen(want);
    unsigned diff = ng != nw;
    for (size_t i = 0; i < ng; i++) diff |= (unsigned char)got[i] ^ (unsigned char)want[i % (nw ? nw : 1)];
    return diff == 0;
}

static const char *method_name(enum evhttp_cmd_type m) {
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "other";
    }
}

enum route_id { R_PAGE, R_HEALTH, R_MODELS, R_PROPS, R_METRICS, R_CHAT, R_COMPL, R_NATIVE, R_TOKENIZE, R_DETOKENIZE,
                R_EMBED_OA, R_EMBED_NATIVE, R_APPLY_TEMPLATE };
static const struct route {
    const char *path;
    bool post;
    enum route_id id;
} routes[] = {
    {"/", false, R_PAGE},
    {"/index.html", false, R_PAGE},
    {"/health", false, R_HEALTH},
    {"/v1/health", false, R_HEALTH},
    {"/v1/models", false, R_MODELS},
    {"/models", false, R_MODELS},
    {"/props", false, R_PROPS},
    {"/metrics", false, R_METRICS},
    {"/v1/chat/completions", true, R_CHAT},
    {"/chat/completions", true, R_CHAT},
    {"/v1/completions", true, R_COMPL},
    {"/completions", true, R_COMPL},
    {"/completion", true, R_NATIVE},
    {"/tokenize", true, R_TOKENIZE},
    {"/detokenize", true, R_DETOKENIZE},
    {"/v1/embeddings", true, R_EMBED_OA},
    {"/embeddings", true, R_EMBED_OA},
    {"/embedding", true, R_EMBED_NATIVE},
    {"/apply-template", true, R_APPLY_TEMPLATE},
};

static void on_request(struct evhttp_request *req, void *arg) {
    struct server *s = arg;
    const double t0 = server_now_ms();
    const enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path || !*path) path = "/";
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    if (!host_allowed(s, evhttp_find_header(in, "Host"))) {
        send_error(req, 403, "this server on a loopback address answers only requests to localhost or 127.0.0.1 (Host header)",
                   NULL, NULL);
        log_request(method_name(method), path, 403, t0, NULL);
        return;
    }
    if (origin) {
        if (!origin_allowed(s, origin, evhttp_find_header(in, "Host"))) {
            send_error(req, 403, "this origin may not use the server (start it with --cors ORIGIN to allow one)", NULL,
                       NULL);
            log_request(method_name(method), path, 403, t0, NULL);
            return;
        }
        add_header(req, "Access-Control-Allow-Origin", origin);
        add_header(req, "Vary", "Origin");
    }
    if (method == EVHTTP_REQ_OPTIONS) { // CORS preflight: no key needed
        add_header(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        add_header(req, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        add_header(req, "Access-Control-Max-Age", "600");
        evhttp_send_reply(req, 204, NULL, NULL);
        return;
    }
    const struct route *r = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (!strcmp(path, routes[i].path)) r = &routes[i];
    if (!r) {
        char msg[300];
        snprintf(msg, sizeof msg, "no endpoint %.200s", path);
        send_error(req, 404, msg, NULL, NULL);
        log_request(method_name(method), path, 404, t0, NULL);
        return;
    }
    // The key guards everything but the health check and the static page (which holds no data).
    if (s->cfg.api_key && r->id != R_HEALTH && r->id != R_PAGE && !key_ok(s, req)) {
        add_header(req, "WWW-Authenticate", "Bearer");
        send_json(req, 401, error_json(401, "invalid_request_error", "invalid or missing API key (Authorization: Bearer KEY)",
                                       NULL, "invalid_api_key"));
        log_request(method_name(method), path, 401, t0, NULL);
        return;
    }
    const bool is_post = method == EVHTTP_REQ_POST;
    if (r->post != is_post && !(method == EVHTTP_REQ_HEAD && !r->post)) {
        add_header(req, "Allow", r->post ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
        char msg[300];
        snprintf(msg, sizeof msg, "%s takes %s", r->path, r->post ? "POST" : "GET");
        send_error(req, 405, msg, NULL, NULL);
        log_request(method_name(method), path, 405, t0, NULL);
        return;
    }
    json_t *body = NULL;
    if (is_post) {
        struct evbuffer *buf = evhttp_request_get_input_buffer(req);
        const size_t n = evbuffer_get_length(buf);
        const char *data = n ? (const char *)evbuffer_pullup(buf, -1) : "";
        json_error_t jerr;
        body = json_loadb(data, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!body || !json_is_object(body)) {
            char msg[400];
            if (!body) snprintf(msg, sizeof msg, "invalid JSON body at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
            else snprintf(msg, sizeof msg, "the request body must be a JSON object");
            json_decref(body);
            send_error(req, 400, msg, NULL, NULL);
            log_request("POST", path, 400, t0, NULL);
            return;
        }
    }
    switch (r->id) {
    case R_PAGE:
        send_body(req, 200, "text/html; charset=utf-8", (const char *)server_page_html, server_page_html_len);
        break;
    case R_HEALTH: send_json(req, 200, json_pack("{s:s}", "status", "ok")); break;
    case R_MODELS: handle_models(s, req); break;
    case R_PROPS: handle_props(s, req); break;
    case R_METRICS: handle_metrics(s, req); break;
    case R_CHAT: handle_generation(s, req, body, API_CHAT, r->path); break;
    case R_COMPL: handle_generation(s, req, body, API_COMPLETIONS, r->path); break;
    case R_NATIVE: handle_generation(s, req, body, API_NATIVE_COMPLETION, r->path); break;
    case R_TOKENIZE: handle_tokenize(s, req, body); break;
    case R_DETOKENIZE: handle_detokenize(s, req, body); break;
    case R_EMBED_OA: handle_embeddings(s, req, body, true, r->path); break;
    case R_EMBED_NATIVE: handle_embeddings(s, req, body, false, r->path); break;
    case R_APPLY_TEMPLATE: handle_apply_template(s, req, body); break;
    }
    json_decref(body);
    if (s->cfg.verbose && r->id != R_CHAT && r->id != R_COMPL && r->id != R_NATIVE)
        log_request(method_name(method), path, 200, t0, NULL);
}

// ---- start and stop ----------------------------------------------------------------

static void on_quit_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    event_base_loopbreak(g.base);
}

// First signal: stop listening, cancel queued and running requests (their
// clients get a 503 or a final stream event) and exit once the replies are
// out (at most 5 s). A second signal exits at once.
static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what, (void)arg;
    struct server *s = g.s;
    if (++g.n_signals > 1) {
        event_base_loopbreak(g.base);
        return;
    }
    fprintf(stderr, "llmfile server: %s: stopping (%d requests in flight)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", g.n_live);
    if (g.listener) {
        evhttp_del_accept_socket(g.http, g.listener);
        g.listener = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    for (struct http_ctx *c = g.live; c; c = c->next) atomic_store(&c->task->cancel, true);
    if (g.n_live == 0) {
        event_base_loopexit(g.base, NULL);
    } else {
        g.quit_timer = evtimer_new(g.base, on_quit_timer, NULL);
        struct timeval tv = {5, 0};
        if (g.quit_timer) evtimer_add(g.quit_timer, &tv);
    }
}

int server_http_run(struct server *s) {
    g.s = s;
    g.t_start = time(NULL);
    signal(SIGPIPE, SIG_IGN);
    g.base = event_base_new();
    g.http = g.base ? evhttp_new(g.base) : NULL;
    if (!g.http) {
        fprintf(stderr, "llmfile: error: cannot start the event loop\n");
        return 1;
    }
    evhttp_set_max_body_size(g.http, SERVER_MAX_BODY);
    evhttp_set_max_headers_size(g.http, SERVER_MAX_HEADERS);
    evhttp_set_timeout(g.http, 60);
    evhttp_set_allowed_methods(g.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(g.http, on_request, s);
    g.listener = evhttp_bind_socket_with_handle(g.http, s->cfg.host, (ev_uint16_t)s->cfg.port);
    if (!g.listener) {
        fprintf(stderr, "llmfile: error: cannot listen on %s port %d: %s\n", s->cfg.host, s->cfg.port, strerror(errno));
        evhttp_free(g.http);
        event_base_free(g.base);
        return 1;
    }
    struct sockaddr_storage addr;
    socklen_t alen = sizeof addr;
    int port = s->cfg.port;
    if (getsockname(evhttp_bound_socket_get_fd(g.listener), (struct sockaddr *)&addr, &alen) == 0)
        port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                : ((struct sockaddr_in *)&addr)->sin_port);
    g.notify_ev = event_new(g.base, s->notify_fd[0], EV_READ | EV_PERSIST, on_notify, NULL);
    g.sig_int = evsignal_new(g.base, SIGINT, on_signal, NULL);
    g.sig_term = evsignal_new(g.base, SIGTERM, on_signal, NULL);
    if (!g.notify_ev || !g.sig_int || !g.sig_term || event_add(g.notify_ev, NULL) || event_add(g.sig_int, NULL) ||
        event_add(g.sig_term, NULL)) {
        fprintf(stderr, "llmfile: error: cannot set up events\n");
        return 1;
    }
    const bool v6 = strchr(s->cfg.host, ':') != NULL;
    if (engine_is_encoder(s->engine))
        printf("llmfile server: listening on http://%s%s%s:%d (encoder: embeddings of up to %lld tokens)\n",
               v6 ? "[" : "", s->cfg.host, v6 ? "]" : "", port, (long long)engine_embed_max_tokens(s->engine));
    else
        printf("llmfile server: listening on http://%s%s%s:%d (%d slots, %lld tokens of context each, %s chat format)\n",
               v6 ? "[" : "", s->cfg.host, v6 ? "]" : "", port, s->cfg.n_slots, (long long)s->n_ctx_slot,
               server_chat_format_name(s->chat));
    fflush(stdout);
    event_base_dispatch(g.base);
    // Anything still live after the grace period: its client gets nothing more.
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    for (struct http_ctx *c = g.live; c; c = c->next) atomic_store(&c->task->cancel, true);
    return 0;
}

// After the engine thread has stopped: frees what is left.
void server_http_free(void) {
    while (g.live) {
        struct http_ctx *c = g.live;
        live_remove(c);
        if (c->watch) event_free(c->watch);
        task_free(c->task);
        free(c->echo);
        free(c);
    }
    if (g.quit_timer) event_free(g.quit_timer);
    if (g.notify_ev) event_free(g.notify_ev);
    if (g.sig_int) event_free(g.sig_int);
    if (g.sig_term) event_free(g.sig_term);
    if (g.http) evhttp_free(g.http);
    if (g.base) event_base_free(g.base);
    memset(&g, 0, sizeof g);
}
