#include "sample.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sampler_params sampler_defaults(void) {
    return (struct sampler_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                   .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sampler_uniform(struct sampler *s) { return (double)(next_u64(s->rng) >> 11) * 0x1.0p-53; }

int sampler_init(struct sampler *s, const struct sampler_params *p, int32_t n_vocab, llm_err *err) {
    memset(s, 0, sizeof *s);
    if (n_vocab <= 0) return err_set(err, "sampler: empty vocabulary");
    if (p->repeat_last_n < 0) return err_set(err, "repeat-last-n must be >= 0");
    if (!(p->repeat_penalty > 0)) return err_set(err, "repeat-penalty must be > 0");
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t seed = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&seed);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->recent = malloc(((size_t)p->repeat_last_n + 1) * sizeof *s->recent);
    if (!s->cands || !s->recent) {
        sampler_free(s);
        return err_set(err, "sampler: out of memory");
    }
    return 0;
}

void sampler_free(struct sampler *s) {
    free(s->cands);
    free(s->recent);
    memset(s, 0, sizeof *s);
}

void sampler_accept(struct sampler *s, int32_t token) {
    if (s->p.repeat_last_n == 0) return;
    s->recent[s->recent_head] = token;
    s->recent_head = (s->recent_head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

static int by_logit_desc(const void *a, const void *b) {
    const struct sampler_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

// Moves the k best candidates to the front (unordered) in O(n) on average.
static void select_top(struct sampler_cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const struct sampler_cand pivot = c[(lo + hi) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (by_logit_desc(&c[i], &pivot) < 0) i++;
            while (by_logit_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                struct sampler_cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

// The first index of the largest logit (as the candidate scan below picks it).
static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int32_t sampler_sample(struct sampler *s, const float *logits) {
    struct sampler_cand *c = s->cands;
    int32_t n = s->n_vocab;
    // Greedy without a penalty: no candidate list (a 262144-token vocabulary
    // makes that a 2 MB copy per token, which showed in batched generation).
    if (s->p.temp <= 0 && s->p.repeat_penalty == 1.0f) return argmax(logits, n);
    for (int32_t i = 0; i < n; i++) c[i] = (struct sampler_cand){i, logits[i]};
    if (s->p.repeat_penalty != 1.0f) {
        // Each distinct recent token is penalised once, as llama.cpp does.
        for (int32_t r = 0; r < s->n_recent; r++) {
            const int32_t t = s->recent[r];
            if (t < 0 || t >= n) continue;
            bool seen = false;
            for (int32_t q = 0; q < r; q++) seen |= s->recent[q] == t;
            if (seen) continue;
            c[t].logit = c[t].logit > 0 ? c[t].logit / s->p.repeat_penalty : c[t].logit * s->p.repeat_penalty;
        }
    }
    if (s->p.temp <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top(c, n, s->p.top_k);
        n = s->p.top_k;
    }
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) max = c[i].logit > max ? c[i].logit : max;
    // min-p keeps logits within log(min_p) of the best; applying it before the
    // sort only shrinks what is sorted, since top-p below stops at or before it.
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += exp((double)c[i].logit - max);
    int32_t kept = n;
    if (s->p.min_p > 0) {
        const float floor_logit = max + logf(s->p.min_p);
        kept = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].logit >= floor_logit) c[kept++] = c[i];
    }
    qsort(c, (size_t)kept, sizeof *c, by_logit_desc);
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        for (int32_t i = 0; i < kept; i++) {
            cum += exp((double)c[i].logit - max) / total;
            if (cum >= s->p.top_p) {
                kept = i + 1;
                break;
            }
        }
    }
    // Temperature, then a draw from the renormalised distribution.
    double sum = 0;
    for (int32_t i = 0; i < kept; i++) sum += exp(((double)c[i].logit - max) / s->p.temp);
    double r = sampler_uniform(s) * sum;
    for (int32_t i = 0; i < kept; i++) {
        r -= exp(((double)c[i].logit - max) / s->p.temp);
        if (r < 0) return c[i].id;
    }
    return c[kept - 1].id;
}
