// Private to src/tok: the vocabulary layout shared by the tokenizer sources.
#ifndef LLMFILE_TOK_INTERNAL_H
#define LLMFILE_TOK_INTERNAL_H

#include "tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Pre-tokenizer families (one splitting regex each, see bpe.c).
enum tok_pre {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_GPT2,
    TOK_PRE_LLAMA3,
    TOK_PRE_QWEN2,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_DEEPSEEK3_LLM,
    TOK_PRE_FALCON,
    TOK_PRE_MPT,
    TOK_PRE_STARCODER,
    TOK_PRE_REFACT,
    TOK_PRE_COMMAND_R,
    TOK_PRE_GPT4O,
    TOK_PRE_TEKKEN,
    TOK_PRE_STABLELM2,
    TOK_PRE_OLMO,
    TOK_PRE_DBRX,
    TOK_PRE_SMAUG,
    TOK_PRE_PORO,
    TOK_PRE_CHATGLM4,
    TOK_PRE_VIKING,
    TOK_PRE_JAIS,
    TOK_PRE_SMOLLM,
    TOK_PRE_CODESHELL,
    TOK_PRE_BLOOM,
    TOK_PRE_GPT3_FINNISH,
    TOK_PRE_EXAONE,
    TOK_PRE_CHAMELEON,
    TOK_PRE_MINERVA,
    TOK_PRE_COUNT
};

// Open-addressing table from a byte string to an id (entries are id + 1).
struct tok_strmap {
    uint32_t *slots;
    size_t mask; // capacity - 1 (capacity is a power of two)
};

// Special-token trie: edges in an open-addressing table keyed by (node, byte).
struct tok_trie {
    uint64_t *keys; // (node << 8 | byte) + 1; 0 = empty
    uint32_t *vals; // child node
    size_t mask;
    uint32_t n_nodes;
    int32_t *tok_any;  // [n_nodes] best special token ending here (any attr), -1
    int32_t *tok_user; // [n_nodes] best one that is not control/unknown, -1
    uint32_t *rank_any, *rank_user; // priority rank of those tokens (lower first)
    uint8_t first[256];             // 1 if some special token starts with this byte
};

struct tok_vocab {
    enum tok_type type;
    enum tok_pre pre;
    char pre_name[64];
    int32_t n;

    char *text;       // all token texts, each NUL-terminated
    uint32_t *off;    // [n] offset of token i in text
    uint32_t *len;    // [n]
    float *score;     // [n]
    uint32_t *attr;   // [n] enum tok_attr bits
    char *pieces;     // token_to_piece(id, special=true) for every token
    uint32_t *poff;   // [n]
    uint32_t *plen;   // [n]
    size_t max_piece;
    size_t max_token_len;

    struct tok_strmap map; // text -> id (the last id wins on duplicates, as llama.cpp)
    struct tok_trie trie;  // control / user-defined / unknown tokens
    int32_t byte_tok[256]; // SPM/BPE byte-fallback token per byte, -1 if none

    int32_t bos, eos, eot, eom, unk, sep, pad, mask, cls;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    int32_t *eog; // sorted ids
    int n_eog;

    bool add_bos, add_eos, add_sep;
    bool add_space_prefix, remove_extra_ws, clean_spaces, escape_whitespaces, ignore_merges;
    bool lowercase, strip_accents; // WordPiece normalizer

    // BPE merges: (left text, right text) -> rank.
    char *merge_text;  // "left right" strings, NUL-terminated
    uint32_t *merge_off;   // [n_merges] offset of the merge string
    uint32_t *merge_split; // [n_merges] length of the left part
    uint32_t *merge_len;   // [n_merges] total length
    uint32_t n_merges;
    uint64_t *merge_keys;  // hash table of merge ranks: hash; 0 = empty
    uint32_t *merge_vals;  // rank + 1
    size_t merge_mask;

    // BPE pre-tokenizer: regexes applied in order; custom[i] > 0 selects a
    // hand-written splitter (1 gpt2, 2 llama3, 3 qwen2), else rx[i] is compiled.
    struct tok_regex *rx[8];
    int rx_kind[8];
    int rx_custom[8];
    int n_rx;
};

// Output sink shared by the tokenizers: writes while there is room, counts always.
struct tok_out {
    int32_t *ids;
    int max;
    int n;
};
static inline void tok_emit(struct tok_out *o, int32_t id) {
    if (o->n < o->max) o->ids[o->n] = id;
    o->n++;
}

uint64_t tok_hash(const char *p, size_t n);
int32_t tok_strmap_find(const struct tok_vocab *v, const char *s, size_t n);

// Tokenizer bodies: one raw-text fragment each (special tokens already split off).
int tok_spm_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o,
                     llm_err *err);
int tok_bpe_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o,
                     llm_err *err);
int tok_wpm_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o,
                     llm_err *err);
// BPE setup at load time: merges table (error on malformed merges).
int tok_bpe_load(struct tok_vocab *v, const struct gguf_file *f, llm_err *err);
int32_t tok_bpe_merge_rank(const struct tok_vocab *v, const char *l, size_t ln, const char *r, size_t rn);

#endif
