// Unicode helpers for the tokenizers: UTF-8 decoding exactly as llama.cpp does
// it (lenient, invalid bytes become U+FFFD one byte at a time), the GPT-2 byte
// <-> unicode mapping, and code point categories (unicode_data.c, generated).
#ifndef LLMFILE_TOK_UNICODE_H
#define LLMFILE_TOK_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Byte length of the UTF-8 sequence a lead byte announces (1 for continuation bytes).
static inline size_t tok_utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

// Decodes one code point at s[*off] (off < n), advancing *off. Invalid input
// yields U+FFFD and advances one byte (llama.cpp unicode_cpts_from_utf8).
uint32_t tok_utf8_next(const char *s, size_t n, size_t *off);
// Encodes cp (<= 0x10FFFF) into out (4 bytes); returns the length, 0 if cp is too large.
size_t tok_utf8_put(uint32_t cp, char *out);

// GPT-2 byte-level mapping: byte -> the UTF-8 of its stand-in code point.
size_t tok_bpe_byte_to_utf8(uint8_t b, char out[4]);
// Code point -> byte (-1 if the code point stands for no byte).
int tok_bpe_cpt_to_byte(uint32_t cp);
// Decodes a byte-level token text into raw bytes (llama_decode_text). Returns
// the full length; writes only while it fits in cap.
size_t tok_bpe_decode_text(const char *s, size_t n, char *out, size_t cap);

// Code point categories, as llama.cpp's unicode_cpt_flags.
enum {
    TOK_CPT_UNDEFINED = 0x0001,
    TOK_CPT_NUMBER = 0x0002,      // \p{N}
    TOK_CPT_LETTER = 0x0004,      // \p{L}
    TOK_CPT_SEPARATOR = 0x0008,   // \p{Z}
    TOK_CPT_ACCENT_MARK = 0x0010, // \p{M}
    TOK_CPT_PUNCTUATION = 0x0020, // \p{P}
    TOK_CPT_SYMBOL = 0x0040,      // \p{S}
    TOK_CPT_CONTROL = 0x0080,     // \p{C}
    TOK_CPT_WHITESPACE = 0x0100,  // \s
    TOK_CPT_LOWERCASE = 0x0200,
    TOK_CPT_UPPERCASE = 0x0400,
    TOK_CPT_NFD = 0x0800,
};
uint16_t tok_cpt_flags(uint32_t cp);
uint32_t tok_cpt_tolower(uint32_t cp);
uint32_t tok_cpt_nfd(uint32_t cp); // first code point of the canonical decomposition (llama.cpp's NFD table)

#endif
