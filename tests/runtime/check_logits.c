// Compares llmfile's logits with llama.cpp's for one model and one golden file
// (format: tools/gen_logit_goldens.py). Usage:
//   check_logits MODEL.gguf GOLDEN.bin MAX_REL_ERR [multi|prompt]
// With "multi" the sequence is decoded as two sequences at once (ids 0 and 1,
// interleaved in one batch, the second preceded by a half-length prefix
// decoded earlier) and both must match: the KV cache keeps sequences apart.
// With "prompt" position i's logits come from a fresh batch of tokens 0..i
// in which only token i wants logits: tokens 0..i-1 are prompt rows, so their
// keys and values come from the GEMM kernels (rows that want logits take the
// GEMV ones).
// MAX_REL_ERR bounds max|ours - theirs| / max|theirs| over each position. The
// top-1 token must match wherever llama.cpp's top-2 margin exceeds the error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"

struct golden {
    uint32_t n_tokens, n_vocab, flags;
    int32_t *tokens;  // [n_tokens]
    float *logits;    // [n_tokens][n_vocab]
};

static int read_golden(const char *path, struct golden *g) {
    FILE *f = fopen(path, "rb");
    if (!f) return perror(path), -1;
    unsigned char hdr[52];
    uint32_t version;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr || memcmp(hdr, "LFLG", 4)) goto bad;
    memcpy(&version, hdr + 4, 4);
    memcpy(&g->n_tokens, hdr + 8, 4);
    memcpy(&g->n_vocab, hdr + 12, 4);
    memcpy(&g->flags, hdr + 16, 4);
    if (version != 1 || g->n_tokens == 0 || g->n_tokens > 4096 || g->n_vocab == 0 || g->n_vocab > 1 << 20) goto bad;
    g->tokens = malloc(g->n_tokens * sizeof *g->tokens);
    g->logits = malloc((size_t)g->n_tokens * g->n_vocab * sizeof *g->logits);
    if (!g->tokens || !g->logits || fread(g->tokens, 4, g->n_tokens, f) != g->n_tokens ||
        fread(g->logits, 4, (size_t)g->n_tokens * g->n_vocab, f) != (size_t)g->n_tokens * g->n_vocab)
        goto bad;
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "%s: not a valid golden logits file\n", path);
    fclose(f);
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: check_logits MODEL.gguf GOLDEN.bin MAX_REL_ERR [multi]\n");
        return 2;
    }
    const double tol = atof(argv[3]);
    struct golden g;
    if (read_golden(argv[2], &g)) return 2;
    llm_err err;
    struct engine *e;
    const bool multi = argc == 5 && !strcmp(argv[4], "multi");
    const bool prompt = argc == 5 && !strcmp(argv[4], "prompt");
    if (argc == 5 && !multi && !prompt) {
        fprintf(stderr, "check_logits: unknown mode '%s' (multi or prompt)\n", argv[4]);
        return 2;
    }
    struct engine_params p = {.model_path = argv[1], .n_threads = 2, .n_ctx = 2 * g.n_tokens + 8, .n_seq_max = 2};
    if (engine_load(&e, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (engine_hparams(e)->n_vocab != g.n_vocab) {
        fprintf(stderr, "vocab %lld != golden %u\n", (long long)engine_hparams(e)->n_vocab, g.n_vocab);
        return 2;
    }
    const bool sequential = (g.flags & 1) && !multi;
    struct engine_batch b;
    engine_batch_init(&b, 2 * (int32_t)g.n_tokens, &err);
    float *ours = malloc((size_t)g.n_tokens * g.n_vocab * sizeof *ours);
    float *ours2 = malloc((size_t)g.n_tokens * g.n_vocab * sizeof *ours2);
    const uint32_t half = g.n_tokens / 2;
    if (multi) {
        // Sequence 1 first gets the first half alone; then one batch carries all of
        // sequence 0 interleaved with the rest of sequence 1.
        for (uint32_t i = 0; i < half; i++) engine_batch_add(&b, g.tokens[i], (int32_t)i, 1, true);
        if (engine_decode(e, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 2;
        }
        for (uint32_t i = 0; i < half; i++)
            memcpy(ours2 + (size_t)i * g.n_vocab, engine_logits(e, (int32_t)i), g.n_vocab * sizeof(float));
        engine_batch_clear(&b);
        for (uint32_t i = 0; i < g.n_tokens; i++) {
            engine_batch_add(&b, g.tokens[i], (int32_t)i, 0, true);
            if (i >= half) engine_batch_add(&b, g.tokens[i], (int32_t)i, 1, true);
        }
        if (engine_decode(e, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 2;
        }
        for (int32_t j = 0; j < b.n; j++) {
            float *dst = b.seq[j] == 0 ? ours : ours2;
            memcpy(dst + (size_t)b.pos[j] * g.n_vocab, engine_logits(e, j), g.n_vocab * sizeof(float));
        }
    }
    for (uint32_t i = 0; i < g.n_tokens && prompt; i++) {
        engine_seq_rm(e, 0, 0, -1);
        engine_batch_clear(&b);
        for (uint32_t j = 0; j <= i; j++) engine_batch_add(&b, g.tokens[j], (int32_t)j, 0, j == i);
        if (engine_decode(e, &b, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            return 2;
        }
        memcpy(ours + (size_t)i * g.n_vocab, engine_logits(e, (int32_t)i), g.n_vocab * sizeof(float));
    }
    for (uint32_t i = 0; i < g.n_tokens && !multi && !prompt; i++) {
        if (sequential) engine_batch_clear(&b);
        engine_batch_add(&b, g.tokens[i], (int32_t)i, 0, true);
        if (sequential || i + 1 == g.n_tokens) {
            if (engine_decode(e, &b, &err)) {
                fprintf(stderr, "decode: %s\n", err.msg);
                return 2;
            }
            for (int32_t j = 0; j < b.n; j++) {
                const uint32_t row = sequential ? i : (uint32_t)j;
                memcpy(ours + (size_t)row * g.n_vocab, engine_logits(e, j), g.n_vocab * sizeof(float));
            }
        }
    }
    double worst = 0;
    int failures = 0;
    for (uint32_t k = 0; k < (multi ? 2 : 1) * g.n_tokens; k++) {
        const uint32_t i = k % g.n_tokens;
        const float *t = g.logits + (size_t)i * g.n_vocab;
        const float *o = (k < g.n_tokens ? ours : ours2) + (size_t)i * g.n_vocab;
        double scale = 0, diff = 0;
        uint32_t top_t = 0, top_o = 0;
        for (uint32_t v = 0; v < g.n_vocab; v++) {
            scale = fmax(scale, fabs(t[v]));
            diff = fmax(diff, fabs((double)t[v] - o[v]));
            if (t[v] > t[top_t]) top_t = v;
            if (o[v] > o[top_o]) top_o = v;
        }
        double second = -INFINITY;
        for (uint32_t v = 0; v < g.n_vocab; v++)
            if (v != top_t && t[v] > second) second = t[v];
        const double rel = scale > 0 ? diff / scale : diff;
        worst = fmax(worst, rel);
        if (!(rel <= tol)) {
            fprintf(stderr, "position %u: max|diff| %.3g = %.3g of the logit range (allowed %.3g)\n", i, diff,
                    rel, tol);
            failures++;
        }
        if (top_t != top_o && t[top_t] - second > 2 * diff) {
            fprintf(stderr, "position %u: top-1 token %u, llama.cpp %u (margin %.3g)\n", i, top_o, top_t,
                    t[top_t] - second);
            failures++;
        }
    }
    printf("%s: %u positions, worst relative error %.3g (allowed %.3g), %d failures\n", argv[2], (multi ? 2 : 1) * g.n_tokens,
           worst, tol, failures);
    free(ours);
    free(ours2);
    engine_batch_free(&b);
    engine_free(e);
    free(g.tokens);
    free(g.logits);
    return failures ? 1 : 0;
}
