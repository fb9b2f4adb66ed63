// Evaluator: runs the AST against a context with jinja2's semantics (scopes,
// undefined values, Python operators), bounded by struct chat_limits, and
// the public template API.
#include "chat/impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct chat_limits chat_default_limits = {
    .max_output = 16u << 20,
    .max_memory = 256u << 20,
    .max_steps = 20000000,
    .max_depth = 400,
};

// ---------------------------------------------------------------- errors

struct chat_value *rfail(struct render *r, const char *fmt, ...) {
    if (r->failed) return NULL; // keep the first message
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    one_line(msg);
    err_set(r->err, "chat template error at line %d: %s", r->line, msg);
    r->failed = true;
    return NULL;
}

struct chat_value *oom(struct render *r) {
    if (r->a->failed) return rfail(r, "the template needs more than %zu MB of memory", r->lim->max_memory >> 20);
    return rfail(r, "out of memory");
}

// Turns a failed string builder into the right message.
CHAT_COLD static struct chat_value *sb_fail(struct render *r, const struct sb *b) {
    if (r->a->failed)
        return rfail(r, "the template needs more than %zu MB of memory", r->lim->max_memory >> 20);
    return rfail(r, "the output would be longer than %zu bytes", b->limit);
}

bool charge(struct render *r, uint64_t units) {
    r->steps += units;
    if (r->steps > r->lim->max_steps) {
        rfail(r, "the template takes too long (more than %llu steps)", (unsigned long long)r->lim->max_steps);
        return false;
    }
    return true;
}

int r_eq(struct render *r, const struct chat_value *a, const struct chat_value *b) {
    uint64_t budget = r->steps < r->lim->max_steps ? r->lim->max_steps - r->steps : 0, start = budget;
    int e = py_eq(a, b, CHAT_MAX_VALUE_DEPTH, &budget);
    if (!charge(r, start - budget)) return -1;
    if (e == -2) return charge(r, 1), -1;
    if (e == -1) return rfail(r, "value nested too deeply (more than %d levels)", CHAT_MAX_VALUE_DEPTH), -1;
    return e;
}

int r_cmp(struct render *r, const struct chat_value *a, const struct chat_value *b, const char *op, int *res) {
    uint64_t budget = r->steps < r->lim->max_steps ? r->lim->max_steps - r->steps : 0, start = budget;
    llm_err e;
    int rc = py_cmp(a, b, op, res, CHAT_MAX_VALUE_DEPTH, &budget, &e);
    if (!charge(r, start - budget)) return -1;
    if (rc) return rfail(r, "%s", e.msg), -1;
    return 0;
}

static const char *object_type(const struct chat_value *v) {
    switch (v->type) {
    case CHAT_NONE: return "None";
    case CHAT_BOOL: return "bool object";
    case CHAT_INT: return "int object";
    case CHAT_FLOAT: return "float object";
    case CHAT_STRING: return "str object";
    case CHAT_ARRAY: return v->view == VIEW_ITEMS ? "dict_items object" : v->view == VIEW_KEYS ? "dict_keys object"
                          : v->view == VIEW_VALUES ? "dict_values object" : v->is_tuple ? "tuple object" : "list object";
    case CHAT_OBJECT: return "dict object";
    case CV_NAMESPACE: return "jinja2.utils.Namespace object";
    case CV_LOOP: return "jinja2.runtime.LoopContext object";
    case CV_RANGE: return "range object";
    case CV_ITER: return "generator object";
    default: return "object";
    }
}

struct chat_value *undefined_error(struct render *r, const struct chat_value *u) {
    switch (u->undef_how) {
    case UNDEF_NAME: return rfail(r, "'%s' is undefined", u->u.undef.name);
    case UNDEF_ATTR:
        if (u->security)
            return rfail(r, "access to attribute '%s' of '%s' is unsafe", u->u.undef.name, u->u.undef.obj_type);
        return rfail(r, "'%s' has no attribute '%s'", u->u.undef.obj_type, u->u.undef.name);
    case UNDEF_ITEM: {
        struct sb b;
        sb_init(&b, r->a, 200);
        llm_err ignored;
        py_repr(&b, u->u.undef.key, 4, &ignored);
        return rfail(r, "%s has no element %.*s", u->u.undef.obj_type, (int)b.len, b.s ? b.s : "");
    }
    default: return rfail(r, "%s", u->u.undef.name ? u->u.undef.name : "value is undefined");
    }
}

static struct chat_value *make_undef(struct render *r, int how, const char *name, const struct chat_value *obj,
                                     const struct chat_value *key) {
    struct chat_value *u = cv_new(r->a, CHAT_UNDEFINED);
    if (!u) return oom(r);
    u->undef_how = (uint8_t)how;
    u->u.undef.name = name;
    u->u.undef.key = key;
    u->u.undef.obj_type = obj ? object_type(obj) : NULL;
    return u;
}

struct chat_value *make_undef_hint(struct render *r, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *s = arena_alloc(r->a, strlen(msg) + 1);
    if (!s) return oom(r);
    strcpy(s, msg);
    return make_undef(r, UNDEF_HINT, s, NULL, NULL);
}

static const char *copy_cname(struct render *r, const char *s, size_t n) {
    char *p = arena_alloc(r->a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

struct chat_value *make_iter(struct render *r, struct chat_value **items, size_t n) {
    static struct chat_value *no_items[1];
    struct chat_value *v = cv_new(r->a, CV_ITER);
    if (!v) return oom(r);
    v->u.iter.v = items ? items : no_items;
    v->u.iter.n = n;
    return v;
}

// ---------------------------------------------------------------- scopes

static struct scope *scope_new(struct render *r, struct scope *parent) {
    struct scope *s = arena_zalloc(r->a, sizeof *s);
    if (!s) {
        oom(r);
        return NULL;
    }
    s->parent = parent;
    return s;
}

static int scope_set(struct render *r, struct scope *s, const char *name, size_t len, struct chat_value *v) {
    if (!charge(r, s->n / 16)) return -1;
    for (size_t i = 0; i < s->n; i++)
        if (s->vars[i].len == len && memcmp(s->vars[i].name, name, len) == 0) {
            s->vars[i].val = v;
            return 0;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct scope_var *nv = arena_grow(r->a, s->vars, s->cap * sizeof *nv, cap * sizeof *nv);
        if (!nv) return oom(r), -1;
        s->vars = nv;
        s->cap = cap;
    }
    s->vars[s->n++] = (struct scope_var){name, len, v};
    return 0;
}

static struct chat_value *global_fn(struct render *r, int id, const char *name) {
    struct chat_fn *fn = arena_zalloc(r->a, sizeof *fn);
    struct chat_value *v = cv_new(r->a, CV_CALLABLE);
    if (!fn || !v) return oom(r);
    fn->kind = FN_GLOBAL;
    fn->builtin = id;
    fn->name = name;
    v->u.fn = fn;
    return v;
}

static struct chat_value *lookup(struct render *r, struct scope *s, const char *name, size_t len) {
    for (; s; s = s->parent) {
        if (!charge(r, s->n / 16)) return NULL;
        for (size_t i = s->n; i-- > 0;)
            if (s->vars[i].len == len && memcmp(s->vars[i].name, name, len) == 0) return s->vars[i].val;
    }
    if (r->context) {
        struct chat_value *v = cv_obj_get(r->context, name, len);
        if (v) return v;
    }
    int g = builtin_global_find(name, len);
    if (g >= 0) return global_fn(r, g, name);
    return make_undef(r, UNDEF_NAME, name, NULL, NULL);
}

// ---------------------------------------------------------------- helpers

struct chat_value *to_str(struct render *r, const struct chat_value *v) {
    if (v->type == CHAT_STRING) return (struct chat_value *)v;
    if (v->type == CV_LOOP && loop_fill(r, v->u.loop, SIZE_MAX)) return NULL; // its text shows the length
    struct sb b;
    sb_init(&b, r->a, r->lim->max_output);
    if (py_str(&b, v, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &b);
    return cv_str(r->a, sb_cstr(&b));
}

// One code point of s at byte offset off (length k) as a string value.
static struct chat_value *char_value(struct render *r, struct cstr s, size_t off, size_t k) {
    struct cstr c = {s.s + off, s.m ? s.m + off : NULL, k};
    return cv_str(r->a, c);
}

// Byte offsets of each code point of s, plus s.len at the end: [n + 1].
static size_t *cp_offsets(struct render *r, struct cstr s, size_t *n) {
    size_t *off = arena_alloc(r->a, (s.len + 1) * sizeof *off);
    if (!off) return oom(r), NULL;
    size_t k = 0;
    for (size_t i = 0; i < s.len;) {
        off[k++] = i;
        utf8_next(s.s, s.len, &i);
    }
    off[k] = s.len;
    *n = k;
    return off;
}

size_t range_len(const struct chat_value *v) {
    int64_t a = v->u.range.start, b = v->u.range.stop, st = v->u.range.step;
    if (st > 0 && a < b) return (size_t)(((uint64_t)b - (uint64_t)a - 1) / (uint64_t)st + 1);
    if (st < 0 && a > b) return (size_t)(((uint64_t)a - (uint64_t)b - 1) / (uint64_t)(-(st + 1) + 1) + 1);
    return 0;
}

struct chat_value **iterate(struct render *r, struct chat_value *v, size_t *n) {
    static struct chat_value *empty[1];
    *n = 0;
    switch (v->type) {
    case CHAT_UNDEFINED: return empty;
    case CHAT_ARRAY:
        *n = v->u.arr.n;
        return v->u.arr.n ? v->u.arr.v : empty;
    case CHAT_OBJECT:
        *n = v->u.obj.n;
        return v->u.obj.n ? v->u.obj.keys : empty;
    case CHAT_STRING: {
        if (!charge(r, v->u.str.len / 16 + 1)) return NULL;
        size_t count;
        size_t *off = cp_offsets(r, v->u.str, &count);
        struct chat_value **items = off ? arena_alloc(r->a, (count + 1) * sizeof *items) : NULL;
        if (!items) return oom(r), NULL;
        for (size_t i = 0; i < count; i++)
            if (!(items[i] = char_value(r, v->u.str, off[i], off[i + 1] - off[i]))) return oom(r), NULL;
        *n = count;
        return items;
    }
    case CV_RANGE: {
        int64_t a = v->u.range.start, st = v->u.range.step;
        uint64_t count = range_len(v);
        if (!charge(r, count)) return NULL;
        struct chat_value **items = arena_alloc(r->a, (count + 1) * sizeof *items);
        if (!items) return oom(r), NULL;
        for (uint64_t i = 0; i < count; i++)
            if (!(items[i] = cv_int(r->a, a + (int64_t)i * st))) return oom(r), NULL;
        *n = (size_t)count;
        return items;
    }
    case CV_ITER: {
        *n = v->u.iter.n - v->u.iter.pos;
        struct chat_value **items = v->u.iter.v ? v->u.iter.v + v->u.iter.pos : empty;
        v->u.iter.pos = v->u.iter.n; // consumed
        return items;
    }
    default: return rfail(r, "'%s' object is not iterable", py_type_name(v)), NULL;
    }
}

// ---------------------------------------------------------------- attributes and items

static struct chat_value *loop_attr(struct render *r, struct chat_value *lv, const char *name, size_t len) {
    struct chat_loop *L = lv->u.loop;
#define IS(s) (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
    if (IS("index")) return cv_int(r->a, (int64_t)L->index0 + 1);
    if (IS("index0")) return cv_int(r->a, (int64_t)L->index0);
    if (IS("first")) return CV_BOOL(L->index0 == 0);
    // These look ahead: the filter runs on the items they need.
    if (IS("revindex") || IS("revindex0") || IS("length")) {
        if (loop_fill(r, L, SIZE_MAX)) return NULL;
        int64_t rest = (int64_t)(L->n_known - L->index0);
        return cv_int(r->a, IS("length") ? (int64_t)L->n_known : IS("revindex") ? rest : rest - 1);
    }
    if (IS("last") || IS("nextitem")) {
        if (loop_fill(r, L, L->index0 + 2)) return NULL;
        bool last = L->n_known <= L->index0 + 1;
        if (IS("last")) return CV_BOOL(last);
        return last ? make_undef_hint(r, "there is no next item") : L->items[L->index0 + 1];
    }
    if (IS("depth")) return cv_int(r->a, L->depth0 + 1);
    if (IS("depth0")) return cv_int(r->a, L->depth0);
    if (IS("previtem"))
        return L->index0 > 0 ? L->items[L->index0 - 1] : make_undef_hint(r, "there is no previous item");
    if (IS("cycle") || IS("changed")) {
        struct chat_fn *fn = arena_zalloc(r->a, sizeof *fn);
        struct chat_value *v = cv_new(r->a, CV_CALLABLE);
        if (!fn || !v) return oom(r);
        fn->kind = FN_METHOD;
        fn->builtin = IS("cycle") ? -1 : -2; // handled in call_value
        fn->self = lv;
        fn->name = IS("cycle") ? "cycle" : "changed";
        v->u.fn = fn;
        return v;
    }
#undef IS
    return make_undef(r, UNDEF_ATTR, copy_cname(r, name, len), lv, NULL);
}

struct chat_value *get_attr(struct render *r, struct chat_value *obj, const char *name, size_t len) {
    if (obj->type == CHAT_UNDEFINED) return undefined_error(r, obj);
    if (obj->type == CV_LOOP) return loop_attr(r, obj, name, len);
    if (obj->type == CV_NAMESPACE) {
        struct chat_value *v = cv_obj_get(obj, name, len);
        return v ? v : make_undef(r, UNDEF_ATTR, copy_cname(r, name, len), obj, NULL);
    }
    // Python attribute first (methods of str, dict, list), then the item.
    struct chat_value *m = builtin_method_lookup(r, obj, name, len);
    if (m || r->failed) return m;
    if (obj->type == CHAT_OBJECT) {
        struct chat_value *v = cv_obj_get(obj, name, len);
        if (v) return v;
    }
    return make_undef(r, UNDEF_ATTR, copy_cname(r, name, len), obj, NULL);
}

static bool as_index(const struct chat_value *k, int64_t *i) {
    if (k->type == CHAT_INT) *i = k->u.i;
    else if (k->type == CHAT_BOOL) *i = k->u.b;
    else return false;
    return true;
}

struct chat_value *get_item(struct render *r, struct chat_value *obj, struct chat_value *key) {
    if (obj->type == CHAT_UNDEFINED) return undefined_error(r, obj);
    int64_t i;
    switch (obj->type) {
    case CHAT_OBJECT: {
        struct chat_value *v = cv_obj_find(obj, key);
        if (v) return v;
        break;
    }
    case CHAT_ARRAY:
        if (obj->view) break; // dict views are not subscriptable
        if (as_index(key, &i)) {
            int64_t n = (int64_t)obj->u.arr.n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj->u.arr.v[i];
            return make_undef(r, UNDEF_ITEM, NULL, obj, key);
        }
        break;
    case CHAT_STRING:
        if (as_index(key, &i)) {
            if (!charge(r, obj->u.str.len / 16 + 1)) return NULL;
            size_t n;
            size_t *off = cp_offsets(r, obj->u.str, &n);
            if (!off) return NULL;
            if (i < 0) i += (int64_t)n;
            if (i >= 0 && i < (int64_t)n) return as_markup(r, char_value(r, obj->u.str, off[i], off[i + 1] - off[i]), obj->markup);
            return make_undef(r, UNDEF_ITEM, NULL, obj, key);
        }
        break;
    case CV_RANGE:
        if (as_index(key, &i)) {
            size_t n;
            struct chat_value **items = iterate(r, obj, &n);
            if (!items) return NULL;
            if (i < 0) i += (int64_t)n;
            if (i >= 0 && i < (int64_t)n) return items[i];
            return make_undef(r, UNDEF_ITEM, NULL, obj, key);
        }
        break;
    case CV_NAMESPACE:
    case CV_LOOP: break;
    default: break;
    }
    // jinja2: a failed item lookup with a string key tries the attribute.
    if (key->type == CHAT_STRING) {
        if (obj->type == CHAT_OBJECT) {
            struct chat_value *m = builtin_method_lookup(r, obj, key->u.str.s, key->u.str.len);
            if (m || r->failed) return m;
            return make_undef(r, UNDEF_ATTR, copy_cname(r, key->u.str.s, key->u.str.len), obj, NULL);
        }
        return get_attr(r, obj, key->u.str.s, key->u.str.len);
    }
    return make_undef(r, UNDEF_ITEM, NULL, obj, key);
}

// Python's slice.indices(length).
static bool slice_index(struct render *r, struct chat_value *v, int64_t *out, bool *given) {
    *given = false;
    if (!v || v->type == CHAT_NONE) return true;
    if (v->type == CHAT_UNDEFINED) return undefined_error(r, v), false;
    if (!as_index(v, out)) return rfail(r, "slice indices must be integers or None"), false;
    *given = true;
    return true;
}

static struct chat_value *eval(struct render *r, struct node *n, struct scope *sc);

// obj[a:b:c] for the E_ITEM node item (item->b is the E_SLICE).
static struct chat_value *do_slice(struct render *r, struct chat_value *obj, struct node *item, struct scope *sc) {
    struct node *sl = item->b;
    struct chat_value *sv[3] = {NULL, NULL, NULL};
    struct node *parts[3] = {sl->a, sl->b, sl->c};
    for (int k = 0; k < 3; k++)
        if (parts[k] && !(sv[k] = eval(r, parts[k], sc))) return NULL;
    if (obj->type == CHAT_UNDEFINED) return undefined_error(r, obj);
    // jinja2 slices with Python's own [] (no undefined fallback as for items),
    // unless the optimizer folded a constant slice through getitem.
    bool folded = r->folding;
    if (obj->type == CHAT_OBJECT)
        return folded ? make_undef_hint(r, "unhashable type: 'slice'") : rfail(r, "unhashable type: 'slice'");
    if (obj->type != CHAT_STRING && obj->type != CV_RANGE && !(obj->type == CHAT_ARRAY && !obj->view)) {
        if (folded) return make_undef_hint(r, "'%s' object is not subscriptable", py_type_name(obj));
        return rfail(r, "'%s' object is not subscriptable", py_type_name(obj));
    }
    int64_t start = 0, stop = 0, step = 1;
    bool has_start, has_stop, has_step;
    for (int k = 0; k < 3 && folded; k++)
        if (sv[k] && sv[k]->type != CHAT_NONE && sv[k]->type != CHAT_INT && sv[k]->type != CHAT_BOOL)
            return make_undef_hint(r, "slice indices must be integers or None");
    if (!slice_index(r, sv[0], &start, &has_start) || !slice_index(r, sv[1], &stop, &has_stop) ||
        !slice_index(r, sv[2], &step, &has_step))
        return NULL;
    if (step == 0) return folded ? make_undef_hint(r, "slice step cannot be zero") : rfail(r, "slice step cannot be zero");
    size_t n = 0;
    size_t *off = NULL;
    struct chat_value **items = NULL;
    if (obj->type == CHAT_STRING) {
        if (!charge(r, obj->u.str.len / 16 + 1) || !(off = cp_offsets(r, obj->u.str, &n))) return NULL;
    } else if (obj->type == CV_RANGE) {
        n = range_len(obj);
    } else if (!(items = iterate(r, obj, &n))) return NULL;
    int64_t len = (int64_t)n;
    if (!has_start) start = step < 0 ? len - 1 : 0;
    else if (start < 0) start = start + len < 0 ? (step < 0 ? -1 : 0) : start + len;
    else if (start >= len) start = step < 0 ? len - 1 : len;
    if (!has_stop) stop = step < 0 ? -1 : len;
    else if (stop < 0) stop = stop + len < 0 ? (step < 0 ? -1 : 0) : stop + len;
    else if (stop >= len) stop = step < 0 ? len - 1 : len;
    if (obj->type == CV_RANGE) { // a range sliced is a range
        struct chat_value *rv = cv_new(r->a, CV_RANGE);
        if (!rv) return oom(r);
        rv->u.range.start = obj->u.range.start + start * obj->u.range.step;
        rv->u.range.stop = obj->u.range.start + stop * obj->u.range.step;
        rv->u.range.step = obj->u.range.step * step;
        return rv;
    }
    if (obj->type == CHAT_STRING) {
        if (step == 1) {
            if (stop <= start) return as_markup(r, cv_str(r->a, (struct cstr){"", NULL, 0}), obj->markup);
            struct cstr s = obj->u.str;
            return as_markup(r, char_value(r, s, off[start], off[stop] - off[start]), obj->markup);
        }
        struct sb b;
        sb_init(&b, r->a, SIZE_MAX);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            sb_put_range(&b, obj->u.str, off[i], off[i + 1] - off[i]);
        if (b.failed) return sb_fail(r, &b);
        return as_markup(r, cv_str(r->a, sb_cstr(&b)), obj->markup);
    }
    struct chat_value *out = cv_array(r->a, 0);
    if (!out) return oom(r);
    out->is_tuple = obj->is_tuple;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        if (cv_push(r->a, out, items[i])) return oom(r);
    return out;
}

// ---------------------------------------------------------------- operators

static bool is_num(const struct chat_value *v) {
    return v->type == CHAT_INT || v->type == CHAT_FLOAT || v->type == CHAT_BOOL;
}
static double num_f(const struct chat_value *v) {
    return v->type == CHAT_FLOAT ? v->u.f : v->type == CHAT_BOOL ? (double)v->u.b : (double)v->u.i;
}
static int64_t num_i(const struct chat_value *v) { return v->type == CHAT_BOOL ? v->u.b : v->u.i; }

static const char *op_text(int op) {
    switch (op) {
    case '+': return "+";
    case '-': return "-";
    case '*': return "*";
    case '/': return "/";
    case 'f': return "//";
    case '%': return "%";
    case 'p': return "** or pow()";
    }
    return "?";
}

static struct chat_value *repeat(struct render *r, struct chat_value *seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq->type == CHAT_STRING) {
        size_t len = seq->u.str.len;
        if (len && (uint64_t)times > r->lim->max_memory / len) return rfail(r, "string repetition too large");
        if (!charge(r, (uint64_t)times * len / 16 + 1)) return NULL;
        struct sb b;
        sb_init(&b, r->a, SIZE_MAX);
        for (int64_t i = 0; i < times && !b.failed; i++) sb_put_str(&b, seq->u.str);
        if (b.failed) return sb_fail(r, &b);
        return as_markup(r, cv_str(r->a, sb_cstr(&b)), seq->markup);
    }
    size_t n = seq->u.arr.n;
    if (n && (uint64_t)times > r->lim->max_memory / (n * sizeof(void *))) return rfail(r, "list repetition too large");
    if (!charge(r, (uint64_t)times * n + 1)) return NULL;
    struct chat_value *out = cv_array(r->a, (size_t)times * n);
    if (!out) return oom(r);
    out->is_tuple = seq->is_tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < n; k++) out->u.arr.v[out->u.arr.n++] = seq->u.arr.v[k];
    return out;
}

struct chat_value *py_percent_format(struct render *r, struct chat_value *fmt, struct chat_value *args);

static struct chat_value *arith(struct render *r, int op, struct chat_value *a, struct chat_value *b) {
    // str % Undefined: Undefined is subscriptable, so Python takes it as a mapping
    if (op == '%' && a->type == CHAT_STRING && b->type == CHAT_UNDEFINED) return py_percent_format(r, a, b);
    if (a->type == CHAT_UNDEFINED) return undefined_error(r, a);
    if (b->type == CHAT_UNDEFINED) return undefined_error(r, b);
    if (is_num(a) && is_num(b)) {
        bool ints = a->type != CHAT_FLOAT && b->type != CHAT_FLOAT;
        if (ints) {
            int64_t x = num_i(a), y = num_i(b), z;
            switch (op) {
            case '+':
                if (__builtin_add_overflow(x, y, &z)) return rfail(r, "integer overflow");
                return cv_int(r->a, z);
            case '-':
                if (__builtin_sub_overflow(x, y, &z)) return rfail(r, "integer overflow");
                return cv_int(r->a, z);
            case '*':
                if (__builtin_mul_overflow(x, y, &z)) return rfail(r, "integer overflow");
                return cv_int(r->a, z);
            case '/':
                if (y == 0) return rfail(r, "division by zero");
                return cv_float(r->a, (double)x / (double)y);
            case 'f':
            case '%': {
                if (y == 0) return rfail(r, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) {
                    if (op == '%') return cv_int(r->a, 0);
                    return rfail(r, "integer overflow");
                }
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) q -= 1, m += y; // floor toward -inf
                return cv_int(r->a, op == 'f' ? q : m);
            }
            case 'p': {
                if (y < 0) {
                    if (x == 0) return rfail(r, "0.0 cannot be raised to a negative power");
                    return cv_float(r->a, pow((double)x, (double)y));
                }
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if (e & 1 && __builtin_mul_overflow(acc, base, &acc)) return rfail(r, "integer overflow");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) return rfail(r, "integer overflow");
                }
                return cv_int(r->a, acc);
            }
            }
        }
        double x = num_f(a), y = num_f(b);
        switch (op) {
        case '+': return cv_float(r->a, x + y);
        case '-': return cv_float(r->a, x - y);
        case '*': return cv_float(r->a, x * y);
        case '/':
            if (y == 0) return rfail(r, "float division by zero");
            return cv_float(r->a, x / y);
        case 'f':
        case '%': {
            if (y == 0) return rfail(r, op == 'f' ? "float floor division by zero" : "float modulo");
            // Python's float_divmod.
            double mod = fmod(x, y), div = (x - mod) / y, floordiv;
            if (mod != 0) {
                if ((y < 0) != (mod < 0)) {
                    mod += y;
                    div -= 1.0;
                }
            } else mod = copysign(0.0, y);
            if (div != 0) {
                floordiv = floor(div);
                if (div - floordiv > 0.5) floordiv += 1.0;
            } else floordiv = copysign(0.0, x / y);
            return cv_float(r->a, op == 'f' ? floordiv : mod);
        }
        case 'p':
            if (x == 0 && y < 0) return rfail(r, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y)) return rfail(r, "complex results are not supported");
            return cv_float(r->a, pow(x, y));
        }
    }
    if (op == '+') {
        if (a->type == CHAT_STRING && b->type == CHAT_STRING && (a->markup || b->markup)) {
            // Markup + str escapes the plain side (markupsafe)
            struct chat_value *ea = markup_escape(r, a), *eb = ea ? markup_escape(r, b) : NULL;
            if (!eb) return NULL;
            struct chat_value plain_a = *ea, plain_b = *eb;
            plain_a.markup = plain_b.markup = 0;
            return as_markup(r, arith(r, op, &plain_a, &plain_b), true);
        }
        if (a->type == CHAT_STRING && b->type == CHAT_STRING) {
            if (!charge(r, (a->u.str.len + b->u.str.len) / 64 + 1)) return NULL;
            struct sb s;
            sb_init(&s, r->a, SIZE_MAX);
            sb_put_str(&s, a->u.str);
            sb_put_str(&s, b->u.str);
            if (s.failed) return sb_fail(r, &s);
            return cv_str(r->a, sb_cstr(&s));
        }
        if (a->type == CHAT_ARRAY && b->type == CHAT_ARRAY && a->is_tuple == b->is_tuple && !a->view && !b->view) {
            if (!charge(r, a->u.arr.n + b->u.arr.n + 1)) return NULL;
            struct chat_value *out = cv_array(r->a, a->u.arr.n + b->u.arr.n);
            if (!out) return oom(r);
            out->is_tuple = a->is_tuple;
            for (size_t i = 0; i < a->u.arr.n; i++) out->u.arr.v[out->u.arr.n++] = a->u.arr.v[i];
            for (size_t i = 0; i < b->u.arr.n; i++) out->u.arr.v[out->u.arr.n++] = b->u.arr.v[i];
            return out;
        }
        if (a->type == CHAT_STRING || (a->type == CHAT_ARRAY && !a->view))
            return rfail(r, "can only concatenate %s (not \"%s\") to %s", py_type_name(a), py_type_name(b),
                         py_type_name(a));
    }
    if (op == '*') {
        if ((a->type == CHAT_STRING || (a->type == CHAT_ARRAY && !a->view)) && (b->type == CHAT_INT || b->type == CHAT_BOOL))
            return repeat(r, a, num_i(b));
        if ((b->type == CHAT_STRING || (b->type == CHAT_ARRAY && !b->view)) && (a->type == CHAT_INT || a->type == CHAT_BOOL))
            return repeat(r, b, num_i(a));
    }
    if (op == '%' && a->type == CHAT_STRING) return py_percent_format(r, a, b);
    return rfail(r, "unsupported operand type(s) for %s: '%s' and '%s'", op_text(op), py_type_name(a),
                 py_type_name(b));
}

// item in container; -1 on error.
static int contains(struct render *r, struct chat_value *container, struct chat_value *item) {
    switch (container->type) {
    case CHAT_UNDEFINED: return 0;
    case CHAT_STRING:
        if (item->type == CHAT_UNDEFINED) return undefined_error(r, item), -1;
        if (item->type != CHAT_STRING)
            return rfail(r, "'in <string>' requires string as left operand, not %s", py_type_name(item)), -1;
        if (!charge(r, container->u.str.len / 16 + 1)) return -1;
        if (item->u.str.len == 0) return 1;
        return memmem(container->u.str.s, container->u.str.len, item->u.str.s, item->u.str.len) != NULL;
    case CHAT_OBJECT:
        if ((item->type == CHAT_ARRAY && !item->is_tuple) || item->type == CHAT_OBJECT || item->type == CV_NAMESPACE)
            return rfail(r, "unhashable type: '%s'", py_type_name(item)), -1;
        return cv_obj_find(container, item) != NULL;
    case CHAT_ARRAY:
    case CV_RANGE:
    case CV_ITER: {
        size_t n;
        struct chat_value **items;
        if (container->type == CV_ITER) { // consumes up to the match, as Python does
            items = container->u.iter.v + container->u.iter.pos;
            n = container->u.iter.n - container->u.iter.pos;
        } else if (!(items = iterate(r, container, &n))) return -1;
        if (!charge(r, n / 4 + 1)) return -1;
        for (size_t i = 0; i < n; i++) {
            int e = r_eq(r, items[i], item);
            if (e < 0) return -1;
            if (e) {
                if (container->type == CV_ITER) container->u.iter.pos += i + 1;
                return 1;
            }
        }
        if (container->type == CV_ITER) container->u.iter.pos = container->u.iter.n;
        return 0;
    }
    default: return rfail(r, "argument of type '%s' is not iterable", py_type_name(container)), -1;
    }
}

// One comparison of a chain; -1 on error.
static int compare(struct render *r, int op, struct chat_value *a, struct chat_value *b) {
    switch (op) {
    case 'e':
    case 'n': {
        int e = r_eq(r, a, b);
        if (e < 0) return -1;
        return op == 'e' ? e : !e;
    }
    case 'i':
    case 'x': {
        int c = contains(r, b, a);
        return c < 0 ? -1 : op == 'i' ? c : !c;
    }
    }
    if (a->type == CHAT_UNDEFINED) return undefined_error(r, a), -1;
    if (b->type == CHAT_UNDEFINED) return undefined_error(r, b), -1;
    const char *text = op == '<' ? "<" : op == 'l' ? "<=" : op == '>' ? ">" : ">=";
    int res;
    if (r_cmp(r, a, b, text, &res)) return -1;
    if (res == 2) return 0; // NaN
    switch (op) {
    case '<': return res < 0;
    case 'l': return res <= 0;
    case '>': return res > 0;
    default: return res >= 0;
    }
}

// ---------------------------------------------------------------- calls

static int eval_args(struct render *r, struct node *n, struct scope *sc, struct args *out, int extra_kw) {
    memset(out, 0, sizeof *out);
    size_t npos = (size_t)n->list.n, nkw = (size_t)n->list2.n + (size_t)extra_kw;
    struct chat_value *dyn = NULL, *dynkw = NULL;
    if (n->c && !(dyn = eval(r, n->c, sc))) return -1;
    if (n->d && !(dynkw = eval(r, n->d, sc))) return -1;
    size_t ndyn = 0;
    struct chat_value **dyn_items = NULL;
    if (dyn && !(dyn_items = iterate(r, dyn, &ndyn))) return -1;
    if (dynkw && dynkw->type != CHAT_OBJECT) return rfail(r, "argument after ** must be a mapping"), -1;
    if (dynkw) nkw += dynkw->u.obj.n;
    out->pos = arena_alloc(r->a, (npos + ndyn + 1) * sizeof *out->pos);
    out->kw = arena_alloc(r->a, (nkw + 1) * sizeof *out->kw);
    out->kwv = arena_alloc(r->a, (nkw + 1) * sizeof *out->kwv);
    if (!out->pos || !out->kw || !out->kwv) return oom(r), -1;
    for (size_t i = 0; i < npos; i++)
        if (!(out->pos[out->npos++] = eval(r, n->list.v[i], sc))) return -1;
    for (size_t i = 0; i < ndyn; i++) out->pos[out->npos++] = dyn_items[i];
    for (int i = 0; i < n->list2.n; i++) {
        struct node *kw = n->list2.v[i];
        out->kw[out->nkw] = kw->name;
        if (!(out->kwv[out->nkw++] = eval(r, kw->a, sc))) return -1;
    }
    if (dynkw)
        for (size_t i = 0; i < dynkw->u.obj.n; i++) {
            struct chat_value *k = dynkw->u.obj.keys[i];
            if (k->type != CHAT_STRING) return rfail(r, "keywords must be strings"), -1;
            out->kw[out->nkw] = copy_cname(r, k->u.str.s, k->u.str.len);
            out->kwv[out->nkw++] = dynkw->u.obj.vals[i];
        }
    return 0;
}

static int exec_list(struct render *r, const struct node_list *l, struct scope *sc);
static int assign(struct render *r, struct node *target, struct chat_value *v, struct scope *sc);

// Runs body with output captured into a string value.
static struct chat_value *capture(struct render *r, const struct node_list *body, struct scope *sc) {
    struct sb buf, *saved = r->out;
    sb_init(&buf, r->a, r->lim->max_output);
    r->out = &buf;
    int rc = exec_list(r, body, sc);
    r->out = saved;
    if (rc) return NULL;
    if (buf.failed) return sb_fail(r, &buf);
    return cv_str(r->a, sb_cstr(&buf));
}

// Calls a macro (S_MACRO) or a call block's body (S_CALL_BLOCK).
static struct chat_value *call_macro(struct render *r, struct chat_fn *fn, const struct args *args) {
    const struct node *m = fn->macro;
    const char *name = m->kind == S_MACRO ? m->name : "caller";
    struct scope *sc = scope_new(r, fn->closure);
    if (!sc) return NULL;
    int nparams = m->list.n, ndefaults = m->list2.n;
    bool *set = arena_zalloc(r->a, (size_t)nparams + 1);
    if (!set) return oom(r);
    struct chat_value *varargs = cv_array(r->a, 0), *kwargs = cv_new(r->a, CHAT_OBJECT);
    if (!varargs || !kwargs) return oom(r);
    varargs->is_tuple = 1;
    for (int i = 0; i < args->npos; i++) {
        if (i < nparams) {
            const struct node *p = m->list.v[i];
            if (scope_set(r, sc, p->name, p->name_len, args->pos[i])) return NULL;
            set[i] = true;
        } else if (m->op & USES_VARARGS) {
            if (cv_push(r->a, varargs, args->pos[i])) return oom(r);
        } else return rfail(r, "macro '%s' takes not more than %d argument(s)", name, nparams);
    }
    struct chat_value *caller = NULL;
    for (int k = 0; k < args->nkw; k++) {
        const char *kw = args->kw[k];
        int i = 0;
        while (i < nparams && strcmp(m->list.v[i]->name, kw) != 0) i++;
        if (i < nparams) {
            if (set[i]) return rfail(r, "macro '%s' got multiple values for argument '%s'", name, kw);
            if (scope_set(r, sc, m->list.v[i]->name, m->list.v[i]->name_len, args->kwv[k])) return NULL;
            set[i] = true;
        } else if (strcmp(kw, "caller") == 0 && (m->op & USES_CALLER)) caller = args->kwv[k];
        else if (m->op & USES_KWARGS) {
            struct chat_value *key = cv_str_copy(r->a, kw, strlen(kw), false);
            if (!key || cv_obj_set(r->a, kwargs, key, args->kwv[k])) return oom(r);
        } else return rfail(r, "macro '%s' takes no keyword argument '%s'", name, kw);
    }
    for (int i = 0; i < nparams; i++) {
        if (set[i]) continue;
        const struct node *p = m->list.v[i];
        int d = i - (nparams - ndefaults);
        struct chat_value *v;
        if (d >= 0) v = eval(r, m->list2.v[d], sc); // defaults may use earlier parameters
        else v = make_undef_hint(r, "parameter '%s' was not provided", p->name);
        if (!v || scope_set(r, sc, p->name, p->name_len, v)) return NULL;
    }
    if (m->op & USES_VARARGS && scope_set(r, sc, "varargs", 7, varargs)) return NULL;
    if (m->op & USES_KWARGS && scope_set(r, sc, "kwargs", 6, kwargs)) return NULL;
    if (m->op & USES_CALLER) {
        if (!caller) caller = make_undef_hint(r, "No caller defined");
        if (!caller || scope_set(r, sc, "caller", 6, caller)) return NULL;
    }
    int saved_line = r->line;
    struct chat_value *out = capture(r, &m->list3, sc);
    if (out) r->line = saved_line;
    return out;
}

struct chat_value *call_value(struct render *r, struct chat_value *fv, const struct args *args) {
    if (fv->type == CHAT_UNDEFINED) return undefined_error(r, fv);
    if (fv->type != CV_CALLABLE) return rfail(r, "'%s' object is not callable", py_type_name(fv));
    struct chat_fn *fn = fv->u.fn;
    switch (fn->kind) {
    case FN_MACRO:
    case FN_CALLER: return call_macro(r, fn, args);
    case FN_GLOBAL: return builtin_call_global(r, fn->builtin, args);
    case FN_METHOD:
        if (fn->self->type == CV_LOOP) {
            struct chat_loop *L = fn->self->u.loop;
            if (fn->builtin == -1) { // loop.cycle
                if (args->npos == 0) return rfail(r, "no items for cycling given");
                return args->pos[L->index0 % (size_t)args->npos];
            }
            // loop.changed(*values): true when the values differ from the last call.
            struct chat_value *now = cv_array(r->a, (size_t)args->npos);
            if (!now) return oom(r);
            now->is_tuple = 1;
            for (int i = 0; i < args->npos; i++) now->u.arr.v[now->u.arr.n++] = args->pos[i];
            int same = L->changed_last ? r_eq(r, L->changed_last, now) : 0;
            if (same < 0) return NULL;
            bool changed = !same;
            L->changed_last = now;
            return CV_BOOL(changed);
        }
        return builtin_call_method(r, fn, args);
    default: return rfail(r, "'%s' is not callable", fn->name ? fn->name : "object");
    }
}

// ---------------------------------------------------------------- expressions

static struct chat_value *eval_inner(struct render *r, struct node *n, struct scope *sc) {
    struct chat_value *a, *b;
    switch (n->kind) {
    case E_CONST: return n->value;
    case E_NAME: return lookup(r, sc, n->name, n->name_len);
    case E_ATTR:
        if (!(a = eval(r, n->a, sc))) return NULL;
        return get_attr(r, a, n->name, n->name_len);
    case E_ITEM:
        if (!(a = eval(r, n->a, sc))) return NULL;
        if (n->b->kind == E_SLICE) return do_slice(r, a, n, sc);
        if (!(b = eval(r, n->b, sc))) return NULL;
        return get_item(r, a, b);
    case E_CALL: {
        if (!(a = eval(r, n->a, sc))) return NULL;
        struct args args;
        if (eval_args(r, n, sc, &args, 0)) return NULL;
        r->line = n->line;
        return call_value(r, a, &args);
    }
    case E_FILTER: {
        // (a filter block passes its input through n->value)
        if (n->a) {
            if (!(a = eval(r, n->a, sc))) return NULL;
        } else a = n->value;
        struct args args;
        if (eval_args(r, n, sc, &args, 0)) return NULL;
        r->line = n->line;
        if (n->builtin < 0) return rfail(r, "no filter named '%s'", n->name);
        return builtin_call_filter(r, n->builtin, a, &args, sc);
    }
    case E_TEST: {
        if (!(a = eval(r, n->a, sc))) return NULL;
        struct args args;
        if (eval_args(r, n, sc, &args, 0)) return NULL;
        r->line = n->line;
        if (n->builtin < 0) return rfail(r, "no test named '%s'", n->name);
        int t = builtin_call_test(r, n->builtin, a, &args);
        return t < 0 ? NULL : CV_BOOL(t);
    }
    case E_NOT:
        if (!(a = eval(r, n->a, sc))) return NULL;
        return CV_BOOL(!py_truthy(a));
    case E_NEG:
    case E_POS:
        if (!(a = eval(r, n->a, sc))) return NULL;
        if (a->type == CHAT_UNDEFINED) return undefined_error(r, a);
        if (!is_num(a)) return rfail(r, "bad operand type for unary %c: '%s'", n->kind == E_NEG ? '-' : '+', py_type_name(a));
        if (n->kind == E_POS) return a->type == CHAT_BOOL ? cv_int(r->a, a->u.b) : a;
        if (a->type == CHAT_FLOAT) return cv_float(r->a, -a->u.f);
        if (num_i(a) == INT64_MIN) return rfail(r, "integer overflow");
        return cv_int(r->a, -num_i(a));
    case E_BINOP:
        if (!(a = eval(r, n->a, sc)) || !(b = eval(r, n->b, sc))) return NULL;
        r->line = n->line;
        return arith(r, n->op, a, b);
    case E_AND:
    case E_OR:
        if (!(a = eval(r, n->a, sc))) return NULL;
        if (py_truthy(a) == (n->kind == E_OR)) return a;
        return eval(r, n->b, sc);
    case E_COMPARE: {
        if (!(a = eval(r, n->a, sc))) return NULL;
        for (int i = 0; i < n->list.n; i++) {
            struct node *opnd = n->list.v[i];
            if (!(b = eval(r, opnd->a, sc))) return NULL;
            r->line = opnd->line;
            int c = compare(r, opnd->op, a, b);
            if (c < 0) return NULL;
            if (!c) return CV_BOOL(false);
            a = b;
        }
        return CV_BOOL(true);
    }
    case E_CONCAT: {
        struct sb s;
        sb_init(&s, r->a, r->lim->max_output);
        for (int i = 0; i < n->list.n; i++) {
            if (!(a = eval(r, n->list.v[i], sc))) return NULL;
            if (py_str(&s, a, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, &s);
        }
        if (s.failed) return sb_fail(r, &s);
        if (!charge(r, s.len / 64)) return NULL;
        return cv_str(r->a, sb_cstr(&s));
    }
    case E_COND:
        if (!(a = eval(r, n->a, sc))) return NULL;
        if (py_truthy(a)) return eval(r, n->b, sc);
        if (n->c) return eval(r, n->c, sc);
        if (r->folding) { // jinja2 cannot fold a false inline if without else
            r->impossible = true;
            return NULL;
        }
        return make_undef_hint(r, "the inline if-expression on line %d evaluated to false and no else section was defined.", n->line);
    case E_LIST:
    case E_TUPLE: {
        struct chat_value *arr = cv_array(r->a, (size_t)n->list.n);
        if (!arr) return oom(r);
        arr->is_tuple = n->kind == E_TUPLE;
        for (int i = 0; i < n->list.n; i++)
            if (!(arr->u.arr.v[arr->u.arr.n++] = eval(r, n->list.v[i], sc))) return NULL;
        return arr;
    }
    case E_DICT: {
        struct chat_value *obj = cv_new(r->a, CHAT_OBJECT);
        if (!obj) return oom(r);
        for (int i = 0; i < n->list.n; i++) {
            if (!(a = eval(r, n->list.v[i], sc)) || !(b = eval(r, n->list2.v[i], sc))) return NULL;
            if (a->type == CHAT_ARRAY && !a->is_tuple) return rfail(r, "unhashable type: 'list'");
            if (a->type == CHAT_OBJECT) return rfail(r, "unhashable type: 'dict'");
            if (cv_obj_set(r->a, obj, a, b)) return oom(r);
        }
        return obj;
    }
    default: return rfail(r, "internal error: unexpected node %d", n->kind);
    }
}

// jinja2's has_safe_repr: None, bools, numbers, strings, ranges, and lists,
// tuples and dicts of those (not Undefined, generators, dict views, ...).
static bool foldable_value(const struct chat_value *v, int depth) {
    if (depth > 64) return false;
    switch (v->type) {
    case CHAT_NONE: case CHAT_BOOL: case CHAT_INT: case CHAT_FLOAT: case CHAT_STRING: case CV_RANGE: return true;
    case CHAT_ARRAY:
        if (v->view) return false;
        for (size_t i = 0; i < v->u.arr.n; i++)
            if (!foldable_value(v->u.arr.v[i], depth + 1)) return false;
        return true;
    case CHAT_OBJECT:
        for (size_t i = 0; i < v->u.obj.n; i++)
            if (!foldable_value(v->u.obj.keys[i], depth + 1) || !foldable_value(v->u.obj.vals[i], depth + 1)) return false;
        return true;
    default: return false;
    }
}

// Only literals and pure operations on them can be evaluated at compile time.
static bool foldable_node(const struct node *n) {
    return !(n->kind == E_NAME || n->kind == E_CALL || n->kind == E_NSREF ||
             ((n->kind == E_FILTER || n->kind == E_TEST) && n->builtin < 0) ||
             (n->kind == E_FILTER && (!n->a || builtin_filter_needs_context(n->builtin))));
}

// jinja2's optimizer evaluates ("folds") expressions at compile time where it
// can, bottom-up, and keeps a folded value if it has a safe repr (no Undefined
// inside) or is a whole {{ }} expression. Folding reaches a slice through
// getitem (a bad slice is Undefined) where run time uses Python's [] (a bad
// slice raises), so for expressions with a slice inside, the evaluator first
// tries the compile-time evaluation: names and calls make it impossible
// (r->impossible), as do errors; then it evaluates normally.
__attribute__((noinline)) static struct chat_value *eval_folded(struct render *r, struct node *n, struct scope *sc) {
    if (!foldable_node(n)) return NULL;
    llm_err saved = *r->err;
    r->folding = true;
    r->impossible = false;
    struct chat_value *v = eval_inner(r, n, sc);
    r->folding = false;
    if (!v || r->impossible || r->failed) {
        if (r->steps > r->lim->max_steps || r->a->failed) return NULL; // limits are final
        *r->err = saved;
        r->failed = false;
        r->impossible = false;
        return NULL;
    }
    return foldable_value(v, 0) || n == r->output_root ? v : NULL;
}

static struct chat_value *eval(struct render *r, struct node *n, struct scope *sc) {
    if (r->failed) return NULL;
    if (++r->depth > r->lim->max_depth) {
        r->depth--;
        return rfail(r, "the template nests too deeply (more than %d levels; recursion?)", r->lim->max_depth);
    }
    if (!charge(r, 1)) {
        r->depth--;
        return NULL;
    }
    r->line = n->line;
    struct chat_value *v = NULL;
    if (r->folding) {
        if (!foldable_node(n)) {
            r->impossible = true;
            r->depth--;
            return NULL;
        }
    } else if (n->has_slice) v = eval_folded(r, n, sc);
    if (!v && !r->failed && !r->impossible) v = eval_inner(r, n, sc);
    r->depth--;
    if (!v && !r->failed && !r->impossible) oom(r);
    return v;
}

// ---------------------------------------------------------------- statements

static int assign(struct render *r, struct node *target, struct chat_value *v, struct scope *sc) {
    if (target->kind == E_NAME) return scope_set(r, sc, target->name, target->name_len, v);
    if (target->kind == E_NSREF) {
        struct chat_value *ns = lookup(r, sc, target->a->name, target->a->name_len);
        if (!ns) return -1;
        if (ns->type != CV_NAMESPACE) return rfail(r, "can't assign attribute on non-namespace object"), -1;
        struct chat_value *key = cv_str_copy(r->a, target->name, target->name_len, false);
        if (!key || cv_obj_set(r->a, ns, key, v)) return oom(r), -1;
        return 0;
    }
    // tuple unpacking
    size_t n;
    struct chat_value **items = iterate(r, v, &n);
    if (!items) return -1;
    if (n != (size_t)target->list.n)
        return rfail(r, n > (size_t)target->list.n ? "too many values to unpack (expected %d)"
                                                   : "not enough values to unpack (expected %d)", target->list.n), -1;
    for (size_t i = 0; i < n; i++)
        if (assign(r, target->list.v[i], items[i], sc)) return -1;
    return 0;
}

// A failed py_str / py_repr / json_dump: the builder's failure, or the message it left in err.
struct chat_value *format_fail(struct render *r, const struct sb *b) {
    if (b->failed) return sb_fail(r, b);
    char msg[sizeof r->err->msg];
    snprintf(msg, sizeof msg, "%s", r->err->msg);
    return rfail(r, "%s", msg);
}

static int write_value(struct render *r, struct chat_value *v) {
    if (v->type == CV_LOOP && loop_fill(r, v->u.loop, SIZE_MAX)) return -1; // its text shows the length
    if (py_str(r->out, v, CHAT_MAX_VALUE_DEPTH, r->err)) return format_fail(r, r->out), -1;
    if (r->out->failed) return sb_fail(r, r->out), -1;
    return 0;
}

// A filter chain (E_FILTER nodes, innermost with a == NULL) applied to input.
static struct chat_value *apply_filter_chain(struct render *r, struct node *chain, struct chat_value *input,
                                             struct scope *sc) {
    // The chain is nested outermost first; apply it innermost first.
    size_t n = 0;
    for (struct node *f = chain; f; f = f->a) n++;
    struct node **order = n ? arena_alloc(r->a, n * sizeof *order) : NULL;
    if (n && !order) return oom(r);
    size_t k = n;
    for (struct node *f = chain; f; f = f->a) order[--k] = f;
    for (size_t i = 0; i < n && input; i++) {
        struct node tmp = *order[i];
        tmp.a = NULL;
        tmp.value = input;
        input = eval(r, &tmp, sc);
    }
    return input;
}

int loop_fill(struct render *r, struct chat_loop *L, size_t want) {
    while (L->n_known < want && L->src_pos < L->src_n) {
        struct chat_value *item = L->src[L->src_pos++];
        if (!charge(r, 1)) return -1;
        L->filter_scope->n = 0;
        if (assign(r, L->target, item, L->filter_scope)) return -1;
        struct chat_value *c = eval(r, L->filter, L->filter_scope);
        if (!c) return -1;
        if (py_truthy(c)) L->items[L->n_known++] = item;
    }
    return 0;
}

static int exec_for(struct render *r, struct node *n, struct scope *sc) {
    struct chat_value *seq = eval(r, n->b, sc);
    if (!seq) return -1;
    size_t count;
    struct chat_value **items = iterate(r, seq, &count);
    if (!items) return -1;
    struct scope *it = scope_new(r, sc);
    struct chat_loop *L = arena_zalloc(r->a, sizeof *L);
    struct chat_value *lv = cv_new(r->a, CV_LOOP);
    if (!it || !L || !lv) return oom(r), -1;
    lv->u.loop = L;
    L->src = items;
    L->src_n = count;
    L->target = n->a;
    if (n->c) { // {% for x in seq if cond %}: the loop sees only the items that pass, found lazily
        L->filter = n->c;
        L->items = arena_alloc(r->a, (count + 1) * sizeof *L->items);
        if (!L->items || !(L->filter_scope = scope_new(r, sc))) return oom(r), -1;
    } else {
        L->items = items;
        L->n_known = L->src_pos = count;
    }
    size_t i = 0;
    for (;; i++) {
        if (!charge(r, 1) || loop_fill(r, L, i + 1)) return -1;
        if (L->n_known <= i) break;
        L->index0 = i;
        it->n = 0; // each iteration starts from the enclosing scope
        if (assign(r, n->a, L->items[i], it) || scope_set(r, it, "loop", 4, lv)) return -1;
        if (exec_list(r, &n->list, it)) return -1;
        if (r->flow == FLOW_BREAK) {
            r->flow = FLOW_NORMAL;
            i++;
            break;
        }
        r->flow = FLOW_NORMAL;
    }
    if (i == 0) { // nothing to iterate: the else block
        struct scope *es = scope_new(r, sc);
        return es ? exec_list(r, &n->list2, es) : -1;
    }
    return 0;
}

static struct chat_value *make_macro(struct render *r, struct node *n, struct scope *sc, int kind) {
    struct chat_fn *fn = arena_zalloc(r->a, sizeof *fn);
    struct chat_value *v = cv_new(r->a, CV_CALLABLE);
    if (!fn || !v) return oom(r);
    fn->kind = kind;
    fn->macro = n;
    fn->closure = sc;
    fn->name = n->name ? n->name : "caller";
    v->u.fn = fn;
    return v;
}

static int exec_stmt(struct render *r, struct node *n, struct scope *sc) {
    struct chat_value *v;
    r->line = n->line;
    switch (n->kind) {
    case S_DATA:
        sb_put_str(r->out, n->value->u.str);
        if (r->out->failed) return sb_fail(r, r->out), -1;
        return 0;
    case S_PRINT:
        r->output_root = n->a;
        if (!(v = eval(r, n->a, sc))) return -1;
        return write_value(r, v);
    case S_IF:
        for (;;) {
            if (!(v = eval(r, n->a, sc))) return -1;
            if (py_truthy(v)) return exec_list(r, &n->list, sc);
            if (n->list2.n == 1 && n->list2.v[0]->kind == S_IF && n->list2.v[0]->op == 1) {
                n = n->list2.v[0]; // elif
                continue;
            }
            return exec_list(r, &n->list2, sc);
        }
    case S_FOR: return exec_for(r, n, sc);
    case S_SET:
        if (!(v = eval(r, n->b, sc))) return -1;
        return assign(r, n->a, v, sc);
    case S_SET_BLOCK: {
        struct scope *inner = scope_new(r, sc);
        if (!inner || !(v = capture(r, &n->list, inner))) return -1;
        if (!(v = apply_filter_chain(r, n->b, v, sc))) return -1;
        return assign(r, n->a, v, sc);
    }
    case S_FILTER_BLOCK: {
        struct scope *inner = scope_new(r, sc);
        if (!inner || !(v = capture(r, &n->list, inner))) return -1;
        if (!(v = apply_filter_chain(r, n->b, v, sc))) return -1;
        return write_value(r, v);
    }
    case S_MACRO:
        if (!(v = make_macro(r, n, sc, FN_MACRO))) return -1;
        return scope_set(r, sc, n->name, n->name_len, v);
    case S_CALL_BLOCK: {
        struct chat_value *caller = make_macro(r, n, sc, FN_CALLER);
        if (!caller) return -1;
        struct node *call = n->a;
        struct chat_value *fv = eval(r, call->a, sc);
        if (!fv) return -1;
        struct args args;
        if (eval_args(r, call, sc, &args, 1)) return -1;
        args.kw[args.nkw] = "caller";
        args.kwv[args.nkw++] = caller;
        r->line = n->line;
        if (!(v = call_value(r, fv, &args))) return -1;
        return write_value(r, v);
    }
    case S_WITH: {
        struct scope *inner = scope_new(r, sc);
        if (!inner) return -1;
        for (int i = 0; i < n->list.n; i++) {
            if (!(v = eval(r, n->list2.v[i], sc)) || assign(r, n->list.v[i], v, inner)) return -1;
        }
        return exec_list(r, &n->list3, inner);
    }
    case S_BREAK: r->flow = FLOW_BREAK; return 0;
    case S_CONTINUE: r->flow = FLOW_CONTINUE; return 0;
    case S_SCOPE: {
        struct scope *inner = scope_new(r, sc);
        return inner ? exec_list(r, &n->list, inner) : -1;
    }
    default: return rfail(r, "internal error: unexpected statement %d", n->kind), -1;
    }
}

static int exec_list(struct render *r, const struct node_list *l, struct scope *sc) {
    for (int i = 0; i < l->n; i++) {
        if (r->failed) return -1;
        if (++r->depth > r->lim->max_depth) {
            r->depth--;
            rfail(r, "the template nests too deeply (more than %d levels; recursion?)", r->lim->max_depth);
            return -1;
        }
        int rc = charge(r, 1) ? exec_stmt(r, l->v[i], sc) : -1;
        r->depth--;
        if (rc || r->failed) return -1;
        if (r->flow != FLOW_NORMAL) return 0;
    }
    return 0;
}

// ---------------------------------------------------------------- public API

static const char chatml_src[] =
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{- message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' }}{%- endif -%}";

const char *chat_template_chatml(void) { return chatml_src; }

int chat_template_parse(const char *src, size_t len, struct chat_template **out, llm_err *err) {
    *out = NULL;
    struct chat_template *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, "out of memory");
    // The AST of any template is a small multiple of its size.
    arena_init(&t->a, SIZE_MAX);
    if (chat_parse(t, src, len, err)) {
        chat_template_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void chat_template_free(struct chat_template *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t);
}

void chat_output_free(struct chat_output *out) {
    if (!out) return;
    free(out->text);
    free(out->spans);
    memset(out, 0, sizeof *out);
}

int chat_template_render(const struct chat_template *t, const struct chat_value *context,
                         const struct chat_render_opts *opts, struct chat_output *out, llm_err *err) {
    memset(out, 0, sizeof *out);
    if (context && context->type != CHAT_OBJECT) return err_set(err, "chat template context must be an object");
    const struct chat_limits *lim = opts && opts->limits ? opts->limits : &chat_default_limits;
    struct arena a;
    arena_init(&a, lim->max_memory);
    struct sb sb_out;
    sb_init(&sb_out, &a, lim->max_output);
    struct render r = {.a = &a, .lim = lim, .context = context, .out = &sb_out, .err = err, .line = 1};
    if (opts && opts->now) r.now = *opts->now;
    else {
        time_t now = time(NULL);
        localtime_r(&now, &r.now);
    }
    int rc = -1;
    struct scope *top = scope_new(&r, NULL);
    if (top && exec_list(&r, &t->body, top) == 0 && !r.failed) rc = 0;
    if (rc == 0) {
        struct cstr s = sb_cstr(&sb_out);
        out->text = malloc(s.len + 1);
        size_t n_spans = 0;
        for (size_t i = 0; i < s.len; i++)
            if (i == 0 || cstr_user_at(s, i) != cstr_user_at(s, i - 1)) n_spans++;
        out->spans = malloc((n_spans ? n_spans : 1) * sizeof *out->spans);
        if (!out->text || !out->spans) {
            chat_output_free(out);
            rc = err_set(err, "out of memory");
        } else {
            if (s.len) memcpy(out->text, s.s, s.len);
            out->text[s.len] = 0;
            out->len = s.len;
            for (size_t i = 0; i < s.len; i++) {
                bool u = cstr_user_at(s, i);
                if (i == 0 || u != cstr_user_at(s, i - 1))
                    out->spans[out->n_spans++] = (struct chat_span){i, 0, u};
                out->spans[out->n_spans - 1].len++;
            }
        }
    }
    arena_free(&a);
    return rc;
}
