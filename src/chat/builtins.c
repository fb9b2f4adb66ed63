// jinja2's built-in filters, tests and globals, transformers' additions
// (tojson, raise_exception, strftime_now), and the Python methods of str,
// dict and list that templates call. Each one follows the Python original;
// those jinja2 has but chat templates do not use are known by name (so
// parsing treats them as jinja2 does) and fail if run.
#include "chat/impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- argument binding

// Binds positional and keyword arguments to named parameters; out[i] is NULL
// for a parameter not given. Fails like Python for extra or unknown arguments.
static bool bind(struct render *r, const char *fname, const struct args *a, const char *const *names, int n,
                 struct chat_value **out) {
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (a->npos > n) return rfail(r, "%s() takes at most %d argument(s) (%d given)", fname, n, a->npos), false;
    for (int i = 0; i < a->npos; i++) out[i] = a->pos[i];
    for (int k = 0; k < a->nkw; k++) {
        int i = 0;
        while (i < n && strcmp(names[i], a->kw[k]) != 0) i++;
        if (i == n) return rfail(r, "%s() got an unexpected keyword argument '%s'", fname, a->kw[k]), false;
        if (out[i]) return rfail(r, "%s() got multiple values for argument '%s'", fname, a->kw[k]), false;
        out[i] = a->kwv[k];
    }
    return true;
}
#define BIND(fname, ...)                                                                                     \
    static const char *const names_[] = {__VA_ARGS__};                                                       \
    struct chat_value *arg[sizeof names_ / sizeof names_[0]];                                                \
    if (!bind(r, fname, args, names_, (int)(sizeof names_ / sizeof names_[0]), arg)) return NULL

static bool truthy_or(const struct chat_value *v, bool dflt) { return v ? py_truthy(v) : dflt; }

static bool get_int(struct render *r, const struct chat_value *v, const char *what, int64_t *out) {
    if (v->type == CHAT_INT) *out = v->u.i;
    else if (v->type == CHAT_BOOL) *out = v->u.b;
    else if (v->type == CHAT_UNDEFINED) return undefined_error(r, v), false;
    else return rfail(r, "%s must be an integer, not '%s'", what, py_type_name(v)), false;
    return true;
}

// A Python argument that must be an integer but is used as a flag (sorted's reverse, splitlines' keepends).
static bool get_flag(struct render *r, const struct chat_value *v, bool dflt, bool *out) {
    int64_t x = dflt;
    if (v && !get_int(r, v, "the flag", &x)) return false;
    *out = x != 0;
    return true;
}

static bool need_str(struct render *r, const struct chat_value *v, const char *what) {
    if (v->type == CHAT_STRING) return true;
    if (v->type == CHAT_UNDEFINED) return undefined_error(r, v), false;
    return rfail(r, "%s must be str, not %s", what, py_type_name(v)), false;
}

static struct chat_value *str_value(struct render *r, struct sb *b) {
    if (b->failed) {
        if (r->a->failed) return rfail(r, "the template needs more than %zu MB of memory", r->lim->max_memory >> 20);
        return rfail(r, "a string grew longer than %zu bytes", b->limit);
    }
    return cv_str(r->a, sb_cstr(b));
}

static struct chat_value *substr(struct render *r, struct cstr s, size_t off, size_t n) {
    return cv_str(r->a, (struct cstr){s.s + off, s.m ? s.m + off : NULL, n});
}

static struct chat_value *new_array(struct render *r, size_t cap) {
    struct chat_value *a = cv_array(r->a, cap);
    if (!a) oom(r);
    return a;
}

static bool push(struct render *r, struct chat_value *arr, struct chat_value *v) {
    if (!v) return false;
    if (cv_push(r->a, arr, v)) return oom(r), false;
    return true;
}

static struct chat_value *tuple2(struct render *r, struct chat_value *a, struct chat_value *b) {
    struct chat_value *t = new_array(r, 2);
    if (!t) return NULL;
    t->is_tuple = 1;
    t->u.arr.v[0] = a;
    t->u.arr.v[1] = b;
    t->u.arr.n = 2;
    return t;
}

// ---------------------------------------------------------------- text helpers

static bool cp_cased(uint32_t cp) { return cp_isupper(cp) || cp_islower(cp) || cp_istitle(cp); }

// Greek capital sigma lower-cases to final ς after a cased letter and not before
// one (case-ignorable characters in between are skipped), as Python does.
static bool final_sigma(struct cstr s, size_t i, size_t j) {
    bool before = false;
    for (size_t k = i; k > 0;) {
        size_t p = k - 1;
        while (p > 0 && ((uint8_t)s.s[p] & 0xC0) == 0x80) p--;
        size_t q = p;
        uint32_t cp = utf8_next(s.s, s.len, &q);
        k = p;
        if (cp_case_ignorable(cp)) continue;
        before = cp_cased(cp);
        break;
    }
    if (!before) return false;
    for (size_t k = j; k < s.len;) {
        uint32_t cp = utf8_next(s.s, s.len, &k);
        if (cp_case_ignorable(cp)) continue;
        return !cp_cased(cp);
    }
    return true;
}

// Writes the case mapping (mode 'U', 'L', 'T', 'F') of the code point cp at
// s[i..j), keeping its provenance.
static void put_case(struct sb *b, struct cstr s, size_t i, size_t j, uint32_t cp, char mode) {
    bool user = cstr_user_at(s, i);
    uint32_t out[3];
    int n;
    if (cp == 0x3A3 && mode == 'L' && final_sigma(s, i, j)) out[0] = 0x3C2, n = 1;
    else n = cp_case_full(cp, mode, out);
    if (n == 1 && out[0] == cp) {
        sb_put_range(b, s, i, j - i);
        return;
    }
    for (int k = 0; k < n; k++) {
        char u[4];
        sb_put(b, u, chat_utf8_encode(out[k], u), user);
    }
}

// mode: 'U' upper, 'L' lower, 'F' casefold, 'S' swapcase
static struct chat_value *str_case(struct render *r, struct cstr s, char mode) {
    if (!charge(r, s.len / 16 + 1)) return NULL;
    struct sb b;
    sb_init(&b, r->a, SIZE_MAX);
    for (size_t i = 0; i < s.len;) {
        size_t j = i;
        uint32_t cp = utf8_next(s.s, s.len, &j);
        char m = mode;
        if (mode == 'S') m = cp_isupper(cp) ? 'L' : cp_islower(cp) ? 'U' : 0;
        if (m == 0) sb_put_range(&b, s, i, j - i);
        else put_case(&b, s, i, j, cp, m);
        i = j;
    }
    return str_value(r, &b);
}

// Python str.capitalize(): first character title case, the rest lower case.
static struct chat_value *str_capitalize(struct render *r, struct cstr s) {
    struct sb b;
    sb_init(&b, r->a, SIZE_MAX);
    for (size_t i = 0; i < s.len;) {
        size_t j = i;
        uint32_t cp = utf8_next(s.s, s.len, &j);
        put_case(&b, s, i, j, cp, i == 0 ? 'T' : 'L');
        i = j;
    }
    return str_value(r, &b);
}

// Python str.title(): a character after a cased one is lower-cased, other ones title-cased.
static struct chat_value *str_title(struct render *r, struct cstr s) {
    struct sb b;
    sb_init(&b, r->a, SIZE_MAX);
    bool prev_cased = false;
    for (size_t i = 0; i < s.len;) {
        size_t j = i;
        uint32_t cp = utf8_next(s.s, s.len, &j);
        put_case(&b, s, i, j, cp, prev_cased ? 'L' : 'T');
        prev_cased = cp_cased(cp);
        i = j;
    }
    return str_value(r, &b);
}

// jinja2's |title: words start after runs of "-", whitespace, "(", "{", "[", "<";
// each word's first character upper-cased, the rest lower-cased.
static struct chat_value *jinja_title(struct render *r, struct cstr s) {
    struct sb b;
    sb_init(&b, r->a, SIZE_MAX);
    bool word_start = true;
    for (size_t i = 0; i < s.len;) {
        size_t j = i;
        uint32_t cp = utf8_next(s.s, s.len, &j);
        bool delim = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || cp_isspace(cp);
        if (delim) {
            sb_put_range(&b, s, i, j - i);
            word_start = true;
        } else {
            put_case(&b, s, i, j, cp, word_start ? 'U' : 'L');
            word_start = false;
        }
        i = j;
    }
    return str_value(r, &b);
}

static bool in_chars(uint32_t cp, const struct chat_value *chars) {
    if (!chars) return cp_isspace(cp);
    struct cstr c = chars->u.str;
    for (size_t i = 0; i < c.len;)
        if (utf8_next(c.s, c.len, &i) == cp) return true;
    return false;
}

// Python strip family: which = 1 left, 2 right, 3 both. chars NULL: whitespace.
static struct chat_value *str_strip(struct render *r, struct cstr s, const struct chat_value *chars, int which) {
    if (chars && chars->type == CHAT_NONE) chars = NULL;
    if (chars && !need_str(r, chars, "strip arg")) return NULL;
    if (!charge(r, s.len / 16 + 1)) return NULL;
    size_t start = 0, end = s.len;
    if (which & 1)
        while (start < end) {
            size_t j = start;
            if (!in_chars(utf8_next(s.s, s.len, &j), chars)) break;
            start = j;
        }
    if (which & 2) {
        // Scan forward, remembering the end of the last character to keep.
        size_t keep = start;
        for (size_t i = start; i < end;) {
            uint32_t cp = utf8_next(s.s, end, &i);
            if (!in_chars(cp, chars)) keep = i;
        }
        end = keep;
    }
    return substr(r, s, start, end - start);
}

static const char *find_bytes(struct cstr hay, size_t from, struct cstr needle) {
    if (needle.len == 0) return hay.s + from;
    if (from > hay.len) return NULL;
    return memmem(hay.s + from, hay.len - from, needle.s, needle.len);
}

static const char *rfind_bytes(struct cstr hay, size_t upto, struct cstr needle) {
    if (needle.len > upto) return NULL;
    for (size_t i = upto - needle.len + 1; i-- > 0;)
        if (memcmp(hay.s + i, needle.s, needle.len) == 0) return hay.s + i;
    return NULL;
}

// Python str.split / str.rsplit.
static struct chat_value *str_split(struct render *r, struct cstr s, const struct chat_value *sep,
                                    const struct chat_value *maxsplit_v, bool from_right) {
    int64_t maxsplit = -1;
    if (maxsplit_v && !get_int(r, maxsplit_v, "maxsplit", &maxsplit)) return NULL;
    if (sep && sep->type == CHAT_NONE) sep = NULL;
    if (sep && !need_str(r, sep, "separator")) return NULL;
    if (sep && sep->u.str.len == 0) return rfail(r, "empty separator");
    if (!charge(r, s.len / 16 + 1)) return NULL;
    struct chat_value *out = new_array(r, 0);
    if (!out) return NULL;
    if (!from_right) {
        size_t pos = 0;
        int64_t splits = 0;
        if (sep) {
            for (;;) {
                const char *hit = maxsplit >= 0 && splits >= maxsplit ? NULL : find_bytes(s, pos, sep->u.str);
                if (!hit) break;
                size_t at = (size_t)(hit - s.s);
                if (!push(r, out, substr(r, s, pos, at - pos))) return NULL;
                pos = at + sep->u.str.len;
                splits++;
            }
            return push(r, out, substr(r, s, pos, s.len - pos)) ? out : NULL;
        }
        for (;;) {
            while (pos < s.len) { // skip whitespace
                size_t j = pos;
                if (!cp_isspace(utf8_next(s.s, s.len, &j))) break;
                pos = j;
            }
            if (pos >= s.len) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                if (!push(r, out, substr(r, s, pos, s.len - pos))) return NULL;
                break;
            }
            size_t end = pos;
            while (end < s.len) {
                size_t j = end;
                if (cp_isspace(utf8_next(s.s, s.len, &j))) break;
                end = j;
            }
            if (!push(r, out, substr(r, s, pos, end - pos))) return NULL;
            splits++;
            pos = end;
        }
        return out;
    }
    // From the right: collect pieces in reverse, then flip.
    size_t end = s.len;
    int64_t splits = 0;
    if (sep) {
        for (;;) {
            const char *hit = maxsplit >= 0 && splits >= maxsplit ? NULL : rfind_bytes(s, end, sep->u.str);
            if (!hit) break;
            size_t at = (size_t)(hit - s.s);
            if (!push(r, out, substr(r, s, at + sep->u.str.len, end - at - sep->u.str.len))) return NULL;
            end = at;
            splits++;
        }
        if (!push(r, out, substr(r, s, 0, end))) return NULL;
    } else {
        size_t count;
        // Work on code point boundaries: decode offsets first.
        size_t *off = arena_alloc(r->a, (s.len + 1) * sizeof *off);
        if (!off) return oom(r);
        count = 0;
        for (size_t i = 0; i < s.len;) {
            off[count++] = i;
            utf8_next(s.s, s.len, &i);
        }
        off[count] = s.len;
        size_t k = count; // characters [0, k) remain
        for (;;) {
            while (k > 0) {
                size_t i = off[k - 1];
                if (!cp_isspace(utf8_next(s.s, s.len, &i))) break;
                k--;
            }
            if (k == 0) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                if (!push(r, out, substr(r, s, 0, off[k]))) return NULL;
                break;
            }
            size_t st = k;
            while (st > 0) {
                size_t i = off[st - 1];
                if (cp_isspace(utf8_next(s.s, s.len, &i))) break;
                st--;
            }
            if (!push(r, out, substr(r, s, off[st], off[k] - off[st]))) return NULL;
            splits++;
            k = st;
        }
    }
    for (size_t i = 0, j = out->u.arr.n; i + 1 < j; i++, j--) {
        struct chat_value *t = out->u.arr.v[i];
        out->u.arr.v[i] = out->u.arr.v[j - 1];
        out->u.arr.v[j - 1] = t;
    }
    return out;
}

// Python str.splitlines line boundaries: returns the length of the break at i (0: none).
static size_t line_break_at(struct cstr s, size_t i) {
    uint8_t c = (uint8_t)s.s[i];
    if (c == '\r') return i + 1 < s.len && s.s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E)) return 1;
    if (c >= 0x80) {
        size_t j = i;
        uint32_t cp = utf8_next(s.s, s.len, &j);
        if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) return j - i;
    }
    return 0;
}

// Lines of s (without their breaks, unless keepends) as an array of strings.
static struct chat_value *str_splitlines(struct render *r, struct cstr s, bool keepends) {
    struct chat_value *out = new_array(r, 0);
    if (!out || !charge(r, s.len / 16 + 1)) return NULL;
    size_t start = 0;
    for (size_t i = 0; i < s.len;) {
        size_t k = line_break_at(s, i);
        if (!k) {
            utf8_next(s.s, s.len, &i);
            continue;
        }
        if (!push(r, out, substr(r, s, start, (keepends ? i + k : i) - start))) return NULL;
        i += k;
        start = i;
    }
    if (start < s.len && !push(r, out, substr(r, s, start, s.len - start))) return NULL;
    return out;
}

// str.replace(old, new, count)
static struct chat_value *str_replace(struct render *r, struct cstr s, struct cstr old, struct cstr new_,
                                      int64_t count) {
    if (!charge(r, s.len / 16 + 1)) return NULL;
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    if (old.len == 0) { // insert new_ around every character
        int64_t done = 0;
        for (size_t i = 0; i <= s.len;) {
            if (count < 0 || done < count) {
                sb_put_str(&b, new_);
                done++;
            }
            if (i == s.len) break;
            size_t j = i;
            utf8_next(s.s, s.len, &j);
            sb_put_range(&b, s, i, j - i);
            i = j;
            if (b.failed) break;
        }
        return str_value(r, &b);
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        const char *hit = find_bytes(s, pos, old);
        if (!hit) break;
        size_t at = (size_t)(hit - s.s);
        sb_put_range(&b, s, pos, at - pos);
        sb_put_str(&b, new_);
        pos = at + old.len;
        done++;
        if (b.failed) break;
    }
    sb_put_range(&b, s, pos, s.len - pos);
    return str_value(r, &b);
}

static size_t cp_index_of(struct cstr s, size_t byte_off) { return utf8_count(s.s, byte_off); }

// Byte offset of code point index i (clamped like Python slice bounds).
static size_t byte_of_cp(struct cstr s, int64_t i, size_t n_cp) {
    if (i < 0) i += (int64_t)n_cp;
    if (i < 0) i = 0;
    if ((size_t)i >= n_cp) return s.len;
    size_t b = 0;
    for (int64_t k = 0; k < i; k++) utf8_next(s.s, s.len, &b);
    return b;
}

// The [start, end) window of str methods (find, count, startswith, ...).
static bool str_window(struct render *r, struct cstr s, struct chat_value *start, struct chat_value *end,
                       struct cstr *win) {
    *win = s;
    if ((!start || start->type == CHAT_NONE) && (!end || end->type == CHAT_NONE)) return true;
    size_t n = utf8_count(s.s, s.len);
    int64_t a = 0, e = (int64_t)n;
    if (start && start->type != CHAT_NONE && !get_int(r, start, "start", &a)) return false;
    if (end && end->type != CHAT_NONE && !get_int(r, end, "end", &e)) return false;
    size_t ba = byte_of_cp(s, a, n), be = byte_of_cp(s, e, n);
    if (a < 0 && a + (int64_t)n < 0) ba = 0;
    if (be < ba) be = ba;
    win->s = s.s + ba;
    win->m = s.m ? s.m + ba : NULL;
    win->len = be - ba;
    return true;
}

// ---------------------------------------------------------------- formatting

static bool fmt_spec_apply(struct render *r, struct sb *b, struct chat_value *v, const char *spec, size_t n);

// Python's %-formatting: fmt % args.
struct chat_value *py_percent_format(struct render *r, struct chat_value *fmt, struct chat_value *args);
struct chat_value *py_percent_format(struct render *r, struct chat_value *fmt, struct chat_value *args) {
    struct chat_value **items = &args;
    size_t n_items = 1, next_item = 0;
    struct chat_value *mapping = NULL;
    if (args->type == CHAT_ARRAY && args->is_tuple) {
        items = args->u.arr.v;
        n_items = args->u.arr.n;
    } else if (args->type == CHAT_OBJECT) mapping = args;
    // Python treats anything subscriptable but a tuple or str (a list, a range) as a
    // mapping here: left unused, it is no error.
    bool mapping_like = mapping || (args->type == CHAT_ARRAY && !args->is_tuple && !args->view) ||
                        args->type == CV_RANGE || args->type == CHAT_UNDEFINED;
    struct cstr f = fmt->u.str;
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    for (size_t i = 0; i < f.len;) {
        if (f.s[i] != '%') {
            size_t j = i;
            while (j < f.len && f.s[j] != '%') j++;
            sb_put_range(&b, f, i, j - i);
            i = j;
            continue;
        }
        i++;
        if (i < f.len && f.s[i] == '%') {
            sb_putc(&b, '%', false);
            i++;
            continue;
        }
        struct chat_value *v = NULL;
        if (i < f.len && f.s[i] == '(') {
            size_t j = i + 1;
            while (j < f.len && f.s[j] != ')') j++;
            if (j >= f.len) return rfail(r, "incomplete format key");
            if (!mapping) return rfail(r, "format requires a mapping");
            v = cv_obj_get(mapping, f.s + i + 1, j - i - 1);
            if (!v) return rfail(r, "format key '%.*s' not found", (int)(j - i - 1), f.s + i + 1);
            i = j + 1;
        }
        char flags[8] = "";
        size_t nf = 0;
        while (i < f.len && strchr("-+ #0", f.s[i]) && nf < sizeof flags - 1) flags[nf++] = f.s[i++];
        flags[nf] = 0;
        int width = -1, prec = -1;
        while (i < f.len && f.s[i] >= '0' && f.s[i] <= '9' && width < 100000) width = (width < 0 ? 0 : width * 10) + (f.s[i++] - '0');
        if (i < f.len && f.s[i] == '.') {
            i++;
            prec = 0;
            while (i < f.len && f.s[i] >= '0' && f.s[i] <= '9' && prec < 100000) prec = prec * 10 + (f.s[i++] - '0');
        }
        while (i < f.len && strchr("hlL", f.s[i])) i++;
        if (i >= f.len) return rfail(r, "incomplete format");
        char type = f.s[i++];
        if (!v) {
            if (mapping && n_items == 1 && items[0] == mapping && next_item == 0) v = mapping, next_item = 1;
            else if (next_item >= n_items) return rfail(r, "not enough arguments for format string");
            else v = items[next_item++];
        }
        if (width > 4096 || prec > 4096) return rfail(r, "format width too large");
        char spec[64];
        switch (type) {
        case 's':
        case 'r':
        case 'a': {
            struct sb t;
            sb_init(&t, r->a, r->lim->max_output);
            if ((type == 's' ? py_str : py_repr)(&t, v, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &t);
            struct cstr ts = sb_cstr(&t);
            if (fmt->markup) { // Markup % args escapes the arguments
                struct chat_value *tv = cv_str(r->a, ts), *ev = tv ? markup_escape(r, tv) : NULL;
                if (!ev) return oom(r);
                ts = ev->u.str;
            }
            size_t len = ts.len;
            if (prec >= 0) len = (size_t)(byte_of_cp(ts, prec, utf8_count(ts.s, ts.len)));
            size_t cps = utf8_count(ts.s, len);
            bool left = strchr(flags, '-') != NULL;
            if (!left)
                for (int k = (int)cps; k < width; k++) sb_putc(&b, ' ', false);
            sb_put_range(&b, ts, 0, len);
            if (left)
                for (int k = (int)cps; k < width; k++) sb_putc(&b, ' ', false);
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'c':
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G': {
            if (v->type != CHAT_INT && v->type != CHAT_FLOAT && v->type != CHAT_BOOL)
                return rfail(r, "%%%c format: a real number is required, not %s", type, py_type_name(v));
            char out[8200];
            bool is_int_type = strchr("diuxXoc", type) != NULL;
            if (is_int_type) {
                int64_t x = v->type == CHAT_FLOAT ? (int64_t)v->u.f : v->type == CHAT_BOOL ? v->u.b : v->u.i;
                if (v->type == CHAT_FLOAT && (type == 'x' || type == 'X' || type == 'o' || type == 'c'))
                    return rfail(r, "%%%c format: an integer is required, not float", type);
                if (type == 'c') {
                    char u[4];
                    sb_put(&b, u, chat_utf8_encode((uint32_t)x, u), false);
                    break;
                }
                char t = type == 'i' || type == 'u' ? 'd' : type;
                snprintf(spec, sizeof spec, "%%%s%s%s%s%sll%c", flags, width >= 0 ? "*" : "", prec >= 0 ? ".*" : "", "", "", t);
                if (width >= 0 && prec >= 0) snprintf(out, sizeof out, spec, width, prec, (long long)x);
                else if (width >= 0) snprintf(out, sizeof out, spec, width, (long long)x);
                else if (prec >= 0) snprintf(out, sizeof out, spec, prec, (long long)x);
                else snprintf(out, sizeof out, spec, (long long)x);
            } else {
                double x = v->type == CHAT_FLOAT ? v->u.f : v->type == CHAT_BOOL ? v->u.b : (double)v->u.i;
                snprintf(spec, sizeof spec, "%%%s%s%s%c", flags, width >= 0 ? "*" : "", prec >= 0 ? ".*" : "", type);
                if (width >= 0 && prec >= 0) snprintf(out, sizeof out, spec, width, prec, x);
                else if (width >= 0) snprintf(out, sizeof out, spec, width, x);
                else if (prec >= 0) snprintf(out, sizeof out, spec, prec, x);
                else snprintf(out, sizeof out, spec, x);
            }
            sb_puts(&b, out);
            break;
        }
        default: return rfail(r, "unsupported format character '%c'", type);
        }
    }
    if (!mapping_like && next_item < n_items) return rfail(r, "not all arguments converted during string formatting");
    return as_markup(r, str_value(r, &b), fmt->markup);
}

// str.format's format spec: [[fill]align][sign][0][width][.precision][type]
static bool fmt_spec_apply(struct render *r, struct sb *b, struct chat_value *v, const char *spec, size_t n) {
    char fill = ' ', align = 0, sign = 0, type = 0;
    int width = -1, prec = -1;
    size_t i = 0;
    if (n >= 2 && strchr("<>^=", spec[1])) fill = spec[0], align = spec[1], i = 2;
    else if (n >= 1 && strchr("<>^=", spec[0])) align = spec[0], i = 1;
    if (i < n && strchr("+- ", spec[i])) sign = spec[i++];
    if (i < n && spec[i] == '0') {
        if (!align) fill = '0', align = '=';
        i++;
    }
    while (i < n && spec[i] >= '0' && spec[i] <= '9' && width < 4096) width = (width < 0 ? 0 : width * 10) + (spec[i++] - '0');
    if (i < n && spec[i] == '.') {
        i++;
        prec = 0;
        while (i < n && spec[i] >= '0' && spec[i] <= '9' && prec < 4096) prec = prec * 10 + (spec[i++] - '0');
    }
    if (i < n) type = spec[i++];
    if (i != n || width > 4096 || prec > 4096) return rfail(r, "unsupported format spec '%.*s'", (int)n, spec), false;
    struct sb t;
    sb_init(&t, r->a, r->lim->max_output);
    bool numeric = v->type == CHAT_INT || v->type == CHAT_FLOAT || v->type == CHAT_BOOL;
    if (type == 0 || type == 's') {
        if (type == 's' && v->type != CHAT_STRING) return rfail(r, "unknown format code 's' for %s", py_type_name(v)), false;
        if (py_str(&t, v, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &t), false;
        if (prec >= 0 && v->type == CHAT_STRING) t.len = byte_of_cp(sb_cstr(&t), prec, utf8_count(t.s, t.len));
        if (!align) align = numeric ? '>' : '<';
    } else if (strchr("dfFeEgG%", type) && numeric) {
        char out[8200], fs[32];
        if (type == 'd') {
            if (v->type == CHAT_FLOAT) return rfail(r, "unknown format code 'd' for float"), false;
            snprintf(fs, sizeof fs, "%%%sll%c", sign == '+' ? "+" : sign == ' ' ? " " : "", 'd');
            snprintf(out, sizeof out, fs, (long long)(v->type == CHAT_BOOL ? v->u.b : v->u.i));
        } else {
            double x = v->type == CHAT_FLOAT ? v->u.f : v->type == CHAT_BOOL ? v->u.b : (double)v->u.i;
            char tc = type == '%' ? 'f' : type;
            if (type == '%') x *= 100;
            snprintf(fs, sizeof fs, "%%%s.*%c", sign == '+' ? "+" : sign == ' ' ? " " : "", tc);
            snprintf(out, sizeof out, fs, prec >= 0 ? prec : 6, x);
            if (type == '%') strncat(out, "%", sizeof out - strlen(out) - 1);
        }
        sb_puts(&t, out);
        if (!align) align = '>';
    } else return rfail(r, "unsupported format spec '%.*s' for %s", (int)n, spec, py_type_name(v)), false;
    struct cstr ts = sb_cstr(&t);
    size_t cps = utf8_count(ts.s, ts.len);
    size_t pad = width > 0 && (size_t)width > cps ? (size_t)width - cps : 0;
    size_t left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
    if (align == '=' && ts.len && (ts.s[0] == '-' || ts.s[0] == '+' || ts.s[0] == ' ')) {
        sb_put_range(b, ts, 0, 1);
        for (size_t k = 0; k < pad; k++) sb_putc(b, fill, false);
        sb_put_range(b, ts, 1, ts.len - 1);
        return true;
    }
    for (size_t k = 0; k < left; k++) sb_putc(b, fill, false);
    sb_put_str(b, ts);
    for (size_t k = left; k < pad; k++) sb_putc(b, fill, false);
    return true;
}

// Python str.format(*args, **kwargs) for fields {}, {0}, {name}, with !s / !r and a format spec.
static struct chat_value *str_format(struct render *r, struct cstr f, const struct args *args, bool escape_fields) {
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    int auto_idx = 0;
    for (size_t i = 0; i < f.len;) {
        char c = f.s[i];
        if (c == '}') {
            if (i + 1 < f.len && f.s[i + 1] == '}') {
                sb_putc(&b, '}', cstr_user_at(f, i));
                i += 2;
                continue;
            }
            return rfail(r, "Single '}' encountered in format string");
        }
        if (c != '{') {
            size_t j = i;
            while (j < f.len && f.s[j] != '{' && f.s[j] != '}') j++;
            sb_put_range(&b, f, i, j - i);
            i = j;
            continue;
        }
        if (i + 1 < f.len && f.s[i + 1] == '{') {
            sb_putc(&b, '{', cstr_user_at(f, i));
            i += 2;
            continue;
        }
        size_t j = i + 1;
        while (j < f.len && f.s[j] != '}') j++;
        if (j >= f.len) return rfail(r, "expected '}' before end of string");
        const char *field = f.s + i + 1;
        size_t flen = j - i - 1, name_len = 0;
        while (name_len < flen && field[name_len] != '!' && field[name_len] != ':') name_len++;
        char conv = 0;
        size_t p = name_len;
        if (p < flen && field[p] == '!') {
            if (p + 1 >= flen) return rfail(r, "end of string while looking for conversion specifier");
            conv = field[p + 1];
            p += 2;
        }
        const char *spec = p < flen && field[p] == ':' ? field + p + 1 : "";
        size_t spec_len = p < flen && field[p] == ':' ? flen - p - 1 : 0;
        struct chat_value *v = NULL;
        if (name_len == 0) {
            if (auto_idx >= args->npos) return rfail(r, "Replacement index %d out of range for positional args tuple", auto_idx);
            v = args->pos[auto_idx++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            int idx = 0;
            for (size_t k = 0; k < name_len; k++) {
                if (field[k] < '0' || field[k] > '9') return rfail(r, "unsupported format field '%.*s'", (int)name_len, field);
                idx = idx * 10 + (field[k] - '0');
                if (idx > 100000) break;
            }
            if (idx >= args->npos) return rfail(r, "Replacement index %d out of range for positional args tuple", idx);
            v = args->pos[idx];
        } else {
            for (int k = 0; k < args->nkw; k++)
                if (strlen(args->kw[k]) == name_len && memcmp(args->kw[k], field, name_len) == 0) v = args->kwv[k];
            if (!v) return rfail(r, "format key '%.*s' not given", (int)name_len, field);
        }
        if (conv == 'r' || conv == 's' || conv == 'a') {
            struct sb t;
            sb_init(&t, r->a, r->lim->max_output);
            if ((conv == 's' ? py_str : py_repr)(&t, v, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &t);
            v = cv_str(r->a, sb_cstr(&t));
            if (!v) return oom(r);
        } else if (conv) return rfail(r, "Unknown conversion specifier %c", conv);
        if (escape_fields) { // Markup.format escapes each formatted field
            struct sb field_sb;
            sb_init(&field_sb, r->a, r->lim->max_output);
            if (!fmt_spec_apply(r, &field_sb, v, spec, spec_len)) return NULL;
            struct chat_value *fv = str_value(r, &field_sb), *ev = fv ? markup_escape(r, fv) : NULL;
            if (!ev) return NULL;
            sb_put_str(&b, ev->u.str);
        } else if (!fmt_spec_apply(r, &b, v, spec, spec_len)) return NULL;
        i = j + 1;
    }
    return str_value(r, &b);
}

// ---------------------------------------------------------------- attribute getters (map, sort, ...)

// jinja2's make_attrgetter: "a.b.0" looks up each part with getitem.
static struct chat_value *attr_path(struct render *r, struct chat_value *item, struct chat_value *attribute,
                                    struct chat_value *dflt) {
    if (!attribute || attribute->type == CHAT_NONE) return item;
    if (attribute->type != CHAT_STRING) {
        item = get_item(r, item, attribute);
        if (item && dflt && item->type == CHAT_UNDEFINED) item = dflt;
        return item;
    }
    struct cstr a = attribute->u.str;
    size_t start = 0;
    for (size_t i = 0; i <= a.len; i++) {
        if (i < a.len && a.s[i] != '.') continue;
        const char *part = a.s + start;
        size_t n = i - start;
        bool digits = n > 0;
        int64_t num = 0;
        for (size_t k = 0; k < n; k++) {
            if (part[k] < '0' || part[k] > '9' || num > INT64_MAX / 10 - 10) digits = false;
            else num = num * 10 + (part[k] - '0');
        }
        struct chat_value *key = digits ? cv_int(r->a, num) : cv_str(r->a, (struct cstr){part, NULL, n});
        if (!key) return oom(r);
        if (!(item = get_item(r, item, key))) return NULL;
        if (dflt && item->type == CHAT_UNDEFINED) item = dflt;
        start = i + 1;
    }
    return item;
}

static struct chat_value *lower_if_str(struct render *r, struct chat_value *v, bool case_sensitive) {
    if (case_sensitive || v->type != CHAT_STRING) return v;
    return str_case(r, v->u.str, 'L');
}

// Stable merge sort of items by keys; false on error (incomparable keys).
static bool sort_by_keys(struct render *r, struct chat_value **items, struct chat_value **keys, size_t n,
                         bool reverse) {
    if (n < 2) return true;
    struct chat_value **ti = arena_alloc(r->a, n * sizeof *ti), **tk = arena_alloc(r->a, n * sizeof *tk);
    if (!ti || !tk) return oom(r), false;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c;
                if (!charge(r, 1)) return false;
                if (r_cmp(r, keys[j], keys[i], "<", &c)) return false;
                bool take_right = reverse ? c > 0 && c != 2 : c < 0;
                if (take_right) tk[k] = keys[j], ti[k++] = items[j++];
                else tk[k] = keys[i], ti[k++] = items[i++];
            }
            while (i < mid) tk[k] = keys[i], ti[k++] = items[i++];
            while (j < hi) tk[k] = keys[j], ti[k++] = items[j++];
        }
        memcpy(items, ti, n * sizeof *items);
        memcpy(keys, tk, n * sizeof *keys);
    }
    return true;
}

// Copies the items v iterates over (so they can be reordered).
static struct chat_value **items_copy(struct render *r, struct chat_value *v, size_t *n) {
    struct chat_value **src = iterate(r, v, n);
    if (!src) return NULL;
    struct chat_value **dst = arena_alloc(r->a, (*n + 1) * sizeof *dst);
    if (!dst) return oom(r), NULL;
    if (*n) memcpy(dst, src, *n * sizeof *dst);
    return dst;
}

static struct chat_value *array_of(struct render *r, struct chat_value **items, size_t n) {
    struct chat_value *a = new_array(r, n);
    if (!a) return NULL;
    if (n) memcpy(a->u.arr.v, items, n * sizeof *items);
    a->u.arr.n = n;
    return a;
}

// ---------------------------------------------------------------- filters

enum filter_id {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E, F_ESCAPE,
    F_FILESIZEFORMAT, F_FIRST, F_FLOAT, F_FORCEESCAPE, F_FORMAT, F_GROUPBY, F_INDENT, F_INT, F_ITEMS, F_JOIN,
    F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_PPRINT, F_RANDOM, F_REJECT, F_REJECTATTR,
    F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SLICE, F_SORT, F_STRING, F_STRIPTAGS,
    F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_TRUNCATE, F_UNIQUE, F_UPPER, F_URLENCODE, F_URLIZE, F_WORDCOUNT,
    F_WORDWRAP, F_XMLATTR, N_FILTERS
};
static const char *const filter_names[N_FILTERS] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
    "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr",
};

static int find_name(const char *const *names, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) return i;
    return -1;
}

int builtin_filter_find(const char *name, size_t len) { return find_name(filter_names, N_FILTERS, name, len); }

bool builtin_filter_needs_context(int id) {
    return id == F_MAP || id == F_SELECT || id == F_REJECT || id == F_SELECTATTR || id == F_REJECTATTR ||
           id == F_RANDOM;
}

static struct chat_value *soft_str(struct render *r, struct chat_value *v) { return to_str(r, v); }

// markupsafe's escape(): & < > " ' as entities; the result is a Markup.
static struct chat_value *html_escape(struct render *r, struct chat_value *v) {
    struct chat_value *s = soft_str(r, v);
    if (!s) return NULL;
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    struct cstr c = s->u.str;
    size_t run = 0;
    for (size_t i = 0; i < c.len; i++) {
        const char *e = c.s[i] == '&' ? "&amp;" : c.s[i] == '<' ? "&lt;" : c.s[i] == '>' ? "&gt;"
                      : c.s[i] == '"' ? "&#34;" : c.s[i] == '\'' ? "&#39;" : NULL;
        if (!e) continue;
        sb_put_range(&b, c, run, i - run);
        sb_put(&b, e, strlen(e), cstr_user_at(c, i));
        run = i + 1;
    }
    sb_put_range(&b, c, run, c.len - run);
    return as_markup(r, str_value(r, &b), true);
}

struct chat_value *markup_escape(struct render *r, struct chat_value *v) {
    if (v->type == CHAT_STRING && v->markup) return v;
    return html_escape(r, v);
}

struct chat_value *as_markup(struct render *r, struct chat_value *v, bool markup) {
    if (!v || !markup || v->type != CHAT_STRING || v->markup) return v;
    struct chat_value *m = cv_new(r->a, CHAT_STRING);
    if (!m) return oom(r);
    *m = *v;
    m->markup = 1;
    return m;
}

static struct chat_value *do_length(struct render *r, struct chat_value *v) {
    switch (v->type) {
    case CHAT_UNDEFINED: return cv_int(r->a, 0);
    case CHAT_STRING: return cv_int(r->a, (int64_t)utf8_count(v->u.str.s, v->u.str.len));
    case CHAT_ARRAY: return cv_int(r->a, (int64_t)v->u.arr.n);
    case CHAT_OBJECT: return cv_int(r->a, (int64_t)v->u.obj.n);
    case CV_RANGE: return cv_int(r->a, (int64_t)range_len(v));
    default: return rfail(r, "object of type '%s' has no len()", py_type_name(v));
    }
}

static struct chat_value *do_first_last(struct render *r, struct chat_value *v, bool last) {
    if (last && v->type == CV_ITER) return rfail(r, "'generator' object is not reversible");
    if (v->type == CV_ITER && !last) {
        if (v->u.iter.pos < v->u.iter.n) return v->u.iter.v[v->u.iter.pos++];
        return make_undef_hint(r, "No first item, sequence was empty.");
    }
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    if (n == 0) return make_undef_hint(r, last ? "No last item, sequence was empty." : "No first item, sequence was empty.");
    // reversed() indexes a Markup (its items are Markup); iter() gives plain characters
    if (last && v->type == CHAT_STRING) return as_markup(r, items[n - 1], v->markup);
    return items[last ? n - 1 : 0];
}

// Parses a Python int() string in base (0: from the prefix); false if invalid.
static bool parse_py_int(struct cstr s, int base, int64_t *out) {
    size_t i = 0, n = s.len;
    while (i < n && cp_isspace((uint8_t)s.s[i])) i++;
    while (n > i && cp_isspace((uint8_t)s.s[n - 1])) n--;
    bool neg = false;
    if (i < n && (s.s[i] == '+' || s.s[i] == '-')) neg = s.s[i++] == '-';
    if (i + 1 < n && s.s[i] == '0') {
        char p = (char)(s.s[i + 1] | 32);
        int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            i += 2;
            if (i < n && s.s[i] == '_') i++;
        }
    }
    if (base == 0) {
        base = 10;
        if (i + 1 < n && s.s[i] == '0') { // "0..." with base 0: only zeros allowed
            for (size_t k = i; k < n; k++)
                if (s.s[k] != '0' && s.s[k] != '_') return false;
        }
    }
    if (i >= n) return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; i < n; i++) {
        char c = (char)(s.s[i] | 32);
        if (c == '_' && prev_digit && i + 1 < n && s.s[i + 1] != '_') {
            prev_digit = false;
            continue;
        }
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = true;
    }
    if (!prev_digit || v > (uint64_t)INT64_MAX + neg) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

// Python float() of a string; false if invalid.
static bool parse_py_float(struct render *r, struct cstr s, double *out) {
    size_t i = 0, n = s.len;
    while (i < n && cp_isspace((uint8_t)s.s[i])) i++;
    while (n > i && cp_isspace((uint8_t)s.s[n - 1])) n--;
    if (i >= n || n - i > 400) return false;
    char *buf = arena_alloc(r->a, n - i + 1);
    if (!buf) return false;
    size_t k = 0;
    for (size_t j = i; j < n; j++) {
        char c = s.s[j];
        if (c == '_') {
            if (j == i || j + 1 >= n || !(s.s[j - 1] >= '0' && s.s[j - 1] <= '9') || !(s.s[j + 1] >= '0' && s.s[j + 1] <= '9'))
                return false;
            continue;
        }
        if (!((c >= '0' && c <= '9') || strchr("+-.eEinfatyINFATY", c))) return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    const char *p = buf + (buf[0] == '+' || buf[0] == '-');
    if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0 || strcasecmp(p, "nan") == 0) {
        *out = strtod(buf, NULL);
        return true;
    }
    if (strpbrk(p, "xXpP") || (p[0] | 32) == 'i' || (p[0] | 32) == 'n') return false;
    char *end;
    errno = 0;
    *out = strtod(buf, &end);
    return *end == 0 && end != buf;
}

static struct chat_value *do_int(struct render *r, struct chat_value *v, struct chat_value *dflt, struct chat_value *base_v) {
    int64_t base = 10;
    if (base_v && !get_int(r, base_v, "base", &base)) return NULL;
    struct chat_value *d = dflt ? dflt : cv_int(r->a, 0);
    switch (v->type) {
    case CHAT_UNDEFINED: return undefined_error(r, v);
    case CHAT_INT: return v;
    case CHAT_BOOL: return cv_int(r->a, v->u.b);
    case CHAT_FLOAT:
        if (!isfinite(v->u.f) || fabs(v->u.f) >= 9.2e18) return d;
        return cv_int(r->a, (int64_t)v->u.f);
    case CHAT_STRING: {
        int64_t x;
        if ((base == 0 || (base >= 2 && base <= 36)) && parse_py_int(v->u.str, (int)base, &x)) return cv_int(r->a, x);
        double f;
        if (parse_py_float(r, v->u.str, &f) && isfinite(f) && fabs(f) < 9.2e18) return cv_int(r->a, (int64_t)f);
        return d;
    }
    default: return d;
    }
}

static struct chat_value *do_float(struct render *r, struct chat_value *v, struct chat_value *dflt) {
    struct chat_value *d = dflt ? dflt : cv_float(r->a, 0.0);
    switch (v->type) {
    case CHAT_UNDEFINED: return undefined_error(r, v);
    case CHAT_FLOAT: return v;
    case CHAT_INT: return cv_float(r->a, (double)v->u.i);
    case CHAT_BOOL: return cv_float(r->a, v->u.b);
    case CHAT_STRING: {
        double f;
        return parse_py_float(r, v->u.str, &f) ? cv_float(r->a, f) : d;
    }
    default: return d;
    }
}

static struct chat_value *do_round(struct render *r, struct chat_value *v, struct chat_value *prec_v, struct chat_value *method_v) {
    int64_t prec = 0;
    if (prec_v && !get_int(r, prec_v, "precision", &prec)) return NULL;
    int method = 0; // common
    if (method_v) {
        if (!need_str(r, method_v, "method")) return NULL;
        if (cstr_eq(method_v->u.str, "ceil", 4)) method = 1;
        else if (cstr_eq(method_v->u.str, "floor", 5)) method = 2;
        else if (!cstr_eq(method_v->u.str, "common", 6)) return rfail(r, "method must be common, ceil or floor");
    }
    if (v->type == CHAT_UNDEFINED) return undefined_error(r, v);
    if (v->type != CHAT_INT && v->type != CHAT_FLOAT && v->type != CHAT_BOOL)
        return rfail(r, "type %s doesn't define __round__ method", py_type_name(v));
    if (prec < -308 || prec > 308) return rfail(r, "round precision out of range");
    if (method) {
        double x = v->type == CHAT_FLOAT ? v->u.f : v->type == CHAT_BOOL ? v->u.b : (double)v->u.i;
        double scale = pow(10.0, (double)prec);
        return cv_float(r->a, (method == 1 ? ceil(x * scale) : floor(x * scale)) / scale);
    }
    if (v->type != CHAT_FLOAT) {
        int64_t x = v->type == CHAT_BOOL ? v->u.b : v->u.i;
        if (prec >= 0) return cv_int(r->a, x);
        // round half to even at 10^-prec
        int64_t m = 1;
        for (int64_t k = 0; k < -prec && m <= INT64_MAX / 10; k++) m *= 10;
        int64_t q = x / m, rem = x % m;
        if (rem < 0) q--, rem += m;
        if (rem * 2 > m || (rem * 2 == m && (q & 1))) q++;
        return cv_int(r->a, q * m);
    }
    double x = v->u.f;
    if (!isfinite(x)) return v;
    if (prec >= 0) {
        // printf rounds the exact binary value half-to-even, as Python's round does.
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)(prec > 330 ? 330 : prec), x);
        return cv_float(r->a, strtod(buf, NULL));
    }
    double scale = pow(10.0, (double)-prec), y = x / scale, ry = nearbyint(y);
    return cv_float(r->a, ry * scale);
}

static struct chat_value *do_indent(struct render *r, struct chat_value *v, struct chat_value *width_v,
                                    struct chat_value *first_v, struct chat_value *blank_v) {
    // jinja2 appends "\n" to the value itself (s += newline): only strings work
    if (v->type == CHAT_UNDEFINED) return undefined_error(r, v);
    if (v->type != CHAT_STRING) return rfail(r, "unsupported operand type(s) for +=: '%s' and 'str'", py_type_name(v));
    struct chat_value *s = v;
    struct cstr ind = {"    ", NULL, 4};
    if (width_v) {
        if (width_v->type == CHAT_STRING) ind = width_v->u.str;
        else {
            int64_t w;
            if (!get_int(r, width_v, "width", &w)) return NULL;
            if (w < 0) w = 0;
            if (w > 4096) return rfail(r, "indent width too large");
            char *sp = arena_alloc(r->a, (size_t)w + 1);
            if (!sp) return oom(r);
            memset(sp, ' ', (size_t)w);
            ind = (struct cstr){sp, NULL, (size_t)w};
        }
    }
    bool first = truthy_or(first_v, false), blank = truthy_or(blank_v, false);
    // s + "\n", then splitlines: the lines of s (a trailing empty line included when s ends in a break).
    struct sb tmp;
    sb_init(&tmp, r->a, SIZE_MAX);
    sb_put_str(&tmp, s->u.str);
    sb_putc(&tmp, '\n', false);
    if (tmp.failed) return str_value(r, &tmp);
    struct chat_value *lines = str_splitlines(r, sb_cstr(&tmp), false);
    if (!lines) return NULL;
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    if (first) sb_put_str(&b, ind);
    for (size_t i = 0; i < lines->u.arr.n; i++) {
        struct cstr line = lines->u.arr.v[i]->u.str;
        if (i > 0) {
            sb_putc(&b, '\n', false);
            if (blank || line.len) sb_put_str(&b, ind);
        }
        sb_put_str(&b, line);
    }
    return str_value(r, &b);
}

static struct chat_value *do_tojson(struct render *r, struct chat_value *v, struct chat_value **arg) {
    // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    struct json_opts o = {0};
    o.ensure_ascii = truthy_or(arg[0], false);
    o.sort_keys = truthy_or(arg[3], false);
    struct chat_value *indent = arg[1];
    if (indent && indent->type != CHAT_NONE) {
        if (indent->type == CHAT_STRING) {
            o.indent = indent->u.str.s;
            o.indent_len = indent->u.str.len;
        } else {
            int64_t w;
            if (!get_int(r, indent, "indent", &w)) return NULL;
            if (w < 0) w = 0;
            if (w > 256) return rfail(r, "tojson indent too large");
            char *sp = arena_alloc(r->a, (size_t)w + 1);
            if (!sp) return oom(r);
            memset(sp, ' ', (size_t)w);
            o.indent = sp;
            o.indent_len = (size_t)w;
        }
    }
    struct chat_value *seps = arg[2];
    if (seps && seps->type != CHAT_NONE) {
        if (seps->type != CHAT_ARRAY || seps->u.arr.n != 2 || seps->u.arr.v[0]->type != CHAT_STRING ||
            seps->u.arr.v[1]->type != CHAT_STRING)
            return rfail(r, "tojson separators must be a pair of strings");
        o.item_sep = seps->u.arr.v[0]->u.str.s;
        o.item_sep_len = seps->u.arr.v[0]->u.str.len;
        o.key_sep = seps->u.arr.v[1]->u.str.s;
        o.key_sep_len = seps->u.arr.v[1]->u.str.len;
    }
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    if (json_dump(&b, v, &o, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &b);
    if (!charge(r, b.len / 64)) return NULL;
    return str_value(r, &b);
}

// Calls the filter named by a string at run time (map('lower'), ...).
static struct chat_value *call_filter_by_name(struct render *r, struct chat_value *name, struct chat_value *v,
                                              const struct args *args, struct scope *sc) {
    if (!need_str(r, name, "filter name")) return NULL;
    int id = builtin_filter_find(name->u.str.s, name->u.str.len);
    if (id < 0) return rfail(r, "no filter named '%.*s'", (int)name->u.str.len, name->u.str.s);
    return builtin_call_filter(r, id, v, args, sc);
}

static struct args args_tail(const struct args *a, int skip) {
    struct args t = *a;
    t.pos = a->pos + skip;
    t.npos = a->npos - skip;
    return t;
}

// select / reject / selectattr / rejectattr
static struct chat_value *select_reject(struct render *r, struct chat_value *v, const struct args *args,
                                        bool want, bool by_attr) {
    if (!py_truthy(v)) return make_iter(r, NULL, 0);
    int off = 0;
    struct chat_value *attr = NULL;
    if (by_attr) {
        if (args->npos < 1) return rfail(r, "Missing parameter for attribute name");
        attr = args->pos[0];
        off = 1;
    }
    int test_id = -1;
    struct args targs = {0};
    if (args->npos > off) {
        struct chat_value *name = args->pos[off];
        if (!need_str(r, name, "test name")) return NULL;
        test_id = builtin_test_find(name->u.str.s, name->u.str.len);
        if (test_id < 0) return rfail(r, "no test named '%.*s'", (int)name->u.str.len, name->u.str.s);
        targs = args_tail(args, off + 1);
    }
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value **out = arena_alloc(r->a, (n + 1) * sizeof *out);
    if (!out) return oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!charge(r, 1)) return NULL;
        struct chat_value *x = by_attr ? attr_path(r, items[i], attr, NULL) : items[i];
        if (!x) return NULL;
        int t = test_id >= 0 ? builtin_call_test(r, test_id, x, &targs) : py_truthy(x);
        if (t < 0) return NULL;
        if ((t != 0) == want) out[k++] = items[i];
    }
    return make_iter(r, out, k);
}

static struct chat_value *do_map(struct render *r, struct chat_value *v, const struct args *args, struct scope *sc) {
    if (!py_truthy(v)) return make_iter(r, NULL, 0);
    struct chat_value *attribute = NULL, *dflt = NULL, *fname = NULL;
    struct args fargs = {0};
    if (args->npos == 0 && args->nkw > 0) {
        for (int k = 0; k < args->nkw; k++) {
            if (strcmp(args->kw[k], "attribute") == 0) attribute = args->kwv[k];
            else if (strcmp(args->kw[k], "default") == 0) dflt = args->kwv[k];
            else return rfail(r, "Unexpected keyword argument '%s'", args->kw[k]);
        }
        if (!attribute) return rfail(r, "map requires a filter argument");
        if (dflt && dflt->type == CHAT_NONE) dflt = NULL;
    } else {
        if (args->npos < 1) return rfail(r, "map requires a filter argument");
        fname = args->pos[0];
        fargs = args_tail(args, 1);
    }
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value **out = arena_alloc(r->a, (n + 1) * sizeof *out);
    if (!out) return oom(r);
    for (size_t i = 0; i < n; i++) {
        if (!charge(r, 1)) return NULL;
        out[i] = fname ? call_filter_by_name(r, fname, items[i], &fargs, sc) : attr_path(r, items[i], attribute, dflt);
        if (!out[i]) return NULL;
    }
    return make_iter(r, out, n);
}

static struct chat_value *do_sort(struct render *r, struct chat_value *v, struct chat_value **arg) {
    bool reverse, cs = truthy_or(arg[1], false);
    if (!get_flag(r, arg[0], false, &reverse)) return NULL;
    struct chat_value *attribute = arg[2];
    size_t n;
    struct chat_value **items = items_copy(r, v, &n);
    if (!items) return NULL;
    struct chat_value **keys = arena_alloc(r->a, (n + 1) * sizeof *keys);
    if (!keys) return oom(r);
    // attribute may list several keys: "age,name"
    struct chat_value *attrs[16];
    int n_attrs = 0;
    if (attribute && attribute->type == CHAT_STRING && memchr(attribute->u.str.s, ',', attribute->u.str.len)) {
        struct cstr a = attribute->u.str;
        size_t start = 0;
        for (size_t i = 0; i <= a.len && n_attrs < 16; i++)
            if (i == a.len || a.s[i] == ',') {
                if (!(attrs[n_attrs++] = cv_str(r->a, (struct cstr){a.s + start, NULL, i - start}))) return oom(r);
                start = i + 1;
            }
    }
    if (!n_attrs) { // jinja2's make_multi_attrgetter: the key is always a list of values
        attrs[0] = attribute;
        n_attrs = 1;
    }
    for (size_t i = 0; i < n; i++) {
        struct chat_value *t = new_array(r, (size_t)n_attrs);
        if (!t) return NULL;
        for (int k = 0; k < n_attrs; k++) {
            struct chat_value *x = attr_path(r, items[i], attrs[k], NULL);
            if (!x || !(x = lower_if_str(r, x, cs))) return NULL;
            t->u.arr.v[t->u.arr.n++] = x;
        }
        keys[i] = t;
    }
    if (!sort_by_keys(r, items, keys, n, reverse)) return NULL;
    return array_of(r, items, n);
}

static struct chat_value *do_dictsort(struct render *r, struct chat_value *v, struct chat_value **arg) {
    bool cs = truthy_or(arg[0], false), reverse;
    if (!get_flag(r, arg[2], false, &reverse)) return NULL;
    int pos = 0;
    if (arg[1]) {
        if (!need_str(r, arg[1], "by")) return NULL;
        if (cstr_eq(arg[1]->u.str, "value", 5)) pos = 1;
        else if (!cstr_eq(arg[1]->u.str, "key", 3)) return rfail(r, "You can only sort by either \"key\" or \"value\"");
    }
    if (v->type != CHAT_OBJECT) return rfail(r, "dictsort needs a mapping, not '%s'", py_type_name(v));
    size_t n = v->u.obj.n;
    struct chat_value **items = arena_alloc(r->a, (n + 1) * sizeof *items), **keys = arena_alloc(r->a, (n + 1) * sizeof *keys);
    if (!items || !keys) return oom(r);
    for (size_t i = 0; i < n; i++) {
        if (!(items[i] = tuple2(r, v->u.obj.keys[i], v->u.obj.vals[i]))) return NULL;
        if (!(keys[i] = lower_if_str(r, pos ? v->u.obj.vals[i] : v->u.obj.keys[i], cs))) return NULL;
    }
    if (!sort_by_keys(r, items, keys, n, reverse)) return NULL;
    return array_of(r, items, n);
}

static struct chat_value *do_unique(struct render *r, struct chat_value *v, struct chat_value **arg) {
    bool cs = truthy_or(arg[0], false);
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value **out = arena_alloc(r->a, (n + 1) * sizeof *out);
    struct chat_value *seen = cv_new(r->a, CHAT_OBJECT);
    if (!out || !seen) return oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!charge(r, 1)) return NULL;
        struct chat_value *key = attr_path(r, items[i], arg[1], NULL);
        if (!key || !(key = lower_if_str(r, key, cs))) return NULL;
        if (key->type == CHAT_ARRAY && !key->is_tuple) return rfail(r, "unhashable type: 'list'");
        if (key->type == CHAT_OBJECT) return rfail(r, "unhashable type: 'dict'");
        if (cv_obj_find(seen, key)) continue;
        if (cv_obj_set(r->a, seen, key, CV_NONE)) return oom(r);
        out[k++] = items[i];
    }
    return make_iter(r, out, k);
}

static struct chat_value *do_min_max(struct render *r, struct chat_value *v, struct chat_value **arg, bool is_max) {
    bool cs = truthy_or(arg[0], false);
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    if (n == 0) return make_undef_hint(r, "No aggregated item, sequence was empty.");
    struct chat_value *best = items[0], *best_key = attr_path(r, items[0], arg[1], NULL);
    if (!best_key || !(best_key = lower_if_str(r, best_key, cs))) return NULL;
    for (size_t i = 1; i < n; i++) {
        struct chat_value *key = attr_path(r, items[i], arg[1], NULL);
        if (!key || !(key = lower_if_str(r, key, cs))) return NULL;
        int c;
        if (r_cmp(r, key, best_key, is_max ? ">" : "<", &c)) return NULL;
        if (c != 2 && (is_max ? c > 0 : c < 0)) best = items[i], best_key = key;
    }
    return best;
}

static struct chat_value *do_join(struct render *r, struct chat_value *v, struct chat_value *d, struct chat_value *attribute) {
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value *sep = d ? soft_str(r, d) : NULL;
    if (d && !sep) return NULL;
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    for (size_t i = 0; i < n; i++) {
        if (!charge(r, 1)) return NULL;
        if (i && sep) sb_put_str(&b, sep->u.str);
        struct chat_value *x = attr_path(r, items[i], attribute, NULL);
        if (!x) return NULL;
        if (py_str(&b, x, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &b);
    }
    return str_value(r, &b);
}

static struct chat_value *do_sum(struct render *r, struct chat_value *v, struct chat_value *attribute, struct chat_value *start) {
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value *acc = start ? start : cv_int(r->a, 0);
    for (size_t i = 0; i < n && acc; i++) {
        struct chat_value *x = attr_path(r, items[i], attribute, NULL);
        if (!x) return NULL;
        // acc + x with the + operator's rules
        if (acc->type == CHAT_UNDEFINED || x->type == CHAT_UNDEFINED) return undefined_error(r, acc->type == CHAT_UNDEFINED ? acc : x);
        bool fl = acc->type == CHAT_FLOAT || x->type == CHAT_FLOAT;
        bool num = (acc->type == CHAT_INT || acc->type == CHAT_FLOAT || acc->type == CHAT_BOOL) &&
                   (x->type == CHAT_INT || x->type == CHAT_FLOAT || x->type == CHAT_BOOL);
        if (!num) return rfail(r, "unsupported operand type(s) for +: '%s' and '%s'", py_type_name(acc), py_type_name(x));
        if (fl) {
            double a = acc->type == CHAT_FLOAT ? acc->u.f : acc->type == CHAT_BOOL ? acc->u.b : (double)acc->u.i;
            double b2 = x->type == CHAT_FLOAT ? x->u.f : x->type == CHAT_BOOL ? x->u.b : (double)x->u.i;
            acc = cv_float(r->a, a + b2);
        } else {
            int64_t a = acc->type == CHAT_BOOL ? acc->u.b : acc->u.i, b2 = x->type == CHAT_BOOL ? x->u.b : x->u.i, z;
            if (__builtin_add_overflow(a, b2, &z)) return rfail(r, "integer overflow");
            acc = cv_int(r->a, z);
        }
    }
    return acc ? acc : oom(r);
}

static struct chat_value *do_reverse(struct render *r, struct chat_value *v) {
    if (v->type == CHAT_STRING) {
        struct sb b;
        sb_init(&b, r->a, SIZE_MAX);
        size_t n;
        struct chat_value **chars = iterate(r, v, &n);
        if (!chars) return NULL;
        for (size_t i = n; i-- > 0;) sb_put_str(&b, chars[i]->u.str);
        return as_markup(r, str_value(r, &b), v->markup);
    }
    if (v->type == CHAT_NONE || v->type == CHAT_INT || v->type == CHAT_FLOAT || v->type == CHAT_BOOL)
        return rfail(r, "argument must be iterable");
    bool was_iter = v->type == CV_ITER;
    size_t n;
    struct chat_value **items = items_copy(r, v, &n);
    if (!items) return NULL;
    for (size_t i = 0, j = n; i + 1 < j; i++, j--) {
        struct chat_value *t = items[i];
        items[i] = items[j - 1];
        items[j - 1] = t;
    }
    // reversed() gives an iterator; a generator goes through list() and stays a list.
    return was_iter ? array_of(r, items, n) : make_iter(r, items, n);
}

static struct chat_value *do_center(struct render *r, struct chat_value *v, struct chat_value *width_v) {
    struct chat_value *s = soft_str(r, v);
    int64_t width = 80;
    if (!s || (width_v && !get_int(r, width_v, "width", &width))) return NULL;
    if (width > 100000) return rfail(r, "center width too large");
    int64_t len = (int64_t)utf8_count(s->u.str.s, s->u.str.len);
    if (width <= len) return s;
    int64_t marg = width - len, left = marg / 2 + (marg & width & 1);
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    for (int64_t i = 0; i < left; i++) sb_putc(&b, ' ', false);
    sb_put_str(&b, s->u.str);
    for (int64_t i = left; i < marg; i++) sb_putc(&b, ' ', false);
    return str_value(r, &b);
}

// jinja2's batch: a new row starts when the current one has linecount items
// (so 0 gives an empty first row, a negative count one row of everything).
static struct chat_value *do_batch(struct render *r, struct chat_value *v, struct chat_value *count_v, struct chat_value *fill) {
    int64_t count;
    if (!get_int(r, count_v, "linecount", &count)) return NULL;
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return NULL;
    struct chat_value **out = arena_alloc(r->a, (n + 2) * sizeof *out);
    if (!out) return oom(r);
    size_t k = 0;
    struct chat_value *row = new_array(r, 0);
    if (!row) return NULL;
    for (size_t i = 0; i < n; i++) {
        if ((int64_t)row->u.arr.n == count) {
            out[k++] = row;
            if (!(row = new_array(r, 0))) return NULL;
        }
        if (!push(r, row, items[i])) return NULL;
    }
    if (row->u.arr.n) {
        if (fill && fill->type != CHAT_NONE)
            for (int64_t j = (int64_t)row->u.arr.n; j < count; j++)
                if (!push(r, row, fill)) return NULL;
        out[k++] = row;
    }
    return make_iter(r, out, k);
}

static struct chat_value *do_wordcount(struct render *r, struct chat_value *v) {
    struct chat_value *s = soft_str(r, v);
    if (!s) return NULL;
    int64_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < s->u.str.len;) {
        uint32_t cp = utf8_next(s->u.str.s, s->u.str.len, &i);
        bool w = cp == '_' || cp_isalpha(cp) || cp_isdigit(cp);
        if (w && !in_word) words++;
        in_word = w;
    }
    return cv_int(r->a, words);
}

struct chat_value *builtin_call_filter(struct render *r, int id, struct chat_value *v, const struct args *args,
                                       struct scope *sc) {
    const char *fname = filter_names[id];
    switch (id) {
    case F_ABS: {
        BIND("abs");
        (void)arg;
        if (v->type == CHAT_UNDEFINED) return undefined_error(r, v);
        if (v->type == CHAT_FLOAT) return cv_float(r->a, fabs(v->u.f));
        if (v->type == CHAT_BOOL) return cv_int(r->a, v->u.b);
        if (v->type == CHAT_INT) {
            if (v->u.i == INT64_MIN) return rfail(r, "integer overflow");
            return cv_int(r->a, v->u.i < 0 ? -v->u.i : v->u.i);
        }
        return rfail(r, "bad operand type for abs(): '%s'", py_type_name(v));
    }
    case F_ATTR: {
        BIND("attr", "name");
        if (!arg[0] || !need_str(r, arg[0], "attribute name")) return arg[0] ? NULL : rfail(r, "attr() needs a name");
        if (v->type == CHAT_UNDEFINED) return undefined_error(r, v);
        if (v->type == CV_NAMESPACE || v->type == CV_LOOP) return get_attr(r, v, arg[0]->u.str.s, arg[0]->u.str.len);
        struct chat_value *m = builtin_method_lookup(r, v, arg[0]->u.str.s, arg[0]->u.str.len);
        if (m || r->failed) return m;
        return make_undef_hint(r, "'%s object' has no attribute '%.*s'", py_type_name(v), (int)arg[0]->u.str.len, arg[0]->u.str.s);
    }
    case F_BATCH: {
        BIND("batch", "linecount", "fill_with");
        if (!arg[0]) return rfail(r, "batch() needs linecount");
        return do_batch(r, v, arg[0], arg[1]);
    }
    case F_CAPITALIZE: {
        BIND("capitalize");
        (void)arg;
        struct chat_value *s = soft_str(r, v);
        return s ? as_markup(r, str_capitalize(r, s->u.str), s->markup) : NULL;
    }
    case F_CENTER: {
        BIND("center", "width");
        return as_markup(r, do_center(r, v, arg[0]), v->type == CHAT_STRING && v->markup);
    }
    case F_COUNT:
    case F_LENGTH: {
        BIND("length");
        (void)arg;
        return do_length(r, v);
    }
    case F_D:
    case F_DEFAULT: {
        BIND("default", "default_value", "boolean");
        if (v->type == CHAT_UNDEFINED || (truthy_or(arg[1], false) && !py_truthy(v)))
            return arg[0] ? arg[0] : cv_str(r->a, (struct cstr){"", NULL, 0});
        return v;
    }
    case F_DICTSORT: {
        BIND("dictsort", "case_sensitive", "by", "reverse");
        return do_dictsort(r, v, arg);
    }
    case F_E:
    case F_ESCAPE:
    case F_FORCEESCAPE: {
        BIND("escape");
        (void)arg;
        return id == F_FORCEESCAPE ? html_escape(r, v) : markup_escape(r, v);
    }
    case F_FIRST:
    case F_LAST: {
        BIND(fname);
        (void)arg;
        return do_first_last(r, v, id == F_LAST);
    }
    case F_FLOAT: {
        BIND("float", "default");
        return do_float(r, v, arg[0]);
    }
    case F_FORMAT: {
        if (args->npos && args->nkw) return rfail(r, "can't handle positional and keyword arguments at the same time");
        struct chat_value *s = soft_str(r, v);
        if (!s) return NULL;
        struct chat_value *pa;
        if (args->nkw) {
            pa = cv_new(r->a, CHAT_OBJECT);
            if (!pa) return oom(r);
            for (int k = 0; k < args->nkw; k++) {
                struct chat_value *key = cv_str_copy(r->a, args->kw[k], strlen(args->kw[k]), false);
                if (!key || cv_obj_set(r->a, pa, key, args->kwv[k])) return oom(r);
            }
        } else {
            if (!(pa = array_of(r, args->pos, (size_t)args->npos))) return NULL;
            pa->is_tuple = 1;
        }
        return py_percent_format(r, s, pa);
    }
    case F_INDENT: {
        BIND("indent", "width", "first", "blank");
        return as_markup(r, do_indent(r, v, arg[0], arg[1], arg[2]), v->type == CHAT_STRING && v->markup);
    }
    case F_INT: {
        BIND("int", "default", "base");
        return do_int(r, v, arg[0], arg[1]);
    }
    case F_ITEMS: {
        BIND("items");
        (void)arg;
        if (v->type == CHAT_UNDEFINED) return make_iter(r, NULL, 0);
        if (v->type != CHAT_OBJECT) return rfail(r, "Can only get item pairs from a mapping.");
        struct chat_value **out = arena_alloc(r->a, (v->u.obj.n + 1) * sizeof *out);
        if (!out) return oom(r);
        for (size_t i = 0; i < v->u.obj.n; i++)
            if (!(out[i] = tuple2(r, v->u.obj.keys[i], v->u.obj.vals[i]))) return NULL;
        return make_iter(r, out, v->u.obj.n);
    }
    case F_JOIN: {
        BIND("join", "d", "attribute");
        return do_join(r, v, arg[0], arg[1]);
    }
    case F_LIST: {
        BIND("list");
        (void)arg;
        size_t n;
        struct chat_value **items = iterate(r, v, &n);
        return items ? array_of(r, items, n) : NULL;
    }
    case F_LOWER:
    case F_UPPER: {
        BIND(fname);
        (void)arg;
        struct chat_value *s = soft_str(r, v);
        return s ? as_markup(r, str_case(r, s->u.str, id == F_UPPER ? 'U' : 'L'), s->markup) : NULL;
    }
    case F_MAP: return do_map(r, v, args, sc);
    case F_MAX:
    case F_MIN: {
        BIND(fname, "case_sensitive", "attribute");
        return do_min_max(r, v, arg, id == F_MAX);
    }
    case F_REJECT: return select_reject(r, v, args, false, false);
    case F_SELECT: return select_reject(r, v, args, true, false);
    case F_REJECTATTR: return select_reject(r, v, args, false, true);
    case F_SELECTATTR: return select_reject(r, v, args, true, true);
    case F_REPLACE: {
        BIND("replace", "old", "new", "count");
        if (!arg[0] || !arg[1]) return rfail(r, "replace() needs old and new");
        struct chat_value *s = soft_str(r, v), *o = s ? soft_str(r, arg[0]) : NULL, *nw = o ? soft_str(r, arg[1]) : NULL;
        int64_t count = -1;
        if (!nw || (arg[2] && arg[2]->type != CHAT_NONE && !get_int(r, arg[2], "count", &count))) return NULL;
        return str_replace(r, s->u.str, o->u.str, nw->u.str, count);
    }
    case F_REVERSE: {
        BIND("reverse");
        (void)arg;
        return do_reverse(r, v);
    }
    case F_ROUND: {
        BIND("round", "precision", "method");
        return do_round(r, v, arg[0], arg[1]);
    }
    case F_SAFE:
    case F_STRING: {
        BIND(fname);
        (void)arg;
        return as_markup(r, soft_str(r, v), id == F_SAFE);
    }
    case F_SORT: {
        BIND("sort", "reverse", "case_sensitive", "attribute");
        return do_sort(r, v, arg);
    }
    case F_SUM: {
        BIND("sum", "attribute", "start");
        return do_sum(r, v, arg[0], arg[1]);
    }
    case F_TITLE: {
        BIND("title");
        (void)arg;
        struct chat_value *s = soft_str(r, v);
        return s ? jinja_title(r, s->u.str) : NULL;
    }
    case F_TOJSON: {
        BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
        return do_tojson(r, v, arg);
    }
    case F_TRIM: {
        BIND("trim", "chars");
        struct chat_value *s = soft_str(r, v);
        return s ? as_markup(r, str_strip(r, s->u.str, arg[0], 3), s->markup) : NULL;
    }
    case F_UNIQUE: {
        BIND("unique", "case_sensitive", "attribute");
        return do_unique(r, v, arg);
    }
    case F_WORDCOUNT: {
        BIND("wordcount");
        (void)arg;
        return do_wordcount(r, v);
    }
    default: return rfail(r, "the '%s' filter is not supported", fname);
    }
}

// ---------------------------------------------------------------- tests

struct chat_value *py_percent_format(struct render *r, struct chat_value *fmt, struct chat_value *args);

enum test_id {
    T_ODD, T_EVEN, T_DIVISIBLEBY, T_DEFINED, T_UNDEFINED, T_FILTER, T_TEST, T_NONE, T_BOOLEAN, T_FALSE, T_TRUE,
    T_INTEGER, T_FLOAT, T_LOWER, T_UPPER, T_STRING, T_MAPPING, T_NUMBER, T_SEQUENCE, T_ITERABLE, T_CALLABLE,
    T_SAMEAS, T_ESCAPED, T_IN, T_EQ1, T_EQ2, T_EQ3, T_NE1, T_NE2, T_GT1, T_GT2, T_GT3, T_GE1, T_GE2, T_LT1, T_LT2,
    T_LT3, T_LE1, T_LE2, N_TESTS
};
static const char *const test_names[N_TESTS] = {
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
    "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable",
    "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<", "lt",
    "lessthan", "<=", "le",
};

int builtin_test_find(const char *name, size_t len) { return find_name(test_names, N_TESTS, name, len); }

static int test_mod(struct render *r, struct chat_value *v, struct chat_value *m, int want) {
    struct chat_value *two = m;
    struct chat_value tmp = {.type = CHAT_INT, .u.i = 2};
    if (!two) two = &tmp;
    if (v->type == CHAT_UNDEFINED) return undefined_error(r, v), -1;
    if (v->type == CHAT_STRING) { // Python: "..." % 2 formats; a string never equals an int
        struct chat_value *arg = m ? m : cv_int(r->a, 2);
        if (!arg) return oom(r), -1;
        return py_percent_format(r, v, arg) ? 0 : -1;
    }
    bool num = v->type == CHAT_INT || v->type == CHAT_BOOL || v->type == CHAT_FLOAT;
    bool mnum = two->type == CHAT_INT || two->type == CHAT_BOOL || two->type == CHAT_FLOAT;
    if (!num || !mnum) return rfail(r, "unsupported operand type(s) for %%: '%s' and '%s'", py_type_name(v), py_type_name(two)), -1;
    if (v->type != CHAT_FLOAT && two->type != CHAT_FLOAT) {
        int64_t x = v->type == CHAT_BOOL ? v->u.b : v->u.i, y = two->type == CHAT_BOOL ? two->u.b : two->u.i;
        if (y == 0) return rfail(r, "integer division or modulo by zero"), -1;
        int64_t rem = y == -1 ? 0 : x % y;
        if (rem != 0 && ((rem < 0) != (y < 0))) rem += y;
        return rem == want;
    }
    double x = v->type == CHAT_FLOAT ? v->u.f : v->type == CHAT_BOOL ? v->u.b : (double)v->u.i;
    double y = two->type == CHAT_FLOAT ? two->u.f : two->type == CHAT_BOOL ? two->u.b : (double)two->u.i;
    if (y == 0) return rfail(r, "float modulo"), -1;
    double rem = fmod(x, y);
    if (rem != 0 && ((rem < 0) != (y < 0))) rem += y;
    return rem == want;
}

static int all_cased(struct chat_value *s, bool want_upper) {
    bool any = false;
    for (size_t i = 0; i < s->u.str.len;) {
        uint32_t cp = utf8_next(s->u.str.s, s->u.str.len, &i);
        if (cp_istitle(cp)) return 0;
        if (want_upper ? cp_islower(cp) : cp_isupper(cp)) return 0;
        if (want_upper ? cp_isupper(cp) : cp_islower(cp)) any = true;
    }
    return any;
}

int builtin_call_test(struct render *r, int id, struct chat_value *v, const struct args *args) {
    struct chat_value *a0 = args->npos > 0 ? args->pos[0] : NULL;
    if (args->npos > 1 || args->nkw > 0) {
        if (!(id == T_DIVISIBLEBY || id >= T_SAMEAS) || args->npos > 1)
            return rfail(r, "test '%s' got too many arguments", test_names[id]), -1;
        a0 = args->kwv[0];
    }
    bool needs_arg = id == T_DIVISIBLEBY || id == T_SAMEAS || id == T_IN || id >= T_EQ1;
    if (needs_arg && !a0) return rfail(r, "test '%s' needs an argument", test_names[id]), -1;
    if (!needs_arg && a0) return rfail(r, "test '%s' takes no argument", test_names[id]), -1;
    switch (id) {
    case T_ODD: return test_mod(r, v, NULL, 1);
    case T_EVEN: return test_mod(r, v, NULL, 0);
    case T_DIVISIBLEBY: return test_mod(r, v, a0, 0);
    case T_DEFINED: return v->type != CHAT_UNDEFINED;
    case T_UNDEFINED: return v->type == CHAT_UNDEFINED;
    case T_FILTER: return v->type == CHAT_STRING && builtin_filter_find(v->u.str.s, v->u.str.len) >= 0;
    case T_TEST: return v->type == CHAT_STRING && builtin_test_find(v->u.str.s, v->u.str.len) >= 0;
    case T_NONE: return v->type == CHAT_NONE;
    case T_BOOLEAN: return v->type == CHAT_BOOL;
    case T_FALSE: return v->type == CHAT_BOOL && !v->u.b;
    case T_TRUE: return v->type == CHAT_BOOL && v->u.b;
    case T_INTEGER: return v->type == CHAT_INT;
    case T_FLOAT: return v->type == CHAT_FLOAT;
    case T_LOWER:
    case T_UPPER: {
        struct chat_value *s = to_str(r, v);
        return s ? all_cased(s, id == T_UPPER) : -1;
    }
    case T_STRING: return v->type == CHAT_STRING;
    case T_MAPPING: return v->type == CHAT_OBJECT;
    case T_NUMBER: return v->type == CHAT_INT || v->type == CHAT_FLOAT || v->type == CHAT_BOOL;
    case T_SEQUENCE:
        return v->type == CHAT_STRING || (v->type == CHAT_ARRAY && !v->view) || v->type == CHAT_OBJECT || v->type == CV_RANGE ||
               v->type == CHAT_UNDEFINED;
    case T_ITERABLE:
        return v->type == CHAT_STRING || v->type == CHAT_ARRAY || v->type == CHAT_OBJECT || v->type == CV_RANGE ||
               v->type == CV_ITER || v->type == CHAT_UNDEFINED || v->type == CV_LOOP;
    case T_CALLABLE: return v->type == CV_CALLABLE || v->type == CV_LOOP || v->type == CHAT_UNDEFINED;
    case T_SAMEAS:
        if (v == a0) return 1;
        if (v->type != a0->type) return 0;
        if (v->type == CHAT_NONE || v->type == CHAT_UNDEFINED) return v->type == CHAT_NONE;
        if (v->type == CHAT_BOOL) return v->u.b == a0->u.b;
        if (v->type == CHAT_INT) return v->u.i == a0->u.i && v->u.i >= -5 && v->u.i <= 256; // Python's small-int cache
        return 0;
    case T_ESCAPED: return v->type == CHAT_STRING && v->markup;
    case T_IN: {
        // value in seq
        switch (a0->type) {
        case CHAT_STRING:
            if (v->type != CHAT_STRING) return rfail(r, "'in <string>' requires string as left operand, not %s", py_type_name(v)), -1;
            return v->u.str.len == 0 || memmem(a0->u.str.s, a0->u.str.len, v->u.str.s, v->u.str.len) != NULL;
        case CHAT_OBJECT:
            if ((v->type == CHAT_ARRAY && !v->is_tuple) || v->type == CHAT_OBJECT)
                return rfail(r, "unhashable type: '%s'", py_type_name(v)), -1;
            return cv_obj_find(a0, v) != NULL;
        default: {
            size_t n;
            struct chat_value **items = iterate(r, a0, &n);
            if (!items) return -1;
            for (size_t i = 0; i < n; i++) {
                int e = r_eq(r, items[i], v);
                if (e) return e;
            }
            return 0;
        }
        }
    }
    case T_EQ1:
    case T_EQ2:
    case T_EQ3: return r_eq(r, v, a0);
    case T_NE1:
    case T_NE2: {
        int e = r_eq(r, v, a0);
        return e < 0 ? -1 : !e;
    }
    default: {
        const char *op = id <= T_GT3 ? ">" : id <= T_GE2 ? ">=" : id <= T_LT3 ? "<" : "<=";
        if (v->type == CHAT_UNDEFINED) return undefined_error(r, v), -1;
        if (a0->type == CHAT_UNDEFINED) return undefined_error(r, a0), -1;
        int c;
        if (r_cmp(r, v, a0, op, &c)) return -1;
        if (c == 2) return 0;
        return op[0] == '>' ? (op[1] ? c >= 0 : c > 0) : (op[1] ? c <= 0 : c < 0);
    }
    }
}

// ---------------------------------------------------------------- globals

enum global_id { G_RANGE, G_DICT, G_NAMESPACE, G_RAISE, G_STRFTIME, G_LIPSUM, G_CYCLER, G_JOINER, N_GLOBALS };
static const char *const global_names[N_GLOBALS] = {
    "range", "dict", "namespace", "raise_exception", "strftime_now", "lipsum", "cycler", "joiner",
};

int builtin_global_find(const char *name, size_t len) { return find_name(global_names, N_GLOBALS, name, len); }

// dict(*args, **kwargs) / namespace(*args, **kwargs): a mapping or pairs, then keywords.
static struct chat_value *make_mapping(struct render *r, const char *fname, const struct args *args, int type) {
    struct chat_value *obj = cv_new(r->a, type);
    if (!obj) return oom(r);
    if (args->npos > 1) return rfail(r, "%s expected at most 1 argument, got %d", fname, args->npos);
    if (args->npos == 1) {
        struct chat_value *src = args->pos[0];
        if (src->type == CHAT_OBJECT || src->type == CV_NAMESPACE) {
            for (size_t i = 0; i < src->u.obj.n; i++)
                if (cv_obj_set(r->a, obj, src->u.obj.keys[i], src->u.obj.vals[i])) return oom(r);
        } else {
            size_t n;
            struct chat_value **items = iterate(r, src, &n);
            if (!items) return NULL;
            for (size_t i = 0; i < n; i++) {
                size_t k;
                struct chat_value **pair = iterate(r, items[i], &k);
                if (!pair) return NULL;
                if (k != 2) return rfail(r, "dictionary update sequence element #%zu has length %zu; 2 is required", i, k);
                if (cv_obj_set(r->a, obj, pair[0], pair[1])) return oom(r);
            }
        }
    }
    for (int k = 0; k < args->nkw; k++) {
        struct chat_value *key = cv_str_copy(r->a, args->kw[k], strlen(args->kw[k]), false);
        if (!key || cv_obj_set(r->a, obj, key, args->kwv[k])) return oom(r);
    }
    return obj;
}

#define SANDBOX_MAX_RANGE 100000 // jinja2's sandbox refuses longer ranges

struct chat_value *builtin_call_global(struct render *r, int id, const struct args *args) {
    switch (id) {
    case G_RANGE: {
        if (args->nkw) return rfail(r, "range() takes no keyword arguments");
        if (args->npos < 1 || args->npos > 3) return rfail(r, "range expected 1 to 3 arguments, got %d", args->npos);
        int64_t v[3] = {0, 0, 1};
        for (int i = 0; i < args->npos; i++) {
            const struct chat_value *a = args->pos[i];
            if (a->type == CHAT_UNDEFINED) return undefined_error(r, a);
            if (a->type != CHAT_INT && a->type != CHAT_BOOL)
                return rfail(r, "'%s' object cannot be interpreted as an integer", py_type_name(a));
        }
        if (args->npos == 1) v[1] = args->pos[0]->type == CHAT_BOOL ? args->pos[0]->u.b : args->pos[0]->u.i;
        else
            for (int i = 0; i < args->npos; i++) v[i] = args->pos[i]->type == CHAT_BOOL ? args->pos[i]->u.b : args->pos[i]->u.i;
        if (v[2] == 0) return rfail(r, "range() arg 3 must not be zero");
        struct chat_value *rv = cv_new(r->a, CV_RANGE);
        if (!rv) return oom(r);
        rv->u.range.start = v[0];
        rv->u.range.stop = v[1];
        rv->u.range.step = v[2];
        // Length without overflow.
        double len = v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2] : ((double)v[0] - (double)v[1]) / -(double)v[2];
        if (len > SANDBOX_MAX_RANGE)
            return rfail(r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", SANDBOX_MAX_RANGE);
        return rv;
    }
    case G_DICT: return make_mapping(r, "dict", args, CHAT_OBJECT);
    case G_NAMESPACE: return make_mapping(r, "namespace", args, CV_NAMESPACE);
    case G_RAISE: {
        struct chat_value *msg = args->npos > 0 ? to_str(r, args->pos[0]) : NULL;
        if (args->npos > 0 && !msg) return NULL;
        if (!r->failed) {
            err_set(r->err, "raise_exception: %.*s", msg ? (int)(msg->u.str.len < 400 ? msg->u.str.len : 400) : 0,
                    msg ? msg->u.str.s : "");
            one_line(r->err->msg);
            r->failed = true;
        }
        return NULL;
    }
    case G_STRFTIME: {
        if (args->npos != 1 || args->nkw) return rfail(r, "strftime_now() takes exactly one argument");
        struct chat_value *f = args->pos[0];
        if (!need_str(r, f, "strftime format")) return NULL;
        if (f->u.str.len > 256) return rfail(r, "strftime format too long");
        char fmt[260], out[4096];
        memcpy(fmt, f->u.str.s, f->u.str.len);
        fmt[f->u.str.len] = 0;
        if (strlen(fmt) != f->u.str.len) return rfail(r, "embedded null character");
        size_t n = fmt[0] ? strftime(out, sizeof out, fmt, &r->now) : 0;
        if (n == 0 && fmt[0]) out[0] = 0; // empty or too long: Python would give the text; keep it empty
        return cv_str_copy(r->a, out, n, false);
    }
    default: return rfail(r, "'%s' is not supported", global_names[id]);
    }
}

// ---------------------------------------------------------------- methods

enum method_id {
    // str
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER,
    M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_REPLACE, M_FIND, M_RFIND, M_INDEX, M_RINDEX, M_COUNT,
    M_JOIN, M_FORMAT, M_CENTER, M_LJUST, M_RJUST, M_ZFILL, M_PARTITION, M_RPARTITION, M_REMOVEPREFIX,
    M_REMOVESUFFIX, M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_ISNUMERIC, M_ISDECIMAL,
    // dict
    M_ITEMS, M_KEYS, M_VALUES, M_GET, M_DICT_COPY,
    // list / tuple
    M_LIST_INDEX, M_LIST_COUNT, M_LIST_COPY,
    // unsafe in the immutable sandbox (they change the object)
    M_UNSAFE,
};

static const struct {
    uint8_t type;
    const char *name;
    int id;
} methods[] = {
    {CHAT_STRING, "strip", M_STRIP}, {CHAT_STRING, "lstrip", M_LSTRIP}, {CHAT_STRING, "rstrip", M_RSTRIP},
    {CHAT_STRING, "split", M_SPLIT}, {CHAT_STRING, "rsplit", M_RSPLIT}, {CHAT_STRING, "splitlines", M_SPLITLINES},
    {CHAT_STRING, "startswith", M_STARTSWITH}, {CHAT_STRING, "endswith", M_ENDSWITH},
    {CHAT_STRING, "upper", M_UPPER}, {CHAT_STRING, "lower", M_LOWER}, {CHAT_STRING, "title", M_TITLE},
    {CHAT_STRING, "capitalize", M_CAPITALIZE}, {CHAT_STRING, "swapcase", M_SWAPCASE},
    {CHAT_STRING, "casefold", M_CASEFOLD}, {CHAT_STRING, "replace", M_REPLACE}, {CHAT_STRING, "find", M_FIND},
    {CHAT_STRING, "rfind", M_RFIND}, {CHAT_STRING, "index", M_INDEX}, {CHAT_STRING, "rindex", M_RINDEX},
    {CHAT_STRING, "count", M_COUNT}, {CHAT_STRING, "join", M_JOIN}, {CHAT_STRING, "format", M_FORMAT},
    {CHAT_STRING, "center", M_CENTER}, {CHAT_STRING, "ljust", M_LJUST}, {CHAT_STRING, "rjust", M_RJUST},
    {CHAT_STRING, "zfill", M_ZFILL}, {CHAT_STRING, "partition", M_PARTITION},
    {CHAT_STRING, "rpartition", M_RPARTITION}, {CHAT_STRING, "removeprefix", M_REMOVEPREFIX},
    {CHAT_STRING, "removesuffix", M_REMOVESUFFIX}, {CHAT_STRING, "isdigit", M_ISDIGIT},
    {CHAT_STRING, "isalpha", M_ISALPHA}, {CHAT_STRING, "isalnum", M_ISALNUM}, {CHAT_STRING, "isspace", M_ISSPACE},
    {CHAT_STRING, "islower", M_ISLOWER}, {CHAT_STRING, "isupper", M_ISUPPER},
    {CHAT_STRING, "isnumeric", M_ISNUMERIC}, {CHAT_STRING, "isdecimal", M_ISDECIMAL},
    {CHAT_OBJECT, "items", M_ITEMS}, {CHAT_OBJECT, "keys", M_KEYS}, {CHAT_OBJECT, "values", M_VALUES},
    {CHAT_OBJECT, "get", M_GET}, {CHAT_OBJECT, "copy", M_DICT_COPY},
    {CHAT_OBJECT, "pop", M_UNSAFE}, {CHAT_OBJECT, "popitem", M_UNSAFE}, {CHAT_OBJECT, "setdefault", M_UNSAFE},
    {CHAT_OBJECT, "update", M_UNSAFE}, {CHAT_OBJECT, "clear", M_UNSAFE}, {CHAT_OBJECT, "fromkeys", M_UNSAFE},
    {CHAT_ARRAY, "index", M_LIST_INDEX}, {CHAT_ARRAY, "count", M_LIST_COUNT}, {CHAT_ARRAY, "copy", M_LIST_COPY},
    {CV_RANGE, "index", M_LIST_INDEX}, {CV_RANGE, "count", M_LIST_COUNT},
    {CHAT_ARRAY, "append", M_UNSAFE}, {CHAT_ARRAY, "extend", M_UNSAFE}, {CHAT_ARRAY, "insert", M_UNSAFE},
    {CHAT_ARRAY, "pop", M_UNSAFE}, {CHAT_ARRAY, "remove", M_UNSAFE}, {CHAT_ARRAY, "clear", M_UNSAFE},
    {CHAT_ARRAY, "sort", M_UNSAFE}, {CHAT_ARRAY, "reverse", M_UNSAFE},
};
#define N_METHODS (sizeof methods / sizeof methods[0])

struct chat_value *builtin_method_lookup(struct render *r, struct chat_value *obj, const char *name, size_t len) {
    for (size_t i = 0; i < N_METHODS; i++) {
        if (methods[i].type != obj->type || strlen(methods[i].name) != len || memcmp(methods[i].name, name, len) != 0)
            continue;
        int id = methods[i].id;
        if (obj->type == CHAT_ARRAY && obj->view) continue; // dict views: no list methods
        if (obj->type == CHAT_ARRAY && obj->is_tuple && id != M_LIST_INDEX && id != M_LIST_COUNT) continue;
        if (id == M_UNSAFE) {
            // The sandbox hands back an undefined value that fails when used.
            struct chat_value *u = cv_new(r->a, CHAT_UNDEFINED);
            if (!u) return oom(r);
            u->undef_how = UNDEF_ATTR;
            u->security = 1;
            u->u.undef.name = methods[i].name;
            u->u.undef.obj_type = obj->type == CHAT_OBJECT ? "dict" : "list";
            return u;
        }
        struct chat_fn *fn = arena_zalloc(r->a, sizeof *fn);
        struct chat_value *v = cv_new(r->a, CV_CALLABLE);
        if (!fn || !v) return oom(r);
        fn->kind = FN_METHOD;
        fn->builtin = id;
        fn->self = obj;
        fn->name = methods[i].name;
        v->u.fn = fn;
        return v;
    }
    return NULL;
}

static struct chat_value *str_pad(struct render *r, struct cstr s, const struct args *args, int mode) {
    BIND(mode == 0 ? "center" : mode == 1 ? "ljust" : "rjust", "width", "fillchar");
    int64_t width;
    if (!arg[0] || !get_int(r, arg[0], "width", &width)) return arg[0] ? NULL : rfail(r, "missing width");
    if (width > 100000) return rfail(r, "width too large");
    struct cstr fill = {" ", NULL, 1};
    if (arg[1]) {
        if (!need_str(r, arg[1], "fillchar")) return NULL;
        if (utf8_count(arg[1]->u.str.s, arg[1]->u.str.len) != 1)
            return rfail(r, "The fill character must be exactly one character long");
        fill = arg[1]->u.str;
    }
    int64_t len = (int64_t)utf8_count(s.s, s.len);
    if (width <= len) return cv_str(r->a, s);
    int64_t marg = width - len, left = mode == 1 ? 0 : mode == 2 ? marg : marg / 2 + (marg & width & 1);
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    for (int64_t i = 0; i < left; i++) sb_put_str(&b, fill);
    sb_put_str(&b, s);
    for (int64_t i = left; i < marg; i++) sb_put_str(&b, fill);
    return str_value(r, &b);
}

static struct chat_value *str_method(struct render *r, struct chat_fn *fn, struct cstr s, const struct args *args) {
    switch (fn->builtin) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        BIND(fn->name, "chars");
        return str_strip(r, s, arg[0], fn->builtin == M_STRIP ? 3 : fn->builtin == M_LSTRIP ? 1 : 2);
    }
    case M_SPLIT:
    case M_RSPLIT: {
        BIND(fn->name, "sep", "maxsplit");
        return str_split(r, s, arg[0], arg[1], fn->builtin == M_RSPLIT);
    }
    case M_SPLITLINES: {
        BIND("splitlines", "keepends");
        bool keepends;
        if (!get_flag(r, arg[0], false, &keepends)) return NULL;
        return str_splitlines(r, s, keepends);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        BIND(fn->name, "prefix", "start", "end");
        if (!arg[0]) return rfail(r, "%s() takes at least 1 argument", fn->name);
        struct cstr w;
        if (!str_window(r, s, arg[1], arg[2], &w)) return NULL;
        struct chat_value **cands = &arg[0];
        size_t nc = 1;
        if (arg[0]->type == CHAT_ARRAY && arg[0]->is_tuple) {
            cands = arg[0]->u.arr.v;
            nc = arg[0]->u.arr.n;
        }
        for (size_t i = 0; i < nc; i++) {
            if (cands[i]->type != CHAT_STRING)
                return rfail(r, "%s first arg must be str or a tuple of str, not %s", fn->name, py_type_name(cands[i]));
            struct cstr p = cands[i]->u.str;
            if (p.len > w.len) continue;
            const char *at = fn->builtin == M_STARTSWITH ? w.s : w.s + w.len - p.len;
            if (p.len == 0 || memcmp(at, p.s, p.len) == 0) return CV_BOOL(true);
        }
        return CV_BOOL(false);
    }
    case M_UPPER:
    case M_LOWER:
    case M_SWAPCASE:
    case M_CASEFOLD: {
        BIND(fn->name);
        (void)arg;
        return str_case(r, s, fn->builtin == M_UPPER ? 'U' : fn->builtin == M_SWAPCASE ? 'S' : fn->builtin == M_CASEFOLD ? 'F' : 'L');
    }
    case M_TITLE: {
        BIND("title");
        (void)arg;
        return str_title(r, s);
    }
    case M_CAPITALIZE: {
        BIND("capitalize");
        (void)arg;
        return str_capitalize(r, s);
    }
    case M_REPLACE: {
        BIND("replace", "old", "new", "count");
        if (!arg[0] || !arg[1]) return rfail(r, "replace() takes at least 2 arguments");
        if (!need_str(r, arg[0], "replace() argument 1") || !need_str(r, arg[1], "replace() argument 2")) return NULL;
        int64_t count = -1;
        if (arg[2] && !get_int(r, arg[2], "count", &count)) return NULL;
        return str_replace(r, s, arg[0]->u.str, arg[1]->u.str, count);
    }
    case M_FIND:
    case M_RFIND:
    case M_INDEX:
    case M_RINDEX:
    case M_COUNT: {
        BIND(fn->name, "sub", "start", "end");
        if (!arg[0]) return rfail(r, "%s() takes at least 1 argument", fn->name);
        if (!need_str(r, arg[0], "substring")) return NULL;
        struct cstr w;
        if (!str_window(r, s, arg[1], arg[2], &w)) return NULL;
        if (!charge(r, w.len / 16 + 1)) return NULL;
        struct cstr sub = arg[0]->u.str;
        if (fn->builtin == M_COUNT) {
            int64_t c = 0;
            if (sub.len == 0) return cv_int(r->a, (int64_t)utf8_count(w.s, w.len) + 1);
            for (size_t pos = 0;;) {
                const char *hit = find_bytes(w, pos, sub);
                if (!hit) break;
                c++;
                pos = (size_t)(hit - w.s) + sub.len;
            }
            return cv_int(r->a, c);
        }
        bool right = fn->builtin == M_RFIND || fn->builtin == M_RINDEX;
        const char *hit = right ? rfind_bytes(w, w.len, sub) : find_bytes(w, 0, sub);
        if (!hit) {
            if (fn->builtin == M_INDEX || fn->builtin == M_RINDEX) return rfail(r, "substring not found");
            return cv_int(r->a, -1);
        }
        // Index in code points of s (the window starts at a code point).
        size_t base = cp_index_of(s, (size_t)(w.s - s.s));
        return cv_int(r->a, (int64_t)(base + cp_index_of(w, (size_t)(hit - w.s))));
    }
    case M_JOIN: {
        BIND("join", "iterable");
        if (!arg[0]) return rfail(r, "join() takes exactly one argument");
        size_t n;
        struct chat_value **items = iterate(r, arg[0], &n);
        if (!items) return NULL;
        struct sb b;
        sb_init(&b, r->a, r->lim->max_output);
        for (size_t i = 0; i < n; i++) {
            if (items[i]->type != CHAT_STRING)
                return rfail(r, "sequence item %zu: expected str instance, %s found", i, py_type_name(items[i]));
            if (i) sb_put_str(&b, s);
            sb_put_str(&b, items[i]->u.str);
        }
        return str_value(r, &b);
    }
    case M_FORMAT: return str_format(r, s, args, false);
    case M_CENTER: return str_pad(r, s, args, 0);
    case M_LJUST: return str_pad(r, s, args, 1);
    case M_RJUST: return str_pad(r, s, args, 2);
    case M_ZFILL: {
        BIND("zfill", "width");
        int64_t width;
        if (!arg[0] || !get_int(r, arg[0], "width", &width)) return arg[0] ? NULL : rfail(r, "missing width");
        if (width > 100000) return rfail(r, "width too large");
        int64_t len = (int64_t)utf8_count(s.s, s.len);
        if (width <= len) return cv_str(r->a, s);
        struct sb b;
        sb_init(&b, r->a, SIZE_MAX);
        size_t skip = s.len && (s.s[0] == '+' || s.s[0] == '-') ? 1 : 0;
        sb_put_range(&b, s, 0, skip);
        for (int64_t i = len; i < width; i++) sb_putc(&b, '0', false);
        sb_put_range(&b, s, skip, s.len - skip);
        return str_value(r, &b);
    }
    case M_PARTITION:
    case M_RPARTITION: {
        BIND(fn->name, "sep");
        if (!arg[0] || !need_str(r, arg[0], "separator")) return arg[0] ? NULL : rfail(r, "missing separator");
        if (arg[0]->u.str.len == 0) return rfail(r, "empty separator");
        bool right = fn->builtin == M_RPARTITION;
        const char *hit = right ? rfind_bytes(s, s.len, arg[0]->u.str) : find_bytes(s, 0, arg[0]->u.str);
        struct chat_value *t = new_array(r, 3), *empty = cv_str(r->a, (struct cstr){"", NULL, 0});
        if (!t || !empty) return oom(r);
        t->is_tuple = 1;
        if (!hit) {
            struct chat_value *whole = cv_str(r->a, s);
            t->u.arr.v[0] = right ? empty : whole;
            t->u.arr.v[1] = empty;
            t->u.arr.v[2] = right ? whole : empty;
        } else {
            size_t at = (size_t)(hit - s.s), sl = arg[0]->u.str.len;
            t->u.arr.v[0] = substr(r, s, 0, at);
            t->u.arr.v[1] = substr(r, s, at, sl);
            t->u.arr.v[2] = substr(r, s, at + sl, s.len - at - sl);
        }
        t->u.arr.n = 3;
        return t;
    }
    case M_REMOVEPREFIX:
    case M_REMOVESUFFIX: {
        BIND(fn->name, "affix");
        if (!arg[0] || !need_str(r, arg[0], "argument")) return arg[0] ? NULL : rfail(r, "missing argument");
        struct cstr p = arg[0]->u.str;
        if (p.len > s.len) return cv_str(r->a, s);
        if (fn->builtin == M_REMOVEPREFIX) return memcmp(s.s, p.s, p.len) == 0 ? substr(r, s, p.len, s.len - p.len) : cv_str(r->a, s);
        return memcmp(s.s + s.len - p.len, p.s, p.len) == 0 ? substr(r, s, 0, s.len - p.len) : cv_str(r->a, s);
    }
    case M_ISLOWER:
    case M_ISUPPER: {
        BIND(fn->name);
        (void)arg;
        struct chat_value tmp = {.type = CHAT_STRING, .u.str = s};
        return CV_BOOL(all_cased(&tmp, fn->builtin == M_ISUPPER));
    }
    default: { // isdigit, isalpha, isalnum, isspace, isnumeric, isdecimal
        BIND(fn->name);
        (void)arg;
        if (s.len == 0) return CV_BOOL(false);
        for (size_t i = 0; i < s.len;) {
            uint32_t cp = utf8_next(s.s, s.len, &i);
            bool ok;
            switch (fn->builtin) {
            case M_ISALPHA: ok = cp_isalpha(cp); break;
            case M_ISALNUM: ok = cp_isalpha(cp) || cp_isdigit(cp); break;
            case M_ISSPACE: ok = cp_isspace(cp); break;
            case M_ISDECIMAL: ok = (cp >= '0' && cp <= '9') || (cp >= 0x660 && cp <= 0x669) || (cp >= 0xFF10 && cp <= 0xFF19); break;
            default: ok = cp_isdigit(cp); break;
            }
            if (!ok) return CV_BOOL(false);
        }
        return CV_BOOL(true);
    }
    }
}

// A method of a markupsafe.Markup: arguments that end up in the text are
// escaped first, and text results are Markup again.
static struct chat_value *markup_method(struct render *r, struct chat_fn *fn, struct chat_value *self,
                                        const struct args *args) {
    struct args a = *args;
    int id = fn->builtin;
    if (id == M_FORMAT) return as_markup(r, str_format(r, self->u.str, args, true), true);
    if (id == M_REPLACE || id == M_LJUST || id == M_RJUST || id == M_CENTER || id == M_JOIN) {
        a.pos = arena_alloc(r->a, ((size_t)a.npos + 1) * sizeof *a.pos);
        a.kwv = arena_alloc(r->a, ((size_t)a.nkw + 1) * sizeof *a.kwv);
        if (!a.pos || !a.kwv) return oom(r);
        for (int i = 0; i < args->npos; i++) a.pos[i] = args->pos[i];
        for (int i = 0; i < args->nkw; i++) a.kwv[i] = args->kwv[i];
        int which = id == M_REPLACE ? 1 : id == M_JOIN ? 0 : 1; // new / iterable / fillchar
        if (which < a.npos) {
            struct chat_value *x = a.pos[which];
            if (id == M_JOIN) {
                size_t n;
                struct chat_value **items = iterate(r, x, &n);
                struct chat_value *esc = items ? new_array(r, n) : NULL;
                if (!esc) return NULL;
                for (size_t i = 0; i < n; i++)
                    if (!(esc->u.arr.v[esc->u.arr.n++] = markup_escape(r, items[i]))) return NULL;
                a.pos[which] = esc;
            } else if (x->type == CHAT_STRING && !(a.pos[which] = markup_escape(r, x))) return NULL;
        }
    }
    struct chat_value *res = str_method(r, fn, self->u.str, &a);
    if (!res) return NULL;
    switch (id) {
    case M_CAPITALIZE: case M_TITLE: case M_LOWER: case M_UPPER: case M_REPLACE: case M_LJUST: case M_RJUST:
    case M_LSTRIP: case M_RSTRIP: case M_CENTER: case M_STRIP: case M_SWAPCASE: case M_ZFILL: case M_CASEFOLD:
    case M_REMOVEPREFIX: case M_REMOVESUFFIX: case M_JOIN: return as_markup(r, res, true);
    case M_PARTITION: case M_RPARTITION: case M_SPLIT: case M_RSPLIT: case M_SPLITLINES:
        for (size_t i = 0; i < res->u.arr.n; i++)
            if (!(res->u.arr.v[i] = as_markup(r, res->u.arr.v[i], true))) return NULL;
        return res;
    default: return res;
    }
}

struct chat_value *builtin_call_method(struct render *r, struct chat_fn *fn, const struct args *args) {
    struct chat_value *self = fn->self;
    if (self->type == CHAT_STRING) return self->markup ? markup_method(r, fn, self, args) : str_method(r, fn, self->u.str, args);
    switch (fn->builtin) {
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        BIND(fn->name);
        (void)arg;
        size_t n = self->u.obj.n;
        struct chat_value *out = new_array(r, n);
        if (!out) return NULL;
        out->view = fn->builtin == M_ITEMS ? VIEW_ITEMS : fn->builtin == M_KEYS ? VIEW_KEYS : VIEW_VALUES;
        for (size_t i = 0; i < n; i++) {
            struct chat_value *x = fn->builtin == M_KEYS ? self->u.obj.keys[i] : fn->builtin == M_VALUES ? self->u.obj.vals[i]
                                 : tuple2(r, self->u.obj.keys[i], self->u.obj.vals[i]);
            if (!x) return NULL;
            out->u.arr.v[out->u.arr.n++] = x;
        }
        return out;
    }
    case M_GET: {
        BIND("get", "key", "default");
        if (!arg[0]) return rfail(r, "get expected at least 1 argument, got 0");
        if (args->nkw) return rfail(r, "get() takes no keyword arguments");
        struct chat_value *v = cv_obj_find(self, arg[0]);
        return v ? v : arg[1] ? arg[1] : CV_NONE;
    }
    case M_DICT_COPY: {
        BIND("copy");
        (void)arg;
        struct args a1 = {0};
        struct chat_value *one[1] = {self};
        a1.pos = one;
        a1.npos = 1;
        return make_mapping(r, "dict", &a1, CHAT_OBJECT);
    }
    case M_LIST_INDEX:
    case M_LIST_COUNT: {
        BIND(fn->name, "value");
        if (!arg[0]) return rfail(r, "%s() takes exactly one argument", fn->name);
        int64_t count = 0;
        size_t n;
        struct chat_value **items = iterate(r, self, &n);
        if (!items) return NULL;
        for (size_t i = 0; i < n; i++) {
            int e = r_eq(r, items[i], arg[0]);
            if (e < 0) return NULL;
            if (e) {
                if (fn->builtin == M_LIST_INDEX) return cv_int(r->a, (int64_t)i);
                count++;
            }
        }
        if (fn->builtin == M_LIST_INDEX) return rfail(r, "value is not in list");
        return cv_int(r->a, count);
    }
    case M_LIST_COPY: {
        BIND("copy");
        (void)arg;
        return array_of(r, self->u.arr.v, self->u.arr.n);
    }
    default: return rfail(r, "method '%s' is not supported", fn->name);
    }
}
