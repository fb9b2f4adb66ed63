// Vocabulary loading, special-token handling, encode dispatch, pieces and
// detokenization. Behaviour follows llama.cpp's llama_vocab (load, special
// token partitioning, token_to_piece, detokenize) so the ids are identical.
#include "regex.h"
#include "tok_internal.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY(s) "tokenizer.ggml." s

// ---------------------------------------------------------------------------
// Hashing

uint64_t tok_hash(const char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int32_t tok_strmap_find(const struct tok_vocab *v, const char *s, size_t n) {
    size_t i = (size_t)tok_hash(s, n) & v->map.mask;
    for (;;) {
        uint32_t e = v->map.slots[i];
        if (!e) return -1;
        uint32_t id = e - 1;
        if (v->len[id] == n && memcmp(v->text + v->off[id], s, n) == 0) return (int32_t)id;
        i = (i + 1) & v->map.mask;
    }
}

// Inserts id, replacing an earlier id with the same text (token_to_id[word] = i).
static void strmap_put(struct tok_vocab *v, uint32_t id) {
    const char *s = v->text + v->off[id];
    size_t n = v->len[id];
    size_t i = (size_t)tok_hash(s, n) & v->map.mask;
    for (;;) {
        uint32_t e = v->map.slots[i];
        if (!e) {
            v->map.slots[i] = id + 1;
            return;
        }
        uint32_t o = e - 1;
        if (v->len[o] == n && memcmp(v->text + v->off[o], s, n) == 0) {
            v->map.slots[i] = id + 1;
            return;
        }
        i = (i + 1) & v->map.mask;
    }
}

// ---------------------------------------------------------------------------
// Special-token trie

static int64_t trie_child(const struct tok_trie *t, uint32_t node, uint8_t c) {
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mask;
    for (;;) {
        uint64_t k = t->keys[i];
        if (!k) return -1;
        if (k == key) return t->vals[i];
        i = (i + 1) & t->mask;
    }
}

static uint32_t trie_add_child(struct tok_trie *t, uint32_t node, uint8_t c) {
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mask;
    for (;;) {
        uint64_t k = t->keys[i];
        if (!k) {
            t->keys[i] = key;
            t->vals[i] = t->n_nodes++;
            return t->vals[i];
        }
        if (k == key) return t->vals[i];
        i = (i + 1) & t->mask;
    }
}

struct spec_ent {
    int32_t id;
    uint32_t len;
};

static int spec_cmp(const void *a, const void *b) {
    const struct spec_ent *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; // longer first
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_trie(struct tok_vocab *v, llm_err *err) {
    const uint32_t special = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
    size_t n_spec = 0, total = 1;
    for (int32_t i = 0; i < v->n; i++)
        if (v->attr[i] & special) {
            n_spec++;
            total += v->len[i];
        }
    struct tok_trie *t = &v->trie;
    struct spec_ent *ents = malloc((n_spec ? n_spec : 1) * sizeof *ents);
    size_t cap = pow2_at_least(total * 2);
    t->keys = calloc(cap, sizeof *t->keys);
    t->vals = malloc(cap * sizeof *t->vals);
    t->tok_any = malloc(total * sizeof *t->tok_any);
    t->tok_user = malloc(total * sizeof *t->tok_user);
    t->rank_any = malloc(total * sizeof *t->rank_any);
    t->rank_user = malloc(total * sizeof *t->rank_user);
    if (!ents || !t->keys || !t->vals || !t->tok_any || !t->tok_user || !t->rank_any || !t->rank_user) {
        free(ents);
        return err_set(err, "out of memory building the special-token table");
    }
    t->mask = cap - 1;
    t->n_nodes = 1;
    memset(t->first, 0, sizeof t->first);
    for (size_t i = 0; i < total; i++) {
        t->tok_any[i] = t->tok_user[i] = -1;
        t->rank_any[i] = t->rank_user[i] = UINT32_MAX;
    }
    size_t k = 0;
    for (int32_t i = 0; i < v->n; i++)
        if (v->attr[i] & special) ents[k++] = (struct spec_ent){i, v->len[i]};
    // llama.cpp sorts the special tokens longest first and splits the text on
    // each in that order; the rank reproduces that order.
    qsort(ents, n_spec, sizeof *ents, spec_cmp);
    for (size_t r = 0; r < n_spec; r++) {
        int32_t id = ents[r].id;
        const uint8_t *s = (const uint8_t *)v->text + v->off[id];
        uint32_t node = 0;
        for (uint32_t j = 0; j < v->len[id]; j++) node = trie_add_child(t, node, s[j]);
        t->first[s[0]] = 1;
        if (t->tok_any[node] < 0) {
            t->tok_any[node] = id;
            t->rank_any[node] = (uint32_t)r;
        }
        if (!(v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) && t->tok_user[node] < 0) {
            t->tok_user[node] = id;
            t->rank_user[node] = (uint32_t)r;
        }
    }
    free(ents);
    return 0;
}

// ---------------------------------------------------------------------------
// Pieces (llama_vocab::token_to_piece with special = true)

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Byte of a "<0xNN>" token (strtol of the two characters after "<0x").
static int byte_token_value(const char *s, size_t n) {
    if (n < 4) return 0;
    int hi = hexval(s[3]);
    if (hi < 0) return 0;
    int lo = n > 4 ? hexval(s[4]) : -1;
    return lo < 0 ? hi : hi * 16 + lo;
}

// Writes the piece of token id to buf; returns its full length (writes only if it fits in cap,
// which is always at least the token's text length).
static size_t make_piece(const struct tok_vocab *v, int32_t id, char *buf, size_t cap) {
    const uint32_t a = v->attr[id];
    const char *s = v->text + v->off[id];
    size_t n = v->len[id];
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        memcpy(buf, s, n);
        return n;
    }
    if (a & TOK_ATTR_NORMAL) {
        if (v->type == TOK_TYPE_BPE && !v->escape_whitespaces) return tok_bpe_decode_text(s, n, buf, cap);
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                buf[o++] = ' ';
                i += 3;
            } else {
                buf[o++] = s[i++];
            }
        }
        return o;
    }
    if (a & TOK_ATTR_BYTE) {
        if (v->type == TOK_TYPE_WPM) return 0;
        buf[0] = (char)byte_token_value(s, n);
        return 1;
    }
    return 0;
}

static int build_pieces(struct tok_vocab *v, llm_err *err) {
    size_t total = 0;
    for (int32_t i = 0; i < v->n; i++) total += v->len[i];
    // A byte-level BPE piece is never longer than its text; "[UNK_BYTE_0x..]"
    // renderings can be, so allow generously and grow if needed.
    size_t cap = total + 64 + (size_t)v->n;
    v->pieces = malloc(cap);
    v->poff = malloc((size_t)v->n * sizeof *v->poff);
    v->plen = malloc((size_t)v->n * sizeof *v->plen);
    size_t tmp_cap = v->max_token_len + 256;
    char *tmp = malloc(tmp_cap);
    if (!v->pieces || !v->poff || !v->plen || !tmp) {
        free(tmp);
        return err_set(err, "out of memory building token pieces");
    }
    size_t used = 0;
    v->max_piece = 0;
    for (int32_t i = 0; i < v->n; i++) {
        size_t pn = make_piece(v, i, tmp, tmp_cap);
        if (pn > tmp_cap) {
            char *nt = realloc(tmp, pn);
            if (!nt) {
                free(tmp);
                return err_set(err, "out of memory building token pieces");
            }
            tmp = nt;
            tmp_cap = pn;
            make_piece(v, i, tmp, tmp_cap);
        }
        if (used + pn + 1 > cap) {
            size_t ncap = cap * 2 + pn + 1;
            char *np = realloc(v->pieces, ncap);
            if (!np) {
                free(tmp);
                return err_set(err, "out of memory building token pieces");
            }
            v->pieces = np;
            cap = ncap;
        }
        if (used > UINT32_MAX - pn - 1) {
            free(tmp);
            return err_set(err, "token pieces exceed 4 GiB");
        }
        memcpy(v->pieces + used, tmp, pn);
        v->pieces[used + pn] = 0;
        v->poff[i] = (uint32_t)used;
        v->plen[i] = (uint32_t)pn;
        used += pn + 1;
        if (pn > v->max_piece) v->max_piece = pn;
    }
    free(tmp);
    return 0;
}

// ---------------------------------------------------------------------------
// Loading

static bool str_is(struct gguf_str s, const char *c) { return gguf_str_eq(s, c); }

struct pre_name {
    const char *name;
    enum tok_pre pre;
    signed char clean_spaces;  // -1 keep default (true for BPE)
    bool ignore_merges, add_bos;
};

// tokenizer.ggml.pre names and their settings (llama.cpp llama_vocab::impl::load).
static const struct pre_name PRE_NAMES[] = {
    {"default", TOK_PRE_DEFAULT, -1, false, false},
    {"llama3", TOK_PRE_LLAMA3, -1, true, true},
    {"llama-v3", TOK_PRE_LLAMA3, -1, true, true},
    {"llama-bpe", TOK_PRE_LLAMA3, -1, true, true},
    {"falcon3", TOK_PRE_LLAMA3, -1, true, true},
    {"falcon-h1", TOK_PRE_LLAMA3, -1, true, true},
    {"pixtral", TOK_PRE_LLAMA3, -1, true, true},
    {"midm-2.0", TOK_PRE_LLAMA3, -1, true, true},
    {"lfm2", TOK_PRE_LLAMA3, -1, true, true},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, 0, false, false},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, 0, false, false},
    {"deepseek-v3", TOK_PRE_DEEPSEEK3_LLM, 0, false, false},
    {"falcon", TOK_PRE_FALCON, -1, false, false},
    {"mpt", TOK_PRE_MPT, -1, false, false},
    {"starcoder", TOK_PRE_STARCODER, -1, false, false},
    {"gpt-2", TOK_PRE_GPT2, -1, false, false},
    {"phi-2", TOK_PRE_GPT2, -1, false, false},
    {"jina-es", TOK_PRE_GPT2, -1, false, false},
    {"jina-de", TOK_PRE_GPT2, -1, false, false},
    {"gigachat", TOK_PRE_GPT2, -1, false, false},
    {"jina-v2-es", TOK_PRE_GPT2, -1, false, false},
    {"jina-v2-de", TOK_PRE_GPT2, -1, false, false},
    {"a.x-4.0", TOK_PRE_GPT2, -1, false, false},
    {"mellum", TOK_PRE_GPT2, -1, false, false},
    {"modern-bert", TOK_PRE_GPT2, -1, false, false},
    {"exaone4", TOK_PRE_GPT2, -1, false, false},
    {"jina-v1-en", TOK_PRE_GPT2, -1, false, false},   // + add_sep
    {"jina-v2-code", TOK_PRE_GPT2, -1, false, false}, // + add_sep
    {"roberta-bpe", TOK_PRE_GPT2, -1, false, false},  // + add_sep
    {"refact", TOK_PRE_REFACT, -1, false, false},
    {"command-r", TOK_PRE_COMMAND_R, 0, false, false},
    {"qwen2", TOK_PRE_QWEN2, 0, false, false},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, 0, false, false},
    {"kormo", TOK_PRE_QWEN2, 0, false, false},
    {"f2llmv2", TOK_PRE_QWEN2, 0, false, false},
    {"megrez", TOK_PRE_QWEN2, -1, false, false},
    {"stablelm2", TOK_PRE_STABLELM2, -1, false, false},
    {"olmo", TOK_PRE_OLMO, -1, false, false},
    {"dbrx", TOK_PRE_DBRX, -1, false, false},
    {"smaug-bpe", TOK_PRE_SMAUG, -1, false, false},
    {"poro-chat", TOK_PRE_PORO, 0, false, false},
    {"chatglm-bpe", TOK_PRE_CHATGLM4, -1, false, false}, // bos = none
    {"glm4", TOK_PRE_CHATGLM4, -1, true, false},         // bos = none
    {"glm5", TOK_PRE_CHATGLM4, -1, true, false},         // bos = none
    {"viking", TOK_PRE_VIKING, 0, false, false},
    {"jais", TOK_PRE_JAIS, -1, false, false},
    {"tekken", TOK_PRE_TEKKEN, 0, true, true},
    {"smollm", TOK_PRE_SMOLLM, 0, false, false},
    {"codeshell", TOK_PRE_CODESHELL, -1, false, false},
    {"bloom", TOK_PRE_BLOOM, -1, false, false},
    {"gpt3-finnish", TOK_PRE_GPT3_FINNISH, -1, false, false},
    {"exaone", TOK_PRE_EXAONE, -1, false, false},
    {"chameleon", TOK_PRE_CHAMELEON, 0, false, true},
    {"minerva-7b", TOK_PRE_MINERVA, -1, false, false},
    {"gpt-4o", TOK_PRE_GPT4O, 0, false, false},
    {"llama4", TOK_PRE_GPT4O, 0, false, false},
    {"kanana2", TOK_PRE_GPT4O, 0, false, false},
    {"talkie", TOK_PRE_GPT4O, 0, false, false},
};

static int get_id_key(const struct gguf_file *f, const char *key, int32_t n, int32_t *id, llm_err *err) {
    int64_t x;
    int r = gguf_get_int(f, key, &x, err);
    if (r < 0) return -1;
    if (r == 0) return 0;
    if (x < 0 || x >= n)
        return err_set(err, "%s = %lld is out of range (the vocabulary has %d tokens)", key, (long long)x, n);
    *id = (int32_t)x;
    return 0;
}

// First token (by list order) among `texts` that exists: llama.cpp's
// text-based detection of EOT/EOM/FIM tokens when the file does not name them.
static int32_t find_first(const struct tok_vocab *v, const char *const *texts) {
    for (size_t i = 0; texts[i]; i++) {
        int32_t id = tok_strmap_find(v, texts[i], strlen(texts[i]));
        if (id >= 0) return id;
    }
    return -1;
}

static void detect_special(struct tok_vocab *v, int32_t *slot, const char *const *texts) {
    if (*slot >= 0) return;
    int32_t id = find_first(v, texts);
    if (id >= 0) {
        *slot = id;
        v->attr[id] |= TOK_ATTR_CONTROL;
    }
}

static bool eog_has(const struct tok_vocab *v, int32_t id) {
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return true;
    return false;
}

static void eog_add(struct tok_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n || eog_has(v, id)) return;
    v->eog[v->n_eog++] = id; // capacity checked by the caller (bounded list)
}

static void eog_remove(struct tok_vocab *v, int32_t id) {
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) {
            v->eog[i] = v->eog[--v->n_eog];
            return;
        }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && (p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]) == needle[i]) i++;
        if (i == n) return true;
    }
    return false;
}

static void set_attr_by_text(struct tok_vocab *v, const char *text, uint32_t bit, bool on) {
    int32_t id = tok_strmap_find(v, text, strlen(text));
    if (id < 0) return;
    if (on) v->attr[id] |= bit;
    else v->attr[id] &= ~bit;
}

static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>", NULL};
static const char *const EOM_TEXTS[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_TEXTS[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
                                            "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const FIM_SUF_TEXTS[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
                                            "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const FIM_MID_TEXTS[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
                                            "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const FIM_PAD_TEXTS[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const FIM_REP_TEXTS[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                            "<reponame>", NULL};
static const char *const FIM_SEP_TEXTS[] = {"<|file_sep|>", NULL};
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};

static int load_tokens(struct tok_vocab *v, const struct gguf_file *f, llm_err *err) {
    struct gguf_arr toks;
    int r = gguf_get_arr(f, KEY("tokens"), &toks, err);
    if (r < 0) return -1;
    if (r == 0) return err_set(err, "%s is missing: not a vocabulary", KEY("tokens"));
    if (toks.type != GGUF_TYPE_STRING) return err_set(err, "%s is not an array of strings", KEY("tokens"));
    if (toks.n == 0) return err_set(err, "%s is empty", KEY("tokens"));
    if (toks.n > INT32_MAX / 2) return err_set(err, "%s has too many tokens (%llu)", KEY("tokens"),
                                                   (unsigned long long)toks.n);
    const int32_t n = (int32_t)toks.n;
    v->n = n;

    struct gguf_arr scores = {0}, types = {0};
    bool have_scores = false, have_types = false;
    r = gguf_get_arr(f, KEY("scores"), &scores, err);
    if (r < 0) return -1;
    if (r > 0) {
        if (scores.type != GGUF_TYPE_FLOAT32 && scores.type != GGUF_TYPE_INT32)
            return err_set(err, "%s must be float32 or int32", KEY("scores"));
        if (scores.n < toks.n)
            return err_set(err, "%s has %llu entries for %d tokens", KEY("scores"),
                           (unsigned long long)scores.n, n);
        have_scores = true;
    }
    r = gguf_get_arr(f, KEY("token_type"), &types, err);
    if (r < 0) return -1;
    if (r > 0) {
        if (types.type != GGUF_TYPE_INT32) return err_set(err, "%s must be int32", KEY("token_type"));
        if (types.n < toks.n)
            return err_set(err, "%s has %llu entries for %d tokens", KEY("token_type"),
                           (unsigned long long)types.n, n);
        have_types = true;
    }

    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s = gguf_arr_str(&toks, (uint64_t)i);
        total += (s.len ? s.len : 24) + 1;
        if (total > UINT32_MAX) return err_set(err, "%s: token texts exceed 4 GiB", KEY("tokens"));
    }
    v->text = malloc(total);
    v->off = malloc((size_t)n * sizeof *v->off);
    v->len = malloc((size_t)n * sizeof *v->len);
    v->score = malloc((size_t)n * sizeof *v->score);
    v->attr = malloc((size_t)n * sizeof *v->attr);
    size_t cap = pow2_at_least((size_t)n * 2);
    v->map.slots = calloc(cap, sizeof *v->map.slots);
    v->map.mask = cap - 1;
    if (!v->text || !v->off || !v->len || !v->score || !v->attr || !v->map.slots)
        return err_set(err, "out of memory loading %d tokens", n);

    size_t used = 0;
    v->max_token_len = 0;
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s = gguf_arr_str(&toks, (uint64_t)i);
        v->off[i] = (uint32_t)used;
        if (s.len == 0) { // llama.cpp renames empty tokens
            int k = snprintf(v->text + used, 24, "[EMPTY_%d]", (int)i);
            v->len[i] = (uint32_t)k;
        } else {
            memcpy(v->text + used, s.ptr, s.len);
            v->len[i] = (uint32_t)s.len;
        }
        used += v->len[i];
        v->text[used++] = 0;
        if (v->len[i] > v->max_token_len) v->max_token_len = v->len[i];
        v->score[i] = have_scores ? gguf_arr_f32(&scores, (uint64_t)i) : 0.0f;
        uint32_t a = TOK_ATTR_NORMAL;
        if (have_types) {
            switch (gguf_arr_int(&types, (uint64_t)i)) {
            case 1: a = TOK_ATTR_NORMAL; break;
            case 2: a = TOK_ATTR_UNKNOWN; break;
            case 3: a = TOK_ATTR_CONTROL; break;
            case 4: a = TOK_ATTR_USER_DEFINED; break;
            case 5: a = TOK_ATTR_UNUSED; break;
            case 6: a = TOK_ATTR_BYTE; break;
            default: a = TOK_ATTR_UNDEFINED; break;
            }
        }
        v->attr[i] = a;
        strmap_put(v, (uint32_t)i);
    }
    return 0;
}

static int load_impl(struct tok_vocab *v, const struct gguf_file *f, const struct tok_load_opts *opts,
                     llm_err *err) {
    struct gguf_str model, pre = {0};
    int r = gguf_get_str(f, KEY("model"), &model, err);
    if (r < 0) return -1;
    if (r == 0) return err_set(err, "%s is missing: the file has no tokenizer", KEY("model"));
    r = gguf_get_str(f, KEY("pre"), &pre, err);
    if (r < 0) return -1;
    bool have_pre = r > 0 && pre.len > 0;
    gguf_str_copy(v->pre_name, sizeof v->pre_name, have_pre ? pre : (struct gguf_str){"default", 7});

    // Defaults as in llama.cpp.
    v->bos = 1; v->eos = 2; v->unk = 0;
    v->eot = v->eom = v->sep = v->pad = v->mask = v->cls = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    v->escape_whitespaces = true;
    v->lowercase = true;
    v->strip_accents = true;
    bool bpe_no_bos = false;
    char mname[32];
    gguf_str_copy(mname, sizeof mname, model);
    if (str_is(model, "llama")) {
        v->type = TOK_TYPE_SPM;
        v->pre = TOK_PRE_DEFAULT;
        v->add_space_prefix = true;
        v->clean_spaces = false;
        v->add_bos = true;
        v->add_eos = false;
    } else if (str_is(model, "bert")) {
        v->type = TOK_TYPE_WPM;
        v->bos = 101; v->eos = -1; v->unk = 100; v->sep = 102; v->pad = 0; v->mask = 103;
        v->pre = TOK_PRE_DEFAULT;
        v->add_space_prefix = false;
        v->clean_spaces = true;
        v->add_bos = true;
        v->add_eos = false;
        v->add_sep = true;
    } else if (str_is(model, "gpt2")) {
        v->type = TOK_TYPE_BPE;
        v->bos = 11; v->eos = 11; v->unk = -1;
        v->add_space_prefix = false;
        v->escape_whitespaces = false;
        v->clean_spaces = true;
        v->pre = TOK_PRE_DEFAULT;
        if (have_pre) {
            const struct pre_name *p = NULL;
            for (size_t i = 0; i < sizeof PRE_NAMES / sizeof PRE_NAMES[0]; i++)
                if (str_is(pre, PRE_NAMES[i].name)) p = &PRE_NAMES[i];
            if (p) {
                v->pre = p->pre;
                if (p->clean_spaces >= 0) v->clean_spaces = p->clean_spaces;
                v->ignore_merges = p->ignore_merges;
                if (p->add_bos) v->add_bos = true;
                if (p->pre == TOK_PRE_CHATGLM4) bpe_no_bos = true;
                if (str_is(pre, "jina-v1-en") || str_is(pre, "jina-v2-code") || str_is(pre, "roberta-bpe"))
                    v->add_sep = true;
            } else if (opts && opts->allow_unknown_pre) {
                snprintf(v->pre_name, sizeof v->pre_name, "default");
            } else {
                char pn[64];
                gguf_str_copy(pn, sizeof pn, pre);
                return err_set(err, "unknown pre-tokenizer %s = '%s' (allow the fallback to use 'default')",
                               KEY("pre"), pn);
            }
        }
    } else {
        return err_set(err, "unsupported tokenizer %s = '%s' (supported: llama, gpt2, bert)", KEY("model"),
                       mname);
    }
    if (v->type != TOK_TYPE_BPE) snprintf(v->pre_name, sizeof v->pre_name, "default");

    bool b;
    if ((r = gguf_get_bool(f, KEY("add_space_prefix"), &b, err)) < 0) return -1;
    if (r) v->add_space_prefix = b;
    if ((r = gguf_get_bool(f, KEY("remove_extra_whitespaces"), &b, err)) < 0) return -1;
    if (r) v->remove_extra_ws = b;

    if (load_tokens(v, f, err)) return -1;
    const int32_t n = v->n;

    if (v->type == TOK_TYPE_BPE && tok_bpe_load(v, f, err)) return -1;
    if (bpe_no_bos) v->bos = -1;

    // Special ids: defaults out of range are disabled; explicit ones must be valid.
    int32_t *defaults[] = {&v->bos, &v->eos, &v->unk, &v->sep, &v->pad, &v->mask};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (*defaults[i] >= n) *defaults[i] = -1;
    struct {
        const char *key;
        int32_t *id;
    } keys[] = {
        {KEY("bos_token_id"), &v->bos},         {KEY("eos_token_id"), &v->eos},
        {KEY("eot_token_id"), &v->eot},         {KEY("eom_token_id"), &v->eom},
        {KEY("unknown_token_id"), &v->unk},     {KEY("seperator_token_id"), &v->sep},
        {KEY("padding_token_id"), &v->pad},     {KEY("mask_token_id"), &v->mask},
        {KEY("fim_pre_token_id"), &v->fim_pre}, {KEY("fim_suf_token_id"), &v->fim_suf},
        {KEY("fim_mid_token_id"), &v->fim_mid}, {KEY("fim_pad_token_id"), &v->fim_pad},
        {KEY("fim_rep_token_id"), &v->fim_rep}, {KEY("fim_sep_token_id"), &v->fim_sep},
        {KEY("prefix_token_id"), &v->fim_pre},  {KEY("suffix_token_id"), &v->fim_suf},
        {KEY("middle_token_id"), &v->fim_mid},  {KEY("cls_token_id"), &v->cls},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (get_id_key(f, keys[i].key, n, keys[i].id, err)) return -1;

    if ((r = gguf_get_bool(f, KEY("add_bos_token"), &b, err)) < 0) return -1;
    if (r) v->add_bos = b;
    if ((r = gguf_get_bool(f, KEY("add_eos_token"), &b, err)) < 0) return -1;
    if (r) v->add_eos = b;
    if ((r = gguf_get_bool(f, KEY("add_sep_token"), &b, err)) < 0) return -1;
    if (r) v->add_sep = b;
    if ((r = gguf_get_bool(f, KEY("normalizer.lowercase"), &b, err)) < 0) return -1;
    if (r) v->lowercase = b;
    v->strip_accents = v->lowercase;
    if ((r = gguf_get_bool(f, KEY("normalizer.strip_accents"), &b, err)) < 0) return -1;
    if (r) v->strip_accents = b;

    // Text-based detection of tokens the file does not name (llama.cpp does the same).
    detect_special(v, &v->eot, EOT_TEXTS);
    detect_special(v, &v->eom, EOM_TEXTS);
    detect_special(v, &v->fim_pre, FIM_PRE_TEXTS);
    detect_special(v, &v->fim_suf, FIM_SUF_TEXTS);
    detect_special(v, &v->fim_mid, FIM_MID_TEXTS);
    detect_special(v, &v->fim_pad, FIM_PAD_TEXTS);
    detect_special(v, &v->fim_rep, FIM_REP_TEXTS);
    detect_special(v, &v->fim_sep, FIM_SEP_TEXTS);

    // Control tokens named "unused" are unused.
    for (int32_t i = 0; i < n; i++)
        if ((v->attr[i] & TOK_ATTR_CONTROL) && !(v->attr[i] & TOK_ATTR_UNUSED) &&
            strstr(v->text + v->off[i], "unused") && tok_strmap_find(v, v->text + v->off[i], v->len[i]) == i)
            v->attr[i] |= TOK_ATTR_UNUSED;

    // End-of-generation tokens.
    size_t n_eog_texts = 0;
    while (EOG_TEXTS[n_eog_texts]) n_eog_texts++;
    v->eog = malloc((n_eog_texts + 8) * sizeof *v->eog);
    if (!v->eog) return err_set(err, "out of memory");
    v->n_eog = 0;
    eog_add(v, v->fim_pad);
    eog_add(v, v->fim_rep);
    eog_add(v, v->fim_sep);
    for (size_t i = 0; i < n_eog_texts; i++) {
        int32_t id = tok_strmap_find(v, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id < 0) continue;
        eog_add(v, id);
        v->attr[id] |= TOK_ATTR_CONTROL;
    }
    // gpt-oss: always render these.
    static const char *const ALWAYS_USER[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < 4; i++) {
        int32_t id = tok_strmap_find(v, ALWAYS_USER[i], strlen(ALWAYS_USER[i]));
        if (id >= 0) v->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    eog_add(v, v->eos);
    eog_add(v, v->eot);
    eog_add(v, v->eom);
    {
        bool has_return = false, has_call = false, has_end = false, has_flush = false;
        int32_t end_id = -1;
        for (int i = 0; i < v->n_eog; i++) {
            const char *t = v->text + v->off[v->eog[i]];
            if (!strcmp(t, "<|return|>")) has_return = true;
            else if (!strcmp(t, "<|call|>") || !strcmp(t, "<|calls|>")) has_call = true;
            else if (!strcmp(t, "<|flush|>")) has_flush = true;
            else if (!strcmp(t, "<|end|>")) {
                has_end = true;
                end_id = v->eog[i];
            }
        }
        if ((has_return && has_call && has_end) || (has_call && has_flush && has_end)) {
            eog_remove(v, end_id);
            v->attr[end_id] = TOK_ATTR_USER_DEFINED;
        }
    }
    {
        bool has_marker = false;
        int32_t s_id = -1;
        for (int i = 0; i < v->n_eog; i++) {
            const char *t = v->text + v->off[v->eog[i]];
            if (!strcmp(t, "<|tool_response>") || !strcmp(t, "<|plamo:eos|>")) has_marker = true;
            else if (!strcmp(t, "</s>")) s_id = v->eog[i];
        }
        if (has_marker && s_id >= 0) {
            eog_remove(v, s_id);
            v->attr[s_id] = TOK_ATTR_NORMAL;
        }
    }
    qsort(v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32);

    // Byte-fallback tokens.
    for (int c = 0; c < 256; c++) {
        v->byte_tok[c] = -1;
        if (v->type == TOK_TYPE_SPM) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", c);
            int32_t id = tok_strmap_find(v, buf, 6);
            if (id < 0) {
                char ch = (char)c;
                id = tok_strmap_find(v, &ch, 1);
            }
            v->byte_tok[c] = id;
        } else {
            char buf[4];
            size_t k = tok_bpe_byte_to_utf8((uint8_t)c, buf);
            v->byte_tok[c] = tok_strmap_find(v, buf, k);
        }
    }

    if (build_trie(v, err)) return -1;
    if (build_pieces(v, err)) return -1;

    // Per-model token attributes (llama.cpp sets these by model name).
    {
        char name[256] = "", arch[128] = "";
        struct gguf_str s;
        if (gguf_get_str(f, "general.name", &s, NULL) > 0) gguf_str_copy(name, sizeof name, s);
        if (gguf_get_str(f, "general.architecture", &s, NULL) > 0) gguf_str_copy(arch, sizeof arch, s);
        if (strstr(v->pre_name, "jina-v2-de") || strstr(v->pre_name, "jina-v2-es") ||
            strstr(v->pre_name, "jina-v2-code") || strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
            set_attr_by_text(v, "<mask>", TOK_ATTR_LSTRIP, true);
        } else if (contains_ci(name, "phi-3") || contains_ci(name, "phi3")) {
            const uint32_t special = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
            for (int32_t i = 0; i < n; i++)
                if (v->attr[i] & special) v->attr[i] |= TOK_ATTR_RSTRIP;
            set_attr_by_text(v, "</s>", TOK_ATTR_RSTRIP, true);
            set_attr_by_text(v, "<unk>", TOK_ATTR_RSTRIP, false);
            set_attr_by_text(v, "<s>", TOK_ATTR_RSTRIP, false);
            set_attr_by_text(v, "<|endoftext|>", TOK_ATTR_RSTRIP, false);
        } else if (contains_ci(name, "modern-bert")) {
            set_attr_by_text(v, "[MASK]", TOK_ATTR_LSTRIP, true);
        }
    }
    return 0;
}

int tok_load_ex(struct tok_vocab **out, const struct gguf_file *f, const struct tok_load_opts *opts,
                llm_err *err) {
    *out = NULL;
    struct tok_vocab *v = calloc(1, sizeof *v);
    if (!v) return err_set(err, "out of memory");
    if (load_impl(v, f, opts, err)) {
        err_prefix(err, "%s: tokenizer", f->path ? f->path : "gguf");
        tok_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int tok_load(struct tok_vocab **out, const struct gguf_file *f, llm_err *err) {
    return tok_load_ex(out, f, NULL, err);
}

void tok_free(struct tok_vocab *v) {
    if (!v) return;
    free(v->text);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->attr);
    free(v->pieces);
    free(v->poff);
    free(v->plen);
    free(v->map.slots);
    free(v->trie.keys);
    free(v->trie.vals);
    free(v->trie.tok_any);
    free(v->trie.tok_user);
    free(v->trie.rank_any);
    free(v->trie.rank_user);
    free(v->eog);
    free(v->merge_text);
    free(v->merge_off);
    free(v->merge_split);
    free(v->merge_len);
    free(v->merge_keys);
    free(v->merge_vals);
    for (int i = 0; i < v->n_rx; i++) tok_regex_free(v->rx[i]);
    free(v);
}

// ---------------------------------------------------------------------------
// Accessors

int tok_n_vocab(const struct tok_vocab *v) { return v->n; }
enum tok_type tok_get_type(const struct tok_vocab *v) { return v->type; }
const char *tok_pre_name(const struct tok_vocab *v) { return v->pre_name; }
int32_t tok_bos(const struct tok_vocab *v) { return v->bos; }
int32_t tok_eos(const struct tok_vocab *v) { return v->eos; }
int32_t tok_eot(const struct tok_vocab *v) { return v->eot; }
int32_t tok_eom(const struct tok_vocab *v) { return v->eom; }
int32_t tok_unk(const struct tok_vocab *v) { return v->unk; }
int32_t tok_sep(const struct tok_vocab *v) { return v->sep; }
int32_t tok_pad(const struct tok_vocab *v) { return v->pad; }
int32_t tok_mask(const struct tok_vocab *v) { return v->mask; }
bool tok_add_bos(const struct tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const struct tok_vocab *v) { return v->add_eos; }
bool tok_add_sep(const struct tok_vocab *v) { return v->add_sep; }
bool tok_add_space_prefix(const struct tok_vocab *v) { return v->add_space_prefix; }
size_t tok_max_piece(const struct tok_vocab *v) { return v->max_piece; }

bool tok_is_eog(const struct tok_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n) return false;
    return bsearch(&id, v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32) != NULL;
}

bool tok_is_control(const struct tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n && (v->attr[id] & TOK_ATTR_CONTROL);
}

uint32_t tok_attr(const struct tok_vocab *v, int32_t id) {
    return id >= 0 && id < v->n ? v->attr[id] : 0;
}

const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    if (len) *len = v->len[id];
    return v->text + v->off[id];
}

int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len) {
    return tok_strmap_find(v, text, len);
}

int tok_piece(const struct tok_vocab *v, int32_t id, char *buf, size_t cap, bool render_special) {
    if (id < 0 || id >= v->n) return 0;
    if (!render_special && (v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return 0;
    size_t n = v->plen[id];
    if (n > cap) return (int)n;
    if (n) memcpy(buf, v->pieces + v->poff[id], n);
    return (int)n;
}

// ---------------------------------------------------------------------------
// Special-token partitioning (llama_vocab::impl::tokenizer_st_partition)

struct frag {
    size_t off, len; // raw text when id < 0
    int32_t id;
};

struct occ {
    uint32_t rank;
    int32_t id;
    size_t pos, len;
};

static int occ_cmp(const void *a, const void *b) {
    const struct occ *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int acc_cmp(const void *a, const void *b) {
    const struct occ *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool is_space_c(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Splits text into raw fragments and special tokens. llama.cpp searches for each
// special token in turn (longest first) in what is left of the text; finding all
// candidate occurrences with the trie and accepting them in that same order
// gives the same result in one pass over the text.
// control_ok [len] (NULL: everywhere): with parse_special, control tokens are
// recognized only where every byte of their spelling has control_ok set
// (user-defined tokens match anywhere, as without parse_special).
static int partition(const struct tok_vocab *v, const char *text, size_t len, bool parse_special,
                     const uint8_t *control_ok, struct frag **out_frags, size_t *out_n, llm_err *err) {
    const struct tok_trie *t = &v->trie;
    const uint8_t *s = (const uint8_t *)text;
    struct occ *occs = NULL;
    size_t n_occ = 0, cap_occ = 0;
    if (t->n_nodes > 1) {
        for (size_t p = 0; p < len; p++) {
            if (!t->first[s[p]]) continue;
            uint32_t node = 0;
            bool any = parse_special; // control tokens allowed for the spelling so far
            for (size_t q = p; q < len; q++) {
                int64_t c = trie_child(t, node, s[q]);
                if (c < 0) break;
                node = (uint32_t)c;
                if (control_ok && !control_ok[q]) any = false;
                int32_t id = any ? t->tok_any[node] : t->tok_user[node];
                if (id < 0) continue;
                if (n_occ == cap_occ) {
                    cap_occ = cap_occ ? cap_occ * 2 : 64;
                    struct occ *no = realloc(occs, cap_occ * sizeof *occs);
                    if (!no) {
                        free(occs);
                        return err_set(err, "out of memory");
                    }
                    occs = no;
                }
                // Both ranks come from one ordering of all special tokens, so mixing them is consistent.
                occs[n_occ++] = (struct occ){any ? t->rank_any[node] : t->rank_user[node], id, p, q - p + 1};
            }
        }
    }
    struct frag *frags;
    if (n_occ == 0) {
        frags = malloc(sizeof *frags);
        if (!frags) return err_set(err, "out of memory");
        frags[0] = (struct frag){0, len, -1};
        *out_frags = frags;
        *out_n = len ? 1 : 0;
        return 0;
    }
    qsort(occs, n_occ, sizeof *occs, occ_cmp);
    uint8_t *used = calloc(len, 1);
    if (!used) {
        free(occs);
        return err_set(err, "out of memory");
    }
    size_t n_acc = 0;
    size_t last_end = 0;
    for (size_t i = 0; i < n_occ; i++) {
        struct occ o = occs[i];
        if (i == 0 || occs[i - 1].rank != o.rank) last_end = 0;
        if (o.pos < last_end) continue;
        bool free_run = true;
        for (size_t k = 0; k < o.len && free_run; k++) free_run = !used[o.pos + k];
        if (!free_run) continue;
        memset(used + o.pos, 1, o.len);
        size_t end = o.pos + o.len;
        uint32_t a = v->attr[o.id];
        if (a & TOK_ATTR_LSTRIP) {
            size_t j = o.pos;
            while (j > 0 && !used[j - 1] && is_space_c(s[j - 1])) used[--j] = 2;
        }
        if (a & TOK_ATTR_RSTRIP) {
            while (end < len && !used[end] && is_space_c(s[end])) used[end++] = 2;
        }
        last_end = end;
        occs[n_acc++] = o; // accepted ones are compacted to the front
    }
    qsort(occs, n_acc, sizeof *occs, acc_cmp);
    frags = malloc((2 * n_acc + 1) * sizeof *frags);
    if (!frags) {
        free(used);
        free(occs);
        return err_set(err, "out of memory");
    }
    size_t nf = 0, p = 0, a = 0;
    while (p < len) {
        if (a < n_acc && occs[a].pos == p) {
            frags[nf++] = (struct frag){p, occs[a].len, occs[a].id};
            p += occs[a].len;
            a++;
        } else if (used[p]) {
            p++;
        } else {
            size_t q = p;
            while (q < len && !used[q]) q++;
            frags[nf++] = (struct frag){p, q - p, -1};
            p = q;
        }
    }
    free(used);
    free(occs);
    *out_frags = frags;
    *out_n = nf;
    return 0;
}

// ---------------------------------------------------------------------------
// Encode

static int encode(const struct tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                  const uint8_t *control_ok, int32_t *out, int max_out, llm_err *err) {
    struct tok_out o = {out, max_out < 0 ? 0 : max_out, 0};
    if (len > (size_t)INT32_MAX / 2) return err_set(err, "text too long to tokenize (%zu bytes)", len);
    struct frag *frags = NULL;
    size_t nf = 0;
    if (partition(v, text, len, parse_special, control_ok, &frags, &nf, err)) return -1;
    int rc = 0;
    switch (v->type) {
    case TOK_TYPE_SPM: {
        bool prev_special = true; // prefix with a space if first
        if (add_special && v->add_bos) {
            if (v->bos < 0) {
                rc = err_set(err, "the vocabulary adds BOS but has no BOS token");
                break;
            }
            tok_emit(&o, v->bos);
        }
        char *buf = NULL;
        size_t buf_cap = 0;
        for (size_t i = 0; i < nf && !rc; i++) {
            if (frags[i].id >= 0) {
                tok_emit(&o, frags[i].id);
                prev_special = true;
                continue;
            }
            // Space prefix, then every ' ' becomes U+2581.
            size_t need = 3 * (frags[i].len + 1);
            if (need > buf_cap) {
                char *nb = realloc(buf, need);
                if (!nb) {
                    rc = err_set(err, "out of memory");
                    break;
                }
                buf = nb;
                buf_cap = need;
            }
            size_t k = 0;
            if (v->add_space_prefix && prev_special) {
                memcpy(buf, "\xe2\x96\x81", 3);
                k = 3;
            }
            const char *src = text + frags[i].off;
            for (size_t j = 0; j < frags[i].len; j++) {
                if (src[j] == ' ') {
                    memcpy(buf + k, "\xe2\x96\x81", 3);
                    k += 3;
                } else {
                    buf[k++] = src[j];
                }
            }
            rc = tok_spm_fragment(v, buf, k, &o, err);
            prev_special = false;
        }
        free(buf);
        if (!rc && add_special && v->add_eos) {
            if (v->eos < 0) rc = err_set(err, "the vocabulary adds EOS but has no EOS token");
            else tok_emit(&o, v->eos);
        }
        break;
    }
    case TOK_TYPE_BPE: {
        if (add_special && v->add_bos) {
            if (v->bos < 0) {
                rc = err_set(err, "the vocabulary adds BOS but has no BOS token");
                break;
            }
            tok_emit(&o, v->bos);
        }
        for (size_t i = 0; i < nf && !rc; i++) {
            if (frags[i].id >= 0) tok_emit(&o, frags[i].id);
            else rc = tok_bpe_fragment(v, text + frags[i].off, frags[i].len, &o, err);
        }
        if (!rc && add_special && v->add_eos) {
            if (v->eos < 0) rc = err_set(err, "the vocabulary adds EOS but has no EOS token");
            else tok_emit(&o, v->eos);
        }
        break;
    }
    case TOK_TYPE_WPM: {
        if (add_special) {
            if (v->bos < 0) {
                rc = err_set(err, "the vocabulary has no CLS/BOS token");
                break;
            }
            tok_emit(&o, v->bos);
        }
        for (size_t i = 0; i < nf && !rc; i++) {
            if (frags[i].id >= 0) tok_emit(&o, frags[i].id);
            else rc = tok_wpm_fragment(v, text + frags[i].off, frags[i].len, &o, err);
        }
        if (!rc && add_special) {
            if (v->sep < 0) rc = err_set(err, "the vocabulary has no SEP token");
            else tok_emit(&o, v->sep);
        }
        break;
    }
    }
    free(frags);
    if (rc) return -1;
    return o.n;
}

int tok_encode(const struct tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t *out, int max_out, llm_err *err) {
    return encode(v, text, len, add_special, parse_special, NULL, out, max_out, err);
}

// The segments are joined and tokenized as one text: plain text across segment
// borders is tokenized whole, as llama.cpp tokenizes the text between special
// tokens, so the borders themselves never change a token.
int tok_encode_segments(const struct tok_vocab *v, const struct tok_segment *segs, size_t n_segs, bool add_special,
                        int32_t *out, int max_out, llm_err *err) {
    size_t len = 0;
    for (size_t i = 0; i < n_segs; i++) {
        if (segs[i].len > (size_t)INT32_MAX / 2 - len) return err_set(err, "text too long to tokenize");
        len += segs[i].len;
    }
    char *text = malloc(len + 1);
    uint8_t *control_ok = malloc(len + 1);
    if (!text || !control_ok) {
        free(text);
        free(control_ok);
        return err_set(err, "out of memory tokenizing %zu bytes", len);
    }
    size_t at = 0;
    for (size_t i = 0; i < n_segs; i++) {
        if (segs[i].len) memcpy(text + at, segs[i].text, segs[i].len);
        memset(control_ok + at, segs[i].parse_special, segs[i].len);
        at += segs[i].len;
    }
    int rc = encode(v, text, len, add_special, true, control_ok, out, max_out, err);
    free(text);
    free(control_ok);
    return rc;
}

// ---------------------------------------------------------------------------
// Detokenize (llama_vocab::impl::detokenize)

int64_t tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n, char *buf, size_t cap,
                   bool remove_special, bool unparse_special) {
    const size_t n0 = n;
    const int32_t *ids0 = ids;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        n--;
        ids++;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos) n--;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= v->n) continue;
        if (!unparse_special && (v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) {
            remove_space = false;
            continue;
        }
        const char *p = v->pieces + v->poff[id];
        size_t pn = v->plen[id];
        if (remove_space && pn && *p == ' ') {
            p++;
            pn--;
        }
        remove_space = false;
        if (pn && total + pn <= cap) memcpy(buf + total, p, pn);
        total += pn;
    }
    if (total > cap) {
        if (!v->clean_spaces) return (int64_t)total;
        // The clean-up below can only shorten the text: measure it exactly.
        char *tmp = malloc(total);
        if (!tmp) return (int64_t)total;
        int64_t r = tok_decode(v, ids0, n0, tmp, total, remove_special, unparse_special);
        if (r >= 0 && (size_t)r <= cap && r > 0) memcpy(buf, tmp, (size_t)r);
        free(tmp);
        return r;
    }
    if (v->clean_spaces && total > 0) {
        char *t = buf;
        // " ?", " !", " .", " ,": drop the space.
        size_t t1 = total, k = 1;
        for (size_t i = 1; i < t1; i++) {
            char x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) k--;
            t[k++] = x;
        }
        // " ' ": strip the spaces around a single apostrophe.
        size_t t2 = k;
        k = 1;
        for (size_t i = 1; i < t2; i++) {
            char x = t[i];
            if (x == '\'' && i + 1 < t2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
                k--;
                t[++i] = '\0';
            }
            t[k++] = x;
        }
        // " 's", " 'm", " 're", " 've": drop the space.
        size_t t3 = k;
        k = 1;
        for (size_t i = 1; i < t3; i++) {
            char x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < t3) {
                char x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm') k--;
                else if (i + 2 < t3) {
                    char x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) k--;
                }
            }
            t[k++] = x;
        }
        total = k;
    }
    return (int64_t)total;
}

// ---------------------------------------------------------------------------
// Streaming detokenizer

void tok_stream_init(struct tok_stream *s, bool render_special) {
    memset(s, 0, sizeof *s);
    s->render_special = render_special;
}

// Length of the valid UTF-8 sequence at p (strict: no overlongs, surrogates or
// > U+10FFFF), 0 if p[0..n) is a valid but incomplete prefix, -1 if invalid.
static int utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return -1;
    }
    return need;
}

// Converts src[0..n) into valid UTF-8 in dst; stops before an incomplete tail
// unless final. Returns bytes written; *consumed = bytes of src used.
static size_t utf8_sanitize(const uint8_t *src, size_t n, char *dst, bool final, size_t *consumed) {
    size_t i = 0, o = 0;
    while (i < n) {
        int k = utf8_seq(src + i, n - i);
        if (k > 0) {
            memcpy(dst + o, src + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (k == 0 && !final) {
            break;
        } else {
            memcpy(dst + o, "\xef\xbf\xbd", 3);
            o += 3;
            // Replace the maximal invalid prefix: the lead byte plus any
            // continuation bytes that were valid so far.
            size_t j = i + 1;
            if (k == 0) j = n;
            else {
                while (j < n && j < i + 4 && utf8_seq(src + i, j - i + 1) == 0) j++;
                if (j == i) j = i + 1;
            }
            i = j;
        }
    }
    *consumed = i;
    return o;
}

int tok_stream_push(const struct tok_vocab *v, struct tok_stream *s, int32_t id, char *out, size_t cap) {
    size_t pn = 0;
    const char *p = "";
    if (id >= 0 && id < v->n && (s->render_special || !(v->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)))) {
        p = v->pieces + v->poff[id];
        pn = v->plen[id];
    }
    size_t total = (size_t)s->n_pending + pn;
    size_t worst = 3 * total;
    if (worst > cap) {
        // Compute the exact need before refusing.
        uint8_t *tmp = malloc(total ? total : 1);
        char *dst = malloc(worst ? worst : 1);
        if (!tmp || !dst) {
            free(tmp);
            free(dst);
            return -(int)worst;
        }
        memcpy(tmp, s->pending, (size_t)s->n_pending);
        memcpy(tmp + s->n_pending, p, pn);
        size_t used;
        size_t need = utf8_sanitize(tmp, total, dst, false, &used);
        if (need <= cap) {
            memcpy(out, dst, need);
            s->n_pending = (int)(total - used);
            memcpy(s->pending, tmp + used, (size_t)s->n_pending);
        }
        free(tmp);
        free(dst);
        return need <= cap ? (int)need : -(int)need;
    }
    // Fast path: work in out directly, pending bytes first.
    uint8_t small[64];
    uint8_t *tmp = total <= sizeof small ? small : malloc(total);
    if (!tmp) return -(int)worst;
    memcpy(tmp, s->pending, (size_t)s->n_pending);
    memcpy(tmp + s->n_pending, p, pn);
    size_t used;
    size_t w = utf8_sanitize(tmp, total, out, false, &used);
    s->n_pending = (int)(total - used); // an incomplete prefix is at most 3 bytes
    memcpy(s->pending, tmp + used, (size_t)s->n_pending);
    if (tmp != small) free(tmp);
    return (int)w;
}

int tok_stream_flush(struct tok_stream *s, char *out, size_t cap) {
    char dst[3 * sizeof s->pending];
    size_t used;
    size_t w = utf8_sanitize((const uint8_t *)s->pending, (size_t)s->n_pending, dst, true, &used);
    if (w > cap) return -(int)w;
    memcpy(out, dst, w);
    s->n_pending = 0;
    return (int)w;
}
