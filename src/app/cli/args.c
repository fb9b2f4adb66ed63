#include "args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out, llm_err *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return err_set(err, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    *out = v;
    return 0;
}

const char *cli_flag_value(int argc, char **argv, int *i, llm_err *err) {
    if (*i + 1 >= argc) {
        err_set(err, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_parse_engine_flag(struct cli_engine_flags *ef, int argc, char **argv, int *i, llm_err *err) {
    const char *f = argv[*i];
    if (strcmp(f, "--allow-unknown-pre") == 0) {
        ef->allow_unknown_pre = true;
        return 1;
    }
    if (strcmp(f, "--mmap") == 0) {
        ef->mmap_only = true;
        return 1;
    }
    const bool model = strcmp(f, "-m") == 0 || strcmp(f, "--model") == 0;
    const bool threads = strcmp(f, "-t") == 0 || strcmp(f, "--threads") == 0;
    const bool batch = strcmp(f, "-b") == 0 || strcmp(f, "--batch-size") == 0;
    const bool level = strcmp(f, "--cpu-level") == 0;
    if (!model && !threads && !batch && !level) return 0;
    const char *val = cli_flag_value(argc, argv, i, err);
    if (!val) return -1;
    long v;
    if (model) {
        ef->model_path = val;
    } else if (level) {
        ef->cpu_level = val;
    } else if (threads) {
        if (cli_parse_long(f, val, 1, 1024, &v, err)) return -1;
        ef->n_threads = (int)v;
    } else {
        if (cli_parse_long(f, val, 1, 1 << 16, &v, err)) return -1;
        ef->n_batch = (int32_t)v;
    }
    return 1;
}

static int parse_float(const char *flag, const char *s, double lo, double hi, float *out, llm_err *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return err_set(err, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    *out = (float)v;
    return 0;
}

// The model used when no -m is given: $LLMFILE_MODEL, else the one
// tools/setup_default_model.sh links into the cache.
const char *cli_default_model_path(char *buf, size_t cap) {
    const char *env = getenv("LLMFILE_MODEL");
    if (env && *env) return env;
    const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache && *cache) snprintf(buf, cap, "%s/llmfile/default.gguf", cache);
    else snprintf(buf, cap, "%s/.cache/llmfile/default.gguf", home ? home : ".");
    return buf;
}

void cli_print_help(void) {
    fputs(
        "usage: llmfile [options]\n"
        "       llmfile bench [options]    speed test, like llama-bench (llmfile bench --help)\n"
        "\n"
        "Runs a GGUF language model on the CPU. Without -m it uses the default model\n"
        "(Gemma 3 270M; `make model` installs it into ~/.cache/llmfile).\n"
        "\n"
        "generation:\n"
        "  -m, --model FILE          GGUF model file (default: $LLMFILE_MODEL, else ~/.cache/llmfile/default.gguf)\n"
        "  -p, --prompt TEXT         prompt to complete\n"
        "  -f, --file FILE           read the prompt from FILE\n"
        "  -n, --n-predict N         tokens to generate (default 128; -1: until end of text or context)\n"
        "  -c, --ctx-size N          context size in tokens (default: min(4096, the model's))\n"
        "  -t, --threads N           threads (default: physical cores)\n"
        "  -b, --batch-size N        tokens per forward pass in prompt processing (default 512)\n"
        "\n"
        "sampling:\n"
        "  --temp T                  temperature; 0 = greedy (default 0.8)\n"
        "  --top-k N                 keep the N most likely tokens; 0 = off (default 40)\n"
        "  --top-p P                 keep the smallest set with probability >= P; 1 = off (default 0.95)\n"
        "  --min-p P                 drop tokens below P x the best one's probability; 0 = off (default 0.05)\n"
        "  --repeat-penalty F        penalise recent tokens; 1 = off (default 1.0)\n"
        "  --repeat-last-n N         how many recent tokens the penalty sees (default 64)\n"
        "  -s, --seed N              random seed (default: random)\n"
        "\n"
        "tokenizer:\n"
        "  --tokenize                print the prompt's token ids and pieces instead of generating\n"
        "  --ids                     with --tokenize: print only the ids, as [1, 2, 3]\n"
        "  --no-bos                  with --tokenize: do not add BOS/EOS\n"
        "  --parse-special           treat text that spells a special token as that token\n"
        "  --allow-unknown-pre       a BPE vocabulary with an unknown pre-tokenizer falls back to the\n"
        "                            default (GPT-2) splitting instead of failing\n"
        "  --detokenize              -p holds ids (\"1 2 3\" or \"[1, 2, 3]\"); print their text\n"
        "\n"
        "embeddings:\n"
        "  --embedding               print the prompt's embedding (L2-normalised) as a JSON array\n"
        "                            instead of generating; works with encoders (bert) and decoders\n"
        "  --pooling TYPE            mean, cls or last (default: the model's pooling_type, else mean)\n"
        "\n"
        "cpu:\n"
        "  --cpu-level LEVEL         use kernels no newer than LEVEL (also $LLMFILE_CPU_LEVEL);\n"
        "                            x86-64: sse2 ssse3 sse42 avx avx2 avx512 avx512vnni avx512fp16\n"
        "                            arm64: armv8.0 armv8.2 armv8.6\n"
        "  --cpu-info                print the CPU's features and the level chosen, then exit\n"
        "  --mmap                    read the weights from the file's mapping; without it a model of up\n"
        "                            to 4 GB (and a quarter of the free memory) is copied onto 2 MB huge\n"
        "                            pages, which generation reads faster, and (AVX-512) its Q4_0, Q5_0,\n"
        "                            Q8_0, Q4_K, Q5_K, F16 and BF16 matrices are rearranged there in groups\n"
        "                            of 16 rows\n"
        "\n"
        "server:\n"
        "  --server                  run the HTTP server (OpenAI and llama.cpp APIs);\n"
        "                            see llmfile --server --help\n"
        "\n"
        "other:\n"
        "  -v, --verbose             print model details while loading\n"
        "  -h, --help                this help\n"
        "      --version             version\n"
        "\n"
        "Timings go to stderr at the end: load time, prompt tokens/s, generated tokens/s.\n",
        stdout);
}

int cli_parse(struct cli_args *a, int argc, char **argv, llm_err *err) {
    memset(a, 0, sizeof *a);
    a->mode = MODE_GENERATE;
    a->n_predict = 128;
    a->sampling = sampler_defaults();
    bool embedding = false, tok_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long v;
#define IS(s) (strcmp(f, s) == 0)
#define VALUE() cli_flag_value(argc, argv, &i, err); if (!val) return -1
        if (IS("-h") || IS("--help")) {
            a->mode = MODE_HELP;
        } else if (IS("--version")) {
            a->mode = MODE_VERSION;
        } else if (IS("--cpu-info")) {
            a->mode = MODE_CPU_INFO;
        } else if (IS("--tokenize")) {
            a->mode = MODE_TOKENIZE;
            tok_mode = true;
        } else if (IS("--detokenize")) {
            a->mode = MODE_DETOKENIZE;
            tok_mode = true;
        } else if (IS("--embedding") || IS("--embeddings")) {
            a->mode = MODE_EMBED;
            embedding = true;
        } else if (IS("--pooling")) {
            const char *val = VALUE();
            if (!strcmp(val, "mean")) a->pooling = MODEL_POOL_MEAN;
            else if (!strcmp(val, "cls")) a->pooling = MODEL_POOL_CLS;
            else if (!strcmp(val, "last")) a->pooling = MODEL_POOL_LAST;
            else return err_set(err, "--pooling expects mean, cls or last, got '%s'", val);
        } else if (IS("--ids")) {
            a->ids_only = true;
        } else if (IS("--no-bos")) {
            a->no_bos = true;
        } else if (IS("--parse-special")) {
            a->parse_special = true;
        } else if (IS("-v") || IS("--verbose")) {
            a->verbose = true;
        } else if (IS("-p") || IS("--prompt")) {
            const char *val = VALUE();
            a->prompt = val;
        } else if (IS("-f") || IS("--file")) {
            const char *val = VALUE();
            a->prompt_file = val;
        } else if (IS("-n") || IS("--n-predict")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, -1, INT32_MAX, &v, err)) return -1;
            a->n_predict = (int32_t)v;
        } else if (IS("-c") || IS("--ctx-size")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 0, 1 << 24, &v, err)) return -1;
            a->n_ctx = v;
        } else if (IS("--temp")) {
            const char *val = VALUE();
            if (parse_float(f, val, 0, 100, &a->sampling.temp, err)) return -1;
        } else if (IS("--top-k")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 0, INT32_MAX, &v, err)) return -1;
            a->sampling.top_k = (int32_t)v;
        } else if (IS("--top-p")) {
            const char *val = VALUE();
            if (parse_float(f, val, 0, 1, &a->sampling.top_p, err)) return -1;
        } else if (IS("--min-p")) {
            const char *val = VALUE();
            if (parse_float(f, val, 0, 1, &a->sampling.min_p, err)) return -1;
        } else if (IS("--repeat-penalty")) {
            const char *val = VALUE();
            if (parse_float(f, val, 0.01, 100, &a->sampling.repeat_penalty, err)) return -1;
        } else if (IS("--repeat-last-n")) {
            const char *val = VALUE();
            if (cli_parse_long(f, val, 0, 1 << 20, &v, err)) return -1;
            a->sampling.repeat_last_n = (int32_t)v;
        } else if (IS("-s") || IS("--seed")) {
            const char *val = VALUE();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-')
                return err_set(err, "%s expects a non-negative integer, got '%s'", f, val);
            a->sampling.seed = s;
            a->seed_given = true;
        } else {
            const int known = cli_parse_engine_flag(&a->engine, argc, argv, &i, err);
            if (known < 0) return -1;
            if (!known) return err_set(err, "unknown option '%s' (see --help)", f);
        }
#undef IS
#undef VALUE
    }
    if (a->prompt && a->prompt_file) return err_set(err, "give either -p or -f, not both");
    if (embedding && tok_mode) return err_set(err, "--embedding cannot be combined with --tokenize/--detokenize");
    if (a->pooling != MODEL_POOL_DEFAULT && !embedding) return err_set(err, "--pooling needs --embedding");

    return 0;
}
