// Checking GGUF reader (versions 2 and 3, little-endian).
//
// gguf_open maps a file and validates all of it before returning: header,
// every metadata value (types, lengths, counts, nested arrays, bools 0/1),
// every tensor info (n_dims <= 4, ne >= 0, no overflow in the element count or
// byte size, known ggml type, row length a multiple of the block size, offset
// aligned, data inside the file and not overlapping another tensor), and
// duplicate keys or tensor names. File content never aborts the process and is
// never read outside the mapping; every error is one line in llm_err naming the
// file and what is wrong where (byte offset, key or tensor name).
//
// Nothing is copied: strings, array elements and tensor data point into the
// mapping (or the caller's buffer for gguf_parse). Strings are NOT
// NUL-terminated; use gguf_str_copy / gguf_str_eq. Memory allocated by the
// parser is proportional to the file size (a few index words per metadata
// entry, array string and tensor), so a hostile file cannot ask for more.
#ifndef LLMFILE_GGUF_GGUF_H
#define LLMFILE_GGUF_GGUF_H

#include "base/err.h"
#include "base/mapfile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_DEPTH 8 // arrays of arrays nest at most this deep

struct gguf_str {
    const char *ptr; // into the mapping, NOT NUL-terminated (may be NULL when len == 0)
    uint64_t len;
};

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8,
    GGUF_TYPE_UINT16,
    GGUF_TYPE_INT16,
    GGUF_TYPE_UINT32,
    GGUF_TYPE_INT32,
    GGUF_TYPE_FLOAT32,
    GGUF_TYPE_BOOL,
    GGUF_TYPE_STRING,
    GGUF_TYPE_ARRAY,
    GGUF_TYPE_UINT64,
    GGUF_TYPE_INT64,
    GGUF_TYPE_FLOAT64,
    GGUF_TYPE_COUNT
};

// A metadata array: n elements of type `type`, starting at `data` in the mapping.
// Fixed-size elements are packed (read them with gguf_arr_int / gguf_arr_f32);
// string and array elements are located through `index`, built at parse time.
struct gguf_arr {
    int type;               // enum gguf_type of the elements
    uint64_t n;             // element count
    const uint8_t *data;    // first element, in the mapping (not aligned)
    const uint64_t *index;  // STRING: n byte offsets (from data) of each element;
                            // ARRAY: 2n words per element (byte offset, position of
                            // its own index in pool or UINT64_MAX); else NULL
    const uint64_t *pool;   // the file's index pool (for nested arrays)
};

struct gguf_kv {
    struct gguf_str key;
    int type;             // enum gguf_type
    uint64_t offset;      // file offset of the key (for messages)
    union {
        uint64_t u;       // UINT8/16/32/64
        int64_t i;        // INT8/16/32/64
        double f;         // FLOAT32/64
        bool b;           // BOOL
        struct gguf_str s;// STRING
        struct gguf_arr a;// ARRAY
    } v;
    uint64_t index_pos_;  // private: position of an array's index in the pool
};

struct gguf_tensor {
    struct gguf_str name;
    int type;             // ggml type id (known to gguf_type_name)
    int n_dims;           // 0..4
    int64_t ne[GGUF_MAX_DIMS]; // ne[0] = row length; unused dims are 1
    uint64_t offset;      // relative to the data section (aligned)
    const void *data;     // into the mapping; aligned to `alignment` relative to the file start
    size_t nbytes;
};

struct gguf_file {
    char *path;           // name used in messages (owned copy)
    struct mapfile map;   // set by gguf_open; zero for gguf_parse
    const uint8_t *base;  // file bytes
    size_t size;
    uint32_t version;     // 2 or 3
    uint64_t alignment;   // general.alignment or 32
    size_t data_offset;   // file offset of the (aligned) data section
    size_t n_kvs;
    struct gguf_kv *kvs;
    size_t n_tensors;
    struct gguf_tensor *tensors; // in file order
    // private
    uint64_t *pool_;      // index words for string/array arrays
    size_t pool_len_;
    uint32_t *kv_hash_, *tensor_hash_; // open addressing, entries are index+1
    size_t kv_hash_cap_, tensor_hash_cap_;
};

// Maps `path` and parses it. On failure *f is left closed (nothing to free).
int gguf_open(struct gguf_file *f, const char *path, llm_err *err);
// The same with the file held as `mode` says (a copy on huge pages for weights
// read at every token; see base/mapfile.h).
int gguf_open_mode(struct gguf_file *f, const char *path, enum mapfile_mode mode, llm_err *err);
// The same, reporting a copy's progress (base/mapfile.h).
int gguf_open_progress(struct gguf_file *f, const char *path, enum mapfile_mode mode,
                       const struct progress *progress, llm_err *err);
// Parses an in-memory file; `name` is used in messages. buf must outlive f.
int gguf_parse(struct gguf_file *f, const void *buf, size_t size, const char *name, llm_err *err);
// Frees everything (and unmaps if opened by gguf_open). Safe on a zeroed struct.
void gguf_close(struct gguf_file *f);

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name); // NULL if absent
const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key);          // NULL if absent

// Typed metadata getters: return 1 found, 0 absent (out untouched, err untouched),
// -1 present with the wrong type or out of range (err names the file and key).
int gguf_get_int(const struct gguf_file *f, const char *key, int64_t *out, llm_err *err);  // any integer type
int gguf_get_float(const struct gguf_file *f, const char *key, double *out, llm_err *err); // float32/64 or integer
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, llm_err *err);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out, llm_err *err);
int gguf_get_arr(const struct gguf_file *f, const char *key, struct gguf_arr *out, llm_err *err);

// Array element access, O(1). Out-of-range i or a mismatched element type
// returns an empty string / 0 / -1 (never reads outside the mapping).
struct gguf_str gguf_arr_str(const struct gguf_arr *a, uint64_t i); // STRING arrays
float gguf_arr_f32(const struct gguf_arr *a, uint64_t i);          // FLOAT32 (also FLOAT64, integers)
double gguf_arr_f64(const struct gguf_arr *a, uint64_t i);         // FLOAT64 (also FLOAT32, integers)
int64_t gguf_arr_int(const struct gguf_arr *a, uint64_t i);        // any integer or bool array (uint64 wraps)
int gguf_arr_sub(const struct gguf_arr *a, uint64_t i, struct gguf_arr *out); // ARRAY arrays: 0 or -1

// Names: ggml tensor type ("q4_K", "f16", ...) and GGUF value type ("uint32", ...); NULL if unknown.
const char *gguf_type_name(int ggml_type);
const char *gguf_value_type_name(int gguf_type);
// Block geometry of a ggml type: elements per block and bytes per block. 0, or -1 if unknown.
int gguf_type_block(int ggml_type, int64_t *block_elems, size_t *block_bytes);

// Copies s into buf (size >= 1) as a NUL-terminated string, truncating if needed;
// returns buf. Embedded NULs are kept (they end the C string early).
char *gguf_str_copy(char *buf, size_t size, struct gguf_str s);
// 1 if s equals the C string c exactly.
bool gguf_str_eq(struct gguf_str s, const char *c);

// One-line rendering of a kv's value for dumps (--info): numbers, quoted and
// escaped strings, arrays as `[n x type] [first, elements, ...]`. Truncated to
// size; returns buf.
char *gguf_kv_format(const struct gguf_kv *kv, char *buf, size_t size);

#endif
