#include "json_constrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    J_START,          // before the top-level '{'
    J_VALUE,          // a value must come (after ':' or ',' in an array)
    J_OBJ_FIRST,      // after '{': a key or '}'
    J_OBJ_KEY,        // after ',' in an object: a key
    J_COLON,          // after a key
    J_ARR_FIRST,      // after '[': a value or ']'
    J_AFTER,          // after a value in a container: ',' or the closing bracket
    J_STR,            // inside a string
    J_ESC,            // after a backslash
    J_HEX,            // inside \uXXXX
    J_NUM_MINUS,      // after '-'
    J_NUM_ZERO,       // a leading 0
    J_NUM_INT,        // integer digits
    J_NUM_DOT,        // after '.'
    J_NUM_FRAC,       // fraction digits
    J_NUM_E,          // after 'e'
    J_NUM_ESIGN,      // after the exponent's sign
    J_NUM_EXP,        // exponent digits
    J_LIT,            // inside true / false / null
    J_DONE,           // the top-level object closed
};

static const char *const literals[] = {"true", "false", "null"};

void json_fsm_init(struct json_fsm *f) { memset(f, 0, sizeof *f); }

bool json_fsm_complete(const struct json_fsm *f) { return f->state == J_DONE; }

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// A value ended; what follows depends on the enclosing container.
static void value_done(struct json_fsm *f) { f->state = f->depth == 0 ? J_DONE : J_AFTER; }

static bool open_container(struct json_fsm *f, bool object) {
    if (f->depth >= JSON_MAX_DEPTH) return false;
    if (object) f->obj_bits |= 1ull << f->depth;
    else f->obj_bits &= ~(1ull << f->depth);
    f->depth++;
    f->state = object ? J_OBJ_FIRST : J_ARR_FIRST;
    return true;
}

static bool top_is_object(const struct json_fsm *f) { return f->depth > 0 && ((f->obj_bits >> (f->depth - 1)) & 1); }

static bool close_container(struct json_fsm *f, unsigned char c) {
    if (f->depth == 0 || (c == '}') != top_is_object(f)) return false;
    f->depth--;
    value_done(f);
    return true;
}

// The first byte of a value.
static bool start_value(struct json_fsm *f, unsigned char c) {
    switch (c) {
    case '{': return open_container(f, true);
    case '[': return open_container(f, false);
    case '"': f->state = J_STR, f->in_key = false; return true;
    case '-': f->state = J_NUM_MINUS; return true;
    case '0': f->state = J_NUM_ZERO; return true;
    case 't': case 'f': case 'n':
        f->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        f->lit_pos = 1;
        f->state = J_LIT;
        return true;
    default:
        if (c >= '1' && c <= '9') {
            f->state = J_NUM_INT;
            return true;
        }
        return false;
    }
}

// A byte after a complete value inside a container.
static bool after_value(struct json_fsm *f, unsigned char c) {
    if (c == ',') {
        f->state = top_is_object(f) ? J_OBJ_KEY : J_VALUE;
        return true;
    }
    if (c == '}' || c == ']') return close_container(f, c);
    return false;
}

// A number ends at the first byte that cannot continue it; that byte is then
// read as whatever follows a value.
static bool end_number(struct json_fsm *f, unsigned char c) {
    value_done(f);
    if (f->state == J_DONE) return false; // numbers never stand at the top level here
    if (is_ws(c)) return true;
    return after_value(f, c);
}

static bool step(struct json_fsm *f, unsigned char c) {
    if (is_ws(c) && f->state != J_STR && f->state != J_ESC && f->state != J_HEX) {
        if (++f->ws_run > JSON_MAX_WS_RUN) return false;
        switch (f->state) {
        case J_LIT: case J_NUM_MINUS: case J_NUM_DOT: case J_NUM_E: case J_NUM_ESIGN: return false;
        case J_NUM_ZERO: case J_NUM_INT: case J_NUM_FRAC: case J_NUM_EXP: return end_number(f, c);
        default: return true;
        }
    }
    f->ws_run = 0;
    switch (f->state) {
    case J_START: return c == '{' && open_container(f, true);
    case J_VALUE: return start_value(f, c);
    case J_ARR_FIRST: return c == ']' ? close_container(f, c) : start_value(f, c);
    case J_OBJ_FIRST:
        if (c == '}') return close_container(f, c);
        /* fall through */
    case J_OBJ_KEY:
        if (c != '"') return false;
        f->state = J_STR;
        f->in_key = true;
        return true;
    case J_COLON:
        if (c != ':') return false;
        f->state = J_VALUE;
        return true;
    case J_AFTER: return after_value(f, c);
    case J_STR:
        if (c == '"') {
            if (f->in_key) f->state = J_COLON;
            else value_done(f);
            return true;
        }
        if (c == '\\') f->state = J_ESC;
        return c >= 0x20;
    case J_ESC:
        if (c == 'u') {
            f->state = J_HEX;
            f->hex_left = 4;
            return true;
        }
        f->state = J_STR;
        return strchr("\"\\/bfnrt", c) != NULL && c != 0;
    case J_HEX:
        if (!is_hex(c)) return false;
        if (--f->hex_left == 0) f->state = J_STR;
        return true;
    case J_NUM_MINUS:
        if (c == '0') f->state = J_NUM_ZERO;
        else if (is_digit(c)) f->state = J_NUM_INT;
        else return false;
        return true;
    case J_NUM_ZERO:
        if (c == '.') f->state = J_NUM_DOT;
        else if (c == 'e' || c == 'E') f->state = J_NUM_E;
        else return end_number(f, c);
        return true;
    case J_NUM_INT:
        if (is_digit(c)) return true;
        if (c == '.') f->state = J_NUM_DOT;
        else if (c == 'e' || c == 'E') f->state = J_NUM_E;
        else return end_number(f, c);
        return true;
    case J_NUM_DOT:
        if (!is_digit(c)) return false;
        f->state = J_NUM_FRAC;
        return true;
    case J_NUM_FRAC:
        if (is_digit(c)) return true;
        if (c == 'e' || c == 'E') {
            f->state = J_NUM_E;
            return true;
        }
        return end_number(f, c);
    case J_NUM_E:
        if (c == '+' || c == '-') f->state = J_NUM_ESIGN;
        else if (is_digit(c)) f->state = J_NUM_EXP;
        else return false;
        return true;
    case J_NUM_ESIGN:
        if (!is_digit(c)) return false;
        f->state = J_NUM_EXP;
        return true;
    case J_NUM_EXP:
        if (is_digit(c)) return true;
        return end_number(f, c);
    case J_LIT: {
        const char *lit = literals[f->lit];
        if (c != (unsigned char)lit[f->lit_pos]) return false;
        if (lit[++f->lit_pos] == 0) value_done(f);
        return true;
    }
    case J_DONE:
    default: return false;
    }
}

bool json_fsm_feed(struct json_fsm *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!step(f, (unsigned char)s[i])) return false;
    return true;
}

// ---- tokens ----------------------------------------------------------------

struct json_token_table {
    int32_t n;
    uint32_t *off;   // [n + 1] piece of token i: bytes[off[i]..off[i+1])
    char *bytes;
};

struct json_token_table *json_token_table_new(const struct tok_vocab *v, int32_t n_vocab, llm_err *err) {
    struct json_token_table *t = calloc(1, sizeof *t);
    const int n_tok = tok_n_vocab(v);
    size_t cap = 1 << 20, used = 0;
    char piece[512];
    if (t) {
        t->n = n_vocab;
        t->off = malloc(((size_t)n_vocab + 1) * sizeof *t->off);
        t->bytes = malloc(cap);
    }
    if (!t || !t->off || !t->bytes) goto oom;
    for (int32_t i = 0; i < n_vocab; i++) {
        t->off[i] = (uint32_t)used;
        // Tokens past the vocabulary, control tokens and over-long pieces get no text: never allowed.
        int len = i < n_tok && !tok_is_control(v, i) ? tok_piece(v, i, piece, sizeof piece, false) : 0;
        if (len <= 0 || len > (int)sizeof piece) continue;
        if (used + (size_t)len > cap) {
            char *b = realloc(t->bytes, cap *= 2);
            if (!b) goto oom;
            t->bytes = b;
        }
        memcpy(t->bytes + used, piece, (size_t)len);
        used += (size_t)len;
    }
    t->off[n_vocab] = (uint32_t)used;
    return t;
oom:
    json_token_table_free(t);
    err_set(err, "out of memory for the JSON token table");
    return NULL;
}

void json_token_table_free(struct json_token_table *t) {
    if (!t) return;
    free(t->off);
    free(t->bytes);
    free(t);
}

bool json_token_ok(const struct json_token_table *t, const struct json_fsm *f, int32_t tok) {
    if (tok < 0 || tok >= t->n || t->off[tok] == t->off[tok + 1]) return false;
    struct json_fsm copy = *f;
    return json_fsm_feed(&copy, t->bytes + t->off[tok], t->off[tok + 1] - t->off[tok]);
}

void json_fsm_feed_token(const struct json_token_table *t, struct json_fsm *f, int32_t tok) {
    if (tok >= 0 && tok < t->n) json_fsm_feed(f, t->bytes + t->off[tok], t->off[tok + 1] - t->off[tok]);
}

int32_t json_mask_logits(const struct json_token_table *t, const struct json_fsm *f, float *logits, int32_t n_vocab) {
    int32_t left = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (logits[i] != -INFINITY && !json_token_ok(t, f, i)) logits[i] = -INFINITY;
        left += logits[i] != -INFINITY;
    }
    return left;
}
