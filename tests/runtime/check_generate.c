// Greedy generation through the engine API, printing token ids, for comparing
// with llama.cpp's goldens. Usage: check_generate MODEL N_PREDICT PROMPT [special]
// ("special": text spelling control tokens becomes those tokens).
// Prints the prompt's ids on the first line and the N generated ids on the
// second (argmax every step, not stopping at end-of-text, as the goldens do).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: check_generate MODEL N_PREDICT PROMPT [special]\n");
        return 2;
    }
    const int n_predict = atoi(argv[2]);
    llm_err err;
    struct engine *e;
    struct engine_params p = {.model_path = argv[1], .n_ctx = 512};
    if (engine_load(&e, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int32_t *ids;
    int n = engine_tokenize(e, argv[3], strlen(argv[3]), true, argc == 5 && !strcmp(argv[4], "special"),
                            &ids, &err);
    if (n <= 0) {
        fprintf(stderr, "tokenize: %s\n", n < 0 ? err.msg : "no tokens");
        return 2;
    }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    struct engine_batch b;
    engine_batch_init(&b, n, &err);
    for (int i = 0; i < n; i++) engine_batch_add(&b, ids[i], i, 0, i == n - 1);
    const int64_t n_vocab = engine_hparams(e)->n_vocab;
    for (int step = 0; step < n_predict; step++) {
        if (engine_decode(e, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 2;
        }
        const float *logits = engine_logits(e, b.n - 1);
        int32_t best = 0;
        for (int64_t v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best]) best = (int32_t)v;
        printf(step ? " %d" : "%d", best);
        engine_batch_clear(&b);
        engine_batch_add(&b, best, n + step, 0, true);
    }
    putchar('\n');
    engine_batch_free(&b);
    free(ids);
    engine_free(e);
    return 0;
}
