// Backtracking regex engine for pre-tokenizer patterns (see regex.h).
#include "regex.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

enum node_kind { N_CLASS, N_SEQ, N_ALT, N_REPEAT, N_LOOK, N_BOL, N_EOL };

struct range {
    uint32_t lo, hi;
};

struct node {
    enum node_kind kind;
    // N_CLASS
    struct range *r;
    size_t nr;
    bool neg;
    // N_SEQ / N_ALT: children; N_REPEAT / N_LOOK: child[0]
    struct node **child;
    size_t nc;
    uint32_t min, max; // N_REPEAT (max UINT32_MAX = unbounded)
    bool look_neg;     // N_LOOK
    // single-character predicate: the node always consumes exactly one char and
    // its result depends only on that char (no backtracking choices)
    bool single;
};

struct tok_regex {
    struct node *root;
    struct node **all; // every node, for freeing
    size_t n_all, cap_all;
    bool collapsed;
};

struct parser {
    const uint32_t *p;
    size_t n, i;
    struct tok_regex *re;
    llm_err *err;
    int failed;
};

static struct node *new_node(struct parser *ps, enum node_kind k) {
    struct tok_regex *re = ps->re;
    if (re->n_all == re->cap_all) {
        size_t nc = re->cap_all ? re->cap_all * 2 : 32;
        struct node **na = realloc(re->all, nc * sizeof *na);
        if (!na) {
            ps->failed = 1;
            return NULL;
        }
        re->all = na;
        re->cap_all = nc;
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n) {
        ps->failed = 1;
        return NULL;
    }
    n->kind = k;
    re->all[re->n_all++] = n;
    return n;
}

static void add_child(struct parser *ps, struct node *n, struct node *c) {
    if (!n || !c) {
        ps->failed = 1;
        return;
    }
    struct node **nc = realloc(n->child, (n->nc + 1) * sizeof *nc);
    if (!nc) {
        ps->failed = 1;
        return;
    }
    n->child = nc;
    n->child[n->nc++] = c;
}

static void add_range(struct parser *ps, struct node *n, uint32_t lo, uint32_t hi) {
    if (!n) return;
    struct range *nr = realloc(n->r, (n->nr + 1) * sizeof *nr);
    if (!nr) {
        ps->failed = 1;
        return;
    }
    n->r = nr;
    n->r[n->nr++] = (struct range){lo, hi};
}

static bool at(struct parser *ps, uint32_t c) { return ps->i < ps->n && ps->p[ps->i] == c; }

static void fail(struct parser *ps, const char *what) {
    if (!ps->failed) err_set(ps->err, "pre-tokenizer regex: %s at position %zu", what, ps->i);
    ps->failed = 2;
}

// Character sets of the class escapes. \s is isspace() of the C locale.
static void add_space(struct parser *ps, struct node *n) {
    add_range(ps, n, '\t', '\r');
    add_range(ps, n, ' ', ' ');
}

// \p{X} in collapsed mode: the category byte plus X's ASCII members (llama.cpp k_ucat_map).
static bool add_category(struct parser *ps, struct node *n, const char *name) {
    if (!strcmp(name, "N")) {
        add_range(ps, n, 0xD1, 0xD1);
        add_range(ps, n, '0', '9');
    } else if (!strcmp(name, "L") || !strcmp(name, "Lu") || !strcmp(name, "Ll") || !strcmp(name, "Lt") ||
               !strcmp(name, "Lm") || !strcmp(name, "Lo")) {
        add_range(ps, n, 0xD2, 0xD2);
        add_range(ps, n, 'A', 'Z');
        add_range(ps, n, 'a', 'z');
    } else if (!strcmp(name, "P")) {
        static const struct range pr[] = {{0xD3, 0xD3}, {0x21, 0x23}, {0x25, 0x2A}, {0x2C, 0x2F}, {0x3A, 0x3B},
                                          {0x3F, 0x40}, {0x5B, 0x5D}, {0x5F, 0x5F}, {0x7B, 0x7B}, {0x7D, 0x7D}};
        for (size_t i = 0; i < sizeof pr / sizeof pr[0]; i++) add_range(ps, n, pr[i].lo, pr[i].hi);
    } else if (!strcmp(name, "M")) {
        add_range(ps, n, 0xD4, 0xD4);
    } else if (!strcmp(name, "S")) {
        static const struct range sr[] = {{0xD5, 0xD5}, {0x24, 0x24}, {0x2B, 0x2B}, {0x3C, 0x3E},
                                          {0x5E, 0x5E}, {0x60, 0x60}, {0x7C, 0x7C}, {0x7E, 0x7E}};
        for (size_t i = 0; i < sizeof sr / sizeof sr[0]; i++) add_range(ps, n, sr[i].lo, sr[i].hi);
    } else {
        return false;
    }
    return true;
}

// Escape after '\' (ps->i at the escaped char). Adds to class node `n`, or
// returns the literal code point in *lit (returns 1) / 0 if it added a set.
static int parse_escape(struct parser *ps, struct node *n, uint32_t *lit) {
    if (ps->i >= ps->n) {
        fail(ps, "trailing backslash");
        return 0;
    }
    uint32_t c = ps->p[ps->i++];
    switch (c) {
    case 's': add_space(ps, n); return 0;
    case 'd': add_range(ps, n, '0', '9'); return 0;
    case 'w':
        add_range(ps, n, '0', '9');
        add_range(ps, n, 'A', 'Z');
        add_range(ps, n, 'a', 'z');
        add_range(ps, n, '_', '_');
        return 0;
    case 'p': {
        if (!ps->re->collapsed) {
            fail(ps, "\\p{..} needs collapsed mode");
            return 0;
        }
        char name[8];
        size_t k = 0;
        if (!at(ps, '{')) {
            fail(ps, "bad \\p");
            return 0;
        }
        ps->i++;
        while (ps->i < ps->n && ps->p[ps->i] != '}' && k < sizeof name - 1) name[k++] = (char)ps->p[ps->i++];
        name[k] = 0;
        if (!at(ps, '}') || !add_category(ps, n, name)) {
            fail(ps, "unsupported \\p{..} category");
            return 0;
        }
        ps->i++;
        return 0;
    }
    case 'r': *lit = '\r'; return 1;
    case 'n': *lit = '\n'; return 1;
    case 't': *lit = '\t'; return 1;
    case 'f': *lit = '\f'; return 1;
    case 'v': *lit = '\v'; return 1;
    case '0': *lit = 0; return 1;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            fail(ps, "unsupported escape");
            return 0;
        }
        *lit = c;
        return 1;
    }
}

static void complement_sets(struct parser *ps, struct node *n, uint32_t c) {
    // \S \D \W inside or outside a class: a negated sub-class is emulated by
    // adding the complement ranges (text values are < 0x200000).
    struct node tmp = {0};
    uint32_t lit;
    uint32_t pat[2] = {'\\', c == 'S' ? 's' : c == 'D' ? 'd' : 'w'};
    struct parser sub = {pat, 2, 1, ps->re, ps->err, 0};
    parse_escape(&sub, &tmp, &lit);
    if (sub.failed) ps->failed = sub.failed;
    // sort tmp ranges (few) and add the gaps
    for (size_t i = 0; i < tmp.nr; i++)
        for (size_t j = i + 1; j < tmp.nr; j++)
            if (tmp.r[j].lo < tmp.r[i].lo) {
                struct range t = tmp.r[i];
                tmp.r[i] = tmp.r[j];
                tmp.r[j] = t;
            }
    uint32_t next = 0;
    for (size_t i = 0; i < tmp.nr; i++) {
        if (tmp.r[i].lo > next) add_range(ps, n, next, tmp.r[i].lo - 1);
        if (tmp.r[i].hi + 1 > next) next = tmp.r[i].hi + 1;
    }
    add_range(ps, n, next, 0x1FFFFF);
    free(tmp.r);
}

static struct node *parse_class(struct parser *ps) {
    struct node *n = new_node(ps, N_CLASS);
    if (!n) return NULL;
    n->single = true;
    ps->i++; // '['
    if (at(ps, '^')) {
        n->neg = true;
        ps->i++;
    }
    bool first = true;
    while (ps->i < ps->n && (!at(ps, ']') || first)) {
        first = false;
        uint32_t lo;
        if (at(ps, '\\')) {
            ps->i++;
            if (ps->i < ps->n && (ps->p[ps->i] == 'S' || ps->p[ps->i] == 'D' || ps->p[ps->i] == 'W')) {
                complement_sets(ps, n, ps->p[ps->i++]);
                continue;
            }
            if (!parse_escape(ps, n, &lo)) continue;
        } else {
            lo = ps->p[ps->i++];
        }
        uint32_t hi = lo;
        if (at(ps, '-') && ps->i + 1 < ps->n && ps->p[ps->i + 1] != ']') {
            ps->i++;
            if (at(ps, '\\')) {
                ps->i++;
                if (!parse_escape(ps, n, &hi)) {
                    fail(ps, "bad class range");
                    return n;
                }
            } else {
                hi = ps->p[ps->i++];
            }
            if (hi < lo) {
                fail(ps, "bad class range order");
                return n;
            }
        }
        add_range(ps, n, lo, hi);
    }
    if (!at(ps, ']')) fail(ps, "unterminated class");
    else ps->i++;
    return n;
}

static struct node *parse_alt(struct parser *ps);

static struct node *parse_atom(struct parser *ps) {
    uint32_t c = ps->p[ps->i];
    if (c == '(') {
        ps->i++;
        struct node *n;
        if (at(ps, '?')) {
            ps->i++;
            uint32_t k = ps->i < ps->n ? ps->p[ps->i++] : 0;
            if (k == ':') {
                n = parse_alt(ps);
            } else if (k == '=' || k == '!') {
                n = new_node(ps, N_LOOK);
                if (n) {
                    n->look_neg = k == '!';
                    add_child(ps, n, parse_alt(ps));
                }
            } else {
                fail(ps, "unsupported group");
                return NULL;
            }
        } else {
            n = parse_alt(ps);
        }
        if (!at(ps, ')')) {
            fail(ps, "missing )");
            return n;
        }
        ps->i++;
        return n;
    }
    if (c == '[') return parse_class(ps);
    if (c == '^' || c == '$') {
        ps->i++;
        return new_node(ps, c == '^' ? N_BOL : N_EOL);
    }
    struct node *n = new_node(ps, N_CLASS);
    if (!n) return NULL;
    n->single = true;
    ps->i++;
    if (c == '.') {
        n->neg = true;
        add_range(ps, n, '\n', '\n');
        add_range(ps, n, '\r', '\r');
        add_range(ps, n, 0x2028, 0x2029);
        return n;
    }
    if (c == '\\') {
        if (ps->i < ps->n && (ps->p[ps->i] == 'S' || ps->p[ps->i] == 'D' || ps->p[ps->i] == 'W')) {
            complement_sets(ps, n, ps->p[ps->i++]);
            return n;
        }
        uint32_t lit;
        if (parse_escape(ps, n, &lit)) add_range(ps, n, lit, lit);
        return n;
    }
    add_range(ps, n, c, c);
    return n;
}

static bool parse_uint(struct parser *ps, uint32_t *out) {
    if (!(ps->i < ps->n && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9')) return false;
    uint32_t x = 0;
    while (ps->i < ps->n && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9' && x < 100000) x = x * 10 + (ps->p[ps->i++] - '0');
    *out = x;
    return true;
}

static struct node *parse_seq(struct parser *ps) {
    struct node *seq = new_node(ps, N_SEQ);
    while (ps->i < ps->n && !at(ps, '|') && !at(ps, ')') && !ps->failed) {
        struct node *a = parse_atom(ps);
        if (ps->failed) break;
        uint32_t mn = 1, mx = 1;
        bool q = false;
        if (at(ps, '*')) mn = 0, mx = UINT32_MAX, q = true, ps->i++;
        else if (at(ps, '+')) mn = 1, mx = UINT32_MAX, q = true, ps->i++;
        else if (at(ps, '?')) mn = 0, mx = 1, q = true, ps->i++;
        else if (at(ps, '{')) {
            size_t save = ps->i;
            ps->i++;
            if (parse_uint(ps, &mn)) {
                mx = mn;
                if (at(ps, ',')) {
                    ps->i++;
                    if (!parse_uint(ps, &mx)) mx = UINT32_MAX;
                }
                if (at(ps, '}')) {
                    ps->i++;
                    q = true;
                } else {
                    ps->i = save;
                }
            } else {
                ps->i = save;
            }
            if (!q) { // literal '{'
                add_child(ps, seq, a);
                a = new_node(ps, N_CLASS);
                if (a) {
                    a->single = true;
                    add_range(ps, a, '{', '{');
                }
                ps->i++;
            }
        }
        if (q && at(ps, '?')) {
            fail(ps, "lazy quantifiers are not supported");
            break;
        }
        if (q) {
            struct node *r = new_node(ps, N_REPEAT);
            if (r) {
                r->min = mn;
                r->max = mx;
                add_child(ps, r, a);
            }
            a = r;
        }
        add_child(ps, seq, a);
    }
    return seq;
}

static struct node *parse_alt(struct parser *ps) {
    struct node *first = parse_seq(ps);
    if (!at(ps, '|')) return first;
    struct node *alt = new_node(ps, N_ALT);
    add_child(ps, alt, first);
    while (at(ps, '|') && !ps->failed) {
        ps->i++;
        add_child(ps, alt, parse_seq(ps));
    }
    return alt;
}

// Marks nodes that match exactly one char with a fixed predicate (no choices).
static bool mark_single(struct node *n) {
    if (!n) return false;
    for (size_t i = 0; i < n->nc; i++) mark_single(n->child[i]);
    switch (n->kind) {
    case N_CLASS: n->single = true; break;
    case N_SEQ: {
        // lookaheads of single nodes, then one single node
        bool ok = n->nc >= 1 && n->child[n->nc - 1]->single;
        for (size_t i = 0; ok && i + 1 < n->nc; i++)
            ok = n->child[i]->kind == N_LOOK && n->child[i]->child[0]->single;
        n->single = ok;
        break;
    }
    case N_ALT: {
        bool ok = n->nc > 0;
        for (size_t i = 0; ok && i < n->nc; i++) ok = n->child[i]->single;
        n->single = ok;
        break;
    }
    default: n->single = false;
    }
    return n->single;
}

static bool class_has(const struct node *n, uint32_t c) {
    bool in = false;
    for (size_t i = 0; i < n->nr && !in; i++) in = c >= n->r[i].lo && c <= n->r[i].hi;
    return in != n->neg;
}

// Predicate of a single node on char c.
static bool single_match(const struct node *n, uint32_t c) {
    switch (n->kind) {
    case N_CLASS: return class_has(n, c);
    case N_SEQ:
        for (size_t i = 0; i + 1 < n->nc; i++) {
            const struct node *lk = n->child[i];
            if (single_match(lk->child[0], c) == lk->look_neg) return false;
        }
        return single_match(n->child[n->nc - 1], c);
    case N_ALT:
        for (size_t i = 0; i < n->nc; i++)
            if (single_match(n->child[i], c)) return true;
        return false;
    default: return false;
    }
}

struct tok_regex *tok_regex_compile(const char *pattern, int *kind, llm_err *err) {
    size_t bl = strlen(pattern);
    uint32_t *cp = malloc((bl + 1) * sizeof *cp);
    struct tok_regex *re = calloc(1, sizeof *re);
    if (!cp || !re) {
        free(cp);
        free(re);
        err_set(err, "out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t off = 0; off < bl;) cp[n++] = tok_utf8_next(pattern, bl, &off);
    re->collapsed = strstr(pattern, "\\p{") != NULL;
    struct parser ps = {cp, n, 0, re, err, 0};
    re->root = parse_alt(&ps);
    if (!ps.failed && ps.i != n) fail(&ps, "unbalanced )");
    free(cp);
    if (ps.failed) {
        if (ps.failed == 1) err_set(err, "out of memory compiling a regex");
        tok_regex_free(re);
        return NULL;
    }
    mark_single(re->root);
    *kind = re->collapsed ? TOK_REGEX_COLLAPSED : TOK_REGEX_WIDE;
    return re;
}

void tok_regex_free(struct tok_regex *re) {
    if (!re) return;
    for (size_t i = 0; i < re->n_all; i++) {
        free(re->all[i]->r);
        free(re->all[i]->child);
        free(re->all[i]);
    }
    free(re->all);
    free(re);
}

// ---------------------------------------------------------------------------
// Matching: continuation-passing backtracking.

struct ctx {
    const uint32_t *t;
    size_t a, b;
};

struct cont {
    const struct node *n;
    size_t idx; // N_SEQ: next child; N_REPEAT: iterations done
    size_t pos0; // N_REPEAT: where the current iteration started
    const struct cont *next;
};

static int64_t match(const struct ctx *c, const struct node *n, size_t pos, const struct cont *k);

static int64_t run(const struct ctx *c, const struct cont *k, size_t pos);

static int64_t repeat_from(const struct ctx *c, const struct node *n, size_t count, size_t pos, const struct cont *k) {
    const struct node *ch = n->child[0];
    if (ch->single) {
        // Greedy over a one-char predicate: take as many as allowed, then back off.
        size_t m = 0;
        size_t lim = n->max == UINT32_MAX ? (size_t)-1 : n->max - count;
        while (m < lim && pos + m < c->b && single_match(ch, c->t[pos + m])) m++;
        size_t need = count < n->min ? n->min - count : 0;
        if (m < need) return -1;
        for (size_t j = m + 1; j-- > need;) {
            int64_t r = run(c, k, pos + j);
            if (r >= 0) return r;
        }
        return -1;
    }
    if (count < n->min) {
        struct cont kk = {n, count + 1, pos, k};
        return match(c, ch, pos, &kk);
    }
    if (n->max == UINT32_MAX || count < n->max) {
        struct cont kk = {n, count + 1, pos, k};
        int64_t r = match(c, ch, pos, &kk);
        if (r >= 0) return r;
    }
    return run(c, k, pos);
}

static int64_t run(const struct ctx *c, const struct cont *k, size_t pos) {
    if (!k) return (int64_t)pos;
    const struct node *n = k->n;
    if (n->kind == N_SEQ) {
        if (k->idx == n->nc) return run(c, k->next, pos);
        struct cont kk = {n, k->idx + 1, 0, k->next};
        return match(c, n->child[k->idx], pos, &kk);
    }
    if (n->kind == N_REPEAT) {
        // an iteration finished; an empty iteration beyond the minimum ends the loop
        if (pos == k->pos0 && k->idx > n->min) return -1;
        return repeat_from(c, n, k->idx, pos, k->next);
    }
    return match(c, n, pos, k->next);
}

static int64_t match(const struct ctx *c, const struct node *n, size_t pos, const struct cont *k) {
    switch (n->kind) {
    case N_CLASS:
        if (pos < c->b && class_has(n, c->t[pos])) return run(c, k, pos + 1);
        return -1;
    case N_SEQ: {
        if (n->nc == 0) return run(c, k, pos);
        struct cont kk = {n, 1, 0, k};
        return match(c, n->child[0], pos, &kk);
    }
    case N_ALT:
        for (size_t i = 0; i < n->nc; i++) {
            int64_t r = match(c, n->child[i], pos, k);
            if (r >= 0) return r;
        }
        return -1;
    case N_REPEAT: return repeat_from(c, n, 0, pos, k);
    case N_LOOK: {
        bool ok = match(c, n->child[0], pos, NULL) >= 0;
        if (ok == n->look_neg) return -1;
        return run(c, k, pos);
    }
    case N_BOL: return pos == c->a ? run(c, k, pos) : -1;
    case N_EOL: return pos == c->b ? run(c, k, pos) : -1;
    }
    return -1;
}

bool tok_regex_search(const struct tok_regex *re, const uint32_t *text, size_t a, size_t b, size_t from, size_t *ms,
                      size_t *me) {
    struct ctx c = {text, a, b};
    for (size_t s = from; s <= b; s++) {
        int64_t e = match(&c, re->root, s, NULL);
        if (e >= 0) {
            *ms = s;
            *me = (size_t)e;
            return true;
        }
    }
    return false;
}
