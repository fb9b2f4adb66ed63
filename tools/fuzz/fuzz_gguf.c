// libFuzzer entry point for the GGUF reader: parses the input, then calls every
// getter and array accessor on every key and every tensor lookup, so ASan/UBSan
// see any read outside the input or undefined arithmetic. See README.md.
#include "gguf/gguf.h"

#include <stdlib.h>
#include <string.h>

static void walk_arr(const struct gguf_arr *a, int depth) {
    uint64_t n = a->n < 64 ? a->n : 64;
    for (uint64_t i = 0; i <= n; i++) { // i == n probes the out-of-range path
        struct gguf_str s = gguf_arr_str(a, i);
        volatile char sink = s.len ? s.ptr[s.len - 1] : 0;
        (void)sink;
        (void)gguf_arr_f32(a, i);
        (void)gguf_arr_f64(a, i);
        (void)gguf_arr_int(a, i);
        struct gguf_arr sub;
        if (gguf_arr_sub(a, i, &sub) == 0 && depth < 16) walk_arr(&sub, depth + 1);
    }
    if (a->n) { // last element too
        (void)gguf_arr_str(a, a->n - 1);
        (void)gguf_arr_int(a, a->n - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // A private copy of exactly `size` bytes, so ASan flags any over-read.
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    struct gguf_file f;
    llm_err err;
    if (gguf_parse(&f, buf, size, "fuzz.gguf", &err) == 0) {
        char key[256], fmt[512];
        for (size_t k = 0; k < f.n_kvs; k++) {
            const struct gguf_kv *kv = &f.kvs[k];
            gguf_str_copy(key, sizeof key, kv->key);
            int64_t i;
            double d;
            bool b;
            struct gguf_str s;
            struct gguf_arr a;
            (void)gguf_get_int(&f, key, &i, &err);
            (void)gguf_get_float(&f, key, &d, &err);
            (void)gguf_get_bool(&f, key, &b, &err);
            if (gguf_get_str(&f, key, &s, &err) == 1 && s.len) {
                volatile char sink = s.ptr[s.len - 1];
                (void)sink;
            }
            if (gguf_get_arr(&f, key, &a, &err) == 1) walk_arr(&a, 0);
            (void)gguf_find_kv(&f, key);
            gguf_kv_format(kv, fmt, sizeof fmt);
        }
        for (size_t t = 0; t < f.n_tensors; t++) {
            const struct gguf_tensor *gt = &f.tensors[t];
            gguf_str_copy(key, sizeof key, gt->name);
            (void)gguf_find_tensor(&f, key);
            (void)gguf_type_name(gt->type);
            if (gt->nbytes) {
                volatile uint8_t sink = ((const uint8_t *)gt->data)[0] ^ ((const uint8_t *)gt->data)[gt->nbytes - 1];
                (void)sink;
            }
        }
        gguf_close(&f);
    } else if (!err.msg[0]) {
        __builtin_trap(); // every failure must say why
    }
    free(buf);
    return 0;
}
