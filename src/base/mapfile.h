// A whole file in memory, read-only: either mapped (the page cache's pages) or
// copied into anonymous memory on 2 MB transparent huge pages. Weights read
// once per token stream faster from huge pages (one TLB entry per 2 MB instead
// of per 4 KB; measured in generation, alternating with --mmap: Gemma 3 270M
// about +10%, TinyLlama Q8_0 +5..12%, Q4_0 +3..7%), at the price of the copy
// (0.1 s for the 250 MB default model; on the CI's VM a 2.2 GB file took 0.4 s
// more than mapping it when the kernel had free huge pages, 3.8 s when it first
// had to make them: nearly all of it backing and zeroing fresh pages) and of the
// memory it takes beside the page cache. Pointers into the data stay valid
// until mapfile_close.
#ifndef LLMFILE_BASE_MAPFILE_H
#define LLMFILE_BASE_MAPFILE_H

#include "base/err.h"
#include "base/progress.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mapfile_mode {
    MAPFILE_MAP,  // a private read-only mapping of the file
    MAPFILE_COPY, // a copy on transparent huge pages (on 4 KB pages where the system has none)
    MAPFILE_AUTO, // COPY when mapfile_copy_pays(), else MAP
};

struct mapfile {
    const void *data; // NULL for an empty file
    size_t size;      // bytes of the file
    size_t mem_bytes; // bytes of the mapping (the copy is rounded up to 2 MB)
    bool copied;      // data is a copy, not the file's pages
};

// Maps `path` read-only. Returns 0, or -1 with err naming the path and the
// system error. An empty regular file maps to {NULL, 0}; directories and other
// non-regular files are refused.
int mapfile_open(struct mapfile *m, const char *path, llm_err *err);
// The same, held as `mode` says.
int mapfile_open_mode(struct mapfile *m, const char *path, enum mapfile_mode mode, llm_err *err);
// The same, a copy reporting its progress ("copying", bytes of the file) as it goes.
int mapfile_open_progress(struct mapfile *m, const char *path, enum mapfile_mode mode,
                          const struct progress *progress, llm_err *err);

// MAPFILE_AUTO's rule: copy a file of `size` bytes when the system has
// transparent huge pages, the file is at most 4 GB (a copy that takes about a
// second, up to several when the kernel must first free huge pages; a 2.05 GB
// F16 TinyLlama then generates about 7% faster: tg64 10.9/12.1/12.1/10.8 vs
// --mmap 10.9/11.2/10.3/10.5 tok/s, alternating) and at most a quarter of the
// memory available (the page cache keeps its own copy of the file, and the
// model needs room for its context).
bool mapfile_copy_pays(uint64_t size, uint64_t mem_available, bool huge_pages);

// A copy (m->copied) made writable or read-only again, for rearranging the
// data in place (the weights' interleaved layouts). Returns 0, or -1 with err.
int mapfile_set_writable(struct mapfile *m, bool writable, llm_err *err);

// Unmaps (safe on a zeroed or already-closed struct) and zeroes *m.
void mapfile_close(struct mapfile *m);

#endif
