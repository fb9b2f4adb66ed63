// `llmfile bench`: llama-bench-style speed measurement (pp/tg tokens per second).
#ifndef LLMFILE_APP_BENCH_BENCH_H
#define LLMFILE_APP_BENCH_BENCH_H

// argv[0] is "bench". default_model is used when no -m is given. Returns the exit code.
int bench_main(int argc, char **argv, const char *default_model);

#endif
