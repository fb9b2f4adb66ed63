#include "err.h"

#include <stdio.h>
#include <string.h>

int err_set(llm_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int err_prefix(llm_err *err, const char *fmt, ...) {
    if (err) {
        char msg[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        size_t used = (size_t)n < sizeof msg - 1 ? (size_t)n : sizeof msg - 1;
        // Append ": old message" after the prefix, truncating at the buffer end.
        size_t room = sizeof msg - used;
        if (room > 2) {
            memcpy(msg + used, ": ", 2);
            size_t old_len = strnlen(err->msg, sizeof err->msg);
            size_t take = old_len < room - 3 ? old_len : room - 3;
            memcpy(msg + used + 2, err->msg, take);
            msg[used + 2 + take] = 0;
        }
        memcpy(err->msg, msg, sizeof msg);
    }
    return -1;
}
