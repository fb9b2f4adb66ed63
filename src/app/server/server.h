// llmfile --server: an OpenAI- and llama.cpp-compatible HTTP server.
//
// Two threads share one engine:
//   - the HTTP thread (libevent's evhttp loop) parses and checks requests,
//     tokenizes prompts, queues tasks and writes replies;
//   - the engine thread (slots.c) runs continuous batching: each step gathers
//     the next tokens of every active slot (prompt chunks and generated tokens)
//     into one engine_decode batch, samples per slot and hands text back.
// A task is owned by the HTTP thread until it is queued; from then on the
// engine thread may touch its engine-side fields until it marks it done, after
// which only the HTTP thread touches it again (and frees it).
#ifndef LLMFILE_APP_SERVER_SERVER_H
#define LLMFILE_APP_SERVER_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/cli/args.h"
#include "runtime/engine.h"

// Limits on what one request may ask for (documented in --help and docs/SERVER.md).
enum {
    SERVER_MAX_BODY = 8 << 20,     // bytes of a request body (larger: 413 from evhttp)
    SERVER_MAX_HEADERS = 64 << 10, // bytes of request headers
    SERVER_MAX_STOP = 16,          // stop strings per request
    SERVER_MAX_STOP_LEN = 256,     // bytes per stop string
    SERVER_MAX_MESSAGES = 4096,    // chat messages per request
    SERVER_MAX_TOKENIZE = 1 << 20, // bytes of text /tokenize and the embedding endpoints take per request
};

// A growable byte string.
struct sbuf {
    char *p;
    size_t n, cap;
};
int sbuf_add(struct sbuf *b, const char *s, size_t n); // 0 or -1 (out of memory)
void sbuf_free(struct sbuf *b);

struct server_config {
    struct cli_engine_flags engine; // -m, -t, -b (tokens per engine step), --cpu-level, --allow-unknown-pre
    const char *host;          // default 127.0.0.1
    int port;                  // 0: any free port
    int n_slots;               // -np
    int64_t n_ctx;             // total KV cells, shared by the slots (each gets n_ctx / n_slots)
    bool ctx_given;            // -c was given (else an encoder's context is cut to its positions)
    int max_queue;             // waiting requests beyond the busy slots; more get 503
    double timeout_s;          // per-request time limit
    const char *api_key;       // NULL: no authentication
    const char *cors_origin;   // extra allowed browser origin ("*": any); localhost is always allowed
    const char *chat_template_file; // a Jinja chat template instead of the model's (NULL: the model's)
    bool embedding;            // enable /v1/embeddings and /embedding
    bool verbose;              // log every request
};

enum finish_reason { FINISH_NONE, FINISH_STOP_EOG, FINISH_STOP_WORD, FINISH_LENGTH, FINISH_CONTEXT,
                     FINISH_TIMEOUT, FINISH_CANCELLED, FINISH_ERROR };

// Which reply format the HTTP thread builds from a task's output.
enum api_kind { API_CHAT, API_COMPLETIONS, API_NATIVE_COMPLETION, API_EMBED_OPENAI, API_EMBED_NATIVE };

enum task_kind { TASK_GENERATE, TASK_EMBED };

struct json_fsm;    // json_constrain.h
struct server_chat; // chat_format.h

struct task {
    // ---- set by the HTTP thread before queueing; read-only afterwards ----
    enum task_kind kind;
    enum api_kind api;
    int32_t *prompt;            // [n_prompt] tokens
    int32_t n_prompt;
    struct sampler_params sp;
    int32_t n_predict;          // most tokens to generate (already bounded by the slot context)
    char *stop[SERVER_MAX_STOP];// stop strings (not part of the output)
    int n_stop;
    bool cache_prompt;          // re-use the slot's KV cache for a shared prefix
    bool ignore_eos;
    bool json_object;           // constrain the output to one JSON object
    bool stream;
    double deadline_ms;         // monotonic ms after which generation stops
    // embedding tasks: the inputs, each a token list
    int32_t **embed_inputs;     // [n_embed_inputs][embed_lens[i]]
    int32_t *embed_lens;
    int n_embed_inputs;
    bool embed_normalize;

    // ---- written by the engine thread, read by the HTTP thread after done ----
    atomic_bool cancel;         // set by the HTTP thread: the client left or the server stops
    int slot_id;
    int32_t n_cached;           // prompt tokens re-used from the slot's cache
    int32_t n_gen;              // tokens generated
    enum finish_reason finish;
    const char *stop_word;      // the stop string that ended generation
    double t_prompt_ms, t_gen_ms;
    struct sbuf text;           // the whole generated text (after the stop string is cut)
    int32_t *gen_tokens;        // [n_gen] generated ids
    int32_t gen_cap;
    float *embeddings;          // [n_embed_inputs][n_embd]
    int64_t n_embd;
    int err_status;             // an HTTP status when finish == FINISH_ERROR
    char err_msg[512];

    // ---- shared, under server.mu ----
    struct sbuf pending;        // text not yet sent to a streaming client
    bool done;                  // the engine is finished with the task
    bool in_notify;             // on the notify list
    struct task *next_notify;
    struct task *next_queue;

    // ---- HTTP thread only ----
    struct http_ctx *http;      // routes.c's state for the reply
};

void task_free(struct task *t);

struct slot;

// Prometheus counters.
struct server_metrics {
    uint64_t prompt_tokens, cached_tokens, gen_tokens, n_decode, n_decode_tokens, requests, rejected_busy, errors;
    double prompt_ms, gen_ms;
};

// The state both threads share.
struct server {
    struct server_config cfg;
    struct engine *engine;
    const struct tok_vocab *vocab;
    struct server_chat *chat;   // the chat template (read-only once loaded)
    int64_t n_ctx_slot;         // KV cells each slot may use
    size_t max_prompt_bytes;    // longer prompt text cannot fit a slot (each token covers at most
                                // tok_max_piece bytes); refused before tokenizing, which is slow
    int32_t n_vocab;
    char model_id[256];         // what /v1/models calls the model

    pthread_mutex_t mu;
    pthread_cond_t wake;        // the engine thread waits here for work
    struct task *queue_head, *queue_tail;
    int n_queued;
    int n_busy;                 // slots running a task
    bool stopping;
    struct task *notify_head;   // tasks with news for the HTTP thread
    int notify_fd[2];           // pipe: the engine thread writes a byte when notify_head becomes non-empty

    pthread_t engine_thread;
    struct slot *slots;         // [n_slots], engine thread only

    struct server_metrics m;    // under mu
};

// slots.c: the engine thread.
int  slots_init(struct server *s, llm_err *err);
void slots_free(struct server *s);
void *engine_thread_main(void *arg);
// Queues a task; -1 (and nothing queued) if the queue is full or the server stops.
int  server_submit(struct server *s, struct task *t);
// Marks a task for cancellation (the engine finishes it soon).
void server_cancel(struct server *s, struct task *t);

// routes.c: the HTTP side.
int server_http_run(struct server *s); // runs until SIGINT/SIGTERM; 0 or 1
void server_http_free(void);           // after the engine thread has stopped

// server.c
int server_main(int argc, char **argv);

double server_now_ms(void);

#endif
