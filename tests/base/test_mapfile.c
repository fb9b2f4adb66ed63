// mapfile: a mapping and a copy on huge pages hold the same bytes as the file
// (sizes around the 2 MB rounding of the copy, and the empty file), the copy
// is 2 MB aligned and rounded and read-only, bad paths give one clear error,
// and MAPFILE_AUTO's rule copies only small files on systems with huge pages.
#include "base/mapfile.h"
#include "check.h"

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[256];

static unsigned char *write_file(size_t size) {
    unsigned char *bytes = malloc(size ? size : 1);
    uint64_t x = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        bytes[i] = (unsigned char)x;
    }
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes, 1, size, f) == size && fclose(f) == 0, "cannot write %s", path);
    return bytes;
}

static sigjmp_buf jump;
static void on_segv(int sig) {
    (void)sig;
    siglongjmp(jump, 1);
}

// Whether a write into the data faults (the copy is as read-only as the
// mapping). The byte written is the one that was there.
static bool write_faults(const struct mapfile *m) {
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, &old);
    volatile bool faulted = false;
    if (sigsetjmp(jump, 1) == 0) *(volatile unsigned char *)m->data = *(const volatile unsigned char *)m->data;
    else faulted = true;
    sigaction(SIGSEGV, &old, NULL);
    return faulted;
}

// What a copy reported through its progress.
struct seen {
    int calls;
    bool ordered;       // every call's done >= the one before, and <= total
    bool named;         // every stage "copying"
    uint64_t done, total; // of the last call
};

static void note_progress(void *ctx, const char *stage, uint64_t done, uint64_t total) {
    struct seen *s = ctx;
    s->ordered = s->ordered && (s->calls == 0 || done >= s->done) && done <= total;
    s->named = s->named && strcmp(stage, "copying") == 0;
    s->calls++;
    s->done = done;
    s->total = total;
}

// A copy in several pieces per reading thread reports them in order and ends
// at the file's size; a mapping reports nothing.
static void check_progress(void) {
    const size_t size = ((size_t)70 << 20) + 12345;
    unsigned char *bytes = write_file(size);
    for (int mode = MAPFILE_MAP; mode <= MAPFILE_COPY; mode++) {
        struct seen s = {0, true, true, 0, 0};
        const struct progress pg = {note_progress, &s};
        struct mapfile m;
        llm_err err = {0};
        CHECK(mapfile_open_progress(&m, path, (enum mapfile_mode)mode, &pg, &err) == 0 &&
                  memcmp(m.data, bytes, size) == 0,
              "mode %d with progress: %s", mode, err.msg);
        if (mode == MAPFILE_MAP) {
            CHECK(s.calls == 0, "a mapping reported progress %d times", s.calls);
        } else {
            CHECK(s.calls >= 2 && s.ordered && s.named, "copy progress: %d calls, ordered %d, named %d", s.calls,
                  s.ordered, s.named);
            CHECK(s.done == size && s.total == size, "copy progress ends at %llu of %llu, not %zu",
                  (unsigned long long)s.done, (unsigned long long)s.total, size);
        }
        mapfile_close(&m);
    }
    free(bytes);
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/llmfile_test_mapfile_%d.bin", (int)getpid());
    const size_t two_mb = (size_t)2 << 20;
    const size_t sizes[] = {1, 4095, 4096, two_mb - 1, two_mb, two_mb + 1, 3 * two_mb + 12345};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t size = sizes[si];
        unsigned char *bytes = write_file(size);
        for (int mode = MAPFILE_MAP; mode <= MAPFILE_COPY; mode++) {
            struct mapfile m;
            llm_err err = {0};
            CHECK(mapfile_open_mode(&m, path, (enum mapfile_mode)mode, &err) == 0, "open %zu: %s", size, err.msg);
            CHECK(m.data && m.size == size && memcmp(m.data, bytes, size) == 0, "mode %d size %zu: bytes differ",
                  mode, size);
            CHECK(m.copied == (mode == MAPFILE_COPY), "mode %d: copied = %d", mode, m.copied);
            if (mode == MAPFILE_COPY)
                CHECK((uintptr_t)m.data % two_mb == 0 && m.mem_bytes % two_mb == 0 && m.mem_bytes >= size &&
                          m.mem_bytes < size + two_mb,
                      "copy of %zu bytes at %p, %zu bytes: not whole 2 MB pages", size, m.data, m.mem_bytes);
            CHECK(write_faults(&m), "mode %d size %zu: the data can be written", mode, size);
            // only a copy can be made writable (to interleave weights), and read-only again
            if (mode == MAPFILE_COPY) {
                CHECK(mapfile_set_writable(&m, true, &err) == 0 && !write_faults(&m), "copy %zu: not writable: %s",
                      size, err.msg);
                CHECK(mapfile_set_writable(&m, false, &err) == 0 && write_faults(&m), "copy %zu: still writable: %s",
                      size, err.msg);
            } else {
                CHECK(mapfile_set_writable(&m, true, &err) != 0 && strstr(err.msg, "copy"),
                      "the mapping of %zu bytes made writable: '%s'", size, err.msg);
            }
            mapfile_close(&m);
            CHECK(m.data == NULL && m.size == 0, "close leaves the struct zeroed");
        }
        struct mapfile m;
        llm_err err = {0};
        CHECK(mapfile_open_mode(&m, path, MAPFILE_AUTO, &err) == 0 && memcmp(m.data, bytes, size) == 0,
              "auto %zu: %s", size, err.msg);
        mapfile_close(&m);
        free(bytes);
    }
    check_progress();
    free(write_file(0));
    for (int mode = MAPFILE_MAP; mode <= MAPFILE_AUTO; mode++) {
        struct mapfile m;
        llm_err err = {0};
        CHECK(mapfile_open_mode(&m, path, (enum mapfile_mode)mode, &err) == 0 && m.data == NULL && m.size == 0,
              "mode %d: an empty file is {NULL, 0}", mode);
        mapfile_close(&m);
    }
    unlink(path);
    const struct { const char *p, *expect; } bad[] = {{"/nonexistent/x.gguf", "cannot open"}, {"/tmp", "not a regular file"}};
    for (int i = 0; i < 2; i++)
        for (int mode = MAPFILE_MAP; mode <= MAPFILE_AUTO; mode++) {
            struct mapfile m;
            llm_err err = {0};
            CHECK(mapfile_open_mode(&m, bad[i].p, (enum mapfile_mode)mode, &err) != 0 && strstr(err.msg, bad[i].p) &&
                      strstr(err.msg, bad[i].expect),
                  "%s: error '%s'", bad[i].p, err.msg);
        }
    const uint64_t gb = (uint64_t)1 << 30;
    CHECK(mapfile_copy_pays(250 << 20, 16 * gb, true), "a 250 MB model on 16 GB is copied");
    CHECK(!mapfile_copy_pays(250 << 20, 16 * gb, false), "not without huge pages");
    CHECK(mapfile_copy_pays(4 * gb, 16 * gb, true) && !mapfile_copy_pays(4 * gb + 1, 64 * gb, true),
          "at most 4 GB");
    CHECK(mapfile_copy_pays(gb, 4 * gb, true) && !mapfile_copy_pays(gb + 1, 4 * gb, true),
          "at most a quarter of the available memory");
    CHECK(!mapfile_copy_pays(1, 0, true), "unknown available memory: no copy");
    return CHECK_DONE();
}
