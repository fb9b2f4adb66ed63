// llmfile --server: flags, start-up and shutdown.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/cli/args.h"
#include "app/cli/load_bar.h"
#include "chat_format.h"
#include "server.h"

static void print_help(void) {
    fputs(
        "usage: llmfile --server [options]\n"
        "\n"
        "Serves a GGUF model over HTTP with an OpenAI-compatible API (/v1/chat/completions,\n"
        "/v1/completions, /v1/embeddings, /v1/models) and llama.cpp's (/completion, /tokenize,\n"
        "/detokenize, /embedding, /health, /props, /metrics), and a chat page at /.\n"
        "Requests run in parallel slots, batched together on the engine (continuous batching).\n"
        "\n"
        "server:\n"
        "  -m, --model FILE          GGUF model file (default: $LLMFILE_MODEL, else ~/.cache/llmfile/default.gguf)\n"
        "      --host HOST           address to listen on (default 127.0.0.1: this machine only)\n"
        "      --port N              port (default 8080; 0: any free port, printed at start)\n"
        "  -np, --parallel N         slots: requests generated at once (default 4)\n"
        "  -c, --ctx-size N          KV-cache tokens shared by the slots; each slot gets N / slots\n"
        "                            (default 8192)\n"
        "      --queue N             requests that may wait for a slot; more get 503 (default 16)\n"
        "      --timeout SECONDS     time limit of one request (default 600); generation then stops\n"
        "                            with finish_reason \"length\"\n"
        "      --api-key KEY         require 'Authorization: Bearer KEY' on every endpoint but /health\n"
        "                            and the page at / (also $LLMFILE_API_KEY)\n"
        "      --cors ORIGIN         also let browser pages from ORIGIN call the API ('*': any origin);\n"
        "                            pages on localhost and the server's own page are always allowed\n"
        "      --embedding           enable /v1/embeddings and /embedding\n"
        "      --chat-template-file FILE\n"
        "                            Jinja chat template to use instead of the model's\n"
        "                            tokenizer.chat_template (which falls back to a built-in one,\n"
        "                            with a warning, when it is missing or does not work)\n"
        "  -t, --threads N           engine threads (default: physical cores)\n"
        "  -b, --batch-size N        tokens per engine step, prompt chunks included (default 512)\n"
        "      --cpu-level LEVEL     use kernels no newer than LEVEL (see llmfile --help)\n"
        "      --allow-unknown-pre   fall back to the default BPE pre-tokenizer for unknown ones\n"
        "      --mmap                keep the weights in the file's mapping (see llmfile --help)\n"
        "  -v, --verbose             log every request (errors and completions are always logged)\n"
        "  -h, --help                this help\n"
        "\n"
        "Limits per request: body 8 MiB (413 beyond), prompt shorter than a slot's context,\n"
        "max_tokens at most a slot's context, 16 stop strings of at most 256 bytes.\n"
        "SIGINT or SIGTERM stops the server: running requests are cancelled and answered, then it exits.\n"
        "See docs/SERVER.md for the endpoints, fields and defaults.\n",
        stdout);
}

// Returns 1 for --help, 0 to run, -1 on a bad flag.
static int parse_args(struct server_config *c, int argc, char **argv, llm_err *err) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->n_slots = 4;
    c->n_ctx = 8192;
    c->engine.n_batch = 512;
    c->max_queue = 16;
    c->timeout_s = 600;
    const char *env_key = getenv("LLMFILE_API_KEY");
    if (env_key && *env_key) c->api_key = env_key;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long v;
#define IS(s) (strcmp(f, s) == 0)
#define VALUE() cli_flag_value(argc, argv, &i, err); if (!val) return -1
        if (IS("--server")) {
        } else if (IS("-h") || IS("--help")) {
            return 1;
        } else if (IS("-v") || IS("--verbose")) {
            c->verbose = true;
        } else if (IS("--embedding") || IS("--embeddings")) {
            c->embedding = true;
        } else if (IS("--host")) {
            const char *val = VALUE();
            if (!*val) return err_set(err, "--host needs an address");
            c->host = val;
        } else if (IS("--port")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 0, 65535, &v, err)) return -1;
            c->port = (int)v;
        } else if (IS("-np") || IS("--parallel")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 1, 256, &v, err)) return -1;
            c->n_slots = (int)v;
        } else if (IS("-c") || IS("--ctx-size")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 64, 1 << 24, &v, err)) return -1;
            c->n_ctx = v;
            c->ctx_given = true;
        } else if (IS("--queue")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 0, 100000, &v, err)) return -1;
            c->max_queue = (int)v;
        } else if (IS("--timeout")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 1, 86400 * 7, &v, err)) return -1;
            c->timeout_s = (double)v;
        } else if (IS("--api-key")) {
            const char *val = VALUE();
            if (!*val) return err_set(err, "--api-key needs a non-empty key");
            c->api_key = val;
        } else if (IS("--chat-template-file")) {
            const char *val = VALUE();
            c->chat_template_file = val;
        } else if (IS("--cors")) {
            const char *val = VALUE();
            c->cors_origin = val;
        } else {
            const int known = cli_parse_engine_flag(&c->engine, argc, argv, &i, err);
            if (known < 0) return -1;
            if (!known) return err_set(err, "unknown server option '%s' (see llmfile --server --help)", f);
        }
#undef IS
#undef VALUE
    }
    return 0;
}

static int fail(const char *msg) {
    fprintf(stderr, "llmfile: error: %s\n", msg);
    return 1;
}

int server_main(int argc, char **argv) {
    static struct server srv; // large; one per process
    struct server *s = &srv;
    llm_err err;
    int rc = parse_args(&s->cfg, argc, argv, &err);
    if (rc == 1) {
        print_help();
        return 0;
    }
    if (rc) return fail(err.msg);
    struct server_config *c = &s->cfg;
    srand((unsigned)time(NULL) ^ ((unsigned)getpid() << 16)); // response ids and unseeded requests' seeds
    char path_buf[4096];
    if (!c->engine.model_path) {
        c->engine.model_path = cli_default_model_path(path_buf, sizeof path_buf);
        if (access(c->engine.model_path, R_OK) != 0) {
            snprintf(err.msg, sizeof err.msg,
                     "no model given and the default model %.400s is missing: run `make model` or pass -m FILE",
                     c->engine.model_path);
            return fail(err.msg);
        }
    }
    if (c->n_ctx / c->n_slots < 16) {
        snprintf(err.msg, sizeof err.msg, "-c %lld shared by %d slots leaves %lld tokens each; give at least 16 per slot",
                 (long long)c->n_ctx, c->n_slots, (long long)(c->n_ctx / c->n_slots));
        return fail(err.msg);
    }
    if (c->engine.n_batch < c->n_slots) c->engine.n_batch = c->n_slots;

    // The model, with its KV cache sized for every slot.
    struct engine_params ep = {.model_path = c->engine.model_path, .n_threads = c->engine.n_threads, .n_ctx = c->n_ctx,
                               .n_seq_max = c->n_slots, .n_batch = c->engine.n_batch + c->n_slots,
                               .cpu_level = c->engine.cpu_level, .allow_unknown_pre = c->engine.allow_unknown_pre,
                               .mmap_only = c->engine.mmap_only,
                               .fit_encoder_ctx = !c->ctx_given};
    const double t0 = server_now_ms();
    if (engine_load_with_bar(&s->engine, &ep, &err)) return fail(err.msg);
    const struct model_hparams *hp = engine_hparams(s->engine);
    s->vocab = engine_vocab(s->engine);
    s->n_vocab = (int32_t)hp->n_vocab;
    c->n_ctx = engine_n_ctx(s->engine); // an encoder's may have been cut to its positions
    s->n_ctx_slot = c->n_ctx / c->n_slots;
    s->max_prompt_bytes = (size_t)s->n_ctx_slot * (tok_max_piece(s->vocab) + 1) + 4096;
    const char *base = strrchr(c->engine.model_path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s", base ? base + 1 : c->engine.model_path);
    fprintf(stderr, "llmfile server: loaded %s in %.0f ms (%d threads, %s kernels)\n", c->engine.model_path,
            server_now_ms() - t0, engine_n_threads(s->engine), engine_cpu_level(s->engine));
    char warning[sizeof err.msg + 64];
    if (server_chat_init(&s->chat, s->engine, c->chat_template_file, warning, sizeof warning, &err)) {
        engine_free(s->engine);
        return fail(err.msg);
    }
    if (warning[0] && !engine_is_encoder(s->engine)) // an encoder only embeds: no chat to warn about
        fprintf(stderr, "llmfile server: warning: %s\n", warning);
    if (c->api_key == NULL && strcmp(c->host, "127.0.0.1") && strcmp(c->host, "localhost") && strcmp(c->host, "::1"))
        fprintf(stderr, "llmfile server: warning: listening on %s without --api-key: anyone who can reach it may use it\n",
                c->host);

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pipe(s->notify_fd) || fcntl(s->notify_fd[0], F_SETFL, O_NONBLOCK) ||
        fcntl(s->notify_fd[1], F_SETFL, O_NONBLOCK)) {
        server_chat_free(s->chat);
        engine_free(s->engine);
        return fail("cannot create a pipe");
    }
    if (slots_init(s, &err)) {
        slots_free(s);
        server_chat_free(s->chat);
        engine_free(s->engine);
        return fail(err.msg);
    }
    // The engine thread never takes SIGINT/SIGTERM: the event loop handles them.
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    const int perr = pthread_create(&s->engine_thread, NULL, engine_thread_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr) {
        slots_free(s);
        server_chat_free(s->chat);
        engine_free(s->engine);
        return fail("cannot start the engine thread");
    }
    rc = server_http_run(s);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine_thread, NULL);
    // Tasks the engine finished after the loop ended are answered by nobody: free them.
    server_http_free();
    slots_free(s);
    server_chat_free(s->chat);
    engine_free(s->engine);
    close(s->notify_fd[0]);
    close(s->notify_fd[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    fprintf(stderr, "llmfile server: stopped\n");
    return rc;
}
