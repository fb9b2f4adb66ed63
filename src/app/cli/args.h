// Command-line options of llmfile.
#ifndef LLMFILE_APP_CLI_ARGS_H
#define LLMFILE_APP_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/engine.h"

// The flags the CLI and the server both take, for loading the engine.
struct cli_engine_flags {
    const char *model_path;   // -m; NULL: the default model
    int n_threads;            // -t; 0: the engine's default (physical cores)
    int32_t n_batch;          // -b; 0: the engine's default
    const char *cpu_level;    // --cpu-level
    bool allow_unknown_pre;   // --allow-unknown-pre
    bool mmap_only;           // --mmap
};

enum cli_mode { MODE_GENERATE, MODE_TOKENIZE, MODE_DETOKENIZE, MODE_EMBED, MODE_HELP, MODE_VERSION, MODE_CPU_INFO };

struct cli_args {
    enum cli_mode mode;
    struct cli_engine_flags engine; // -m, -t, -b, --cpu-level, --allow-unknown-pre, --mmap
    const char *prompt;       // -p
    const char *prompt_file;  // -f
    int32_t n_predict;        // -n; < 0: until end of generation or context
    int64_t n_ctx;
    struct sampler_params sampling;
    bool seed_given;
    bool ids_only;            // --ids
    bool no_bos;              // --no-bos
    bool parse_special;       // --parse-special
    bool verbose;
    enum model_pooling pooling; // --pooling (MODEL_POOL_DEFAULT: the model's)

};

// Parses argv; on a bad flag or value writes one line to err and returns -1.
int cli_parse(struct cli_args *a, int argc, char **argv, llm_err *err);
void cli_print_help(void);
// The model used when no -m is given: $LLMFILE_MODEL, else the one
// tools/setup_default_model.sh links into the cache. Writes into buf.
const char *cli_default_model_path(char *buf, size_t cap);
// A flag's integer value in [lo, hi]; else -1 with "FLAG expects an integer in [lo, hi], got 'S'".
int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out, llm_err *err);
// The value after flag argv[*i] (*i moves to it); NULL with "FLAG needs a value" when there is none.
const char *cli_flag_value(int argc, char **argv, int *i, llm_err *err);
// If argv[*i] is one of the flags of struct cli_engine_flags, stores it in ef (*i moves past
// its value) and returns 1; returns 0 for any other flag, -1 with err on a missing or bad value.
int cli_parse_engine_flag(struct cli_engine_flags *ef, int argc, char **argv, int *i, llm_err *err);

#endif
