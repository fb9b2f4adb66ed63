// Read-only memory mapping of a whole file. The mapping is private and
// read-only; pointers into it stay valid until mapfile_close.
#ifndef LLMFILE_BASE_MAPFILE_H
#define LLMFILE_BASE_MAPFILE_H

#include "base/err.h"

#include <stddef.h>

struct mapfile {
    const void *data; // NULL for an empty file
    size_t size;      // bytes
};

// Maps `path` read-only. Returns 0, or -1 with err naming the path and the
// system error. An empty regular file maps to {NULL, 0}; directories and other
// non-regular files are refused.
int mapfile_open(struct mapfile *m, const char *path, llm_err *err);

// Unmaps (safe on a zeroed or already-closed struct) and zeroes *m.
void mapfile_close(struct mapfile *m);

#endif
