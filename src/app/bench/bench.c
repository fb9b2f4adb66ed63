// `llmfile bench`: prompt-processing and generation speed, as llama-bench measures
// them, so numbers compare directly: ppN decodes N random tokens as one prompt
// (in -b sized batches), tgN decodes N tokens one at a time after an empty cache;
// with -d D ("ppN @ dD") both run after D tokens already in the cache, decoded
// before each run and not timed (long contexts, where attention costs most).
// Each test runs once unmeasured (warm-up), then -r times; t/s is the mean over the
// repetitions of tokens / seconds, ± the sample standard deviation.
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/cli/load_bar.h"
#include "runtime/engine.h"

enum { MAX_LIST = 16, MAX_REPS = 1000 };
enum bench_format { FMT_MD, FMT_CSV, FMT_JSON };

struct bench_args {
    const char *models[MAX_LIST];
    int n_models;
    int prompts[MAX_LIST];   // pp sizes (0 = none)
    int n_prompts;
    int gens[MAX_LIST];      // tg sizes (0 = none)
    int n_gens;
    int depths[MAX_LIST];    // tokens in the cache before each test
    int n_depths;
    int threads[MAX_LIST];
    int n_threads;
    int reps;
    int n_batch;
    const char *cpu_level;
    bool mmap_only;          // --mmap
    bool profile;            // --profile
    enum bench_format format;
};

// One measured test: a model, a thread count, ppN or tgN.
struct bench_result {
    const char *model_path;
    char desc[96];           // "llama Q4_K - Medium"
    double size_gib;         // tensor bytes
    double params_b;         // billions of parameters
    const char *level;       // kernel level used
    int threads;
    char test[32];           // "pp512", "tg128", "tg128 @ d4096"
    int n_tokens;
    int n_depth;
    double mean, sd;         // tokens per second
};

static void print_usage(FILE *f) {
    fputs("usage: llmfile bench [options]\n"
          "\n"
          "Measures prompt processing (ppN) and generation (tgN) speed in tokens per second,\n"
          "like llama-bench. Lists take comma-separated values; every combination is run.\n"
          "\n"
          "  -m, --model FILE[,FILE]   GGUF model files (repeatable; default: the default model)\n"
          "  -p, --n-prompt N[,N]      prompt sizes in tokens (default 512; 0 = skip)\n"
          "  -n, --n-gen N[,N]         generated tokens (default 128; 0 = skip)\n"
          "  -d, --n-depth N[,N]       tokens already in the context when each test starts (default 0)\n"
          "  -t, --threads N[,N]       thread counts (default: physical cores)\n"
          "  -r, --repetitions N       measured runs per test (default 5)\n"
          "  -b, --batch-size N        tokens per forward pass in prompt processing (default 512)\n"
          "  -o, --output FORMAT       md (default), csv or json\n"
          "  --cpu-level LEVEL         use kernels no newer than LEVEL (see llmfile --cpu-info)\n"
          "  --mmap                    read the weights from the file's mapping, not from a copy on\n"
          "                            huge pages (see llmfile --help)\n"
          "  --profile                 after each test, where its time went, per token (to stderr):\n"
          "                            matrices, attention, other row operations; for the matrices\n"
          "                            also their weights' bytes per second (generation: the memory\n"
          "                            bandwidth they reach)\n"
          "  -h, --help                this text\n",
          f);
}

static int bench_fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "llmfile bench: error: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

// Parses "1,2,4" into out[]; each value in [lo, hi].
static int parse_int_list(const char *flag, const char *s, int lo, int hi, int *out, int *n) {
    *n = 0;
    const char *p = s;
    for (;;) {
        if (*n == MAX_LIST) return bench_fail("%s takes at most 16 values: '%s'", flag, s);
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < lo || v > hi || (*end && *end != ',')) {
            char range[64];
            snprintf(range, sizeof range, "integers in [%d, %d]", lo, hi);
            fprintf(stderr, "llmfile bench: error: %s expects %s separated by commas, got '%s'\n", flag,
                    range, s);
            return 1;
        }
        out[(*n)++] = (int)v;
        if (!*end) return 0;
        p = end + 1;
    }
}

static int parse_args(struct bench_args *a, int argc, char **argv, bool *help) {
    memset(a, 0, sizeof *a);
    a->prompts[0] = 512, a->n_prompts = 1;
    a->gens[0] = 128, a->n_gens = 1;
    a->depths[0] = 0, a->n_depths = 1;
    a->reps = 5;
    a->n_batch = 512;
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            *help = true;
            return 0;
        }
        if (!strcmp(f, "--mmap")) {
            a->mmap_only = true;
            continue;
        }
        if (!strcmp(f, "--profile")) {
            a->profile = true;
            continue;
        }
        const bool known = !strcmp(f, "-m") || !strcmp(f, "--model") || !strcmp(f, "-p") ||
                           !strcmp(f, "--n-prompt") || !strcmp(f, "-n") || !strcmp(f, "--n-gen") ||
                           !strcmp(f, "-d") || !strcmp(f, "--n-depth") ||
                           !strcmp(f, "-t") || !strcmp(f, "--threads") || !strcmp(f, "-r") ||
                           !strcmp(f, "--repetitions") || !strcmp(f, "-o") || !strcmp(f, "--output") ||
                           !strcmp(f, "-b") || !strcmp(f, "--batch-size") || !strcmp(f, "--cpu-level");
        if (!known) return bench_fail("unknown option '%s' (see llmfile bench --help)", f, "");
        if (i + 1 >= argc) return bench_fail("%s needs a value", f, "");
        char *v = argv[++i];
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            // Comma-separated paths; a path with a comma can be given with its own -m.
            for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
                if (a->n_models == MAX_LIST) return bench_fail("at most 16 models", "", "");
                a->models[a->n_models++] = tok;
            }
        } else if (!strcmp(f, "-p") || !strcmp(f, "--n-prompt")) {
            if (parse_int_list(f, v, 0, 1 << 20, a->prompts, &a->n_prompts)) return 1;
        } else if (!strcmp(f, "-n") || !strcmp(f, "--n-gen")) {
            if (parse_int_list(f, v, 0, 1 << 20, a->gens, &a->n_gens)) return 1;
        } else if (!strcmp(f, "-d") || !strcmp(f, "--n-depth")) {
            if (parse_int_list(f, v, 0, 1 << 20, a->depths, &a->n_depths)) return 1;
        } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            if (parse_int_list(f, v, 1, 1024, a->threads, &a->n_threads)) return 1;
        } else if (!strcmp(f, "-r") || !strcmp(f, "--repetitions")) {
            int n;
            if (parse_int_list(f, v, 1, MAX_REPS, &a->reps, &n) || n != 1)
                return n != 1 ? bench_fail("%s takes one value", f, "") : 1;
        } else if (!strcmp(f, "-b") || !strcmp(f, "--batch-size")) {
            int n;
            if (parse_int_list(f, v, 1, 1 << 16, &a->n_batch, &n) || n != 1)
                return n != 1 ? bench_fail("%s takes one value", f, "") : 1;
        } else if (!strcmp(f, "-o") || !strcmp(f, "--output")) {
            if (!strcmp(v, "md")) a->format = FMT_MD;
            else if (!strcmp(v, "csv")) a->format = FMT_CSV;
            else if (!strcmp(v, "json")) a->format = FMT_JSON;
            else return bench_fail("%s expects md, csv or json, got '%s'", f, v);
        } else {
            a->cpu_level = v;
        }
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Tokens spread over the vocabulary (llama-bench also feeds random tokens); the
// first is BOS where the model has one, as a real prompt would start.
static int32_t bench_token(uint64_t *state, int64_t n_vocab) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int32_t)((*state >> 33) % (uint64_t)n_vocab);
}

// Decodes n tokens after position `depth` as one prompt (split into n_batch
// pieces by the engine), or, for a generation test, one token per decode.
// Returns seconds, or -1.
static double timed_decode(struct engine *e, struct engine_batch *b, int depth, int n, bool generation,
                           uint64_t *rng, llm_err *err) {
    const int64_t n_vocab = engine_hparams(e)->n_vocab;
    const double t0 = now_s();
    if (!generation) {
        engine_batch_clear(b);
        for (int i = 0; i < n; i++) engine_batch_add(b, bench_token(rng, n_vocab), depth + i, 0, i == n - 1);
        if (engine_decode(e, b, err)) return -1;
    } else {
        for (int i = 0; i < n; i++) {
            engine_batch_clear(b);
            engine_batch_add(b, bench_token(rng, n_vocab), depth + i, 0, true);
            if (engine_decode(e, b, err)) return -1;
        }
    }
    return now_s() - t0;
}

// A test's run: `depth` tokens decoded untimed, then the timed part, whose
// stages prof (if not NULL) adds up. Returns seconds, or -1.
static double run_test(struct engine *e, struct engine_batch *b, int depth, int n, bool generation,
                       struct model_profile *prof, llm_err *err) {
    uint64_t rng = 42;
    engine_seq_rm(e, -1, 0, -1);
    if (depth > 0) {
        engine_batch_clear(b);
        const int64_t n_vocab = engine_hparams(e)->n_vocab;
        for (int i = 0; i < depth; i++) engine_batch_add(b, bench_token(&rng, n_vocab), i, 0, false);
        if (engine_decode(e, b, err)) return -1;
    }
    engine_set_profile(e, prof);
    const double seconds = timed_decode(e, b, depth, n, generation, &rng, err);
    engine_set_profile(e, NULL);
    return seconds;
}

// A test's profile, kept to print after the table (which stays whole).
struct test_profile {
    struct bench_result result;
    struct model_profile profile;
};

static int keep_profile(struct test_profile **all, int *n, const struct bench_result *r,
                        const struct model_profile *p) {
    struct test_profile *grown = realloc(*all, (size_t)(*n + 1) * sizeof *grown);
    if (!grown) return -1;
    grown[*n] = (struct test_profile){*r, *p};
    *all = grown;
    (*n)++;
    return 0;
}

// Where a test's time went (--profile), per token, to stderr.
static void print_profile(const struct bench_result *r, const struct model_profile *p, int reps) {
    const double tokens = (double)r->n_tokens * reps;
    double total = 0;
    for (int s = 0; s < STAGE_COUNT; s++) total += p->seconds[s];
    fprintf(stderr, "\nprofile of %s (%s, %d threads), per token over %d runs:\n", r->test, r->desc, r->threads, reps);
    fprintf(stderr, "| stage | ms per token | share | calls per token | weights GB/s |\n");
    fprintf(stderr, "| ----- | -----------: | ----: | --------------: | -----------: |\n");
    for (int s = 0; s < STAGE_COUNT; s++) {
        if (!p->calls[s]) continue;
        fprintf(stderr, "| %s | %.4f | %.1f%% | %.1f |", model_stage_name((enum model_stage)s),
                1e3 * p->seconds[s] / tokens, total > 0 ? 100 * p->seconds[s] / total : 0, p->calls[s] / tokens);
        if (p->weight_bytes[s] > 0 && p->seconds[s] > 0)
            fprintf(stderr, " %.1f |\n", p->weight_bytes[s] / p->seconds[s] / 1e9);
        else
            fprintf(stderr, " |\n");
    }
    fprintf(stderr, "| total | %.4f | 100%% | | |\n", 1e3 * total / tokens);
}

// llama.cpp's names of general.file_type values, as llama-bench prints them.
static const char *file_type_name(int64_t ft) {
    switch (ft) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return NULL;
    }
}

static void describe_model(const struct engine *e, struct bench_result *r) {
    const struct model *m = engine_model(e);
    int64_t ft = -1;
    llm_err ignored;
    const char *type = NULL;
    if (gguf_get_int(&m->file, "general.file_type", &ft, &ignored) == 1) // 1: present and an integer
        type = file_type_name(ft);
    if (!type) type = gguf_type_name(m->layers[0].wq.type);
    snprintf(r->desc, sizeof r->desc, "%s %s", m->hp.arch_name, type ? type : "?");
    uint64_t bytes = 0;
    for (size_t i = 0; i < m->file.n_tensors; i++) bytes += m->file.tensors[i].nbytes;
    r->size_gib = (double)bytes / (1024.0 * 1024.0 * 1024.0);
    r->params_b = (double)m->n_params / 1e9;
}

static void stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

static void print_header(enum bench_format fmt) {
    if (fmt == FMT_MD) {
        printf("| model | size | params | cpu level | threads | test | t/s |\n");
        printf("| ----- | ---: | -----: | --------- | ------: | ---: | --: |\n");
    } else if (fmt == FMT_CSV) {
        printf("model_file,model,size_bytes,n_params,cpu_level,threads,test,n_tokens,n_depth,avg_ts,stddev_ts\n");
    } else {
        printf("[");
    }
    fflush(stdout);
}

// JSON/CSV string output: paths may contain quotes or control characters.
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_csv_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void print_result(enum bench_format fmt, const struct bench_result *r, bool first) {
    if (fmt == FMT_MD) {
        printf("| %s | %.2f GiB | %.2f B | %s | %d | %s | %.2f ± %.2f |\n", r->desc, r->size_gib, r->params_b,
               r->level, r->threads, r->test, r->mean, r->sd);
    } else if (fmt == FMT_CSV) {
        print_csv_string(r->model_path);
        putchar(',');
        print_csv_string(r->desc);
        printf(",%.0f,%.0f,%s,%d,%s,%d,%d,%.4f,%.4f\n", r->size_gib * 1024.0 * 1024.0 * 1024.0, r->params_b * 1e9,
               r->level, r->threads, r->test, r->n_tokens, r->n_depth, r->mean, r->sd);
    } else {
        printf("%s\n  {\"model_file\": ", first ? "" : ",");
        print_json_string(r->model_path);
        printf(", \"model\": ");
        print_json_string(r->desc);
        printf(", \"size_bytes\": %.0f, \"n_params\": %.0f, \"cpu_level\": \"%s\", \"threads\": %d, "
               "\"test\": \"%s\", \"n_tokens\": %d, \"n_depth\": %d, \"avg_ts\": %.4f, \"stddev_ts\": %.4f}",
               r->size_gib * 1024.0 * 1024.0 * 1024.0, r->params_b * 1e9, r->level, r->threads, r->test,
               r->n_tokens, r->n_depth, r->mean, r->sd);
    }
    fflush(stdout);
}

int bench_main(int argc, char **argv, const char *default_model) {
    struct bench_args a;
    bool help;
    if (parse_args(&a, argc, argv, &help)) return 1;
    if (help) {
        print_usage(stdout);
        return 0;
    }
    if (a.n_models == 0) a.models[a.n_models++] = default_model;
    if (a.n_threads == 0) a.threads[a.n_threads++] = 0; // engine default: physical cores
    int max_tokens = 1;
    for (int i = 0; i < a.n_prompts; i++) max_tokens = a.prompts[i] > max_tokens ? a.prompts[i] : max_tokens;
    for (int i = 0; i < a.n_gens; i++) max_tokens = a.gens[i] > max_tokens ? a.gens[i] : max_tokens;
    int max_depth = 0;
    for (int i = 0; i < a.n_depths; i++) max_depth = a.depths[i] > max_depth ? a.depths[i] : max_depth;
    if ((long)max_tokens + max_depth > INT_MAX / 2) return bench_fail("depth plus test size is too large", "", "");
    max_tokens += max_depth;

    print_header(a.format);
    bool first = true;
    struct test_profile *profiles = NULL; // --profile: printed after the table
    int n_profiles = 0, rc = 0;
    double times[MAX_REPS];
    for (int mi = 0; mi < a.n_models; mi++) {
        for (int ti = 0; ti < a.n_threads; ti++) {
            struct engine_params ep = {.model_path = a.models[mi], .n_threads = a.threads[ti],
                                       .n_ctx = max_tokens, .n_seq_max = 1, .n_batch = a.n_batch,
                                       .cpu_level = a.cpu_level, .mmap_only = a.mmap_only};
            struct engine *e;
            llm_err err;
            if (engine_load_with_bar(&e, &ep, &err)) {
                if (a.format == FMT_JSON) printf("\n]\n");
                rc = bench_fail("%s%s", err.msg, "");
                goto done;
            }
            if (engine_n_ctx(e) < max_tokens) {
                char msg[160];
                snprintf(msg, sizeof msg, "tests need %d tokens of context but the model allows %lld", max_tokens,
                         (long long)engine_n_ctx(e));
                engine_free(e);
                rc = bench_fail("%s: %s", a.models[mi], msg);
                goto done;
            }
            struct engine_batch batch;
            if (engine_batch_init(&batch, max_tokens, &err)) {
                engine_free(e);
                rc = bench_fail("%s%s", err.msg, "");
                goto done;
            }
            struct bench_result r = {.model_path = a.models[mi], .level = engine_cpu_level(e),
                                     .threads = engine_n_threads(e)};
            describe_model(e, &r);
            for (int di = 0; di < a.n_depths; di++)
                for (int kind = 0; kind < 2; kind++) {
                    const bool generation = kind == 1;
                    const int n_sizes = generation ? a.n_gens : a.n_prompts;
                    const int depth = a.depths[di];
                    for (int si = 0; si < n_sizes; si++) {
                        const int n = generation ? a.gens[si] : a.prompts[si];
                        if (n == 0) continue;
                        struct model_profile prof = {0};
                        for (int rep = -1; rep < a.reps; rep++) { // rep -1: warm-up
                            const double s = run_test(e, &batch, depth, n, generation,
                                                      a.profile && rep >= 0 ? &prof : NULL, &err);
                            if (s < 0) {
                                engine_batch_free(&batch);
                                engine_free(e);
                                rc = bench_fail("%s%s", err.msg, "");
                                goto done;
                            }
                            if (rep >= 0) times[rep] = n / s;
                        }
                        const char *kind_name = generation ? "tg" : "pp";
                        if (depth > 0) snprintf(r.test, sizeof r.test, "%s%d @ d%d", kind_name, n, depth);
                        else snprintf(r.test, sizeof r.test, "%s%d", kind_name, n);
                        r.n_tokens = n;
                        r.n_depth = depth;
                        stats(times, a.reps, &r.mean, &r.sd);
                        print_result(a.format, &r, first);
                        if (a.profile && keep_profile(&profiles, &n_profiles, &r, &prof)) {
                            engine_batch_free(&batch);
                            engine_free(e);
                            rc = bench_fail("out of memory%s%s", "", "");
                            goto done;
                        }
                        first = false;
                    }
                }
            engine_batch_free(&batch);
            engine_free(e);
        }
    }
    if (a.format == FMT_JSON) printf("\n]\n");
    fflush(stdout);
    for (int i = 0; i < n_profiles; i++) print_profile(&profiles[i].result, &profiles[i].profile, a.reps);
done:
    free(profiles);
    return rc;
}
