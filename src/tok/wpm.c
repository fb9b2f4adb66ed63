// WordPiece (tokenizer.ggml.model = bert), as llama.cpp's llm_tokenizer_wpm_session:
// normalize (NFD first code point + drop accents when strip_accents, lowercase
// when asked, drop controls, NUL and U+FFFD), split on whitespace, make
// punctuation, ASCII symbols and CJK ideographs words of their own, then cover
// each word, prefixed with U+2581, by the longest vocabulary entries from the
// left ("##" continuations are stored without the "##" by the GGUF converter);
// a word that cannot be covered becomes [UNK].
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

static bool is_chinese_char(uint32_t c) {
    return (c >= 0x04E00 && c <= 0x09FFF) || (c >= 0x03400 && c <= 0x04DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) ||
           (c >= 0x2B920 && c <= 0x2CEAF) || // as llama.cpp / HF (not 0x2B820)
           (c >= 0x0F900 && c <= 0x0FAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Covers word[0..n) (which starts with U+2581) greedily; false if impossible.
static bool cover_word(const struct tok_vocab *v, const char *word, size_t n, struct tok_out *o) {
    int start_n = o->n;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + v->max_token_len + 1;
        if (j > n) j = n;
        bool match = false;
        for (; j > i; j--) {
            int32_t id = tok_strmap_find(v, word + i, j - i);
            if (id >= 0) {
                tok_emit(o, id);
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match) {
            o->n = start_n; // discard the word's tokens
            return false;
        }
    }
    return o->n > start_n;
}

int tok_wpm_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o, llm_err *err) {
    if (len == 0) return 0;
    // A word is at most 4 bytes per input byte plus the U+2581 prefix.
    char *word = malloc(4 * len + 8);
    if (!word) return err_set(err, "out of memory");
    size_t wn = 3;
    memcpy(word, "\xe2\x96\x81", 3);
    int rc = 0;
#define FLUSH()                                                                                  \
    do {                                                                                         \
        if (wn > 3) {                                                                            \
            if (!cover_word(v, word, wn, o)) {                                                   \
                if (v->unk < 0) {                                                                \
                    rc = err_set(err, "a word has no WordPiece cover and the vocabulary has no [UNK]"); \
                    goto done;                                                                   \
                }                                                                                \
                tok_emit(o, v->unk);                                                             \
            }                                                                                    \
            wn = 3;                                                                              \
        }                                                                                        \
    } while (0)
    for (size_t off = 0; off < len;) {
        uint32_t c = tok_utf8_next(text, len, &off);
        if (v->strip_accents) c = tok_cpt_nfd(c);
        uint16_t fl = tok_cpt_flags(c);
        if (fl & TOK_CPT_WHITESPACE) {
            FLUSH();
            continue;
        }
        if (c == 0 || c == 0xFFFD || (fl & TOK_CPT_CONTROL) || c > 0x10FFFF) continue;
        if (v->strip_accents && (fl & TOK_CPT_ACCENT_MARK)) continue;
        char u[4];
        size_t ul = tok_utf8_put(v->lowercase ? tok_cpt_tolower(c) : c, u);
        if ((fl & TOK_CPT_PUNCTUATION) || (c < 0x7F && (fl & TOK_CPT_SYMBOL)) || is_chinese_char(c)) {
            FLUSH();
            memcpy(word + wn, u, ul);
            wn += ul;
            FLUSH();
        } else {
            memcpy(word + wn, u, ul);
            wn += ul;
        }
    }
    FLUSH();
#undef FLUSH
done:
    free(word);
    return rc;
}
