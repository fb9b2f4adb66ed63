// Embeds token sequences through the engine API and prints the vectors, for
// tests/test_embedding.py to compare with llama.cpp's goldens. Usage:
//   check_embed MODEL.gguf TOKENS.txt POOLING N_SEQ_MAX
// TOKENS.txt: one sequence per line, token ids separated by spaces. POOLING:
// default, mean, cls or last. All sequences go to one engine_embed_batch call
// (so several share a forward pass); each is also embedded alone with
// engine_embed, and the two must agree (a sequence's embedding may not depend
// on what else is in the batch). Prints one line per sequence: the normalised
// embedding as space-separated floats. Exit 0 on success, 1 if batch and
// single results differ, 2 on bad input or an engine error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"

enum { MAX_SEQS = 64, MAX_TOKENS = 4096 };

static int read_tokens(const char *path, int32_t **seqs, int32_t *lens, int32_t *n_seqs) {
    FILE *f = fopen(path, "r");
    if (!f) return perror(path), -1;
    static char line[1 << 16];
    *n_seqs = 0;
    while (fgets(line, sizeof line, f) && *n_seqs < MAX_SEQS) {
        int32_t *toks = malloc(MAX_TOKENS * sizeof *toks), n = 0;
        char *p = line, *end;
        for (long v; n < MAX_TOKENS && (v = strtol(p, &end, 10), end != p); p = end) toks[n++] = (int32_t)v;
        seqs[*n_seqs] = toks;
        lens[(*n_seqs)++] = n;
    }
    fclose(f);
    return *n_seqs > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: check_embed MODEL.gguf TOKENS.txt default|mean|cls|last N_SEQ_MAX\n");
        return 2;
    }
    int32_t *seqs[MAX_SEQS], lens[MAX_SEQS], n_seqs;
    if (read_tokens(argv[2], seqs, lens, &n_seqs)) return 2;
    enum model_pooling pooling = MODEL_POOL_DEFAULT;
    if (!strcmp(argv[3], "mean")) pooling = MODEL_POOL_MEAN;
    else if (!strcmp(argv[3], "cls")) pooling = MODEL_POOL_CLS;
    else if (!strcmp(argv[3], "last")) pooling = MODEL_POOL_LAST;
    struct engine_params p = {.model_path = argv[1], .n_threads = 2, .n_ctx = 512, .n_seq_max = atoi(argv[4]),
                              .pooling = pooling};
    llm_err err;
    struct engine *e;
    if (engine_load(&e, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    const int64_t d = engine_n_embd(e);
    float *batch = malloc((size_t)(n_seqs * d) * sizeof *batch), *single = malloc((size_t)d * sizeof *single);
    int rc = 0;
    if (engine_embed_batch(e, (const int32_t *const *)seqs, lens, n_seqs, true, batch, &err)) {
        fprintf(stderr, "engine_embed_batch: %s\n", err.msg);
        rc = 2;
    }
    for (int32_t s = 0; s < n_seqs && rc == 0; s++) {
        if (engine_embed(e, seqs[s], lens[s], single, true, &err)) {
            fprintf(stderr, "engine_embed: %s\n", err.msg);
            rc = 2;
            break;
        }
        double diff = 0;
        for (int64_t j = 0; j < d; j++) diff = fmax(diff, fabs(single[j] - batch[s * d + j]));
        if (diff > 1e-6) {
            fprintf(stderr, "sequence %d: alone and in a batch differ by %g\n", s, diff);
            rc = 1;
        }
    }
    for (int32_t s = 0; s < n_seqs && rc != 2; s++) {
        for (int64_t j = 0; j < d; j++) printf(j ? " %.9g" : "%.9g", batch[s * d + j]);
        putchar('\n');
    }
    fprintf(stderr, "%d sequences, pooling %s, n_embd %lld\n", n_seqs, engine_pooling_name(engine_pooling(e)),
            (long long)d);
    for (int32_t s = 0; s < n_seqs; s++) free(seqs[s]);
    free(batch);
    free(single);
    engine_free(e);
    return rc;
}
