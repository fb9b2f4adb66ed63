// One thread and two give the same logits, bit for bit, at a long context: a
// prompt of N_PROMPT tokens, then N_GEN greedy steps. With two threads and fewer
// KV heads than threads (the default model has one) each generation step splits
// its attention tiles among the threads (forward.c run_attention_split), which
// must not change a bit. Usage: check_threads MODEL N_PROMPT N_GEN.
// Exit 0 when every step matches, 1 at the first that differs, 2 on errors.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "runtime/engine.h"

static int decode(struct engine *e, struct engine_batch *b) {
    llm_err err;
    if (engine_decode(e, b, &err) == 0) return 0;
    fprintf(stderr, "decode: %s\n", err.msg);
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: check_threads MODEL N_PROMPT N_GEN\n");
        return 2;
    }
    const int n_prompt = atoi(argv[2]), n_gen = atoi(argv[3]);
    struct engine *e[2];
    llm_err err;
    for (int i = 0; i < 2; i++) {
        struct engine_params p = {.model_path = argv[1], .n_threads = i + 1, .n_ctx = n_prompt + n_gen + 8};
        if (engine_load(&e[i], &p, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
    }
    const int64_t n_vocab = engine_hparams(e[0])->n_vocab;
    struct engine_batch b;
    if (n_prompt < 1 || n_gen < 1 || n_vocab < 300 || engine_batch_init(&b, n_prompt, &err)) return 2;
    for (int i = 0; i < n_prompt; i++) // arbitrary ordinary tokens
        engine_batch_add(&b, (int32_t)(100 + (int64_t)i * 7919 % (n_vocab - 200)), i, 0, i == n_prompt - 1);
    for (int step = 0; step <= n_gen; step++) {
        if (decode(e[0], &b) || decode(e[1], &b)) return 2;
        const float *l0 = engine_logits(e[0], b.n - 1), *l1 = engine_logits(e[1], b.n - 1);
        int64_t differ = 0, best = 0;
        for (int64_t v = 0; v < n_vocab; v++) {
            differ += memcmp(&l0[v], &l1[v], sizeof(float)) != 0;
            if (l0[v] > l0[best]) best = v;
        }
        if (differ) {
            fprintf(stderr, "step %d (context %d): %lld of %lld logits differ between 1 and 2 threads\n", step,
                    n_prompt + step, (long long)differ, (long long)n_vocab);
            return 1;
        }
        engine_batch_clear(&b);
        engine_batch_add(&b, (int32_t)best, n_prompt + step, 0, true);
    }
    printf("%d steps after %d tokens: the same logits with 1 and 2 threads\n", n_gen, n_prompt);
    engine_batch_free(&b);
    engine_free(e[0]);
    engine_free(e[1]);
    return 0;
}
