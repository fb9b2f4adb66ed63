// A small backtracking regex engine for the pre-tokenizer regexes, with the
// semantics of C++ std::regex (ECMAScript) as llama.cpp uses it: alternation
// tries branches in order, quantifiers are greedy, lookaheads are atomic.
// Supported: | ( ) (?: ) (?= ) (?! ) [..] [^..] . ^ $ * + ? {n} {n,} {n,m}
// \s \S \d \D \w \W \r \n \t \f \v, escaped punctuation, and \p{N} \p{L} \p{P}
// \p{M} \p{S} \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo} (collapsed mode only).
//
// Patterns using \p{..} run in "collapsed" mode on text where each code point
// >= 128 was replaced by one byte for its category (0xD1 number, 0xD2 letter,
// 0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0x0B whitespace, 0xD0 other), and
// \p{X} means that byte plus the ASCII members of X (llama.cpp's trick). Other
// patterns run in "wide" mode on code points (non-ASCII whitespace -> 0x0B).
#ifndef LLMFILE_TOK_REGEX_H
#define LLMFILE_TOK_REGEX_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { TOK_REGEX_COLLAPSED = 1, TOK_REGEX_WIDE = 2 };

struct tok_regex;

// Compiles pattern (UTF-8). *kind tells which text form it runs on.
struct tok_regex *tok_regex_compile(const char *pattern, int *kind, llm_err *err);
void tok_regex_free(struct tok_regex *re);

// Leftmost match in text[a..b) starting at or after `from`; true with [*ms, *me).
bool tok_regex_search(const struct tok_regex *re, const uint32_t *text, size_t a, size_t b, size_t from, size_t *ms,
                      size_t *me);

#endif
