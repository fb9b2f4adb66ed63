// llmfile command line: completion, tokenizer modes, help and version.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/bench/bench.h"
#include "app/cli/load_bar.h"
#include "args.h"
#ifdef LLMFILE_NO_SERVER
static int server_main(int argc, char **argv) {
    (void)argc, (void)argv;
    fputs("llmfile: error: this build has no server (built with NO_SERVER=1)\n", stderr);
    return 1;
}
#else
#include "app/server/server.h"
#endif
#include "runtime/engine.h"

#define LLMFILE_VERSION "0.1.0"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *msg) {
    fprintf(stderr, "llmfile: error: %s\n", msg);
    return 1;
}

enum { MAX_PROMPT_FILE = 64 << 20 };

static int read_file(const char *path, char **out, size_t *len, llm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "cannot open prompt file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap >= MAX_PROMPT_FILE) {
            free(buf);
            fclose(f);
            return err_set(err, "prompt file '%s' is larger than %d MiB", path, MAX_PROMPT_FILE >> 20);
        }
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (!bigger) free(buf);
        buf = bigger;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return err_set(err, "out of memory reading '%s'", path);
    if (bad) {
        free(buf);
        return err_set(err, "cannot read prompt file '%s'", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static void print_escaped_piece(const char *s, int n) {
    putchar('\'');
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('\'');
}

// Prints the CPU's features, every kernel level and the one chosen.
static int print_cpu_info(const char *cap) {
    struct cpu_features f;
    cpu_detect(&f);
    char feats[512];
    cpu_features_string(&f, feats, sizeof feats);
    printf("cpu: %s%s%s\nfeatures: %s\n", f.vendor, f.brand[0] ? " " : "", f.brand, feats);
    llm_err err;
    const struct kern_level *chosen;
    if (kern_select(&f, cap, &chosen, &err)) return fail(err.msg);
    const struct kern_level *levels;
    int n = kern_levels(&levels);
    printf("levels:\n");
    for (int i = 0; i < n; i++)
        printf("  %c %-11s %-9s %s\n", &levels[i] == chosen ? '*' : ' ', levels[i].name,
               levels[i].supported(&f) ? "supported" : "-", levels[i].desc);
    printf("chosen: %s (%s%s%s)\n", chosen->name,
           cap && *cap ? "capped by " : "the best level this CPU and OS support",
           cap && *cap ? "--cpu-level/LLMFILE_CPU_LEVEL=" : "", cap && *cap ? cap : "");
    return 0;
}

static int run_tokenize(const struct engine *e, const struct cli_args *a, const char *text, size_t len) {
    llm_err err;
    int32_t *ids;
    int n = engine_tokenize(e, text, len, !a->no_bos, a->parse_special, &ids, &err);
    if (n < 0) return fail(err.msg);
    const struct tok_vocab *v = engine_vocab(e);
    if (a->ids_only) {
        putchar('[');
        for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else {
        char piece[1024];
        for (int i = 0; i < n; i++) {
            int len_p = tok_piece(v, ids[i], piece, sizeof piece, true);
            printf("%6d -> ", ids[i]);
            print_escaped_piece(piece, len_p < (int)sizeof piece ? len_p : (int)sizeof piece);
            putchar('\n');
        }
    }
    free(ids);
    return 0;
}

// --detokenize: ids in -p ("1 2 3" or "[1, 2, 3]") back to text, as llama_detokenize.
static int run_detokenize(const struct engine *e, const char *text) {
    const struct tok_vocab *v = engine_vocab(e);
    size_t n = 0, cap = 64;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    while (ids && *p) {
        if (strchr("[], \t\n", *p)) {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno || id < 0 || id >= tok_n_vocab(v)) {
            free(ids);
            char msg[160];
            snprintf(msg, sizeof msg, "--detokenize: '%.20s' at offset %zu is not a token id (0..%d)", p,
                     (size_t)(p - text), tok_n_vocab(v) - 1);
            return fail(msg);
        }
        if (n == cap) {
            int32_t *bigger = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!bigger) free(ids);
            ids = bigger;
            if (!ids) break;
        }
        ids[n++] = (int32_t)id;
        p = end;
    }
    if (!ids) return fail("out of memory");
    int64_t len = tok_decode(v, ids, n, NULL, 0, false, false);
    char *out = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!out || tok_decode(v, ids, n, out, (size_t)len + 1, false, false) != len) {
        free(ids);
        free(out);
        return fail("cannot detokenize");
    }
    fwrite(out, 1, (size_t)len, stdout);
    putchar('\n');
    free(out);
    free(ids);
    return 0;
}

static int run_generate(struct engine *e, const struct cli_args *a, const char *text, size_t len,
                        double load_ms) {
    llm_err err;
    const struct tok_vocab *v = engine_vocab(e);
    int32_t *prompt;
    int n_prompt = engine_tokenize(e, text, len, true, a->parse_special, &prompt, &err);
    if (n_prompt < 0) return fail(err.msg);
    if (n_prompt == 0) {
        free(prompt);
        return fail("the prompt is empty and the model adds no BOS token: give -p TEXT");
    }
    const int64_t n_ctx = engine_n_ctx(e);
    if (n_prompt >= n_ctx) {
        free(prompt);
        char msg[160];
        snprintf(msg, sizeof msg, "the prompt is %d tokens but the context holds %lld (raise -c)", n_prompt,
                 (long long)n_ctx);
        return fail(msg);
    }
    struct sampler_params sp = a->sampling;
    if (!a->seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    struct sampler smp;
    struct engine_batch batch;
    if (sampler_init(&smp, &sp, (int32_t)engine_hparams(e)->n_vocab, &err) ||
        engine_batch_init(&batch, n_prompt, &err)) {
        free(prompt);
        return fail(err.msg);
    }
    for (int i = 0; i < n_prompt; i++) {
        engine_batch_add(&batch, prompt[i], i, 0, i == n_prompt - 1);
        sampler_accept(&smp, prompt[i]);
    }
    fwrite(text, 1, len, stdout);
    fflush(stdout);

    int rc = 0;
    const double t0 = now_ms();
    double t_prompt = 0;
    int n_gen = 0, n_decoded = 0;
    size_t piece_cap = 3 * (tok_max_piece(v) + 8);
    char *piece = malloc(piece_cap);
    struct tok_stream st;
    tok_stream_init(&st, false);
    if (!piece || engine_decode(e, &batch, &err)) {
        rc = fail(piece ? err.msg : "out of memory");
        goto done;
    }
    t_prompt = now_ms() - t0;
    const float *logits = engine_logits(e, batch.n - 1);
    int32_t pos = n_prompt;
    const double t1 = now_ms();
    while (a->n_predict < 0 || n_gen < a->n_predict) {
        const int32_t tok = sampler_sample(&smp, logits);
        if (tok_is_eog(v, tok)) break;
        sampler_accept(&smp, tok);
        n_gen++;
        int n = tok_stream_push(v, &st, tok, piece, piece_cap);
        if (n > 0) {
            fwrite(piece, 1, (size_t)n, stdout);
            fflush(stdout);
        }
        if (a->n_predict >= 0 && n_gen == a->n_predict) break;
        if (pos >= n_ctx) {
            fprintf(stderr, "\nllmfile: context full (%lld tokens); stopping (raise -c for more)\n",
                    (long long)n_ctx);
            break;
        }
        engine_batch_clear(&batch);
        engine_batch_add(&batch, tok, pos++, 0, true);
        if (engine_decode(e, &batch, &err)) {
            rc = fail(err.msg);
            goto done;
        }
        n_decoded++;
        logits = engine_logits(e, 0);
    }
    const double t_gen = now_ms() - t1;
    int n = tok_stream_flush(&st, piece, piece_cap);
    if (n > 0) fwrite(piece, 1, (size_t)n, stdout);
    putchar('\n');
    fflush(stdout);
    fprintf(stderr,
            "llmfile: load %.1f ms | prompt %d tokens, %.1f ms, %.2f tok/s | generated %d tokens, %.1f ms, "
            "%.2f tok/s | %d threads, %s kernels\n",
            load_ms, n_prompt, t_prompt, n_prompt / (t_prompt / 1e3), n_gen, t_gen,
            n_decoded > 0 ? n_decoded / (t_gen / 1e3) : 0.0, engine_n_threads(e), engine_cpu_level(e));
done:
    free(piece);
    free(prompt);
    engine_batch_free(&batch);
    sampler_free(&smp);
    return rc;
}

// --embedding: the prompt's pooled, L2-normalised embedding as one JSON array on stdout.
static int run_embed(struct engine *e, const struct cli_args *a, const char *text, size_t len, double load_ms) {
    llm_err err;
    int32_t *ids;
    int n = engine_tokenize(e, text, len, true, a->parse_special, &ids, &err);
    if (n < 0) return fail(err.msg);
    if (n == 0) {
        free(ids);
        return fail("the prompt gives no tokens and the model adds none: give -p TEXT");
    }
    const int64_t n_embd = engine_n_embd(e);
    float *vec = malloc((size_t)n_embd * sizeof *vec);
    if (!vec) {
        free(ids);
        return fail("out of memory");
    }
    const double t0 = now_ms();
    int rc = engine_embed(e, ids, n, vec, true, &err);
    const double t_embed = now_ms() - t0;
    free(ids);
    for (int64_t d = 0; rc == 0 && d < n_embd; d++)
        if (!isfinite(vec[d])) {
            free(vec);
            return fail("the embedding has non-finite values (broken model weights?)");
        }
    if (rc) {
        free(vec);
        return fail(err.msg);
    }
    putchar('[');
    for (int64_t d = 0; d < n_embd; d++) printf(d ? ", %.9g" : "%.9g", vec[d]);
    puts("]");
    fflush(stdout);
    free(vec);
    fprintf(stderr, "llmfile: %d tokens, %.2f tok/s | embedding %.1f ms, %s pooling, load %.1f ms | %d threads, %s kernels\n",
            n, n / (t_embed / 1e3), t_embed, engine_pooling_name(engine_pooling(e)), load_ms, engine_n_threads(e),
            engine_cpu_level(e));
    return 0;
}

int main(int argc, char **argv) {
    struct cli_args a;
    llm_err err;
    char path_buf[4096];
    if (argc > 1 && strcmp(argv[1], "bench") == 0)
        return bench_main(argc - 1, argv + 1, cli_default_model_path(path_buf, sizeof path_buf));
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--server") == 0) return server_main(argc, argv);
    if (cli_parse(&a, argc, argv, &err)) return fail(err.msg);
    if (a.mode == MODE_HELP) {
        cli_print_help();
        return 0;
    }
    const char *cpu_cap = a.engine.cpu_level ? a.engine.cpu_level : getenv("LLMFILE_CPU_LEVEL");
    if (a.mode == MODE_VERSION) {
        printf("llmfile %s\n", LLMFILE_VERSION);
        return print_cpu_info(cpu_cap);
    }
    if (a.mode == MODE_CPU_INFO) return print_cpu_info(cpu_cap);
    const char *model = a.engine.model_path ? a.engine.model_path : cli_default_model_path(path_buf, sizeof path_buf);
    if (!a.engine.model_path && access(model, R_OK) != 0) {
        char msg[4200];
        snprintf(msg, sizeof msg, "no model given and the default model %s is missing: run `make model` or pass -m FILE",
                 model);
        return fail(msg);
    }
    char *file_text = NULL;
    size_t len = 0;
    const char *text = a.prompt ? a.prompt : "";
    if (a.prompt_file) {
        if (read_file(a.prompt_file, &file_text, &len, &err)) return fail(err.msg);
        text = file_text;
    } else {
        len = strlen(text);
    }
    struct engine_params ep = {.model_path = model, .n_threads = a.engine.n_threads, .n_ctx = a.n_ctx,
                               .n_seq_max = 1, .n_batch = a.engine.n_batch, .cpu_level = a.engine.cpu_level,
                               .allow_unknown_pre = a.engine.allow_unknown_pre, .pooling = a.pooling,
                               .mmap_only = a.engine.mmap_only};
    const bool vocab_only = a.mode == MODE_TOKENIZE || a.mode == MODE_DETOKENIZE;
    const double t0 = now_ms();
    struct engine *e;
    if (vocab_only ? engine_load_vocab(&e, model, a.engine.allow_unknown_pre, &err)
                   : engine_load_with_bar(&e, &ep, &err)) {
        free(file_text);
        return fail(err.msg);
    }
    const double load_ms = now_ms() - t0;
    int rc;
    if (a.mode == MODE_TOKENIZE) rc = run_tokenize(e, &a, text, len);
    else if (a.mode == MODE_DETOKENIZE) rc = run_detokenize(e, text);
    else if (a.mode == MODE_EMBED) rc = run_embed(e, &a, text, len, load_ms);
    else if (engine_is_encoder(e)) {
        char msg[4200];
        snprintf(msg, sizeof msg, "%s is an embedding model (%s): it cannot generate text; use --embedding", model,
                 engine_hparams(e)->arch_name);
        rc = fail(msg);
    } else rc = run_generate(e, &a, text, len, load_ms);
    engine_free(e);
    free(file_text);
    return rc;
}
