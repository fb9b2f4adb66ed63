// chat/: renders a GGUF `tokenizer.chat_template` (a Jinja template) the way
// Hugging Face transformers' apply_chat_template renders it with Python's jinja2:
// an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on, the
// loopcontrols extension ({% break %} / {% continue %}) and {% generation %},
// json.dumps-style `tojson` (ensure_ascii=False, indent, separators, sort_keys),
// and the globals raise_exception(msg) and strftime_now(fmt).
//
// Values passed to a template (messages, tools, flags, bos/eos tokens) are built
// in a chat_doc, which owns them; a parsed chat_template is read-only and may be
// rendered from several threads at once.
//
// Provenance: every string carries, per byte, whether it came from a user (e.g.
// message content, marked with from_user when the value is built). Rendering
// reports the output as spans of template text and user text, so a caller can
// let special tokens be recognized in template text only: user text must never
// become control tokens. (Tokenize the whole prompt as one string, but split it
// at special-token matches found inside template spans only: tokenizing the
// spans separately would change merges at their borders.)
//
// Bad templates and hostile inputs return -1 with a message: syntax errors give
// line:column; runtime errors (undefined attribute of an undefined value, type
// errors, raise_exception) give the line; recursion depth, loop work, memory and
// output size are all bounded (struct chat_limits).
#ifndef LLMFILE_CHAT_CHAT_H
#define LLMFILE_CHAT_CHAT_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

// ---------------------------------------------------------------- values

enum chat_type {
    CHAT_UNDEFINED = 0, // jinja2's Undefined: prints "", is falsy, iterates as empty
    CHAT_NONE,
    CHAT_BOOL,
    CHAT_INT,           // int64 (Python ints are unbounded; overflow is an error here)
    CHAT_FLOAT,
    CHAT_STRING,        // UTF-8 bytes (indexing and length count code points)
    CHAT_ARRAY,         // list (or tuple)
    CHAT_OBJECT,        // dict with insertion-ordered keys
    CHAT_OTHER,         // something only a template makes (namespace, macro, loop, range, ...)
};

struct chat_value;
struct chat_doc;

struct chat_doc *chat_doc_new(void); // NULL if out of memory
void chat_doc_free(struct chat_doc *d); // frees every value built in d

// Builders. Every value lives until chat_doc_free; a value may be shared (pushed
// into several arrays). NULL means out of memory; set/push given NULL return -1.
struct chat_value *chat_new_none(struct chat_doc *d);
struct chat_value *chat_new_bool(struct chat_doc *d, bool b);
struct chat_value *chat_new_int(struct chat_doc *d, int64_t i);
struct chat_value *chat_new_float(struct chat_doc *d, double f);
// Copies s[0..len). from_user: the text came from a user (content, role, tool
// JSON) and is reported in user spans wherever it reaches the output.
struct chat_value *chat_new_string(struct chat_doc *d, const char *s, size_t len, bool from_user);
struct chat_value *chat_new_array(struct chat_doc *d);
struct chat_value *chat_new_object(struct chat_doc *d);
int chat_array_push(struct chat_doc *d, struct chat_value *array, struct chat_value *v);
// Sets key (a trusted string) to v; an existing key keeps its place, as in a Python dict.
int chat_object_set(struct chat_doc *d, struct chat_value *object, const char *key,
                    struct chat_value *v);

// Parses JSON text (RFC 8259; integers that fit int64 become CHAT_INT, other
// numbers CHAT_FLOAT, duplicate keys keep the last value). Every string (keys
// included) is marked from_user as given. Nesting is limited to 256 levels.
int chat_parse_json(struct chat_doc *d, const char *json, size_t len, bool from_user,
                    struct chat_value **out, llm_err *err);

// Reading values back.
enum chat_type chat_value_type(const struct chat_value *v);
const char *chat_value_str(const struct chat_value *v, size_t *len); // NULL unless a string
size_t chat_array_len(const struct chat_value *v);                    // 0 unless an array
const struct chat_value *chat_array_at(const struct chat_value *v, size_t i);
const struct chat_value *chat_object_get(const struct chat_value *v, const char *key);

// Conveniences for the usual context: a message {"role", "content"} (both
// from_user), and {"messages", "add_generation_prompt", "bos_token",
// "eos_token"} with trusted bos/eos (NULL: left out). Add tools or custom
// variables to the returned object with chat_object_set.
struct chat_value *chat_new_message(struct chat_doc *d, const char *role, const char *content);
struct chat_value *chat_new_context(struct chat_doc *d, struct chat_value *messages,
                                    bool add_generation_prompt, const char *bos_token,
                                    const char *eos_token);

// ---------------------------------------------------------------- templates

struct chat_template;

int chat_template_parse(const char *src, size_t len, struct chat_template **out, llm_err *err);
void chat_template_free(struct chat_template *t);

// A built-in ChatML template (<|im_start|>role\ncontent<|im_end|>\n ...), for
// models whose own template does not parse (the caller says so in a warning).
const char *chat_template_chatml(void);

struct chat_limits {
    size_t max_output;  // bytes of rendered text
    size_t max_memory;  // bytes allocated while rendering (strings, lists, scopes)
    uint64_t max_steps; // expression/statement evaluations and loop iterations
    int max_depth;      // nesting of evaluation (macro recursion included); the default
                        // 400 needs about 192 KB of C stack in the rendering thread
};
extern const struct chat_limits chat_default_limits;

struct chat_render_opts {
    const struct chat_limits *limits; // NULL: chat_default_limits
    const struct tm *now;             // time for strftime_now (NULL: local time now)
};

struct chat_span {
    size_t off, len; // bytes of chat_output.text
    bool from_user;  // text that came from a from_user string
};

struct chat_output {
    char *text; // NUL-terminated (the text itself may contain NUL bytes)
    size_t len;
    struct chat_span *spans; // consecutive, covering text; adjacent spans differ in from_user
    size_t n_spans;
};

// Renders t with the variables of context (an object; NULL: none). On success
// fills *out (free with chat_output_free) and returns 0; on error returns -1,
// leaves *out empty and describes the failure in err (for raise_exception:
// "raise_exception: <the template's message>").
int chat_template_render(const struct chat_template *t, const struct chat_value *context,
                         const struct chat_render_opts *opts, struct chat_output *out,
                         llm_err *err);
void chat_output_free(struct chat_output *out);

#endif
