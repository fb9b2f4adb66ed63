// Byte-level BPE (tokenizer.ggml.model = gpt2), as llama.cpp's
// llm_tokenizer_bpe_session:
//  1. pre-tokenize: decode UTF-8 (invalid bytes -> U+FFFD), then split into
//     words by the pre-tokenizer's regexes, applied one after another, each
//     splitting the pieces the previous one left. The three regexes llama.cpp
//     hand-codes (gpt2, llama3, qwen2) are hand-coded here the same way; the
//     others run on the small ECMAScript-subset engine in regex.c, on the same
//     "collapsed" text llama.cpp gives std::regex (code points >= 128 replaced
//     by one byte per Unicode category).
//  2. byte-encode each word (GPT-2 bytes_to_unicode), then merge adjacent
//     symbols by merge rank (lowest first, leftmost on ties).
//  3. emit each symbol's token; a symbol that is no token falls back to its
//     single bytes that are tokens (others are dropped, as llama.cpp does).
#include "regex.h"
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

// Compiles the pre-tokenizer's regexes (hand-written splitters for the three
// llama.cpp also hand-writes).
static int compile_pre(struct tok_vocab *v, llm_err *err);

// ---------------------------------------------------------------------------
// Merges

static uint64_t merge_key(const char *s, size_t n, size_t split) {
    uint64_t h = tok_hash(s, n) ^ ((uint64_t)split * 0x9E3779B97F4A7C15ull);
    return h ? h : 1;
}

int tok_bpe_load(struct tok_vocab *v, const struct gguf_file *f, llm_err *err) {
    if (compile_pre(v, err)) return -1;
    struct gguf_arr m;
    int r = gguf_get_arr(f, "tokenizer.ggml.merges", &m, err);
    if (r < 0) return -1;
    if (r == 0) return err_set(err, "tokenizer.ggml.merges is missing (a gpt2 vocabulary needs it)");
    if (m.type != GGUF_TYPE_STRING) return err_set(err, "tokenizer.ggml.merges is not an array of strings");
    if (m.n > UINT32_MAX / 4) return err_set(err, "tokenizer.ggml.merges is too long");
    size_t total = 0;
    for (uint64_t i = 0; i < m.n; i++) {
        total += gguf_arr_str(&m, i).len;
        if (total > UINT32_MAX) return err_set(err, "tokenizer.ggml.merges: text exceeds 4 GiB");
    }
    uint32_t n = (uint32_t)m.n;
    v->n_merges = n;
    v->merge_text = malloc(total + 1);
    v->merge_off = malloc((n ? n : 1) * sizeof *v->merge_off);
    v->merge_split = malloc((n ? n : 1) * sizeof *v->merge_split);
    v->merge_len = malloc((n ? n : 1) * sizeof *v->merge_len);
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    v->merge_keys = calloc(cap, sizeof *v->merge_keys);
    v->merge_vals = malloc(cap * sizeof *v->merge_vals);
    v->merge_mask = cap - 1;
    if (!v->merge_text || !v->merge_off || !v->merge_split || !v->merge_len || !v->merge_keys || !v->merge_vals)
        return err_set(err, "out of memory loading %u merges", n);
    size_t used = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct gguf_str s = gguf_arr_str(&m, i);
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) return err_set(err, "tokenizer.ggml.merges[%u] is not \"left right\"", i);
        size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
        if (tok_strmap_find(v, s.ptr, ln) < 0 || tok_strmap_find(v, sp + 1, rn) < 0) {
            char buf[96];
            gguf_str_copy(buf, sizeof buf, s);
            return err_set(err, "tokenizer.ggml.merges[%u] \"%s\" names a token that is not in the vocabulary", i, buf);
        }
        v->merge_off[i] = (uint32_t)used;
        v->merge_split[i] = (uint32_t)ln;
        v->merge_len[i] = (uint32_t)(ln + rn);
        memcpy(v->merge_text + used, s.ptr, ln);
        memcpy(v->merge_text + used + ln, sp + 1, rn);
        const char *t = v->merge_text + used;
        used += ln + rn;
        uint64_t key = merge_key(t, ln + rn, ln);
        size_t j = (size_t)key & v->merge_mask;
        for (;;) {
            if (!v->merge_keys[j]) {
                v->merge_keys[j] = key;
                v->merge_vals[j] = i + 1;
                break;
            }
            uint32_t o = v->merge_vals[j] - 1;
            if (v->merge_keys[j] == key && v->merge_split[o] == ln && v->merge_len[o] == ln + rn &&
                memcmp(v->merge_text + v->merge_off[o], t, ln + rn) == 0)
                break; // duplicate: the first rank stays (as llama.cpp's emplace)
            j = (j + 1) & v->merge_mask;
        }
    }
    return 0;
}

// Rank of merging s[0..split) with s[split..n) (contiguous), or -1.
static int64_t merge_rank(const struct tok_vocab *v, const char *s, size_t n, size_t split) {
    if (!v->n_merges) return -1;
    uint64_t key = merge_key(s, n, split);
    size_t j = (size_t)key & v->merge_mask;
    for (;;) {
        uint64_t k = v->merge_keys[j];
        if (!k) return -1;
        if (k == key) {
            uint32_t o = v->merge_vals[j] - 1;
            if (v->merge_split[o] == split && v->merge_len[o] == n && memcmp(v->merge_text + v->merge_off[o], s, n) == 0)
                return o;
        }
        j = (j + 1) & v->merge_mask;
    }
}

int32_t tok_bpe_merge_rank(const struct tok_vocab *v, const char *l, size_t ln, const char *r, size_t rn) {
    char buf[512];
    if (ln + rn > sizeof buf) return -1;
    memcpy(buf, l, ln);
    memcpy(buf + ln, r, rn);
    return (int32_t)merge_rank(v, buf, ln + rn, ln);
}

// ---------------------------------------------------------------------------
// Pre-tokenizers

// The regexes of each pre-tokenizer, applied in order (llama.cpp llm_tokenizer_bpe).
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3                                                                                          \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2                                                                                       \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| " \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_GPT4O                                                                                                 \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|" \
    "'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|"         \
    "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"         \
    "\\s+(?!\\S)|\\s+"
#define RX_TEKKEN                                                                                          \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])(" \
    "[^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"
#define RX_BLOOM " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"

static const char *const *pre_regexes(enum tok_pre pre) {
    static const char *const gpt2[] = {RX_GPT2, NULL};
    static const char *const llama3[] = {RX_LLAMA3, NULL};
    static const char *const qwen2[] = {RX_QWEN2, NULL};
    static const char *const deepseek_llm[] = {
        "[\r\n]",
        "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93"
        "\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c"
        "\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83"
        "\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1"
        "\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-"
        "\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd"
        "\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1"
        "\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-"
        "\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84"
        "\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2"
        "\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83"
        "\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3"
        "\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea"
        "\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-"
        "\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0"
        "\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2"
        "\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
        "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
        "\\s+$",
        RX_CJK,
        "\\p{N}+",
        NULL};
    static const char *const deepseek3[] = {
        "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
        "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        NULL};
    static const char *const deepseek_coder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RX_CJK, "\\p{N}", NULL};
    static const char *const falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]", NULL};
    static const char *const starcoder[] = {"\\p{N}", RX_GPT2, NULL};
    static const char *const gpt4o[] = {RX_GPT4O, NULL};
    static const char *const tekken[] = {RX_TEKKEN, NULL};
    static const char *const bloom[] = {RX_BLOOM, NULL};
    static const char *const viking[] = {RX_BLOOM, "\\p{N}", NULL};
    static const char *const chameleon[] = {"<sentinel:[0-9]+>",
                                            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                                            "([\\t\\n]|    |  )",
                                            "\\p{N}",
                                            "[\\p{P}!-/:-@\\[-`{-~]",
                                            RX_GPT2,
                                            NULL};
    static const char *const deflt[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
    switch (pre) {
    case TOK_PRE_LLAMA3:
    case TOK_PRE_DBRX:
    case TOK_PRE_SMAUG:
    case TOK_PRE_CHATGLM4: return llama3;
    case TOK_PRE_DEEPSEEK_LLM: return deepseek_llm;
    case TOK_PRE_DEEPSEEK3_LLM: return deepseek3;
    case TOK_PRE_DEEPSEEK_CODER: return deepseek_coder;
    case TOK_PRE_FALCON: return falcon;
    case TOK_PRE_STARCODER:
    case TOK_PRE_REFACT:
    case TOK_PRE_COMMAND_R:
    case TOK_PRE_SMOLLM:
    case TOK_PRE_CODESHELL:
    case TOK_PRE_EXAONE:
    case TOK_PRE_MINERVA: return starcoder;
    case TOK_PRE_GPT2:
    case TOK_PRE_MPT:
    case TOK_PRE_OLMO:
    case TOK_PRE_JAIS: return gpt2;
    case TOK_PRE_STABLELM2:
    case TOK_PRE_QWEN2: return qwen2;
    case TOK_PRE_PORO:
    case TOK_PRE_BLOOM:
    case TOK_PRE_GPT3_FINNISH: return bloom;
    case TOK_PRE_VIKING: return viking;
    case TOK_PRE_TEKKEN: return tekken;
    case TOK_PRE_CHAMELEON: return chameleon;
    case TOK_PRE_GPT4O: return gpt4o;
    case TOK_PRE_DEFAULT:
    case TOK_PRE_COUNT: break;
    }
    return deflt;
}

static int compile_pre(struct tok_vocab *v, llm_err *err) {
    const char *const *rx = pre_regexes(v->pre);
    for (size_t r = 0; rx[r]; r++) {
        if (v->n_rx == (int)(sizeof v->rx / sizeof v->rx[0])) return err_set(err, "too many pre-tokenizer regexes");
        int i = v->n_rx++;
        const char *e = rx[r];
        v->rx_custom[i] = !strcmp(e, RX_GPT2) ? 1 : !strcmp(e, RX_LLAMA3) ? 2 : !strcmp(e, RX_QWEN2) ? 3 : 0;
        v->rx[i] = NULL;
        if (!v->rx_custom[i]) {
            v->rx[i] = tok_regex_compile(e, &v->rx_kind[i], err);
            if (!v->rx[i]) return err_prefix(err, "pre-tokenizer '%s'", v->pre_name);
        }
    }
    return 0;
}

// Growable list of piece lengths (in code points).
struct lens {
    size_t *v;
    size_t n, cap;
    int oom;
};

static void lens_push(struct lens *l, size_t x) {
    if (!x) return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            l->oom = 1;
            return;
        }
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

struct cpt_text {
    const uint32_t *cp;
    const uint16_t *fl;
};

#define OOR 0xFFFFFFFFu

static size_t add_piece(struct lens *out, size_t *prev_end, size_t end) {
    size_t len = end - *prev_end;
    lens_push(out, len);
    *prev_end = end;
    return len;
}

// The hand-written splitters of llama.cpp (unicode_regex_split_custom_*), on [a, b).
enum custom_kind { CUSTOM_GPT2, CUSTOM_LLAMA3, CUSTOM_QWEN2 };

static inline uint32_t cpt_at(const struct cpt_text *t, size_t a, size_t b, size_t p) {
    return p >= a && p < b ? t->cp[p] : OOR;
}
static inline uint16_t fl_at(const struct cpt_text *t, size_t a, size_t b, size_t p) {
    return p >= a && p < b ? t->fl[p] : 0;
}

static void split_custom(const struct cpt_text *t, size_t a, size_t b, enum custom_kind kind, struct lens *out) {
#define CPT(p) cpt_at(t, a, b, (p))
#define FL(p) fl_at(t, a, b, (p))
#define IS_WS(f) ((f) & TOK_CPT_WHITESPACE)
#define IS_L(f) ((f) & TOK_CPT_LETTER)
#define IS_N(f) ((f) & TOK_CPT_NUMBER)
    size_t prev_end = a;
#define ADD(end) add_piece(out, &prev_end, (end))
    for (size_t pos = a; pos < b;) {
        uint32_t cpt = CPT(pos);
        uint16_t flags = FL(pos);
        if (cpt == '\'' && pos + 1 < b) {
            uint32_t n1 = CPT(pos + 1);
            if (kind != CUSTOM_GPT2) n1 = tok_cpt_tolower(n1);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += ADD(pos + 2);
                continue;
            }
            if (pos + 2 < b) {
                uint32_t n2 = CPT(pos + 2);
                if (kind != CUSTOM_GPT2) n2 = tok_cpt_tolower(n2);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += ADD(pos + 3);
                    continue;
                }
            }
        }
        if (kind == CUSTOM_GPT2) {
            uint16_t f2 = cpt == ' ' ? FL(pos + 1) : flags;
            if (IS_L(f2)) { // <space>?\p{L}+
                pos += cpt == ' ';
                while (IS_L(f2)) f2 = FL(++pos);
                ADD(pos);
                continue;
            }
            if (IS_N(f2)) { // <space>?\p{N}+
                pos += cpt == ' ';
                while (IS_N(f2)) f2 = FL(++pos);
                ADD(pos);
                continue;
            }
            if (!(IS_WS(f2) | IS_L(f2) | IS_N(f2)) && f2) { // <space>?[^\s\p{L}\p{N}]+
                pos += cpt == ' ';
                while (!(IS_WS(f2) | IS_L(f2) | IS_N(f2)) && f2) f2 = FL(++pos);
                ADD(pos);
                continue;
            }
            size_t nws = 0;
            while (IS_WS(FL(pos + nws))) nws++;
            if (nws > 1 && CPT(pos + nws) != OOR) { // \s+(?!\S)
                pos += nws - 1;
                ADD(pos);
                continue;
            }
            if (nws > 0) {
                pos += nws;
                ADD(pos);
                continue;
            }
            ADD(++pos);
            continue;
        }
        // llama3 / qwen2
        if (!(cpt == '\r' || cpt == '\n' || IS_N(flags))) { // [^\r\n\p{L}\p{N}]?\p{L}+
            if (IS_L(flags) || IS_L(FL(pos + 1))) {
                pos++;
                while (IS_L(FL(pos))) pos++;
                ADD(pos);
                continue;
            }
        }
        if (IS_N(flags)) {
            if (kind == CUSTOM_LLAMA3) { // \p{N}{1,3}
                size_t ini = pos;
                while (IS_N(FL(pos))) {
                    if (++pos - ini >= 3) {
                        ADD(pos);
                        ini = pos;
                    }
                }
                ADD(pos);
            } else { // \p{N}
                pos++;
                ADD(pos);
            }
            continue;
        }
        { // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            uint16_t f2 = cpt == ' ' ? FL(pos + 1) : flags;
            if (!(IS_WS(f2) | IS_L(f2) | IS_N(f2)) && flags) {
                pos += cpt == ' ';
                while (!(IS_WS(f2) | IS_L(f2) | IS_N(f2)) && f2) f2 = FL(++pos);
                uint32_t c2 = CPT(pos);
                while (c2 == '\r' || c2 == '\n') c2 = CPT(++pos);
                ADD(pos);
                continue;
            }
        }
        size_t nws = 0, last_rn = 0;
        while (IS_WS(FL(pos + nws))) {
            uint32_t c2 = CPT(pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { // \s*[\r\n]+
            pos = last_rn;
            ADD(pos);
            continue;
        }
        if (nws > 1 && CPT(pos + nws) != OOR) { // \s+(?!\S)
            pos += nws - 1;
            ADD(pos);
            continue;
        }
        if (nws > 0) { // \s+
            pos += nws;
            ADD(pos);
            continue;
        }
        ADD(++pos);
    }
#undef CPT
#undef FL
#undef IS_WS
#undef IS_L
#undef IS_N
#undef ADD
}

// Collapsed text for std::regex emulation: ASCII stays, whitespace -> 0x0B,
// letters/numbers/punctuation/marks/symbols -> 0xD2/0xD1/0xD3/0xD4/0xD5, else 0xD0.
static uint32_t collapse(uint32_t cp, uint16_t fl) {
    if (cp < 128) return cp;
    if (fl & TOK_CPT_WHITESPACE) return 0x0B;
    switch (fl & 0xFF) {
    case TOK_CPT_NUMBER: return 0xD1;
    case TOK_CPT_LETTER: return 0xD2;
    case TOK_CPT_PUNCTUATION: return 0xD3;
    case TOK_CPT_ACCENT_MARK: return 0xD4;
    case TOK_CPT_SYMBOL: return 0xD5;
    default: return 0xD0;
    }
}

// Splits the code points into words; returns the word lengths (in code points).
static int pre_tokenize(const struct tok_vocab *v, const struct cpt_text *t, size_t n, struct lens *out,
                        llm_err *err) {
    struct lens cur = {0}, next = {0};
    lens_push(&cur, n);
    uint32_t *alt = NULL; // collapsed or wide text, built on demand
    int alt_kind = 0;     // TOK_REGEX_COLLAPSED or TOK_REGEX_WIDE
    int rc = 0;
    for (int r = 0; r < v->n_rx && !rc; r++) {
        next.n = 0;
        int custom = v->rx_custom[r];
        const struct tok_regex *re = v->rx[r];
        if (!custom) {
            int kind = v->rx_kind[r];
            if (!alt) alt = malloc((n ? n : 1) * sizeof *alt);
            if (!alt) {
                rc = err_set(err, "out of memory");
                break;
            }
            if (alt_kind != kind) {
                for (size_t i = 0; i < n; i++)
                    alt[i] = kind == TOK_REGEX_COLLAPSED ? collapse(t->cp[i], t->fl[i])
                             : (t->cp[i] > 0x7F && (t->fl[i] & TOK_CPT_WHITESPACE)) ? 0x0B : t->cp[i];
                alt_kind = kind;
            }
        }
        size_t start = 0;
        for (size_t i = 0; i < cur.n; i++) {
            size_t a = start, b = start + cur.v[i];
            start = b;
            if (custom) {
                split_custom(t, a, b, (enum custom_kind)(custom - 1), &next);
                continue;
            }
            // regex_iterator: each match is a piece, and so is the text between matches.
            size_t p = a, prev = a;
            while (p <= b) {
                size_t ms, me;
                if (!tok_regex_search(re, alt, a, b, p, &ms, &me)) break;
                if (ms > prev) lens_push(&next, ms - prev);
                lens_push(&next, me - ms);
                prev = me;
                p = me > ms ? me : me + 1;
            }
            if (b > prev) lens_push(&next, b - prev);
        }
        if (next.oom) rc = err_set(err, "out of memory");
        struct lens tmp = cur;
        cur = next;
        next = tmp;
    }
    free(alt);
    free(next.v);
    if (cur.oom && !rc) rc = err_set(err, "out of memory");
    if (rc) {
        free(cur.v);
        return -1;
    }
    *out = cur;
    return 0;
}

// ---------------------------------------------------------------------------
// Merging

struct bpe_sym {
    int32_t prev, next;
    uint32_t off, n;
};

struct bpe_bigram {
    uint32_t rank;
    int32_t left, right;
    uint32_t size;
};

static bool bg_before(const struct bpe_bigram *a, const struct bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

struct bpe_work {
    struct bpe_sym *sym;
    size_t sym_cap;
    struct bpe_bigram *heap;
    size_t heap_n, heap_cap;
    char *word;
    size_t word_cap;
};

static int heap_push(struct bpe_work *w, struct bpe_bigram b) {
    if (w->heap_n == w->heap_cap) {
        size_t nc = w->heap_cap ? w->heap_cap * 2 : 64;
        struct bpe_bigram *nh = realloc(w->heap, nc * sizeof *nh);
        if (!nh) return -1;
        w->heap = nh;
        w->heap_cap = nc;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
    return 0;
}

static struct bpe_bigram heap_pop(struct bpe_work *w) {
    struct bpe_bigram top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t c = l;
        if (l + 1 < n && bg_before(&w->heap[l + 1], &w->heap[l])) c = l + 1;
        if (!bg_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int add_bigram(const struct tok_vocab *v, struct bpe_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const struct bpe_sym *a = &w->sym[l], *b = &w->sym[r];
    int64_t rank = merge_rank(v, w->word + a->off, a->n + b->n, a->n);
    if (rank < 0) return 0;
    return heap_push(w, (struct bpe_bigram){(uint32_t)rank, l, r, a->n + b->n});
}

static int bpe_word(const struct tok_vocab *v, struct bpe_work *w, size_t len, struct tok_out *o) {
    const char *word = w->word;
    if (v->ignore_merges) {
        int32_t id = tok_strmap_find(v, word, len);
        if (id >= 0) {
            tok_emit(o, id);
            return 0;
        }
    }
    if (len > w->sym_cap) {
        struct bpe_sym *ns = realloc(w->sym, len * sizeof *ns);
        if (!ns) return -1;
        w->sym = ns;
        w->sym_cap = len;
    }
    int32_t ns = 0;
    for (size_t off = 0; off < len;) {
        size_t n = tok_utf8_len((uint8_t)word[off]);
        if (n > len - off) n = len - off;
        w->sym[ns] = (struct bpe_sym){ns - 1, -1, (uint32_t)off, (uint32_t)n};
        off += n;
        if (off < len) w->sym[ns].next = ns + 1;
        ns++;
    }
    w->heap_n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (add_bigram(v, w, i - 1, i)) return -1;
    while (w->heap_n) {
        struct bpe_bigram b = heap_pop(w);
        struct bpe_sym *l = &w->sym[b.left], *r = &w->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = b.left;
        if (add_bigram(v, w, l->prev, b.left) || add_bigram(v, w, b.left, l->next)) return -1;
    }
    for (int32_t i = 0; i != -1 && ns > 0; i = w->sym[i].next) {
        const struct bpe_sym *s = &w->sym[i];
        if (s->n == 0) continue;
        int32_t id = tok_strmap_find(v, word + s->off, s->n);
        if (id >= 0) {
            tok_emit(o, id);
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t b = tok_strmap_find(v, word + s->off + j, 1);
            if (b >= 0) tok_emit(o, b);
        }
    }
    return 0;
}

int tok_bpe_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o, llm_err *err) {
    if (len == 0) return 0;
    uint32_t *cp = malloc(len * sizeof *cp);
    uint16_t *fl = malloc(len * sizeof *fl);
    struct bpe_work w = {0};
    struct lens words = {0};
    int rc = 0;
    if (!cp || !fl) {
        rc = err_set(err, "out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t off = 0; off < len;) {
        uint32_t c = tok_utf8_next(text, len, &off);
        if (c > 0x10FFFF) c = 0xFFFD; // llama.cpp would throw here
        cp[n] = c;
        fl[n] = tok_cpt_flags(c);
        n++;
    }
    struct cpt_text t = {cp, fl};
    if (pre_tokenize(v, &t, n, &words, err)) {
        rc = -1;
        goto done;
    }
    static char enc[256][4];
    static uint8_t enc_len[256];
    static int enc_ready;
    if (!__atomic_load_n(&enc_ready, __ATOMIC_ACQUIRE)) {
        for (int b = 0; b < 256; b++) enc_len[b] = (uint8_t)tok_bpe_byte_to_utf8((uint8_t)b, enc[b]);
        __atomic_store_n(&enc_ready, 1, __ATOMIC_RELEASE);
    }
    size_t start = 0;
    for (size_t i = 0; i < words.n && !rc; i++) {
        size_t need = words.v[i] * 8;
        if (need > w.word_cap) {
            char *nw = realloc(w.word, need);
            if (!nw) {
                rc = err_set(err, "out of memory");
                break;
            }
            w.word = nw;
            w.word_cap = need;
        }
        size_t k = 0;
        for (size_t j = start; j < start + words.v[i]; j++) {
            char u[4];
            size_t ul = tok_utf8_put(cp[j], u);
            for (size_t q = 0; q < ul; q++) {
                uint8_t b = (uint8_t)u[q];
                memcpy(w.word + k, enc[b], enc_len[b]);
                k += enc_len[b];
            }
        }
        start += words.v[i];
        if (bpe_word(v, &w, k, o)) rc = err_set(err, "out of memory");
    }
done:
    free(cp);
    free(fl);
    free(words.v);
    free(w.sym);
    free(w.heap);
    free(w.word);
    return rc;
}
