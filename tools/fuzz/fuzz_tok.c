// libFuzzer entry point for the tokenizers (SentencePiece, byte-level BPE with
// its pre-tokenizers, WordPiece). The first input byte picks one of six test
// vocabularies and the encode flags; the rest is the text (any bytes, invalid
// UTF-8 included). Each run checks, and traps on violation:
//   - tok_encode returns >= 0, or -1 with a message; the "needed count" path
//     (small max_out) agrees with the full call and writes the same prefix;
//   - every id is in [0, n_vocab); tok_piece / tok_text accept it;
//   - tok_decode's needed length equals the length it then writes;
//   - byte-level BPE, valid UTF-8, no special parsing: tok_decode gives back
//     the input (after llama.cpp's space clean-up where the vocab asks for it);
//   - the streaming detokenizer always emits valid UTF-8, its "cap too small"
//     answer is exact, and for byte-level BPE on valid UTF-8 it gives back the
//     input exactly.
// Vocabularies: ../shared/testdata/vocab/*.gguf relative to the repo root (or
// TOK_FUZZ_VOCAB_DEFAULT at build time), or the directory in TOK_FUZZ_VOCAB_DIR.
// Loaded once, on the first input. See README.md.
#include "gguf/gguf.h"
#include "tok/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tok: invariant failed (%s:%d): %s [vocab %s, add_special %d, "   \
                            "parse_special %d]\n",                                                 \
                    __FILE__, __LINE__, #c, g_cur_name, g_cur_add, g_cur_parse);                   \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static const char *g_cur_name = "";
static int g_cur_add, g_cur_parse;

// clean: -1 = work it out at load time (unexpected pre-tokenizer name).
static struct {
    const char *file;
    struct tok_vocab *v;
    int n_vocab;
    enum tok_type type;
    int clean; // BPE: tok_decode applies llama.cpp's space clean-up
} g_vocabs[] = {
    {"ggml-vocab-llama-spm.gguf", NULL, 0, 0, 0}, {"ggml-vocab-phi-3.gguf", NULL, 0, 0, 0},
    {"ggml-vocab-gpt-2.gguf", NULL, 0, 0, 0},     {"ggml-vocab-mpt.gguf", NULL, 0, 0, 0},
    {"ggml-vocab-deepseek-coder.gguf", NULL, 0, 0, 0}, {"ggml-vocab-bert-bge.gguf", NULL, 0, 0, 0},
};
#define N_VOCABS ((int)(sizeof g_vocabs / sizeof g_vocabs[0]))

// Strict UTF-8: no overlongs, surrogates, or code points above U+10FFFF.
static bool utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) k = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i < k) return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k;
    }
    return true;
}

// llama.cpp's detokenize clean-up (" ," -> "," etc.), written out-of-place as
// an independent reference. Returns the new length; works on s in place via a copy.
static size_t ref_clean(char *s, size_t n) {
    if (n == 0) return 0;
    char *a = malloc(n);
    if (!a) abort();
    // 1: " ?", " !", " .", " ," lose the space.
    memcpy(a, s, n);
    size_t k = 0;
    s[k++] = a[0];
    for (size_t i = 1; i < n; i++) {
        char x = a[i];
        if (a[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) k--;
        s[k++] = x;
    }
    // 2: " ' " -> "'" (the space after is consumed and cannot start another match).
    n = k;
    memcpy(a, s, n);
    k = 0;
    s[k++] = a[0];
    size_t eaten = (size_t)-1; // index of the consumed space
    for (size_t i = 1; i < n; i++) {
        char x = a[i];
        char prev = (i - 1 == eaten) ? '\0' : a[i - 1];
        if (x == '\'' && i + 1 < n && prev == ' ' && a[i + 1] == ' ') {
            k--;
            s[k++] = x;
            eaten = ++i;
            continue;
        }
        s[k++] = x;
    }
    // 3: " 's", " 'm", " 're", " 've" lose the space.
    n = k;
    memcpy(a, s, n);
    k = 0;
    s[k++] = a[0];
    for (size_t i = 1; i < n; i++) {
        char x = a[i];
        if (a[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = a[i + 1];
            if (x1 == 's' || x1 == 'm') k--;
            else if (i + 2 < n && ((x1 == 'r' && a[i + 2] == 'e') || (x1 == 'v' && a[i + 2] == 'e'))) k--;
        }
        s[k++] = x;
    }
    free(a);
    return k;
}

static struct tok_vocab *load_one(const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct gguf_file f;
    llm_err err = {{0}};
    if (gguf_open(&f, path, &err)) {
        fprintf(stderr, "fuzz_tok: gguf_open %s: %s\n", path, err.msg);
        return NULL;
    }
    struct tok_vocab *v = NULL;
    if (tok_load(&v, &f, &err)) {
        fprintf(stderr, "fuzz_tok: tok_load %s: %s\n", path, err.msg);
        v = NULL;
    }
    gguf_close(&f); // tok_vocab is self-contained
    return v;
}

// Default vocabulary directory; the README's build command bakes in an absolute
// path so the binary works from any directory.
#ifndef TOK_FUZZ_VOCAB_DEFAULT
#define TOK_FUZZ_VOCAB_DEFAULT "../shared/testdata/vocab"
#endif

static void load_all(void) {
    const char *env = getenv("TOK_FUZZ_VOCAB_DIR");
    const char *dir = env && *env ? env : TOK_FUZZ_VOCAB_DEFAULT;
    for (int i = 0; i < N_VOCABS; i++) g_vocabs[i].v = load_one(dir, g_vocabs[i].file);
    for (int i = 0; i < N_VOCABS; i++) {
        struct tok_vocab *v = g_vocabs[i].v;
        if (!v) {
            fprintf(stderr, "fuzz_tok: cannot load the vocabularies from %s; run from the repo root "
                            "or set TOK_FUZZ_VOCAB_DIR\n", dir);
            exit(1);
        }
        g_vocabs[i].n_vocab = tok_n_vocab(v);
        g_vocabs[i].type = tok_get_type(v);
        g_vocabs[i].clean = 0;
        if (g_vocabs[i].type == TOK_TYPE_BPE) {
            // llama.cpp turns the clean-up off for deepseek-llm/-coder/-v3 (and
            // others not among the test vocabularies); gpt-2 and mpt keep it.
            const char *pre = tok_pre_name(v);
            if (!strcmp(pre, "gpt-2") || !strcmp(pre, "mpt")) g_vocabs[i].clean = 1;
            else if (!strncmp(pre, "deepseek-", 9)) g_vocabs[i].clean = 0;
            else {
                fprintf(stderr, "fuzz_tok: %s: unexpected pre-tokenizer '%s'\n", g_vocabs[i].file, pre);
                exit(1);
            }
            if (tok_add_space_prefix(v)) {
                fprintf(stderr, "fuzz_tok: %s: BPE vocab adds a space prefix; round trip not checked\n",
                        g_vocabs[i].file);
                exit(1);
            }
        }
    }
}

static void check_stream(const struct tok_vocab *v, const int32_t *ids, int n, const uint8_t *text,
                         size_t len, bool expect_exact, unsigned small_cap) {
    size_t big = 3 * (tok_max_piece(v) + 8);
    char *out = malloc(big);
    char small[8];
    if (small_cap > sizeof small) small_cap = sizeof small;
    size_t all_cap = 64, all_n = 0;
    char *all = malloc(all_cap);
    if (!out || !all) abort();
    struct tok_stream s;
    tok_stream_init(&s, false);
    for (int i = 0; i < n; i++) {
        struct tok_stream before = s;
        // Alternate: a too-small buffer first (must report the exact need and
        // leave the stream as it was), or straight to a big one.
        int need = -1;
        if (i & 1) {
            int r = tok_stream_push(v, &s, ids[i], small, small_cap);
            if (r >= 0) {
                CHECK((size_t)r <= small_cap);
                if (all_n + (size_t)r > all_cap) {
                    while (all_n + (size_t)r > all_cap) all_cap *= 2;
                    all = realloc(all, all_cap);
                    if (!all) abort();
                }
                memcpy(all + all_n, small, (size_t)r);
                all_n += (size_t)r;
                continue;
            }
            CHECK((size_t)-r > small_cap);
            CHECK(s.n_pending == before.n_pending &&
                  memcmp(s.pending, before.pending, (size_t)s.n_pending) == 0);
            need = -r;
        }
        int r = tok_stream_push(v, &s, ids[i], out, big);
        CHECK(r >= 0 && (size_t)r <= big);
        if (need >= 0) CHECK(r == need);
        CHECK(s.n_pending >= 0 && s.n_pending <= 3);
        if (all_n + (size_t)r > all_cap) {
            while (all_n + (size_t)r > all_cap) all_cap *= 2;
            all = realloc(all, all_cap);
            if (!all) abort();
        }
        memcpy(all + all_n, out, (size_t)r);
        all_n += (size_t)r;
    }
    char fl[24];
    int r = tok_stream_flush(&s, fl, sizeof fl);
    CHECK(r >= 0 && r <= (int)sizeof fl);
    CHECK(s.n_pending == 0);
    if (all_n + (size_t)r > all_cap) {
        all = realloc(all, all_n + (size_t)r);
        if (!all) abort();
    }
    memcpy(all + all_n, fl, (size_t)r);
    all_n += (size_t)r;
    CHECK(utf8_ok((const uint8_t *)all, all_n));
    if (expect_exact) CHECK(all_n == len && (len == 0 || memcmp(all, text, len) == 0));
    free(all);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool loaded;
    if (!loaded) {
        load_all();
        loaded = true;
    }
    if (size == 0) return 0;
    // Byte 0: bits 0-2 vocab (mod 6), bit 3 add_special, bit 4 parse_special,
    // bits 5-7 the small max_out / buffer sizes of the "needed count" calls.
    const uint8_t sel = data[0];
    const int vi = (sel & 7) % N_VOCABS;
    const bool add_special = sel & 8, parse_special = sel & 16;
    const unsigned small = sel >> 5; // 0..7
    const struct tok_vocab *v = g_vocabs[vi].v;
    g_cur_name = g_vocabs[vi].file;
    g_cur_add = add_special;
    g_cur_parse = parse_special;

    // Private copy of exactly len bytes so ASan flags any over-read.
    const size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) return 0;
    if (len) memcpy(text, data + 1, len);

    llm_err err = {{0}};
    int32_t *few = malloc((small ? small : 1) * sizeof *few);
    if (!few) abort();
    int n = tok_encode(v, text, len, add_special, parse_special, few, (int)small, &err);
    if (n < 0) {
        CHECK(n == -1 && err.msg[0]); // every failure must say why
        free(few);
        free(text);
        return 0;
    }
    int32_t *ids = malloc((n ? (size_t)n : 1) * sizeof *ids);
    if (!ids) abort();
    llm_err err2 = {{0}};
    int n2 = tok_encode(v, text, len, add_special, parse_special, ids, n, &err2);
    CHECK(n2 == n);
    for (int i = 0; i < n && i < (int)small; i++) CHECK(few[i] == ids[i]);
    free(few);

    for (int i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < g_vocabs[vi].n_vocab);
        size_t tl;
        CHECK(tok_text(v, ids[i], &tl) != NULL);
        char pb[8];
        int pn = tok_piece(v, ids[i], pb, small, false);
        CHECK(pn >= 0);
        if ((size_t)pn > small) {
            char *pbig = malloc((size_t)pn);
            if (!pbig) abort();
            CHECK(tok_piece(v, ids[i], pbig, (size_t)pn, false) == pn);
            free(pbig);
        }
    }

    // Whole-sequence decode: needed length first, then exactly that much room.
    char dsmall[8];
    int64_t need = tok_decode(v, ids, (size_t)n, dsmall, small, true, false);
    CHECK(need >= 0);
    char *dec = malloc(need > 0 ? (size_t)need : 1);
    if (!dec) abort();
    int64_t got = tok_decode(v, ids, (size_t)n, dec, (size_t)need, true, false);
    CHECK(got == need);

    const bool bpe_exact = g_vocabs[vi].type == TOK_TYPE_BPE && !parse_special &&
                           utf8_ok((const uint8_t *)text, len);
    if (bpe_exact) {
        char *want = malloc(len ? len : 1);
        if (!want) abort();
        if (len) memcpy(want, text, len);
        size_t wn = g_vocabs[vi].clean ? ref_clean(want, len) : len;
        CHECK((size_t)got == wn && (wn == 0 || memcmp(dec, want, wn) == 0));
        free(want);
    }
    free(dec);

    check_stream(v, ids, n, (const uint8_t *)text, len, bpe_exact, small);

    free(ids);
    free(text);
    return 0;
}
