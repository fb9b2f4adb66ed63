// The row ops the encoder (bert) uses, against float64 formulas:
// kern_layernorm (with and without weight/bias, in place), kern_gelu (ggml's
// half-table tanh GELU: within half precision of the exact tanh form, exact
// outside [-10, 10]) and kern_attn_head_f32 (softmax attention over a subset
// of rows).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kern/kern.h"
#include "testutil.h"

static void test_layernorm(void) {
    enum { N = 384 };
    float x[N], w[N], b[N], out[N];
    const int64_t sizes[] = {1, 2, 7, 32, 384};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int64_t n = sizes[t];
        const float offset = (float)(t * 3.0), scale = (float)(1 + t);
        for (int64_t i = 0; i < n; i++) {
            x[i] = offset + scale * rng_normal();
            w[i] = 1.0f + 0.2f * rng_normal();
            b[i] = 0.1f * rng_normal();
        }
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += x[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= (double)n;
        const double eps = 1e-12, inv = 1.0 / sqrt(var + eps);
        kern_layernorm(out, x, w, b, n, (float)eps);
        double worst = 0, worst_plain = 0;
        for (int64_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(out[i] - ((x[i] - mean) * inv * w[i] + b[i])));
        kern_layernorm(out, x, NULL, NULL, n, (float)eps);
        for (int64_t i = 0; i < n; i++) worst_plain = fmax(worst_plain, fabs(out[i] - (x[i] - mean) * inv));
        // n == 1: x - mean is 0, so the output is the bias alone.
        CHECK(worst < 2e-5, "layernorm n=%lld: max error %g", (long long)n, worst);
        CHECK(worst_plain < 2e-5, "layernorm n=%lld without w/b: max error %g", (long long)n, worst_plain);
        memcpy(out, x, sizeof x);
        kern_layernorm(out, out, w, b, n, (float)eps); // in place
        for (int64_t i = 0; i < n; i++) {
            CHECK(fabs(out[i] - ((x[i] - mean) * inv * w[i] + b[i])) < 2e-5, "in-place layernorm n=%lld i=%lld",
                  (long long)n, (long long)i);
            if (fabs(out[i] - ((x[i] - mean) * inv * w[i] + b[i])) >= 2e-5) break;
        }
    }
    // A constant row normalises to 0 (+ bias) instead of dividing by zero.
    for (int i = 0; i < N; i++) x[i] = 5.0f;
    kern_layernorm(out, x, w, b, N, 1e-12f);
    int finite = 1;
    for (int i = 0; i < N; i++) finite &= isfinite(out[i]) && fabsf(out[i] - b[i]) < 1e-6f;
    CHECK(finite, "layernorm of a constant row is its bias");
}

static void test_gelu(void) {
    enum { N = 4001 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1);
    kern_gelu(y, x, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double v = x[i];
        const double exact = 0.5 * v * (1.0 + tanh(0.7978845608028654 * v * (1.0 + 0.044715 * v * v)));
        if (v <= -10) CHECK(y[i] == 0.0f, "gelu(%g) = %g, expected 0", v, y[i]);
        else if (v >= 10) CHECK(y[i] == x[i], "gelu(%g) = %g, expected x", v, y[i]);
        // Input and output both go through half precision (relative 2^-11 each).
        else worst = fmax(worst, fabs(y[i] - exact) / fmax(fabs(exact), 1e-3));
    }
    CHECK(worst < 4e-3, "gelu: max relative error %g (half-precision table)", worst);
    // In place gives the same.
    memcpy(y, x, sizeof x);
    kern_gelu(y, y, N);
    static float y2[N];
    kern_gelu(y2, x, N);
    CHECK(memcmp(y, y2, sizeof y) == 0, "in-place gelu differs");
}

static void test_attention(void) {
    enum { ROWS = 40, D = 32, STRIDE = 3 * D };
    static float k[ROWS * STRIDE], v[ROWS * STRIDE];
    float q[D], out[D], scratch[ROWS];
    int32_t rows[ROWS];
    for (int i = 0; i < ROWS * STRIDE; i++) k[i] = rng_normal(), v[i] = rng_normal();
    for (int d = 0; d < D; d++) q[d] = 2.0f * rng_normal();
    // Every other row, in reverse order: the subset and order must not matter.
    int n = 0;
    for (int r = ROWS - 1; r >= 0; r -= 2) rows[n++] = r;
    const float scale = 1.0f / sqrtf((float)D);
    const int off = D; // the head's columns start one head in
    kern_attn_head_f32(q, k + off, STRIDE, v + off, STRIDE, rows, n, D, scale, scratch, out);
    double s[ROWS], max = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)q[d] * k[rows[j] * STRIDE + off + d];
        s[j] = dot * scale;
        max = fmax(max, s[j]);
    }
    for (int j = 0; j < n; j++) sum += (s[j] = exp(s[j] - max));
    double worst = 0;
    for (int d = 0; d < D; d++) {
        double ref = 0;
        for (int j = 0; j < n; j++) ref += s[j] / sum * v[rows[j] * STRIDE + off + d];
        worst = fmax(worst, fabs(out[d] - ref));
    }
    CHECK(worst < 1e-5, "attention: max error %g", worst);
    // One row: the output is that row's value.
    kern_attn_head_f32(q, k + off, STRIDE, v + off, STRIDE, rows, 1, D, scale, scratch, out);
    int same = 1;
    for (int d = 0; d < D; d++) same &= out[d] == v[rows[0] * STRIDE + off + d];
    CHECK(same, "attention over one row returns its value");
}

int main(void) {
    test_layernorm();
    test_gelu();
    test_attention();
    return CHECK_DONE();
}
