#!/usr/bin/env python3
"""Embedding speed: build/llmfile --embedding vs llama.cpp (llama-cpp-python), same model, same text.

Usage:
    python3 bench/embed_vs_llamacpp.py [-m MODEL] [-t 1,2] [-P 100] [-r 5] [--llmfile build/llmfile]

    -m   model (default ${XDG_CACHE_HOME:-~/.cache}/llmfile/minilm.gguf, see
         tools/setup_embedding_model.sh)
    -t   comma-separated thread counts (default 2)
    -P   approximate text length in llama.cpp tokens (default 100)
    -r   runs per engine and thread count, alternating llmfile and llama.cpp; the
         table shows the median (default 5)

llmfile: `llmfile -m MODEL --embedding -p TEXT -t T`, tokens/s from its stderr line
"llmfile: N tokens, X tok/s" (the forward pass and pooling; load and tokenization
excluded). llama.cpp: Llama(embedding=True, n_ctx = n_batch = n_ubatch = 512,
flash attention off as llama-cpp-python's default), one warm-up call, then the
wall time of Llama.embed(TEXT) (tokenization, one llama_decode, pooling).
Also prints the cosine between the two vectors.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time

import numpy as np

import common

DEFAULT_MODEL = common.cache_path("minilm.gguf")
TEXT = ("Embeddings map text to vectors so that texts with similar meaning land close together. "
        "A sentence encoder reads the whole sentence at once: every token attends to every other "
        "token, in both directions, and the hidden states of the last layer are averaged into one "
        "vector. Search engines compare such vectors by cosine similarity to find passages that "
        "answer a question even when they share no words with it. ")


def text_of(llama, n_tokens: int) -> str:
    words = (TEXT * 20).split(" ")
    lo, hi = 1, len(words)
    while lo < hi:  # fewest words reaching n_tokens
        mid = (lo + hi) // 2
        if len(llama.tokenize(" ".join(words[:mid]).encode())) >= n_tokens:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo])


def main():
    ap = common.parser(__doc__.split("\n")[0], DEFAULT_MODEL)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-P", "--tokens", type=int, default=100)
    ap.add_argument("-r", "--runs", type=int, default=5)
    args = ap.parse_args()
    import llama_cpp

    print(f"model {os.path.basename(args.model)}, llama-cpp-python {llama_cpp.__version__}\n")
    print("| threads | tokens | llmfile tok/s | llama.cpp tok/s | llmfile / llama.cpp | cosine |")
    print("|--:|--:|--:|--:|--:|--:|")
    for t in [int(x) for x in args.threads.split(",")]:
        llama = llama_cpp.Llama(args.model, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=t,
                                n_threads_batch=t, verbose=False)
        text = text_of(llama, args.tokens)
        n_tok = len(llama.tokenize(text.encode()))
        ref = np.asarray(llama.embed(text, normalize=True))  # warm-up
        ours_tps, theirs_tps, vec = [], [], None
        for _ in range(args.runs):
            proc = subprocess.run([args.llmfile, "-m", args.model, "--embedding", "-p", text, "-t", str(t)],
                                  capture_output=True, text=True, check=True)
            m = re.search(r"^llmfile: (\d+) tokens, ([0-9.]+) tok/s", proc.stderr, re.M)
            if not m or int(m.group(1)) != n_tok:
                raise SystemExit(f"unexpected llmfile output: {proc.stderr}")
            ours_tps.append(float(m.group(2)))
            vec = np.asarray(json.loads(proc.stdout))
            t0 = time.perf_counter()
            llama.embed(text, normalize=True)
            theirs_tps.append(n_tok / (time.perf_counter() - t0))
        a, b = statistics.median(ours_tps), statistics.median(theirs_tps)
        cos = float(vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref))
        print(f"| {t} | {n_tok} | {a:.1f} | {b:.1f} | {a / b:.2f} | {cos:.7f} |")
        del llama


if __name__ == "__main__":
    main()
