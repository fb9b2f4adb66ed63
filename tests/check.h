// Minimal test harness shared by the C unit tests. Each test binary returns
// CHECK_DONE(), which prints a summary and exits non-zero if any check failed.
#ifndef LLMFILE_TESTS_CHECK_H
#define LLMFILE_TESTS_CHECK_H

#include <stdio.h>

static int check_count, check_failures;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

#define CHECK_DONE()                                                              \
    (printf("%s: %d checks, %d failed\n", __FILE__, check_count, check_failures), \
     (check_failures || !check_count) ? 1 : 0)

#endif
