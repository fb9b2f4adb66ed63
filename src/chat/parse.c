// Lexer and parser: template text -> AST, following jinja2's lexer (with
// trim_blocks and lstrip_blocks on) and parser, rule for rule, so whitespace
// handling and operator precedence come out the same.
#include "chat/impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARSE_DEPTH 200 // nesting of expressions and blocks

enum tok_kind {
    T_EOF,
    T_DATA,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    // operators
    T_ADD, T_SUB, T_DIV, T_FLOORDIV, T_MUL, T_MOD, T_POW, T_TILDE,
    T_LBRACKET, T_RBRACKET, T_LPAREN, T_RPAREN, T_LBRACE, T_RBRACE,
    T_EQ, T_NE, T_GT, T_GTEQ, T_LT, T_LTEQ, T_ASSIGN, T_DOT, T_COLON, T_PIPE, T_COMMA, T_SEMICOLON,
};

static const struct {
    const char *text;
    int kind;
} operators[] = {
    // two-character operators first: the longest match wins
    {"//", T_FLOORDIV}, {"**", T_POW}, {"==", T_EQ}, {"!=", T_NE}, {">=", T_GTEQ}, {"<=", T_LTEQ},
    {"+", T_ADD}, {"-", T_SUB}, {"/", T_DIV}, {"*", T_MUL}, {"%", T_MOD}, {"~", T_TILDE},
    {"[", T_LBRACKET}, {"]", T_RBRACKET}, {"(", T_LPAREN}, {")", T_RPAREN}, {"{", T_LBRACE},
    {"}", T_RBRACE}, {">", T_GT}, {"<", T_LT}, {"=", T_ASSIGN}, {".", T_DOT}, {":", T_COLON},
    {"|", T_PIPE}, {",", T_COMMA}, {";", T_SEMICOLON},
};
#define N_OPERATORS (sizeof operators / sizeof operators[0])

struct token {
    int kind;
    int line;   // 1-based
    size_t pos; // byte offset in the (normalized) source; the column is worked out for messages
    const char *s; // T_NAME / T_DATA: text; T_STRING: unescaped value
    size_t len;
    int64_t ival;
    double fval;
};

struct lexer {
    struct arena *a;
    const char *src; // newlines normalized, one trailing newline dropped
    size_t len, pos;
    size_t *line_starts; // [n_lines] offsets
    size_t n_lines;
    bool line_starting; // the last match ended with a newline (lstrip_blocks)
    struct token *toks;
    size_t n, cap;
    llm_err *err;
};

static size_t line_index(const struct lexer *L, size_t pos) {
    size_t lo = 0, hi = L->n_lines; // the last line start <= pos
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (L->line_starts[mid] <= pos) lo = mid;
        else hi = mid;
    }
    return lo;
}

static void pos_linecol(const struct lexer *L, size_t pos, int *line, int *col) {
    size_t lo = line_index(L, pos);
    *line = (int)lo + 1;
    // Columns count code points, from 1.
    *col = (int)utf8_count(L->src + L->line_starts[lo], pos - L->line_starts[lo]) + 1;
}

// The lexer's and the parser's one error message, at source offset pos.
static int syntax_error(const struct lexer *L, llm_err *err, size_t pos, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static int syntax_error(const struct lexer *L, llm_err *err, size_t pos, const char *fmt, va_list ap) {
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int line, col;
    pos_linecol(L, pos, &line, &col);
    one_line(msg);
    return err_set(err, "chat template syntax error at line %d:%d: %s", line, col, msg);
}

static int lex_fail(struct lexer *L, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lex_fail(struct lexer *L, size_t pos, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int rc = syntax_error(L, L->err, pos, fmt, ap);
    va_end(ap);
    return rc;
}

static struct token *emit(struct lexer *L, int kind, size_t pos) {
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        struct token *t = arena_grow(L->a, L->toks, L->cap * sizeof *t, cap * sizeof *t);
        if (!t) return NULL;
        L->toks = t;
        L->cap = cap;
    }
    struct token *t = &L->toks[L->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = (int)line_index(L, pos) + 1;
    t->pos = pos;
    return t;
}

static int emit_data(struct lexer *L, size_t start, size_t end) {
    if (end <= start) return 0;
    struct token *t = emit(L, T_DATA, start);
    if (!t) return err_set(L->err, "out of memory");
    t->s = L->src + start;
    t->len = end - start;
    return 0;
}

// Python whitespace (str.isspace / regex \s) starting at i: its byte length or 0.
static size_t space_at(const char *s, size_t len, size_t i) {
    if (i >= len) return 0;
    uint8_t c = (uint8_t)s[i];
    if (c < 0x80) return cp_isspace(c) ? 1 : 0;
    size_t j = i;
    uint32_t cp = utf8_next(s, len, &j);
    return cp_isspace(cp) ? j - i : 0;
}

static size_t skip_spaces(const char *s, size_t len, size_t i) {
    size_t k;
    while ((k = space_at(s, len, i)) != 0) i += k;
    return i;
}

// End of the text after stripping trailing whitespace (Python str.rstrip()).
static size_t rstrip_end(const char *s, size_t start, size_t end) {
    // Walk forward remembering where the last non-space ended (UTF-8 safe).
    size_t keep = start;
    for (size_t i = start; i < end;) {
        size_t k = space_at(s, end, i);
        if (k) i += k;
        else {
            utf8_next(s, end, &i);
            keep = i;
        }
    }
    return keep;
}

// The text before a tag: "-" strips all whitespace before it; otherwise, for
// block and comment tags (not "{%+"), lstrip_blocks removes the spaces that
// start the tag's line. Returns the new end of the text.
static size_t strip_before_tag(struct lexer *L, size_t start, size_t end, char sign, bool is_var) {
    if (sign == '-') return rstrip_end(L->src, start, end);
    if (sign == '+' || is_var) return end;
    size_t l_pos = start;
    for (size_t i = end; i > start; i--)
        if (L->src[i - 1] == '\n') {
            l_pos = i;
            break;
        }
    if (l_pos > start || L->line_starting) {
        if (l_pos < end && skip_spaces(L->src, end, l_pos) == end) return l_pos;
    }
    return end;
}

// Matches a block end at pos: "+%}", "-%}" + whitespace, or "%}" + one optional
// newline (trim_blocks). Returns the length matched, 0 if none.
static size_t block_end_at(const struct lexer *L, size_t pos, const char *close) {
    const char *s = L->src;
    size_t n = L->len;
    if (pos + 3 <= n && s[pos] == '+' && s[pos + 1] == close[0] && s[pos + 2] == close[1]) return 3;
    if (pos + 3 <= n && s[pos] == '-' && s[pos + 1] == close[0] && s[pos + 2] == close[1])
        return skip_spaces(s, n, pos + 3) - pos;
    if (pos + 2 <= n && s[pos] == close[0] && s[pos + 1] == close[1])
        return 2 + (pos + 2 < n && s[pos + 2] == '\n');
    return 0;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

// `(\d+_)*\d+` at i: the end, or i if no match.
static size_t scan_digits(const char *s, size_t n, size_t i) {
    size_t j = i;
    while (j < n && is_digit(s[j])) {
        while (j < n && is_digit(s[j])) j++;
        if (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) j++;
    }
    return j;
}

// Python string-literal escapes (jinja2 decodes with "unicode-escape").
static int unescape(struct lexer *L, size_t at, const char *s, size_t n, struct token *t) {
    char *out = arena_alloc(L->a, n + 1);
    if (!out) return err_set(L->err, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 >= n) {
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case '\n': break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++, i++) {
                char c = i < n ? s[i] : 0;
                int v = is_digit(c) ? c - '0' : ((c | 32) >= 'a' && (c | 32) <= 'f') ? (c | 32) - 'a' + 10 : -1;
                if (v < 0) return lex_fail(L, at, "truncated \\%c escape in a string", e);
                cp = cp << 4 | (uint32_t)v;
            }
            if (cp > 0x10FFFF) return lex_fail(L, at, "illegal Unicode character in a string");
            // \xNN is the code point U+00NN, like the others.
            o += chat_utf8_encode(cp, out + o);
            break;
        }
        case 'N': return lex_fail(L, at, "\\N{...} escapes are not supported");
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++, i++) cp = cp * 8 + (uint32_t)(s[i] - '0');
                o += chat_utf8_encode(cp, out + o);
            } else {
                // Unknown escapes stay as written.
                out[o++] = '\\';
                out[o++] = e;
            }
        }
    }
    out[o] = 0;
    t->s = out;
    t->len = o;
    return 0;
}

// Tokens inside {{ }} or {% %} up to and including the end tag.
static int lex_tag(struct lexer *L, bool is_block) {
    const char *s = L->src;
    size_t n = L->len;
    const char *close = is_block ? "%}" : "}}";
    char stack[MAX_PARSE_DEPTH];
    int depth = 0;
    for (;;) {
        size_t pos = L->pos;
        if (pos >= n) return 0; // the parser reports the missing end
        if (depth == 0) {
            size_t m = 0;
            if (is_block) m = block_end_at(L, pos, close);
            else if (pos + 3 <= n && s[pos] == '-' && s[pos + 1] == '}' && s[pos + 2] == '}')
                m = skip_spaces(s, n, pos + 3) - pos;
            else if (pos + 2 <= n && s[pos] == '}' && s[pos + 1] == '}') m = 2;
            if (m) {
                if (!emit(L, is_block ? T_BLOCK_END : T_VAR_END, pos)) return err_set(L->err, "out of memory");
                L->pos = pos + m;
                L->line_starting = s[pos + m - 1] == '\n';
                return 0;
            }
        }
        size_t k = skip_spaces(s, n, pos);
        if (k > pos) {
            L->pos = k;
            continue;
        }
        char c = s[pos];
        // float: (\d+_)*\d+ ((\.(\d+_)*\d+)? e[+-]?(\d+_)*\d+ | \.(\d+_)*\d+), not after a '.'
        if (is_digit(c) && !(pos > 0 && s[pos - 1] == '.')) {
            size_t i = scan_digits(s, n, pos), end = 0;
            size_t j = i;
            bool frac = false;
            if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
                j = scan_digits(s, n, j + 1);
                frac = true;
            }
            size_t e = j;
            if (e < n && (s[e] | 32) == 'e') {
                e++;
                if (e < n && (s[e] == '+' || s[e] == '-')) e++;
                if (e < n && is_digit(s[e])) end = scan_digits(s, n, e);
            }
            if (!end && frac) end = j;
            if (end) {
                char buf[128];
                size_t bl = 0;
                for (size_t q = pos; q < end && bl < sizeof buf - 1; q++)
                    if (s[q] != '_') buf[bl++] = s[q];
                buf[bl] = 0;
                struct token *t = emit(L, T_FLOAT, pos);
                if (!t) return err_set(L->err, "out of memory");
                t->fval = strtod(buf, NULL);
                L->pos = end;
                continue;
            }
        }
        if (is_digit(c)) {
            // integer: 0b.., 0o.., 0x.., [1-9](_?\d)*, 0(_?0)*
            int base = 10;
            size_t i = pos;
            if (c == '0' && pos + 1 < n && strchr("bBoOxX", s[pos + 1]) && s[pos + 1]) {
                char p = (char)(s[pos + 1] | 32);
                int b = p == 'b' ? 2 : p == 'o' ? 8 : 16;
                size_t j = pos + 2, digits = 0;
                for (;;) {
                    size_t q = j < n && s[j] == '_' ? j + 1 : j;
                    if (q >= n) break;
                    char d = (char)(s[q] | 32);
                    int v = is_digit(d) ? d - '0' : (d >= 'a' && d <= 'f') ? d - 'a' + 10 : 99;
                    if (v >= b) break;
                    j = q + 1;
                    digits++;
                }
                if (digits) {
                    base = b;
                    i = j;
                }
            }
            if (base == 10) {
                i = pos + 1;
                if (c == '0') {
                    while (i < n && (s[i] == '0' || (s[i] == '_' && i + 1 < n && s[i + 1] == '0'))) i++;
                } else {
                    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1])))) i++;
                }
            }
            uint64_t v = 0;
            for (size_t q = base == 10 ? pos : pos + 2; q < i; q++) {
                if (s[q] == '_') continue;
                char d = (char)(s[q] | 32);
                uint64_t dv = is_digit(d) ? (uint64_t)(d - '0') : (uint64_t)(d - 'a' + 10);
                if (v > (UINT64_MAX - dv) / (uint64_t)base) return lex_fail(L, pos, "integer literal too large");
                v = v * (uint64_t)base + dv;
            }
            if (v > INT64_MAX) return lex_fail(L, pos, "integer literal too large");
            struct token *t = emit(L, T_INT, pos);
            if (!t) return err_set(L->err, "out of memory");
            t->ival = (int64_t)v;
            L->pos = i;
            continue;
        }
        if (is_name_start(c)) {
            size_t i = pos + 1;
            while (i < n && is_name_char(s[i])) i++;
            struct token *t = emit(L, T_NAME, pos);
            if (!t) return err_set(L->err, "out of memory");
            t->s = s + pos;
            t->len = i - pos;
            L->pos = i;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t i = pos + 1;
            while (i < n && s[i] != c) i += s[i] == '\\' ? 2 : 1;
            if (i < n) {
                struct token *t = emit(L, T_STRING, pos);
                if (!t) return err_set(L->err, "out of memory");
                if (unescape(L, pos, s + pos + 1, i - pos - 1, t)) return -1;
                L->pos = i + 1;
                continue;
            }
        }
        int op = -1;
        size_t oplen = 0;
        for (size_t i = 0; i < N_OPERATORS; i++) {
            size_t l = strlen(operators[i].text);
            if (pos + l <= n && memcmp(s + pos, operators[i].text, l) == 0) {
                op = operators[i].kind;
                oplen = l;
                break;
            }
        }
        if (op < 0) {
            size_t j = pos;
            uint32_t cp = utf8_next(s, n, &j);
            char u[5] = {0};
            chat_utf8_encode(cp, u);
            return lex_fail(L, pos, "unexpected character '%s'", u);
        }
        if (op == T_LPAREN || op == T_LBRACKET || op == T_LBRACE) {
            if (depth == MAX_PARSE_DEPTH) return lex_fail(L, pos, "brackets nested too deeply");
            stack[depth++] = op == T_LPAREN ? ')' : op == T_LBRACKET ? ']' : '}';
        } else if (op == T_RPAREN || op == T_RBRACKET || op == T_RBRACE) {
            if (depth == 0) return lex_fail(L, pos, "unexpected '%c'", c);
            char want = stack[--depth];
            if (want != c) return lex_fail(L, pos, "unexpected '%c', expected '%c'", c, want);
        }
        if (!emit(L, op, pos)) return err_set(L->err, "out of memory");
        L->pos = pos + oplen;
    }
}

static int lex(struct lexer *L) {
    const char *s = L->src;
    size_t n = L->len;
    L->line_starting = true;
    while (L->pos < n) {
        // The next tag opener: "{{", "{%" or "{#".
        size_t m = L->pos;
        const char *brace;
        for (;;) {
            brace = memchr(s + m, '{', n - m);
            if (!brace || (size_t)(brace - s) + 1 >= n) {
                brace = NULL;
                break;
            }
            char k = brace[1];
            if (k == '{' || k == '%' || k == '#') break;
            m = (size_t)(brace - s) + 1;
        }
        if (!brace) return emit_data(L, L->pos, n);
        m = (size_t)(brace - s);
        char kind = s[m + 1];
        char sign = m + 2 < n && (s[m + 2] == '-' || s[m + 2] == '+') ? s[m + 2] : 0;
        size_t after = m + 2 + (sign ? 1 : 0);
        // {% raw %}: "{%" sign? \s* "raw" \s* ("-%}" \s* | "%}")
        size_t raw_end = 0;
        if (kind == '%') {
            size_t i = skip_spaces(s, n, after);
            if (i + 3 <= n && memcmp(s + i, "raw", 3) == 0) {
                i = skip_spaces(s, n, i + 3);
                if (i + 3 <= n && memcmp(s + i, "-%}", 3) == 0) raw_end = skip_spaces(s, n, i + 3);
                else if (i + 2 <= n && memcmp(s + i, "%}", 2) == 0) raw_end = i + 2;
            }
        }
        size_t text_end = strip_before_tag(L, L->pos, m, sign, kind == '{');
        if (emit_data(L, L->pos, text_end)) return -1;
        L->line_starting = false;
        if (raw_end) {
            // Everything up to {% endraw %} is text.
            size_t start = raw_end, i = raw_end;
            for (;;) {
                const char *p = i < n ? memchr(s + i, '{', n - i) : NULL;
                if (!p) return lex_fail(L, m, "missing end of raw directive");
                size_t q = (size_t)(p - s);
                i = q + 1;
                if (q + 1 >= n || s[q + 1] != '%') continue;
                char esign = q + 2 < n && (s[q + 2] == '-' || s[q + 2] == '+') ? s[q + 2] : 0;
                size_t j = skip_spaces(s, n, q + 2 + (esign ? 1 : 0));
                if (j + 6 > n || memcmp(s + j, "endraw", 6) != 0) continue;
                j = skip_spaces(s, n, j + 6);
                size_t e = block_end_at(L, j, "%}");
                if (!e) continue;
                if (emit_data(L, start, strip_before_tag(L, start, q, esign, false))) return -1;
                L->pos = j + e;
                L->line_starting = s[L->pos - 1] == '\n';
                break;
            }
            continue;
        }
        if (kind == '#') {
            // Comment: up to "+#}", "-#}" + whitespace, or "#}" + one newline.
            size_t i = after;
            for (;;) {
                const char *p = i < n ? memchr(s + i, '#', n - i) : NULL;
                if (!p || (size_t)(p - s) + 1 >= n) return lex_fail(L, m, "missing end of comment tag");
                size_t q = (size_t)(p - s);
                if (s[q + 1] != '}') {
                    i = q + 1;
                    continue;
                }
                size_t end;
                if (q > after && s[q - 1] == '-') end = skip_spaces(s, n, q + 2);
                else if (q > after && s[q - 1] == '+') end = q + 2;
                else end = q + 2 + (q + 2 < n && s[q + 2] == '\n');
                L->pos = end;
                L->line_starting = s[end - 1] == '\n';
                break;
            }
            continue;
        }
        if (!emit(L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, m)) return err_set(L->err, "out of memory");
        L->pos = after;
        if (lex_tag(L, kind == '%')) return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- parser

struct parser {
    struct arena *a;
    struct lexer *L;
    struct token *t; // current token
    size_t i;
    int depth;
    int loop_depth; // for break / continue
    // tags whose end we are looking for (for messages)
    const char *open_tag[MAX_PARSE_DEPTH + 8];
    int n_open;
    llm_err *err;
};

static int pfail_at(struct parser *P, const struct token *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail_at(struct parser *P, const struct token *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int rc = syntax_error(P->L, P->err, t->pos, fmt, ap);
    va_end(ap);
    return rc;
}
#define PFAIL(P, ...) (pfail_at((P), (P)->t, __VA_ARGS__), (struct node *)NULL)

static void next(struct parser *P) {
    if (P->t->kind != T_EOF) P->t = &P->L->toks[++P->i];
}
static const struct token *look(const struct parser *P) {
    return P->t->kind == T_EOF ? P->t : &P->L->toks[P->i + 1];
}
static bool is_name(const struct token *t, const char *name) {
    return t->kind == T_NAME && t->len == strlen(name) && memcmp(t->s, name, t->len) == 0;
}

static const char *describe(const struct token *t, char *buf, size_t cap) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    case T_NAME: snprintf(buf, cap, "%.*s", (int)(t->len < 60 ? t->len : 60), t->s); return buf;
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default:
        for (size_t i = 0; i < N_OPERATORS; i++)
            if (operators[i].kind == t->kind) return operators[i].text;
    }
    return "token";
}

static bool expect(struct parser *P, int kind) {
    if (P->t->kind == kind) {
        next(P);
        return true;
    }
    char b1[80], b2[80];
    struct token want = {.kind = kind};
    pfail_at(P, P->t, "expected '%s', got '%s'", describe(&want, b1, sizeof b1), describe(P->t, b2, sizeof b2));
    return false;
}

static bool expect_name(struct parser *P, const char *name) {
    if (is_name(P->t, name)) {
        next(P);
        return true;
    }
    char b[80];
    pfail_at(P, P->t, "expected '%s', got '%s'", name, describe(P->t, b, sizeof b));
    return false;
}

static struct node *mk(struct parser *P, int kind, const struct token *at) {
    struct node *n = arena_zalloc(P->a, sizeof *n);
    if (!n) {
        err_set(P->err, "out of memory");
        return NULL;
    }
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->pos = at->pos;
    n->builtin = -1;
    return n;
}

static int list_push(struct parser *P, struct node_list *l, struct node *n) {
    if (!n) return -1;
    // Grows in powers of two (n is the count; capacity is implied).
    if ((l->n & (l->n - 1)) == 0) {
        size_t cap = l->n ? (size_t)l->n * 2 : 1;
        struct node **v = arena_grow(P->a, l->v, (size_t)l->n * sizeof *v, cap * sizeof *v);
        if (!v) return err_set(P->err, "out of memory");
        l->v = v;
    }
    l->v[l->n++] = n;
    return 0;
}

static const char *copy_name(struct parser *P, const struct token *t) {
    char *s = arena_alloc(P->a, t->len + 1);
    if (!s) return NULL;
    memcpy(s, t->s, t->len);
    s[t->len] = 0;
    return s;
}

static struct node *name_node(struct parser *P, const struct token *t, int kind) {
    struct node *n = mk(P, kind, t);
    if (!n) return NULL;
    n->name = copy_name(P, t);
    n->name_len = t->len;
    return n->name ? n : NULL;
}

static bool enter(struct parser *P) {
    if (++P->depth > MAX_PARSE_DEPTH) {
        pfail_at(P, P->t, "template nested too deeply (more than %d levels)", MAX_PARSE_DEPTH);
        return false;
    }
    return true;
}
#define LEAVE(P, x) (P->depth--, (x))

static struct node *parse_expression(struct parser *P, bool with_condexpr);
static struct node *parse_tuple(struct parser *P, bool simplified, bool with_condexpr, const char *extra_end,
                                bool explicit_parens, bool with_namespace);
static struct node *parse_unary(struct parser *P, bool with_filter);
static struct node *parse_primary(struct parser *P, bool with_namespace);
static struct node *parse_postfix(struct parser *P, struct node *n);
static struct node *parse_filter(struct parser *P, struct node *n, bool start_inline);
static struct node_list parse_statements(struct parser *P, const char *const *end_tags, bool drop_needle, bool *ok);

// Call arguments "(a, b, k=v, *args, **kwargs)" into n->list, n->list2, n->c, n->d.
static bool parse_call_args(struct parser *P, struct node *n) {
    const struct token *open = P->t;
    if (!expect(P, T_LPAREN)) return false;
    bool require_comma = false;
    while (P->t->kind != T_RPAREN) {
        if (require_comma) {
            if (!expect(P, T_COMMA)) return false;
            if (P->t->kind == T_RPAREN) break;
        }
        if (P->t->kind == T_MUL) {
            if (n->c || n->d) return pfail_at(P, open, "invalid syntax for function call expression"), false;
            next(P);
            if (!(n->c = parse_expression(P, true))) return false;
        } else if (P->t->kind == T_POW) {
            if (n->d) return pfail_at(P, open, "invalid syntax for function call expression"), false;
            next(P);
            if (!(n->d = parse_expression(P, true))) return false;
        } else if (P->t->kind == T_NAME && look(P)->kind == T_ASSIGN) {
            if (n->d) return pfail_at(P, open, "invalid syntax for function call expression"), false;
            struct node *kw = name_node(P, P->t, E_KW);
            if (!kw) return false;
            next(P);
            next(P);
            if (!(kw->a = parse_expression(P, true))) return false;
            if (list_push(P, &n->list2, kw)) return false;
        } else {
            if (n->c || n->d || n->list2.n) return pfail_at(P, open, "invalid syntax for function call expression"), false;
            if (list_push(P, &n->list, parse_expression(P, true))) return false;
        }
        require_comma = true;
    }
    return expect(P, T_RPAREN);
}

static struct node *parse_or_and(struct parser *P, bool is_or);
static struct node *parse_math1(struct parser *P);

static struct node *parse_not(struct parser *P) {
    if (!enter(P)) return NULL;
    if (is_name(P->t, "not")) {
        struct node *n = mk(P, E_NOT, P->t);
        if (!n) return LEAVE(P, NULL);
        next(P);
        n->a = parse_not(P);
        return LEAVE(P, n->a ? n : NULL);
    }
    // compare: math1 (op math1)*
    const struct token *start = P->t;
    struct node *expr = NULL;
    // math1: concat (('+'|'-') concat)*; concat: math2 ('~' math2)*;
    // math2: pow (('*'|'/'|'//'|'%') pow)*; pow: unary ('**' unary)*
    expr = parse_math1(P);
    if (!expr) return LEAVE(P, NULL);
    struct node *cmp = NULL;
    for (;;) {
        int op = 0;
        const struct token *at = P->t;
        switch (P->t->kind) {
        case T_EQ: op = 'e'; break;
        case T_NE: op = 'n'; break;
        case T_LT: op = '<'; break;
        case T_LTEQ: op = 'l'; break;
        case T_GT: op = '>'; break;
        case T_GTEQ: op = 'g'; break;
        default:
            if (is_name(P->t, "in")) op = 'i';
            else if (is_name(P->t, "not") && is_name(look(P), "in")) op = 'x';
        }
        if (!op) break;
        next(P);
        if (op == 'x') next(P);
        if (!cmp) {
            if (!(cmp = mk(P, E_COMPARE, start))) return LEAVE(P, NULL);
            cmp->a = expr;
        }
        struct node *operand = mk(P, E_OPERAND, at);
        if (!operand) return LEAVE(P, NULL);
        operand->op = (uint8_t)op;
        if (!(operand->a = parse_math1(P)) || list_push(P, &cmp->list, operand)) return LEAVE(P, NULL);
    }
    return LEAVE(P, cmp ? cmp : expr);
}

static struct node *parse_or_and(struct parser *P, bool is_or) {
    struct node *left = is_or ? parse_or_and(P, false) : parse_not(P);
    while (left && is_name(P->t, is_or ? "or" : "and")) {
        struct node *n = mk(P, is_or ? E_OR : E_AND, P->t);
        if (!n) return NULL;
        next(P);
        n->a = left;
        n->b = is_or ? parse_or_and(P, false) : parse_not(P);
        if (!n->b) return NULL;
        left = n;
    }
    return left;
}

static struct node *parse_condexpr(struct parser *P) {
    const struct token *start = P->t;
    struct node *expr1 = parse_or_and(P, true);
    while (expr1 && is_name(P->t, "if")) {
        next(P);
        struct node *n = mk(P, E_COND, start);
        if (!n) return NULL;
        n->b = expr1;
        if (!(n->a = parse_or_and(P, true))) return NULL;
        if (is_name(P->t, "else")) {
            next(P);
            if (!enter(P)) return NULL;
            n->c = parse_condexpr(P);
            P->depth--;
            if (!n->c) return NULL;
        }
        expr1 = n;
    }
    return expr1;
}

static struct node *parse_expression(struct parser *P, bool with_condexpr) {
    if (!enter(P)) return NULL;
    struct node *n = with_condexpr ? parse_condexpr(P) : parse_or_and(P, true);
    return LEAVE(P, n);
}

static struct node *binop(struct parser *P, const struct token *at, int op, struct node *a, struct node *b) {
    if (!a || !b) return NULL;
    struct node *n = mk(P, E_BINOP, at);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static struct node *parse_pow(struct parser *P) {
    struct node *left = parse_unary(P, true);
    while (left && P->t->kind == T_POW) {
        const struct token *at = P->t;
        next(P);
        left = binop(P, at, 'p', left, parse_unary(P, true));
    }
    return left;
}

static struct node *parse_math2(struct parser *P) {
    struct node *left = parse_pow(P);
    for (;;) {
        int op = P->t->kind == T_MUL ? '*' : P->t->kind == T_DIV ? '/' : P->t->kind == T_FLOORDIV ? 'f'
               : P->t->kind == T_MOD ? '%' : 0;
        if (!left || !op) return left;
        const struct token *at = P->t;
        next(P);
        left = binop(P, at, op, left, parse_pow(P));
    }
}

static struct node *parse_concat(struct parser *P) {
    const struct token *start = P->t;
    struct node *first = parse_math2(P);
    if (!first || P->t->kind != T_TILDE) return first;
    struct node *n = mk(P, E_CONCAT, start);
    if (!n || list_push(P, &n->list, first)) return NULL;
    while (P->t->kind == T_TILDE) {
        next(P);
        if (list_push(P, &n->list, parse_math2(P))) return NULL;
    }
    return n;
}

static struct node *parse_math1(struct parser *P) {
    struct node *left = parse_concat(P);
    while (left && (P->t->kind == T_ADD || P->t->kind == T_SUB)) {
        const struct token *at = P->t;
        int op = P->t->kind == T_ADD ? '+' : '-';
        next(P);
        left = binop(P, at, op, left, parse_concat(P));
    }
    return left;
}

static struct node *parse_test(struct parser *P, struct node *subject) {
    const struct token *at = P->t;
    next(P); // "is"
    bool negated = false;
    if (is_name(P->t, "not")) {
        next(P);
        negated = true;
    }
    if (P->t->kind != T_NAME) return PFAIL(P, "expected a test name after 'is'");
    struct node *n = name_node(P, P->t, E_TEST);
    if (!n) return NULL;
    n->line = at->line, n->pos = at->pos;
    n->a = subject;
    next(P);
    while (P->t->kind == T_DOT) { // dotted test names: kept for the "unknown test" message
        next(P);
        if (P->t->kind != T_NAME) return PFAIL(P, "expected a name");
        n->name = "(dotted name)";
        next(P);
    }
    int k = P->t->kind;
    if (k == T_LPAREN) {
        if (!parse_call_args(P, n)) return NULL;
    } else if ((k == T_NAME || k == T_STRING || k == T_INT || k == T_FLOAT || k == T_LBRACKET || k == T_LBRACE) &&
               !is_name(P->t, "else") && !is_name(P->t, "or") && !is_name(P->t, "and")) {
        if (is_name(P->t, "is")) return PFAIL(P, "you cannot chain multiple tests with is");
        struct node *arg = parse_primary(P, false);
        if (!arg || !(arg = parse_postfix(P, arg)) || list_push(P, &n->list, arg)) return NULL;
    }
    if (negated) {
        struct node *no = mk(P, E_NOT, at);
        if (!no) return NULL;
        no->a = n;
        return no;
    }
    return n;
}

static struct node *parse_filter_expr(struct parser *P, struct node *n) {
    for (;;) {
        if (!n) return NULL;
        if (P->t->kind == T_PIPE) n = parse_filter(P, n, false);
        else if (is_name(P->t, "is")) n = parse_test(P, n);
        else if (P->t->kind == T_LPAREN) {
            struct node *call = mk(P, E_CALL, P->t);
            if (!call) return NULL;
            call->a = n;
            if (!parse_call_args(P, call)) return NULL;
            n = call;
        } else return n;
    }
}

static struct node *parse_unary(struct parser *P, bool with_filter) {
    if (!enter(P)) return NULL;
    struct node *n;
    if (P->t->kind == T_SUB || P->t->kind == T_ADD) {
        n = mk(P, P->t->kind == T_SUB ? E_NEG : E_POS, P->t);
        if (!n) return LEAVE(P, NULL);
        next(P);
        if (!(n->a = parse_unary(P, false))) return LEAVE(P, NULL);
    } else n = parse_primary(P, false);
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    return LEAVE(P, n);
}

// A list literal [a, b] (kind E_LIST, items in list) or a dict literal
// {k: v} (E_DICT, keys in list, values in list2), at its opening token t;
// a trailing comma is allowed.
static struct node *parse_list_or_dict(struct parser *P, const struct token *t, int kind, int close) {
    next(P);
    struct node *n = mk(P, kind, t);
    if (!n) return NULL;
    while (P->t->kind != close) {
        if (n->list.n && !expect(P, T_COMMA)) return NULL;
        if (P->t->kind == close) break;
        if (list_push(P, &n->list, parse_expression(P, true))) return NULL;
        if (kind == E_DICT && (!expect(P, T_COLON) || list_push(P, &n->list2, parse_expression(P, true))))
            return NULL;
    }
    return expect(P, close) ? n : NULL;
}

static struct node *parse_primary(struct parser *P, bool with_namespace) {
    const struct token *t = P->t;
    struct node *n;
    switch (t->kind) {
    case T_NAME:
        next(P);
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
            if (!(n = mk(P, E_CONST, t))) return NULL;
            n->value = CV_BOOL(t->s[0] == 't' || t->s[0] == 'T');
            return n;
        }
        if (is_name(t, "none") || is_name(t, "None")) {
            if (!(n = mk(P, E_CONST, t))) return NULL;
            n->value = CV_NONE;
            return n;
        }
        if (with_namespace && P->t->kind == T_DOT) {
            next(P);
            if (P->t->kind != T_NAME) return PFAIL(P, "expected an attribute name");
            if (!(n = name_node(P, P->t, E_NSREF))) return NULL;
            n->line = t->line, n->pos = t->pos;
            if (!(n->a = name_node(P, t, E_NAME))) return NULL;
            next(P);
            return n;
        }
        return name_node(P, t, E_NAME);
    case T_STRING: {
        // Adjacent string literals are joined.
        struct sb b;
        sb_init(&b, P->a, SIZE_MAX);
        while (P->t->kind == T_STRING) {
            sb_put(&b, P->t->s, P->t->len, false);
            next(P);
        }
        if (b.failed || !(n = mk(P, E_CONST, t))) return NULL;
        n->value = cv_str(P->a, (struct cstr){b.s ? b.s : "", NULL, b.len});
        return n->value ? n : NULL;
    }
    case T_INT:
    case T_FLOAT:
        next(P);
        if (!(n = mk(P, E_CONST, t))) return NULL;
        n->value = t->kind == T_INT ? cv_int(P->a, t->ival) : cv_float(P->a, t->fval);
        return n->value ? n : NULL;
    case T_LPAREN:
        next(P);
        n = parse_tuple(P, false, true, NULL, true, false);
        if (!n || !expect(P, T_RPAREN)) return NULL;
        return n;
    case T_LBRACKET: return parse_list_or_dict(P, t, E_LIST, T_RBRACKET);
    case T_LBRACE: return parse_list_or_dict(P, t, E_DICT, T_RBRACE);
    default: {
        char b[80];
        return PFAIL(P, "unexpected '%s'", describe(t, b, sizeof b));
    }
    }
}

static bool is_tuple_end(const struct parser *P, const char *extra_end) {
    int k = P->t->kind;
    if (k == T_VAR_END || k == T_BLOCK_END || k == T_RPAREN) return true;
    return extra_end && is_name(P->t, extra_end);
}

static struct node *parse_tuple(struct parser *P, bool simplified, bool with_condexpr, const char *extra_end,
                                bool explicit_parens, bool with_namespace) {
    const struct token *start = P->t;
    struct node *first = NULL, *tuple = NULL;
    for (;;) {
        if (first && !expect(P, T_COMMA)) return NULL;
        if (is_tuple_end(P, extra_end)) break;
        struct node *item = simplified ? parse_primary(P, with_namespace) : parse_expression(P, with_condexpr);
        if (!item) return NULL;
        if (!first) first = item;
        else if (!tuple) {
            if (!(tuple = mk(P, E_TUPLE, start)) || list_push(P, &tuple->list, first)) return NULL;
        }
        if (tuple && item != first && list_push(P, &tuple->list, item)) return NULL;
        if (P->t->kind != T_COMMA) break;
        if (!tuple) {
            if (!(tuple = mk(P, E_TUPLE, start)) || list_push(P, &tuple->list, first)) return NULL;
        }
    }
    if (tuple) return tuple;
    if (first) return first;
    if (!explicit_parens) {
        char b[80];
        return PFAIL(P, "expected an expression, got '%s'", describe(P->t, b, sizeof b));
    }
    return mk(P, E_TUPLE, start); // ()
}

static struct node *parse_subscribed(struct parser *P) {
    const struct token *start = P->t;
    struct node *first = NULL;
    if (P->t->kind == T_COLON) next(P);
    else {
        if (!(first = parse_expression(P, true))) return NULL;
        if (P->t->kind != T_COLON) return first;
        next(P);
    }
    struct node *s = mk(P, E_SLICE, start);
    if (!s) return NULL;
    s->a = first;
    if (P->t->kind != T_COLON && P->t->kind != T_RBRACKET && P->t->kind != T_COMMA)
        if (!(s->b = parse_expression(P, true))) return NULL;
    if (P->t->kind == T_COLON) {
        next(P);
        if (P->t->kind != T_RBRACKET && P->t->kind != T_COMMA)
            if (!(s->c = parse_expression(P, true))) return NULL;
    }
    return s;
}

static struct node *parse_postfix(struct parser *P, struct node *n) {
    for (;;) {
        if (!n) return NULL;
        const struct token *at = P->t;
        if (at->kind == T_DOT) {
            next(P);
            const struct token *attr = P->t;
            next(P);
            if (attr->kind == T_NAME) {
                struct node *g = name_node(P, attr, E_ATTR);
                if (!g) return NULL;
                g->line = at->line, g->pos = at->pos;
                g->a = n;
                n = g;
            } else if (attr->kind == T_INT) {
                struct node *g = mk(P, E_ITEM, at), *k = mk(P, E_CONST, attr);
                if (!g || !k || !(k->value = cv_int(P->a, attr->ival))) return NULL;
                g->a = n;
                g->b = k;
                n = g;
            } else return pfail_at(P, attr, "expected name or number"), NULL;
        } else if (at->kind == T_LBRACKET) {
            next(P);
            struct node *g = mk(P, E_ITEM, at);
            if (!g) return NULL;
            g->a = n;
            struct node *first = NULL, *tuple = NULL;
            while (P->t->kind != T_RBRACKET) {
                if (first && !expect(P, T_COMMA)) return NULL;
                struct node *s = parse_subscribed(P);
                if (!s) return NULL;
                if (!first) first = s;
                else {
                    if (!tuple && (!(tuple = mk(P, E_TUPLE, at)) || list_push(P, &tuple->list, first))) return NULL;
                    if (list_push(P, &tuple->list, s)) return NULL;
                }
            }
            if (!expect(P, T_RBRACKET)) return NULL;
            if (!first) return pfail_at(P, at, "expected a subscript expression"), NULL;
            g->b = tuple ? tuple : first;
            n = g;
        } else if (at->kind == T_LPAREN) {
            struct node *call = mk(P, E_CALL, at);
            if (!call) return NULL;
            call->a = n;
            if (!parse_call_args(P, call)) return NULL;
            n = call;
        } else return n;
    }
}

static struct node *parse_filter(struct parser *P, struct node *n, bool start_inline) {
    while (P->t->kind == T_PIPE || start_inline) {
        if (!start_inline) next(P);
        start_inline = false;
        if (P->t->kind != T_NAME) return PFAIL(P, "expected a filter name");
        struct node *f = name_node(P, P->t, E_FILTER);
        if (!f) return NULL;
        next(P);
        while (P->t->kind == T_DOT) {
            next(P);
            if (P->t->kind != T_NAME) return PFAIL(P, "expected a name");
            f->name = "(dotted name)";
            next(P);
        }
        f->a = n;
        if (P->t->kind == T_LPAREN && !parse_call_args(P, f)) return NULL;
        n = f;
    }
    return n;
}

// ---------------------------------------------------------------- statements

static struct node *parse_assign_target(struct parser *P, const char *extra_end, bool with_namespace,
                                        bool name_only) {
    struct node *t;
    if (name_only) {
        if (P->t->kind != T_NAME) return PFAIL(P, "expected a name");
        t = name_node(P, P->t, E_NAME);
        next(P);
    } else t = parse_tuple(P, true, true, extra_end, false, with_namespace);
    if (!t) return NULL;
    // Only names, namespace attributes and tuples of names can be assigned.
    bool ok = t->kind == E_NAME || t->kind == E_NSREF;
    if (t->kind == E_TUPLE) {
        ok = true;
        for (int i = 0; i < t->list.n; i++)
            if (t->list.v[i]->kind != E_NAME) ok = false;
    }
    if (!ok) return pfail_at(P, P->t, "can't assign to this expression"), NULL;
    if (t->kind == E_NAME && (strcmp(t->name, "true") == 0 || strcmp(t->name, "none") == 0))
        return pfail_at(P, P->t, "can't assign to '%s'", t->name), NULL;
    return t;
}

static bool parse_signature(struct parser *P, struct node *n) {
    if (!expect(P, T_LPAREN)) return false;
    while (P->t->kind != T_RPAREN) {
        if (n->list.n && !expect(P, T_COMMA)) return false;
        struct node *arg = parse_assign_target(P, NULL, false, true);
        if (!arg) return false;
        if (P->t->kind == T_ASSIGN) {
            next(P);
            if (list_push(P, &n->list2, parse_expression(P, true))) return false;
        } else if (n->list2.n) return pfail_at(P, P->t, "non-default argument follows default argument"), false;
        if (list_push(P, &n->list, arg)) return false;
    }
    return expect(P, T_RPAREN);
}

// Depth-first walks over the AST use an explicit stack: a template can nest
// expressions (a + b + c + ...) or elif chains far deeper than the C stack allows.
struct walk_item {
    struct node *n;
    bool soft;
};
struct walk {
    struct walk_item *v;
    size_t n, cap;
    bool failed;
};

static void walk_push(struct walk *w, struct node *n, bool soft) {
    if (!n || w->failed) return;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct walk_item *v = realloc(w->v, cap * sizeof *v);
        if (!v) {
            w->failed = true;
            return;
        }
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = (struct walk_item){n, soft};
}

static void walk_children(struct walk *w, struct node *n, bool soft) {
    struct node *kids[4] = {n->a, n->b, n->c, n->d};
    for (int i = 0; i < 4; i++) walk_push(w, kids[i], soft);
    struct node_list *lists[3] = {&n->list, &n->list2, &n->list3};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < lists[k]->n; i++) walk_push(w, lists[k]->v[i], soft);
}

// Which of caller / varargs / kwargs a macro body uses (not counting nested macros); -1 if out of memory.
static int uses_names_list(const struct node_list *body) {
    struct walk w = {0};
    for (int i = 0; i < body->n; i++) walk_push(&w, body->v[i], false);
    int u = 0;
    while (w.n && !w.failed) {
        struct node *n = w.v[--w.n].n;
        if (n->kind == E_NAME) {
            if (strcmp(n->name, "caller") == 0) u |= USES_CALLER;
            else if (strcmp(n->name, "varargs") == 0) u |= USES_VARARGS;
            else if (strcmp(n->name, "kwargs") == 0) u |= USES_KWARGS;
        } else if (n->kind != S_MACRO) walk_children(&w, n, false);
    }
    free(w.v);
    return w.failed ? -1 : u;
}

static struct node *parse_for(struct parser *P, const struct token *at) {
    struct node *n = mk(P, S_FOR, at);
    if (!n || !(n->a = parse_assign_target(P, "in", false, false)) || !expect_name(P, "in")) return NULL;
    if (!(n->b = parse_tuple(P, false, false, "recursive", false, false))) return NULL;
    if (is_name(P->t, "if")) {
        next(P);
        if (!(n->c = parse_expression(P, true))) return NULL;
    }
    if (is_name(P->t, "recursive")) return PFAIL(P, "recursive for loops are not supported");
    static const char *const ends[] = {"endfor", "else", NULL};
    bool ok;
    P->loop_depth++;
    n->list = parse_statements(P, ends, false, &ok);
    P->loop_depth--;
    if (!ok) return NULL;
    bool has_else = is_name(P->t, "else");
    next(P);
    if (has_else) {
        static const char *const ends2[] = {"endfor", NULL};
        n->list2 = parse_statements(P, ends2, true, &ok);
        if (!ok) return NULL;
    }
    return n;
}

static struct node *parse_if(struct parser *P, const struct token *at) {
    struct node *top = mk(P, S_IF, at), *n = top;
    if (!top) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const ends2[] = {"endif", NULL};
    bool ok;
    for (;;) {
        if (!(n->a = parse_tuple(P, false, false, NULL, false, false))) return NULL;
        n->list = parse_statements(P, ends, false, &ok);
        if (!ok) return NULL;
        if (is_name(P->t, "elif")) {
            const struct token *el = P->t;
            next(P);
            struct node *inner = mk(P, S_IF, el);
            if (!inner || list_push(P, &n->list2, inner)) return NULL;
            inner->op = 1; // an elif: the evaluator walks the chain without recursing
            n = inner;
            continue;
        }
        if (is_name(P->t, "else")) {
            next(P);
            n->list2 = parse_statements(P, ends2, true, &ok);
            if (!ok) return NULL;
        } else next(P); // endif
        return top;
    }
}

static struct node *parse_set(struct parser *P, const struct token *at) {
    struct node *target = parse_assign_target(P, NULL, true, false);
    if (!target) return NULL;
    if (P->t->kind == T_ASSIGN) {
        next(P);
        struct node *n = mk(P, S_SET, at);
        if (!n) return NULL;
        n->a = target;
        n->b = parse_tuple(P, false, true, NULL, false, false);
        return n->b ? n : NULL;
    }
    struct node *n = mk(P, S_SET_BLOCK, at);
    if (!n) return NULL;
    n->a = target;
    if (P->t->kind == T_PIPE && !(n->b = parse_filter(P, NULL, false))) return NULL;
    static const char *const ends[] = {"endset", NULL};
    bool ok;
    n->list = parse_statements(P, ends, true, &ok);
    return ok ? n : NULL;
}

static struct node *parse_statement(struct parser *P) {
    const struct token *at = P->t;
    if (at->kind != T_NAME) return PFAIL(P, "tag name expected");
    if (!enter(P)) return NULL;
    char tag[32];
    snprintf(tag, sizeof tag, "%.*s", (int)(at->len < 31 ? at->len : 31), at->s);
    if (P->n_open < (int)(sizeof P->open_tag / sizeof P->open_tag[0])) P->open_tag[P->n_open] = copy_name(P, at);
    P->n_open++;
    next(P);
    struct node *n = NULL;
    bool ok;
    if (strcmp(tag, "for") == 0) n = parse_for(P, at);
    else if (strcmp(tag, "if") == 0) n = parse_if(P, at);
    else if (strcmp(tag, "set") == 0) n = parse_set(P, at);
    else if (strcmp(tag, "macro") == 0 || strcmp(tag, "call") == 0) {
        bool is_macro = tag[0] == 'm';
        n = mk(P, is_macro ? S_MACRO : S_CALL_BLOCK, at);
        if (!n) goto out;
        if (is_macro) {
            if (P->t->kind != T_NAME) {
                n = PFAIL(P, "expected a macro name");
                goto out;
            }
            n->name = copy_name(P, P->t);
            n->name_len = P->t->len;
            next(P);
            if (!parse_signature(P, n)) goto fail;
        } else {
            if (P->t->kind == T_LPAREN && !parse_signature(P, n)) goto fail;
            const struct token *call_at = P->t;
            if (!(n->a = parse_expression(P, true))) goto fail;
            if (n->a->kind != E_CALL) {
                n = (pfail_at(P, call_at, "expected call"), NULL);
                goto out;
            }
        }
        static const char *const mends[] = {"endmacro", NULL}, *const cends[] = {"endcall", NULL};
        int saved_loop = P->loop_depth;
        P->loop_depth = 0; // break does not reach through a macro
        n->list3 = parse_statements(P, is_macro ? mends : cends, true, &ok);
        P->loop_depth = saved_loop;
        if (!ok) goto fail;
        int uses = uses_names_list(&n->list3);
        if (uses < 0) {
            err_set(P->err, "out of memory");
            goto fail;
        }
        n->op = (uint8_t)uses;
    } else if (strcmp(tag, "filter") == 0) {
        n = mk(P, S_FILTER_BLOCK, at);
        if (!n || !(n->b = parse_filter(P, NULL, true))) goto fail;
        static const char *const ends[] = {"endfilter", NULL};
        n->list = parse_statements(P, ends, true, &ok);
        if (!ok) goto fail;
    } else if (strcmp(tag, "with") == 0) {
        n = mk(P, S_WITH, at);
        if (!n) goto out;
        while (P->t->kind != T_BLOCK_END) {
            if (n->list.n && !expect(P, T_COMMA)) goto fail;
            if (list_push(P, &n->list, parse_assign_target(P, NULL, false, false))) goto fail;
            if (!expect(P, T_ASSIGN) || list_push(P, &n->list2, parse_expression(P, true))) goto fail;
        }
        static const char *const ends[] = {"endwith", NULL};
        n->list3 = parse_statements(P, ends, true, &ok);
        if (!ok) goto fail;
    } else if (strcmp(tag, "block") == 0 || strcmp(tag, "generation") == 0) {
        bool is_block = tag[0] == 'b';
        n = mk(P, S_SCOPE, at);
        if (!n) goto out;
        if (is_block) {
            if (P->t->kind != T_NAME) {
                n = PFAIL(P, "expected a block name");
                goto out;
            }
            next(P);
            if (is_name(P->t, "scoped")) next(P);
            if (is_name(P->t, "required")) next(P);
        }
        static const char *const bends[] = {"endblock", NULL}, *const gends[] = {"endgeneration", NULL};
        n->list = parse_statements(P, is_block ? bends : gends, true, &ok);
        if (!ok) goto fail;
        if (is_block && P->t->kind == T_NAME) next(P); // {% endblock name %}
    } else if (strcmp(tag, "print") == 0) {
        n = mk(P, S_PRINT, at);
        if (!n) goto out;
        struct node *t = mk(P, E_TUPLE, at);
        if (!t) goto fail;
        while (P->t->kind != T_BLOCK_END) {
            if (t->list.n && !expect(P, T_COMMA)) goto fail;
            if (list_push(P, &t->list, parse_expression(P, true))) goto fail;
        }
        // {% print a, b %} prints each expression.
        n->a = t->list.n == 1 ? t->list.v[0] : t;
        if (t->list.n > 1) {
            n->kind = S_SCOPE;
            for (int i = 0; i < t->list.n; i++) {
                struct node *p = mk(P, S_PRINT, at);
                if (!p) goto fail;
                p->a = t->list.v[i];
                if (list_push(P, &n->list, p)) goto fail;
            }
        } else if (t->list.n == 0) n->kind = S_SCOPE;
    } else if (strcmp(tag, "break") == 0 || strcmp(tag, "continue") == 0) {
        if (P->loop_depth == 0) {
            n = (pfail_at(P, at, "'%s' outside of a loop", tag), NULL);
            goto out;
        }
        n = mk(P, tag[0] == 'b' ? S_BREAK : S_CONTINUE, at);
    } else if (strcmp(tag, "extends") == 0 || strcmp(tag, "include") == 0 || strcmp(tag, "import") == 0 ||
               strcmp(tag, "from") == 0 || strcmp(tag, "autoescape") == 0) {
        n = (pfail_at(P, at, "the '%s' tag is not supported in chat templates", tag), NULL);
    } else {
        n = (pfail_at(P, at, "encountered unknown tag '%s'", tag), NULL);
    }
    goto out;
fail:
    n = NULL;
out:
    P->n_open--;
    P->depth--;
    return n;
}

static bool tag_in(const struct token *t, const char *const *tags) {
    for (; tags && *tags; tags++)
        if (is_name(t, *tags)) return true;
    return false;
}

// Template text, {{ }} and {% %} until one of end_tags (the cursor is then on
// that tag's name) or the end of the template (then end_tags must be NULL).
static struct node_list subparse(struct parser *P, const char *const *end_tags, bool *ok) {
    struct node_list body = {0};
    *ok = false;
    for (;;) {
        const struct token *t = P->t;
        if (t->kind == T_EOF) break;
        if (t->kind == T_DATA) {
            struct node *n = mk(P, S_DATA, t);
            if (!n || !(n->value = cv_str(P->a, (struct cstr){t->s, NULL, t->len})) || list_push(P, &body, n)) return body;
            next(P);
        } else if (t->kind == T_VAR_BEGIN) {
            next(P);
            struct node *n = mk(P, S_PRINT, t);
            if (!n || !(n->a = parse_tuple(P, false, true, NULL, false, false)) || list_push(P, &body, n)) return body;
            if (!expect(P, T_VAR_END)) return body;
        } else if (t->kind == T_BLOCK_BEGIN) {
            next(P);
            if (end_tags && tag_in(P->t, end_tags)) {
                *ok = true;
                return body;
            }
            if (list_push(P, &body, parse_statement(P))) return body;
            if (!expect(P, T_BLOCK_END)) return body;
        } else {
            char b[80];
            pfail_at(P, t, "unexpected '%s'", describe(t, b, sizeof b));
            return body;
        }
    }
    if (end_tags) {
        char want[200] = "";
        for (const char *const *e = end_tags; *e; e++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", e == end_tags ? "" : " or ", *e);
        const char *open = P->n_open > 0 && P->n_open <= (int)(sizeof P->open_tag / sizeof P->open_tag[0])
                               ? P->open_tag[P->n_open - 1] : NULL;
        pfail_at(P, P->t, "unexpected end of template: looking for %s to close '%s'", want, open ? open : "?");
        return body;
    }
    *ok = true;
    return body;
}

static struct node_list parse_statements(struct parser *P, const char *const *end_tags, bool drop_needle, bool *ok) {
    struct node_list none = {0};
    *ok = false;
    if (P->t->kind == T_COLON) next(P);
    if (!expect(P, T_BLOCK_END)) return none;
    struct node_list body = subparse(P, end_tags, ok);
    if (*ok && drop_needle) next(P);
    return body;
}

// jinja2 rejects an unknown filter or test when compiling, except where an
// `if` (statement or expression) decides whether it runs: there it is an error
// only if it is reached. Loops, macros and blocks start over.
static int check_names(struct parser *P, const struct node_list *body) {
    struct walk w = {0};
    for (int i = 0; i < body->n; i++) walk_push(&w, body->v[i], false);
    int rc = 0;
    while (w.n && !w.failed) {
        struct walk_item it = w.v[--w.n];
        struct node *n = it.n;
        if (n->kind == E_FILTER || n->kind == E_TEST) {
            n->builtin = n->kind == E_FILTER ? builtin_filter_find(n->name, strlen(n->name))
                                             : builtin_test_find(n->name, strlen(n->name));
            if (n->builtin < 0 && !it.soft) {
                struct token at = {.line = n->line, .pos = n->pos};
                rc = pfail_at(P, &at, "no %s named '%s'", n->kind == E_FILTER ? "filter" : "test", n->name);
                break;
            }
        }
        bool child_soft = it.soft;
        if (n->kind == S_IF || n->kind == E_COND) child_soft = true;
        else if (n->kind == S_FOR || n->kind == S_MACRO || n->kind == S_CALL_BLOCK || n->kind == S_SET_BLOCK ||
                 n->kind == S_FILTER_BLOCK || n->kind == S_WITH || n->kind == S_SCOPE)
            child_soft = false;
        walk_children(&w, n, child_soft);
    }
    if (w.failed) rc = err_set(P->err, "out of memory");
    free(w.v);
    return rc;
}

// Marks the expressions that contain a slice (post-order, explicit stack).
static int mark_slices(const struct node_list *body) {
    struct walk w = {0};
    for (int i = 0; i < body->n; i++) walk_push(&w, body->v[i], false);
    while (w.n && !w.failed) {
        struct walk_item *it = &w.v[w.n - 1];
        struct node *n = it->n;
        if (!it->soft) { // first visit: children first
            it->soft = true;
            walk_children(&w, n, false);
            continue;
        }
        w.n--;
        if (n->kind >= S_DATA) continue; // statements are not folded; their expressions are marked on their own
        bool slice = n->kind == E_SLICE;
        struct node *kids[4] = {n->a, n->b, n->c, n->d};
        for (int i = 0; i < 4 && !slice; i++) slice = kids[i] && kids[i]->has_slice;
        const struct node_list *lists[3] = {&n->list, &n->list2, &n->list3};
        for (int k = 0; k < 3 && !slice; k++)
            for (int i = 0; i < lists[k]->n && !slice; i++) slice = lists[k]->v[i]->has_slice;
        n->has_slice = slice;
    }
    int rc = w.failed ? -1 : 0;
    free(w.v);
    return rc;
}

int chat_parse(struct chat_template *t, const char *src, size_t len, llm_err *err) {
    // jinja2 turns every \r\n and \r into \n and drops one trailing newline.
    char *s = arena_alloc(&t->a, len + 1);
    if (!s) return err_set(err, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;

    struct lexer L = {.a = &t->a, .src = s, .len = n, .err = err};
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
    L.line_starts = arena_alloc(&t->a, lines * sizeof *L.line_starts);
    if (!L.line_starts) return err_set(err, "out of memory");
    L.line_starts[L.n_lines++] = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') L.line_starts[L.n_lines++] = i + 1;
    if (lex(&L)) return -1;
    if (!emit(&L, T_EOF, n)) return err_set(err, "out of memory");

    struct parser P = {.a = &t->a, .L = &L, .t = &L.toks[0], .err = err};
    bool ok;
    t->body = subparse(&P, NULL, &ok);
    if (!ok) return -1;
    if (check_names(&P, &t->body)) return -1;
    if (mark_slices(&t->body)) return err_set(err, "out of memory");
    return 0;
}
