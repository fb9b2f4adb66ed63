// Row ops that some levels implement themselves (kern_ops.geglu, .swiglu, .rmsnorm),
// against the reference row ops at every level the CPU runs, for every length
// up to 70, NaN and infinities: geglu equal bit for bit (the same table, the
// same roundings, also at the edges of the table's range, +-10); swiglu within
// a few ulp (a vector exp within ~1 ulp of expf), and equal at the extremes;
// rmsnorm within an ulp (its double sum in another order), in place too.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "kern/kern.h"

static uint64_t rng_state = 0x1234567u;

static double rng_uniform(void) {
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

static bool same_float(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

int main(void) {
    struct cpu_features f;
    cpu_detect(&f);
    const struct kern_level *levels;
    const int n_levels = kern_levels(&levels);
    enum { N = 1000 };
    static float gate[N], up[N], ref[N], out[N];
    static const float special[] = {10.0f, -10.0f, 9.999999f, -9.999999f, 10.000001f, -10.000001f, 0.0f, -0.0f,
                                    INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f, 1e-8f, -3.0e-5f};
    for (int i = 0; i < N; i++) {
        const int kind = i % 7;
        gate[i] = kind == 0 ? special[(i / 7) % (sizeof special / sizeof special[0])]
                : (float)((rng_uniform() * 2.0 - 1.0) * (kind == 1 ? 30.0 : 11.0));
        up[i] = (float)(rng_uniform() * 4.0 - 2.0);
    }
    int tested = 0;
    for (int li = 0; li < n_levels; li++) {
        if (!levels[li].supported(&f)) continue;
        const struct kern_ops *ops = levels[li].ops();
        if (!ops->geglu) continue;
        tested++;
        for (int n = 1; n <= 70; n++) { // every tail of every vector width
            const int off = n % 5;      // unaligned rows
            kern_geglu(ref, gate + off, up + off, n);
            for (int i = 0; i < n + 3; i++) out[i] = 12345.0f; // nothing written past n
            ops->geglu(out, gate + off, up + off, n);
            int bad = -1;
            for (int i = 0; i < n; i++)
                if (!same_float(out[i], ref[i])) bad = i;
            CHECK(bad < 0, "level %s geglu n=%d: value %d is %g, reference %g (gate %g)", levels[li].name, n, bad,
                  bad >= 0 ? out[bad] : 0.0, bad >= 0 ? ref[bad] : 0.0, bad >= 0 ? gate[off + bad] : 0.0);
            CHECK(out[n] == 12345.0f && out[n + 2] == 12345.0f, "level %s geglu n=%d wrote past the row",
                  levels[li].name, n);
        }
        kern_geglu(ref, gate, up, N);
        ops->geglu(out, gate, up, N);
        int mismatches = 0;
        for (int i = 0; i < N; i++) mismatches += !same_float(out[i], ref[i]);
        CHECK(mismatches == 0, "level %s geglu: %d of %d values differ", levels[li].name, mismatches, N);
    }
    printf("geglu: %d levels with their own kernel\n", tested);
    tested = 0;
    for (int li = 0; li < n_levels; li++) {
        if (!levels[li].supported(&f)) continue;
        const struct kern_ops *ops = levels[li].ops();
        if (!ops->swiglu) continue;
        tested++;
        for (int n = 1; n <= 70; n++) {
            const int off = n % 5;
            kern_swiglu(ref, gate + off, up + off, n);
            for (int i = 0; i < n + 3; i++) out[i] = 12345.0f;
            ops->swiglu(out, gate + off, up + off, n);
            CHECK(out[n] == 12345.0f && out[n + 2] == 12345.0f, "level %s swiglu n=%d wrote past the row",
                  levels[li].name, n);
        }
        kern_swiglu(ref, gate, up, N);
        ops->swiglu(out, gate, up, N);
        int bad = 0, first = -1;
        for (int i = 0; i < N; i++) {
            const bool ok = same_float(out[i], ref[i]) ||
                            (isfinite(ref[i]) && fabsf(out[i] - ref[i]) <= 4e-7f * fabsf(ref[i]) + 1e-35f);
            if (!ok && first < 0) first = i;
            bad += !ok;
        }
        CHECK(bad == 0, "level %s swiglu: %d of %d values off, first %d: %.9g, reference %.9g (gate %g)",
              levels[li].name, bad, N, first, first >= 0 ? out[first] : 0.0, first >= 0 ? ref[first] : 0.0,
              first >= 0 ? gate[first] : 0.0);
        const float edge_gate[] = {-200.0f, -89.0f, -88.5f, -87.5f, 87.5f, 200.0f}, edge_up[] = {1, 1, 1, 1, 1, 1};
        kern_swiglu(ref, edge_gate, edge_up, 6);
        ops->swiglu(out, edge_gate, edge_up, 6);
        for (int i = 0; i < 6; i++)
            CHECK(same_float(out[i], ref[i]) || fabsf(out[i] - ref[i]) <= 4e-7f * fabsf(ref[i]) + 1e-35f,
                  "level %s swiglu(%g) = %g, reference %g", levels[li].name, edge_gate[i], out[i], ref[i]);
    }
    printf("swiglu: %d levels with their own kernel\n", tested);
    // rmsnorm: the same float squares summed in double in another order, so the
    // scale differs from the reference's in its last bit at most; in place too.
    static float xs[N]; // finite values of mixed sizes
    for (int i = 0; i < N; i++) xs[i] = (float)((rng_uniform() * 2.0 - 1.0) * (i % 3 == 0 ? 40.0 : 0.7));
    tested = 0;
    for (int li = 0; li < n_levels; li++) {
        if (!levels[li].supported(&f)) continue;
        const struct kern_ops *ops = levels[li].ops();
        if (!ops->rmsnorm) continue;
        tested++;
        int bad = 0, first = -1;
        for (int n = 1; n <= 70 + 640; n += n < 70 ? 1 : 128) {
            const int off = n % 5;
            for (int pass = 0; pass < 2; pass++) { // with weights, without
                const float *w = pass == 0 ? up + off : NULL;
                kern_rmsnorm(ref, xs + off, w, n, 1e-6f);
                for (int i = 0; i < n + 3; i++) out[i] = 12345.0f;
                ops->rmsnorm(out, xs + off, w, n, 1e-6f);
                CHECK(out[n] == 12345.0f && out[n + 2] == 12345.0f, "level %s rmsnorm n=%d wrote past the row",
                      levels[li].name, n);
                for (int i = 0; i < n; i++) {
                    const bool ok = same_float(out[i], ref[i]) || fabsf(out[i] - ref[i]) <= 2.5e-7f * fabsf(ref[i]);
                    if (!ok && first < 0) first = n;
                    bad += !ok;
                }
            }
            static float inplace[N];
            memcpy(inplace, xs + off, sizeof(float) * (size_t)n);
            kern_rmsnorm(ref, xs + off, up, n, 1e-5f);
            ops->rmsnorm(inplace, inplace, up, n, 1e-5f);
            for (int i = 0; i < n; i++) bad += !(same_float(inplace[i], ref[i]) ||
                                                  fabsf(inplace[i] - ref[i]) <= 2.5e-7f * fabsf(ref[i]));
        }
        CHECK(bad == 0, "level %s rmsnorm: %d values off the reference, first at n=%d", levels[li].name, bad, first);
    }
    printf("rmsnorm: %d levels with their own kernel\n", tested);
    return CHECK_DONE();
}
