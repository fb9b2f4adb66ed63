// response_format {"type": "json_object"}: keeps generated text a prefix of
// one JSON object (RFC 8259) and ends generation when the object closes.
//
// A small pushdown automaton reads the output byte by byte. Before a token is
// accepted, its bytes are run through a copy of the automaton; a token that
// would break the JSON (or that has no text, as control tokens) is masked.
#ifndef LLMFILE_APP_SERVER_JSON_CONSTRAIN_H
#define LLMFILE_APP_SERVER_JSON_CONSTRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine.h"

enum { JSON_MAX_DEPTH = 64, JSON_MAX_WS_RUN = 64 };

struct json_fsm {
    uint8_t state;      // enum in json_constrain.c
    uint8_t depth;      // open containers
    uint8_t lit_pos;    // inside true/false/null: letters matched
    uint8_t lit;        // which literal
    uint8_t hex_left;   // \uXXXX digits still to read
    uint8_t ws_run;     // consecutive whitespace bytes (bounded, so the model cannot pad forever)
    bool in_key;        // the open string is an object key
    uint64_t obj_bits;  // bit d: container at depth d+1 is an object (else an array)
};

void json_fsm_init(struct json_fsm *f);
// Feeds bytes; false (and f unspecified) if they cannot continue a JSON object.
bool json_fsm_feed(struct json_fsm *f, const char *s, size_t n);
bool json_fsm_complete(const struct json_fsm *f); // the top-level object has closed

// Every token's text, for checking tokens quickly.
struct json_token_table;
struct json_token_table *json_token_table_new(const struct tok_vocab *v, int32_t n_vocab, llm_err *err);
void json_token_table_free(struct json_token_table *t);
bool json_token_ok(const struct json_token_table *t, const struct json_fsm *f, int32_t tok);
void json_fsm_feed_token(const struct json_token_table *t, struct json_fsm *f, int32_t tok);
// Sets the logits of every token that cannot come next to -inf; returns how
// many tokens are left.
int32_t json_mask_logits(const struct json_token_table *t, const struct json_fsm *f, float *logits, int32_t n_vocab);

#endif
