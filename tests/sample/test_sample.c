#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "sample/sample.h"

enum { N_VOCAB = 50 };

static void fill_logits(float *l) {
    for (int i = 0; i < N_VOCAB; i++) l[i] = (float)((i * 37) % N_VOCAB) / 10.0f; // distinct, max at id 27
}

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < N_VOCAB; i++) if (l[i] > l[b]) b = i;
    return b;
}

// Draws many tokens and returns the observed frequency of each id.
static void histogram(struct sampler *s, const float *l, int draws, double *freq) {
    for (int i = 0; i < N_VOCAB; i++) freq[i] = 0;
    for (int d = 0; d < draws; d++) freq[sampler_sample(s, l)] += 1.0 / draws;
}

int main(void) {
    float logits[N_VOCAB];
    fill_logits(logits);
    llm_err err;
    struct sampler s;
    double freq[N_VOCAB];

    struct sampler_params greedy = sampler_defaults();
    greedy.temp = 0;
    CHECK(sampler_init(&s, &greedy, N_VOCAB, &err) == 0, "%s", err.msg);
    CHECK(sampler_sample(&s, logits) == argmax(logits), "greedy picks the argmax");
    sampler_free(&s);
    // Ties go to the first index, with and without a repeat penalty (two code paths).
    float tied[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) tied[i] = (float)(i % 5);
    for (int pen = 0; pen < 2; pen++) {
        struct sampler_params gp = greedy;
        gp.repeat_penalty = pen ? 1.5f : 1.0f;
        CHECK(sampler_init(&s, &gp, N_VOCAB, &err) == 0, "%s", err.msg);
        CHECK(sampler_sample(&s, tied) == 4, "greedy tie (penalty %d) goes to the first index", pen);
        sampler_free(&s);
    }

    // Plain temperature-1 sampling follows softmax(logits).
    struct sampler_params plain = {.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.0f,
                                   .repeat_last_n = 64, .seed = 42};
    CHECK(sampler_init(&s, &plain, N_VOCAB, &err) == 0, "%s", err.msg);
    histogram(&s, logits, 200000, freq);
    double z = 0, worst = 0;
    for (int i = 0; i < N_VOCAB; i++) z += exp(logits[i]);
    for (int i = 0; i < N_VOCAB; i++) worst = fmax(worst, fabs(freq[i] - exp(logits[i]) / z));
    CHECK(worst < 0.005, "temperature 1 frequencies off softmax by %.4f", worst);
    sampler_free(&s);

    // The same seed gives the same sequence; another seed another one.
    int a[32], b[32], c[32];
    for (int run = 0; run < 3; run++) {
        struct sampler_params p = plain;
        p.seed = run == 2 ? 7 : 42;
        sampler_init(&s, &p, N_VOCAB, &err);
        for (int i = 0; i < 32; i++) (run == 0 ? a : run == 1 ? b : c)[i] = sampler_sample(&s, logits);
        sampler_free(&s);
    }
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 32; i++) same_ab &= a[i] == b[i], same_ac &= a[i] == c[i];
    CHECK(same_ab, "same seed, same draws");
    CHECK(!same_ac, "different seeds, different draws");

    // top-k keeps exactly the k best.
    struct sampler_params topk = plain;
    topk.top_k = 3;
    sampler_init(&s, &topk, N_VOCAB, &err);
    histogram(&s, logits, 20000, freq);
    int kept = 0;
    for (int i = 0; i < N_VOCAB; i++) kept += freq[i] > 0;
    CHECK(kept == 3 && freq[27] > 0 && freq[(27 + 1) % N_VOCAB] == 0, "top-k 3 kept %d ids", kept);
    sampler_free(&s);

    // top-p keeps the smallest prefix reaching p: with one dominant token, only it.
    float peaked[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) peaked[i] = 0;
    peaked[9] = 10.0f; // p(9) ~ 0.998
    struct sampler_params topp = plain;
    topp.top_p = 0.9f;
    sampler_init(&s, &topp, N_VOCAB, &err);
    histogram(&s, peaked, 5000, freq);
    CHECK(freq[9] > 0.99999, "top-p 0.9 keeps only the dominant token (got %.3f)", freq[9]);
    sampler_free(&s);

    // min-p drops tokens below min_p x the best probability.
    float two[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) two[i] = -20.0f;
    two[3] = 0.0f;
    two[4] = -1.0f;  // p ratio e^-1 = 0.37: kept at min-p 0.3
    two[5] = -1.5f;  // ratio 0.22: dropped at min-p 0.3
    struct sampler_params minp = plain;
    minp.min_p = 0.3f;
    sampler_init(&s, &minp, N_VOCAB, &err);
    histogram(&s, two, 20000, freq);
    CHECK(freq[3] > 0 && freq[4] > 0 && freq[5] == 0, "min-p: %.3f %.3f %.3f", freq[3], freq[4], freq[5]);
    CHECK(fabs(freq[4] / freq[3] - exp(-1.0)) < 0.05, "min-p keeps the kept tokens' odds");
    sampler_free(&s);

    // Repeat penalty pushes a recent token below its rival under greedy.
    float rivals[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) rivals[i] = -5.0f;
    rivals[1] = 2.0f;
    rivals[2] = 1.8f;
    struct sampler_params pen = greedy;
    pen.repeat_penalty = 1.5f;
    sampler_init(&s, &pen, N_VOCAB, &err);
    CHECK(sampler_sample(&s, rivals) == 1, "no penalty before token 1 was seen");
    sampler_accept(&s, 1);
    CHECK(sampler_sample(&s, rivals) == 2, "penalised token 1 loses to token 2");
    sampler_free(&s);

    // Bad parameters are errors, not crashes.
    struct sampler_params bad = plain;
    bad.repeat_penalty = 0;
    CHECK(sampler_init(&s, &bad, N_VOCAB, &err) == -1, "zero repeat penalty rejected");
    CHECK(sampler_init(&s, &plain, 0, &err) == -1, "empty vocabulary rejected");
    return CHECK_DONE();
}
