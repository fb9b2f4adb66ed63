// Error reporting for library layers: functions return 0 on success or -1 on
// failure and describe the failure in a caller-owned llm_err. Only app/ prints.
#ifndef LLMFILE_BASE_ERR_H
#define LLMFILE_BASE_ERR_H

#include <stdarg.h>

typedef struct llm_err {
    char msg[512]; // one line, no trailing newline
} llm_err;

// Formats msg into err (if err is non-NULL) and returns -1, so callers can write
// `return err_set(err, "...")`.
int err_set(llm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prepends "prefix: " to an existing message (adds context as an error climbs).
int err_prefix(llm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
