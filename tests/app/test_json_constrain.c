// The response_format json_object automaton (src/app/server/json_constrain.c):
// whole documents, every prefix of them, rejected bytes, limits, and token masks
// on a real SentencePiece vocabulary.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/server/json_constrain.c"
#include "check.h"

// Feeds s; returns the index of the first rejected byte, or -1 if all were accepted.
static long first_reject(const char *s, struct json_fsm *f) {
    json_fsm_init(f);
    for (size_t i = 0; s[i]; i++)
        if (!json_fsm_feed(f, s + i, 1)) return (long)i;
    return -1;
}

static void test_documents(void) {
    static const char *const good[] = {
        "{}",
        " \n{ }",
        "{\"a\":1}",
        "{\"a\": -0.5e+10, \"b\": [true, false, null, \"x\\u00e9\\n\"], \"c\": {\"d\": []}}",
        "{\"\xc3\xa9t\xc3\xa9\": \"\xe2\x82\xac\", \"n\": 0, \"m\": 12.25E-3, \"arr\": [[1],[2, {\"z\": 3}]]}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct json_fsm f;
        CHECK(first_reject(good[i], &f) == -1, "valid document %zu rejected", i);
        CHECK(json_fsm_complete(&f), "document %zu not complete", i);
        // Every proper prefix is accepted and not complete.
        const size_t n = strlen(good[i]);
        for (size_t k = 0; k + 1 < n; k++) {
            json_fsm_init(&f);
            CHECK(json_fsm_feed(&f, good[i], k) && !json_fsm_complete(&f), "prefix %zu of document %zu", k, i);
        }
    }
    static const struct { const char *s; long at; } bad[] = {
        {"[1]", 0},           // the top level must be an object
        {"x", 0},
        {"{\"a\" 1}", 5},     // missing colon
        {"{\"a\":01}", 6},    // leading zero
        {"{\"a\":1,}", 7},    // trailing comma
        {"{\"a\":tru}", 8},
        {"{\"a\":[1}", 7},    // mismatched bracket
        {"{\"a\":\"\x01\"}", 6}, // control character in a string
        {"{\"a\":\"\\x\"}", 7},  // bad escape
        {"{\"a\":\"\\u12g4\"}", 10},
        {"{\"a\":1.}", 7},
        {"{\"a\":-}", 6},
        {"{} x", 3},          // nothing after the object
        {"{1:2}", 1},         // keys are strings
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct json_fsm f;
        const long at = first_reject(bad[i].s, &f);
        CHECK(at == bad[i].at, "'%s': rejected at %ld, want %ld", bad[i].s, at, bad[i].at);
    }
}

static void test_limits(void) {
    struct json_fsm f;
    char deep[2 * JSON_MAX_DEPTH + 8];
    size_t n = 0;
    deep[n++] = '{', deep[n++] = '"', deep[n++] = 'a', deep[n++] = '"', deep[n++] = ':';
    for (int i = 1; i < JSON_MAX_DEPTH; i++) deep[n++] = '[';
    deep[n] = 0;
    CHECK(first_reject(deep, &f) == -1, "depth %d accepted", JSON_MAX_DEPTH);
    CHECK(!json_fsm_feed(&f, "[", 1), "depth beyond %d refused", JSON_MAX_DEPTH);
    char ws[JSON_MAX_WS_RUN + 3];
    memset(ws, ' ', sizeof ws);
    ws[sizeof ws - 1] = 0;
    CHECK(first_reject(ws, &f) == JSON_MAX_WS_RUN, "whitespace runs are bounded");
}

static void test_token_masks(void) {
    llm_err err;
    struct gguf_file g;
    struct tok_vocab *v = NULL;
    const char *path = "../shared/testdata/vocab/ggml-vocab-llama-spm.gguf";
    if (gguf_open(&g, path, &err) || tok_load(&v, &g, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const int32_t n = tok_n_vocab(v);
    struct json_token_table *t = json_token_table_new(v, n, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return;
    struct json_fsm f;
    json_fsm_init(&f);
    CHECK(json_fsm_feed(&f, "{\"a\":", 5), "prefix");
    float *logits = malloc((size_t)n * sizeof *logits);
    for (int32_t i = 0; i < n; i++) logits[i] = 0;
    json_mask_logits(t, &f, logits, n);
    int allowed = 0;
    for (int32_t i = 0; i < n; i++) {
        if (logits[i] == -INFINITY) continue;
        allowed++;
        // Every allowed token keeps the text a JSON prefix, checked byte by byte.
        char piece[256];
        int len = tok_piece(v, i, piece, sizeof piece, false);
        struct json_fsm copy = f;
        CHECK(len > 0 && json_fsm_feed(&copy, piece, (size_t)len), "token %d allowed but breaks the JSON", i);
    }
    CHECK(allowed > 10 && allowed < n / 2, "%d of %d tokens allowed after a colon", allowed, n);
    CHECK(!json_token_ok(t, &f, tok_eos(v)), "end of text is refused inside the object");
    CHECK(!json_token_ok(t, &f, tok_bos(v)), "control tokens are refused");
    free(logits);
    json_token_table_free(t);
    tok_free(v);
    gguf_close(&g);
}

int main(void) {
    test_documents();
    test_limits();
    test_token_masks();
    return CHECK_DONE();
}
