// sample/: turning logits into the next token. The chain runs in llama.cpp's
// order: repeat penalty, top-k, top-p, min-p, temperature, then a draw (or
// argmax when temperature is 0).
#ifndef LLMFILE_SAMPLE_SAMPLE_H
#define LLMFILE_SAMPLE_SAMPLE_H

#include <stdint.h>

#include "base/err.h"

struct sampler_params {
    float temp;           // <= 0: greedy
    int32_t top_k;        // <= 0: off
    float top_p;          // >= 1: off
    float min_p;          // <= 0: off
    float repeat_penalty; // 1: off
    int32_t repeat_last_n;// how many recent tokens the penalty looks at
    uint64_t seed;
};

// llama.cpp's defaults (temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalty).
struct sampler_params sampler_defaults(void);

struct sampler_cand {
    int32_t id;
    float logit;
};

struct sampler {
    struct sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];             // xoshiro256** state
    int32_t *recent;             // [repeat_last_n] ring of accepted tokens
    int32_t n_recent, recent_head;
    struct sampler_cand *cands;  // [n_vocab] working set
};

int  sampler_init(struct sampler *s, const struct sampler_params *p, int32_t n_vocab, llm_err *err);
void sampler_free(struct sampler *s);
// Picks a token from logits [n_vocab] (not modified).
int32_t sampler_sample(struct sampler *s, const float *logits);
// Records a token of the context (prompt or generated) for the repeat penalty.
void sampler_accept(struct sampler *s, int32_t token);
// Uniform double in [0, 1) from the sampler's generator.
double sampler_uniform(struct sampler *s);

#endif
