// Tokenizers: every vocabulary type a GGUF file carries, giving exactly the ids
// llama.cpp gives (SentencePiece "llama", byte-level BPE "gpt2" with its
// pre-tokenizers, WordPiece "bert").
//
// A tok_vocab is self-contained: tok_load copies what it needs out of the GGUF
// mapping, so the gguf_file may be closed afterwards. A loaded vocab is
// read-only and may be used from several threads at once (each encode call
// allocates its own scratch memory; tok_stream state belongs to the caller).
#ifndef LLMFILE_TOK_TOK_H
#define LLMFILE_TOK_TOK_H

#include "base/err.h"
#include "gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tok_vocab;

enum tok_type {
    TOK_TYPE_SPM = 1, // tokenizer.ggml.model = llama (SentencePiece)
    TOK_TYPE_BPE = 2, // gpt2 (byte-level BPE)
    TOK_TYPE_WPM = 3, // bert (WordPiece)
};

// Token attributes (llama.cpp's llama_token_attr bit values).
enum tok_attr {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_NORMALIZED = 1 << 6,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
    TOK_ATTR_SINGLE_WORD = 1 << 9,
};

struct tok_load_opts {
    // An unknown tokenizer.ggml.pre is an error unless this is set; then the
    // "default" (gpt-2 style) pre-tokenizer is used, as llama.cpp does for a
    // missing key.
    bool allow_unknown_pre;
};

// Reads the tokenizer.ggml.* keys. Fails with a clear message for a missing or
// inconsistent vocabulary (wrong key types, arrays shorter than the token list,
// special-token ids out of range, merges naming tokens that do not exist).
int tok_load(struct tok_vocab **out, const struct gguf_file *f, llm_err *err);
int tok_load_ex(struct tok_vocab **out, const struct gguf_file *f, const struct tok_load_opts *opts,
                llm_err *err);
void tok_free(struct tok_vocab *v);

int tok_n_vocab(const struct tok_vocab *v);
enum tok_type tok_get_type(const struct tok_vocab *v);
const char *tok_pre_name(const struct tok_vocab *v); // pre-tokenizer in use ("default" for SPM/WPM)

// Tokenize text[0..len) (any bytes; invalid UTF-8 never crashes).
// add_special adds BOS/EOS (and SEP for WordPiece) as the vocab says
// (tokenizer.ggml.add_bos_token / add_eos_token / add_sep_token);
// parse_special turns text that spells a control token into that token
// (user-defined tokens are always matched, as in llama.cpp).
// Returns the number of tokens; if more than max_out, returns the needed count
// and writes only the first max_out. -1 on error (err set).
int tok_encode(const struct tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, int max_out, llm_err *err);

// Text made of pieces of different trust, e.g. a chat prompt: template markup
// (parse_special) and user text (not).
struct tok_segment {
    const char *text;
    size_t len;
    bool parse_special; // control tokens may be recognized in this text
};

// Tokenizes the concatenation of segs[0..n_segs) exactly as tok_encode
// tokenizes the whole text with parse_special, except that a control token is
// recognized only where its whole spelling lies in parse_special segments
// (user-defined tokens match anywhere, as in tok_encode). So user text that
// spells "<end_of_turn>" stays text, and text without such spellings gets the
// ids llama.cpp gives for the whole text. Returns as tok_encode.
int tok_encode_segments(const struct tok_vocab *v, const struct tok_segment *segs, size_t n_segs, bool add_special,
                        int32_t *out, int max_out, llm_err *err);

// The bytes of one token as generated text (SentencePiece U+2581 -> space,
// <0xNN> -> that byte, byte-level BPE -> the raw bytes). Control/unknown tokens
// give "" unless render_special. Returns the length, or the needed length if it
// is more than cap (then nothing is written). Invalid ids give 0.
int tok_piece(const struct tok_vocab *v, int32_t id, char *buf, size_t cap, bool render_special);

// The stored token text (e.g. "▁the", "Ġthe", "<0x0A>"); NULL for an invalid id.
const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len);
// The id whose text is exactly text[0..len), or -1.
int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len);
uint32_t tok_attr(const struct tok_vocab *v, int32_t id); // enum tok_attr bits; 0 if invalid

// Whole-sequence detokenization exactly as llama_detokenize: remove_special
// drops a leading BOS / trailing EOS that the vocab adds; unparse_special
// renders control tokens as their text. SentencePiece drops the space prefix of
// the first token when the vocab adds one. Returns the length, or the needed
// length if more than cap (then buf content is unspecified). With the
// clean-up some vocabularies ask for (" ," -> ","), the buffer is also used as
// scratch space; the result is exact either way.
int64_t tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n, char *buf, size_t cap,
                   bool remove_special, bool unparse_special);

int32_t tok_bos(const struct tok_vocab *v);
int32_t tok_eos(const struct tok_vocab *v);
int32_t tok_eot(const struct tok_vocab *v);
int32_t tok_eom(const struct tok_vocab *v);
int32_t tok_unk(const struct tok_vocab *v);
int32_t tok_sep(const struct tok_vocab *v);
int32_t tok_pad(const struct tok_vocab *v);
int32_t tok_mask(const struct tok_vocab *v);
bool tok_add_bos(const struct tok_vocab *v);
bool tok_add_eos(const struct tok_vocab *v);
bool tok_add_sep(const struct tok_vocab *v);
bool tok_add_space_prefix(const struct tok_vocab *v); // SentencePiece: a space is put before the text
// End of generation: eos, eot, eom and the tokens llama.cpp treats as EOG by
// their text (<end_of_turn>, <|im_end|>, <|eot_id|>, <|endoftext|>, ...).
bool tok_is_eog(const struct tok_vocab *v, int32_t id);
bool tok_is_control(const struct tok_vocab *v, int32_t id);

// Streaming detokenizer: emits only complete UTF-8 sequences, holding back an
// incomplete tail until a later token completes it. Bytes that can never form
// valid UTF-8 are emitted as U+FFFD, so the output is always valid UTF-8.
// Zero-initialize (or tok_stream_init) before the first push.
struct tok_stream {
    char pending[8];
    int n_pending;
    bool render_special; // render control tokens as their text (default: "")
};
void tok_stream_init(struct tok_stream *s, bool render_special);
// Appends token id's bytes; returns the bytes written to out. If cap is too
// small returns -(bytes needed) and leaves the stream unchanged (retry with a
// bigger buffer); 3 * (tok_max_piece(v) + 8) always suffices.
int tok_stream_push(const struct tok_vocab *v, struct tok_stream *s, int32_t id, char *out, size_t cap);
// Emits what is left (an incomplete tail becomes U+FFFD) and resets the stream.
// Returns bytes written, or -(bytes needed) if cap is too small (24 suffices).
int tok_stream_flush(struct tok_stream *s, char *out, size_t cap);
size_t tok_max_piece(const struct tok_vocab *v); // longest piece of any token, in bytes

#endif
