#include "base/mapfile.h"
#include "base/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HUGE_PAGE = 2 << 20 };

bool mapfile_copy_pays(uint64_t size, uint64_t mem_available, bool huge_pages) {
    return huge_pages && size <= (uint64_t)4 << 30 && size <= mem_available / 4;
}

// Transparent huge pages on for madvise'd memory: "[always]" or "[madvise]" in sysfs.
static bool huge_pages_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[128] = "";
    const bool ok = fgets(line, sizeof line, f) && (strstr(line, "[always]") || strstr(line, "[madvise]"));
    fclose(f);
    return ok;
}

// MemAvailable from /proc/meminfo, in bytes (0 when unknown: no copy).
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[128];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

// One thread's part of the copy: bytes [begin, end) of the file.
struct copy_part {
    int fd;
    uint8_t *dst;
    size_t begin, end, done; // done: bytes read before an error or the end of the file
    int err;                 // errno of a failed read, 0
    pthread_t tid;
    atomic_size_t *copied;   // bytes read by all parts, for progress
    const struct progress *progress; // reported by the part on the calling thread, else NULL
    size_t size;             // bytes of the file
};

static void *copy_part_run(void *arg) {
    struct copy_part *c = arg;
    enum { PIECE = 32 << 20 }; // bytes per read: progress moves at least every ~20 ms
    size_t at = c->begin;
    while (at < c->end) {
        const size_t want = c->end - at < PIECE ? c->end - at : PIECE;
        const ssize_t got = pread(c->fd, c->dst + at, want, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            c->err = got < 0 ? errno : 0;
            break;
        }
        at += (size_t)got;
        const size_t all = atomic_fetch_add(c->copied, (size_t)got) + (size_t)got;
        progress_report(c->progress, "copying", all, c->size);
    }
    c->done = at - c->begin;
    return NULL;
}

// The file's `size` bytes read into anonymous memory aligned to and rounded up
// to 2 MB, advised onto huge pages, then made read-only. Up to 4 threads read
// parts of it: faulting in (zeroing) the huge pages is most of the work.
static int copy_in(int fd, size_t size, const char *path, const struct progress *progress, struct mapfile *m,
                   llm_err *err) {
    const size_t len = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return err_set(err, "%s: cannot allocate %zu bytes for the weights: %s", path, len, strerror(errno));
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw)); // the unaligned head and tail go back
    if (raw + len + HUGE_PAGE > p + len) munmap(p + len, (size_t)(raw + len + HUGE_PAGE - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE); // a hint: refused, the copy is on 4 KB pages
    const int cores = cpu_physical_cores();
    int n = cores > 4 ? 4 : cores;
    if ((size_t)n > len / HUGE_PAGE) n = (int)(len / HUGE_PAGE);
    struct copy_part parts[4];
    atomic_size_t copied = 0;
    for (int i = 0; i < n; i++) { // whole huge pages per part
        const size_t b = len / HUGE_PAGE * (size_t)i / (size_t)n * HUGE_PAGE;
        const size_t e = len / HUGE_PAGE * (size_t)(i + 1) / (size_t)n * HUGE_PAGE;
        parts[i] = (struct copy_part){.fd = fd, .dst = p, .begin = b < size ? b : size, .end = e < size ? e : size,
                                      .copied = &copied, .progress = i == 0 ? progress : NULL, .size = size};
    }
    int started = 1; // part 0 runs on this thread
    for (int i = 1; i < n; i++, started++)
        if (pthread_create(&parts[i].tid, NULL, copy_part_run, &parts[i]) != 0) break;
    for (int i = started; i < n; i++) copy_part_run(&parts[i]); // threads refused: here
    copy_part_run(&parts[0]);
    for (int i = 1; i < started; i++) pthread_join(parts[i].tid, NULL);
    progress_report(progress, "copying", atomic_load(&copied), size);
    for (int i = 0; i < n; i++)
        if (parts[i].done < parts[i].end - parts[i].begin) {
            const size_t at = parts[i].begin + parts[i].done;
            const int e = parts[i].err;
            munmap(p, len);
            return err_set(err, "%s: read failed at byte %zu of %zu: %s", path, at, size,
                           e ? strerror(e) : "the file is shorter than it was");
        }
    if (mprotect(p, len, PROT_READ) != 0) {
        const int e = errno;
        munmap(p, len);
        return err_set(err, "%s: cannot protect the copy: %s", path, strerror(e));
    }
    *m = (struct mapfile){p, size, len, true};
    return 0;
}

int mapfile_set_writable(struct mapfile *m, bool writable, llm_err *err) {
    if (!m->copied) return err_set(err, "the file's mapping cannot be written, only a copy can");
    if (mprotect((void *)m->data, m->mem_bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0)
        return err_set(err, "cannot change the copy's protection: %s", strerror(errno));
    return 0;
}

int mapfile_open_mode(struct mapfile *m, const char *path, enum mapfile_mode mode, llm_err *err) {
    return mapfile_open_progress(m, path, mode, NULL, err);
}

int mapfile_open_progress(struct mapfile *m, const char *path, enum mapfile_mode mode,
                          const struct progress *progress, llm_err *err) {
    *m = (struct mapfile){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > (uintmax_t)SIZE_MAX) {
        close(fd);
        return err_set(err, "%s: file size %jd cannot be mapped", path, (intmax_t)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return 0;
    }
    if (mode == MAPFILE_AUTO)
        mode = mapfile_copy_pays(size, mem_available(), huge_pages_available()) ? MAPFILE_COPY : MAPFILE_MAP;
    if (mode == MAPFILE_COPY) {
        const int rc = copy_in(fd, size, path, progress, m, err);
        close(fd);
        return rc;
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); // the mapping keeps its own reference
    if (p == MAP_FAILED) return err_set(err, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
    *m = (struct mapfile){p, size, size, false};
    return 0;
}

int mapfile_open(struct mapfile *m, const char *path, llm_err *err) {
    return mapfile_open_mode(m, path, MAPFILE_MAP, err);
}

void mapfile_close(struct mapfile *m) {
    if (m->data) munmap((void *)m->data, m->mem_bytes);
    *m = (struct mapfile){0};
}
