// Internals shared by the chat/ sources: arena, value layout, string builder
// with per-byte provenance, AST, and the render state.
#ifndef LLMFILE_CHAT_IMPL_H
#define LLMFILE_CHAT_IMPL_H

#include "chat/chat.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------- arena
// Everything of a doc, a parsed template or one render lives in one arena and is
// freed at once; `limit` bounds what a render may allocate.
struct arena_chunk;
struct arena {
    struct arena_chunk *chunks;
    char *cur;       // free space of the newest chunk
    size_t left;
    size_t total;    // bytes taken from malloc so far
    size_t limit;    // total may not exceed this
    bool failed;     // an allocation failed (limit or malloc)
};
void arena_init(struct arena *a, size_t limit);
void arena_free(struct arena *a);
void *arena_alloc(struct arena *a, size_t n);  // 16-byte aligned, uninitialized; NULL on failure
void *arena_zalloc(struct arena *a, size_t n); // zeroed
// Grows a block from old_n to new_n bytes (copying); NULL on failure.
void *arena_grow(struct arena *a, void *old, size_t old_n, size_t new_n);

// ---------------------------------------------------------------- values
// Kinds only a template creates, after the public enum chat_type values.
enum {
    CV_NAMESPACE = 16, // namespace(): an object whose attributes `set ns.x` changes
    CV_CALLABLE,       // macro, caller, builtin function, bound method
    CV_LOOP,           // the `loop` variable of a for loop
    CV_RANGE,          // range(): lazy
    CV_ITER,           // a one-shot iterator (generator): select, map, reverse, items, ...
};

// A string: UTF-8 bytes plus, per byte, 1 if it came from a user. m == NULL:
// no byte came from a user.
struct cstr {
    const char *s;
    const uint8_t *m; // [len] or NULL
    size_t len;
};

struct chat_fn;
struct chat_loop;

enum { VIEW_NONE, VIEW_ITEMS, VIEW_KEYS, VIEW_VALUES };
extern const char *const view_names[4]; // "", "dict_items", "dict_keys", "dict_values"

// How an undefined value came about (for the message when it is misused).
enum undef_how { UNDEF_NAME, UNDEF_ATTR, UNDEF_ITEM, UNDEF_HINT };

struct chat_value {
    uint8_t type;     // enum chat_type or CV_*
    uint8_t is_tuple; // CHAT_ARRAY: prints as a tuple, never equals a list
    uint8_t view;     // CHAT_ARRAY: dict.items() / keys() / values() (VIEW_*): not subscriptable, not JSON
    uint8_t undef_how;
    uint8_t security; // CHAT_UNDEFINED: misuse is a sandbox SecurityError
    uint8_t markup;   // CHAT_STRING: a markupsafe.Markup (|safe, |escape): `+` escapes plain strings into it
    union {
        bool b;
        int64_t i;
        double f;
        struct cstr str;
        struct {
            struct chat_value **v; // [n]
            size_t n, cap;
        } arr;
        struct {
            struct chat_value **keys; // [n]
            struct chat_value **vals; // [n]
            uint32_t *index;          // [index_cap] open-addressing hash of key -> position+1, once n > 8
            uint32_t n, cap;
            uint32_t index_cap;       // power of two, or 0 (no index yet)
        } obj; // CHAT_OBJECT and CV_NAMESPACE
        struct {
            const char *name;            // UNDEF_NAME / UNDEF_ATTR: the name; UNDEF_HINT: the message
            const struct chat_value *key; // UNDEF_ITEM: the missing key
            const char *obj_type;        // UNDEF_ATTR / UNDEF_ITEM: "dict object", ...
        } undef;
        struct {
            struct chat_value **v; // [n]
            size_t n, pos;         // pos: items already consumed
        } iter;
        struct {
            int64_t start, stop, step;
        } range;
        struct chat_fn *fn;
        struct chat_loop *loop;
    } u;
};

extern struct chat_value chat_undefined_value, chat_none_value, chat_true_value, chat_false_value;
#define CV_UNDEF (&chat_undefined_value)
#define CV_NONE (&chat_none_value)
#define CV_BOOL(b) ((b) ? &chat_true_value : &chat_false_value)

struct chat_doc {
    struct arena a;
};

// Value constructors in an arena (NULL on failure).
struct chat_value *cv_new(struct arena *a, int type);
struct chat_value *cv_int(struct arena *a, int64_t i);
struct chat_value *cv_float(struct arena *a, double f);
struct chat_value *cv_str(struct arena *a, struct cstr s);               // shares the bytes
struct chat_value *cv_str_copy(struct arena *a, const char *s, size_t n, bool from_user);
struct chat_value *cv_array(struct arena *a, size_t cap);
int cv_push(struct arena *a, struct chat_value *arr, struct chat_value *v);
// Sets obj[key] (any key value; Python equality), keeping the position of an existing key.
int cv_obj_set(struct arena *a, struct chat_value *obj, struct chat_value *key, struct chat_value *v);
// obj[key] for a string key, or NULL.
struct chat_value *cv_obj_get(const struct chat_value *obj, const char *key, size_t len);
// obj[key] for any key value, or NULL.
struct chat_value *cv_obj_find(const struct chat_value *obj, const struct chat_value *key);

// ---------------------------------------------------------------- text
// UTF-8 decoding that never fails: an invalid byte decodes to U+DC80+byte
// (Python's surrogateescape) and encodes back to itself.
uint32_t utf8_next(const char *s, size_t len, size_t *i);
size_t chat_utf8_encode(uint32_t cp, char out[4]);
size_t utf8_count(const char *s, size_t len);
bool cp_isspace(uint32_t cp); // Python str.isspace
uint32_t cp_lower(uint32_t cp);
uint32_t cp_upper(uint32_t cp);
// Python's full case mapping of one code point (str.upper / lower / title /
// casefold of it alone: "ß".upper() is "SS"): mode 'U', 'L', 'T' or 'F'. Writes
// up to 3 code points to out, returns how many. Final sigma is the caller's job.
int cp_case_full(uint32_t cp, char mode, uint32_t out[3]);
bool cp_istitle(uint32_t cp);        // titlecase letters (the digraphs ǅ, ǈ, ǋ, ǲ)
bool cp_case_ignorable(uint32_t cp); // skipped when deciding a final sigma
bool cp_isalpha(uint32_t cp);
bool cp_isdigit(uint32_t cp);
bool cp_islower(uint32_t cp);
bool cp_isupper(uint32_t cp);

// Error messages are one line: control characters (from template or user text) become spaces.
void one_line(char *msg);

// A growing string with per-byte provenance, in an arena.
struct sb {
    struct arena *a;
    char *s;
    uint8_t *m; // NULL until a user byte arrives
    size_t len, cap;
    size_t limit; // appending beyond this fails (SIZE_MAX: none)
    bool failed;  // allocation or limit failure (sticky)
};
void sb_init(struct sb *b, struct arena *a, size_t limit);
void sb_put(struct sb *b, const char *s, size_t n, bool user);  // n bytes, all of one provenance
void sb_puts(struct sb *b, const char *s);                       // trusted C string
void sb_putc(struct sb *b, char c, bool user);
void sb_put_str(struct sb *b, struct cstr s);                    // keeps s's provenance
void sb_put_range(struct sb *b, struct cstr s, size_t off, size_t n);
void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct cstr sb_cstr(const struct sb *b); // view of the contents
static inline bool cstr_user_at(struct cstr s, size_t i) { return s.m && s.m[i]; }
static inline bool cstr_eq(struct cstr a, const char *s, size_t n) {
    return a.len == n && (n == 0 || __builtin_memcmp(a.s, s, n) == 0);
}

// Python-style text of a value: str() and repr(). Fail (return -1) only on
// allocation failure or nesting deeper than depth_left; err gets a message.
int py_str(struct sb *b, const struct chat_value *v, int depth_left, llm_err *err);
int py_repr(struct sb *b, const struct chat_value *v, int depth_left, llm_err *err);
void py_float_repr(struct sb *b, double f);
const char *py_type_name(const struct chat_value *v); // "str", "int", "dict", ...

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson does.
struct json_opts {
    bool ensure_ascii;
    bool sort_keys;
    const char *indent; // NULL: compact one-line form; else the indent unit (may be "")
    size_t indent_len;
    const char *item_sep, *key_sep; // NULL: Python's defaults for the indent mode
    size_t item_sep_len, key_sep_len;
};
int json_dump(struct sb *b, const struct chat_value *v, const struct json_opts *o, int depth_left,
              llm_err *err);

// Python comparisons. Each visited value costs one unit of *budget (NULL: no
// limit). py_eq gives 1 / 0, or -1 for nesting deeper than depth_left, -2 when
// the budget runs out; py_cmp returns -1 with err set for unorderable types (or
// nesting, or budget), else 0 with *res = -1, 0, 1 (2: unordered, NaN).
int py_eq(const struct chat_value *a, const struct chat_value *b, int depth_left, uint64_t *budget);
int py_cmp(const struct chat_value *a, const struct chat_value *b, const char *op, int *res,
           int depth_left, uint64_t *budget, llm_err *err);
bool py_truthy(const struct chat_value *v);

#define CHAT_MAX_VALUE_DEPTH 256

// ---------------------------------------------------------------- AST
enum node_kind {
    // expressions
    E_CONST,   // value
    E_NAME,    // name
    E_ATTR,    // a.name
    E_ITEM,    // a[b]
    E_SLICE,   // a:b:c (each may be NULL); only as the index of E_ITEM
    E_CALL,    // a(list..., list2 = E_KW..., *c, **d)
    E_FILTER,  // a | name(list..., list2 = E_KW..., *c, **d); a NULL in filter blocks
    E_TEST,    // a is name(...), arguments as E_CALL
    E_KW,      // name = a (keyword argument)
    E_NOT,     // not a
    E_NEG,     // -a
    E_POS,     // +a
    E_BINOP,   // a op b: op is one of '+', '-', '*', '/', 'f' (//), '%', 'p' (**)
    E_AND,     // a and b
    E_OR,      // a or b
    E_COMPARE, // a then list of E_OPERAND
    E_OPERAND, // op a: op is 'e' ==, 'n' !=, '<', 'l' <=, '>', 'g' >=, 'i' in, 'x' not in
    E_CONCAT,  // list joined by ~
    E_COND,    // b if a else c (c may be NULL)
    E_LIST,    // [list]
    E_TUPLE,   // (list)
    E_DICT,    // {list: list2}
    E_NSREF,   // a.name as an assignment target (a is an E_NAME)
    // statements
    S_DATA,        // template text: value (a string)
    S_PRINT,       // {{ a }}
    S_IF,          // if a: list else list2
    S_FOR,         // for a in b if c: list else list2
    S_SET,         // set a = b
    S_SET_BLOCK,   // set a | b: list endset  (b: filter chain or NULL)
    S_MACRO,       // macro name(list = E_NAME params; list2 = defaults of the last ones): list3
    S_CALL_BLOCK,  // call(list params, list2 defaults) a: list3  (a is an E_CALL)
    S_FILTER_BLOCK,// filter b: list
    S_WITH,        // with list = targets, list2 = values: list3
    S_BREAK,
    S_CONTINUE,
    S_SCOPE,       // block / generation: list in a scope of its own
};

// op of E_MACRO / S_CALL_BLOCK: which special names the body uses.
enum { USES_CALLER = 1, USES_VARARGS = 2, USES_KWARGS = 4 };

struct node;
struct node_list {
    struct node **v; // [n]
    int n;
};

struct node {
    uint8_t kind; // enum node_kind
    uint8_t op;   // operator / flags, see enum node_kind
    uint8_t has_slice; // an expression with a slice inside: the one case where jinja2's
                       // compile-time constant folding can give a different result (see eval_folded)
    int line;     // 1-based, for runtime messages
    size_t pos;   // byte offset in the source, for syntax messages
    struct node *a, *b, *c, *d;
    struct node_list list, list2, list3;
    const char *name; // NUL-terminated, in the template arena
    size_t name_len;
    struct chat_value *value;
    int builtin; // E_FILTER / E_TEST: index into the builtin table, -1 if unknown
};

struct chat_template {
    struct arena a;
    struct node_list body;
};

// ---------------------------------------------------------------- parsing
int chat_parse(struct chat_template *t, const char *src, size_t len, llm_err *err);

// ---------------------------------------------------------------- rendering
struct scope {
    struct scope *parent;
    struct scope_var {
        const char *name;
        size_t len;
        struct chat_value *val;
    } *vars;
    size_t n, cap;
};

struct render {
    struct arena *a;
    const struct chat_limits *lim;
    const struct chat_value *context; // the caller's variables (an object) or NULL
    struct tm now;
    uint64_t steps;
    int depth;
    struct sb *out;    // where output goes now (a macro call or block set swaps it)
    llm_err *err;
    bool failed;       // err is set; unwind
    int flow;          // FLOW_* after break / continue
    int line;          // line of the node being evaluated (for messages)
    bool folding;      // evaluating as jinja2's optimizer does at compile time (see eval_folded)
    bool impossible;   // folding reached something only run time can evaluate (a name, a call)
    const struct node *output_root; // the expression of the {{ }} being printed
};
enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };

// Error paths are kept out of line: their message buffers must not sit in the
// frames of the recursive evaluator (C stack per nesting level).
#define CHAT_COLD __attribute__((cold, noinline))

// Sets a render error ("line N: message") and returns NULL for convenience.
CHAT_COLD struct chat_value *rfail(struct render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
CHAT_COLD struct chat_value *oom(struct render *r); // allocation failed: names the memory limit if that was it
// A failed py_str / py_repr / json_dump into b: reports b's failure or the message left in r->err.
CHAT_COLD struct chat_value *format_fail(struct render *r, const struct sb *b);
bool charge(struct render *r, uint64_t units); // counts work; false (error set) over the limit
// py_eq / py_cmp paid for from the step budget; -1 (error set) on failure.
int r_eq(struct render *r, const struct chat_value *a, const struct chat_value *b);
__attribute__((noinline)) int r_cmp(struct render *r, const struct chat_value *a, const struct chat_value *b,
                                    const char *op, int *res);
CHAT_COLD struct chat_value *undefined_error(struct render *r, const struct chat_value *u);

// Arguments of a call, evaluated.
struct args {
    struct chat_value **pos; // [npos]
    int npos;
    const char **kw;         // [nkw] names
    struct chat_value **kwv; // [nkw]
    int nkw;
};

struct chat_fn {
    int kind; // FN_*
    const char *name;
    const struct node *macro; // FN_MACRO / FN_CALLER: S_MACRO or S_CALL_BLOCK
    struct scope *closure;    // scope the macro was defined in
    struct chat_fn *caller;   // FN_MACRO called from a call block: the `caller` callable
    int builtin;              // FN_GLOBAL / FN_METHOD: which one
    struct chat_value *self;  // FN_METHOD: the bound object
};
enum { FN_MACRO, FN_CALLER, FN_GLOBAL, FN_METHOD, FN_UNSAFE };

// A for loop's state. As in jinja2 the `if` filter of `for x in seq if cond`
// runs lazily: an item's condition is evaluated when the loop reaches it (or
// when loop.last / length / nextitem look ahead), after the bodies before it.
struct chat_loop {
    struct chat_value **items; // [n_known] the loop's items found so far
    size_t n_known;
    size_t index0;
    struct chat_value **src;   // [src_n] the iterable's items
    size_t src_n, src_pos;     // src_pos: how many of them the filter has seen
    struct node *target, *filter; // filter NULL: all items (then items == src)
    struct scope *filter_scope;
    int depth0;
    struct chat_value *changed_last; // loop.changed(): the values of the last call
};
int loop_fill(struct render *r, struct chat_loop *L, size_t want); // finds items up to index want-1; -1 on error

// Builtins (builtins.c). Names are looked up once at parse time.
int builtin_filter_find(const char *name, size_t len);
bool builtin_filter_needs_context(int id); // map, select, ...: never folded at compile time
int builtin_test_find(const char *name, size_t len);
int builtin_global_find(const char *name, size_t len);
struct chat_value *builtin_call_filter(struct render *r, int id, struct chat_value *v,
                                       const struct args *args, struct scope *sc);
int builtin_call_test(struct render *r, int id, struct chat_value *v, const struct args *args); // 0/1, -1 error
struct chat_value *builtin_call_global(struct render *r, int id, const struct args *args);
// obj.name for built-in types: a bound method, or NULL if the type has no such attribute.
struct chat_value *builtin_method_lookup(struct render *r, struct chat_value *obj, const char *name,
                                         size_t len);
struct chat_value *builtin_call_method(struct render *r, struct chat_fn *fn, const struct args *args);

// Shared helpers of eval.c used by builtins.c.
struct chat_value *get_attr(struct render *r, struct chat_value *obj, const char *name, size_t len);
struct chat_value *get_item(struct render *r, struct chat_value *obj, struct chat_value *key);
struct chat_value *call_value(struct render *r, struct chat_value *fn, const struct args *args);
struct chat_value *to_str(struct render *r, const struct chat_value *v); // str(v) as a string value
size_t range_len(const struct chat_value *range);
// Collects the items v iterates over (consuming an iterator). NULL on error.
struct chat_value **iterate(struct render *r, struct chat_value *v, size_t *n);
__attribute__((noinline)) struct chat_value *make_undef_hint(struct render *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct chat_value *make_iter(struct render *r, struct chat_value **items, size_t n);
// markupsafe: escape(v) (a Markup stays as it is) and Markup(v) of a string result.
struct chat_value *markup_escape(struct render *r, struct chat_value *v);
struct chat_value *as_markup(struct render *r, struct chat_value *v, bool markup);

#endif
