#!/usr/bin/env python3
"""Total generation throughput of `llmfile --server` with 1, 2, 4, 8 concurrent clients,
beside llama.cpp decoding the same number of sequences in one batch per step.

Usage:
    python3 bench/server_concurrency.py [-m MODEL] [-c 1,2,4,8] [-n 64] [-t 2] [-r 2]
                                        [--llmfile build/llmfile] [--no-llamacpp]

llmfile: one server started with -np = the largest client count; for each count N,
N threads each POST /completion (greedy, ignore_eos, n_predict N_TOKENS, cache_prompt
false, distinct prompts of ~20 tokens) at once. Total tok/s = generated tokens of all
requests / wall time from the first send to the last reply (prompt processing, HTTP and
JSON included).

llama.cpp (llama-cpp-python's low-level API, as llama-batched-bench does): one context
with n_seq_max = N; the N prompts in one llama_decode, then N_TOKENS steps each decoding
one token per sequence in one batch, argmax sampling. Total tok/s = N * N_TOKENS / wall
time of prompt + generation, i.e. the same work without the HTTP server.
Runs alternate llmfile, llama.cpp; the table shows the median of -r runs.
"""
from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import statistics
import subprocess
import threading
import time

import common

DEFAULT_MODEL = common.cache_path("default.gguf")
PROMPTS = ["Once upon a time, in a small village by the sea, there lived",
           "The history of the printing press begins in the fifteenth century, when",
           "Here is a simple recipe for bread. First, take some flour and",
           "The three most important ideas in physics are",
           "Dear diary, today was a strange day because",
           "In the year 2050, cities will look different:",
           "The rules of chess are simple to learn. Each player",
           "A short guide to growing tomatoes at home: start by"]


def start_server(exe, model, n_slots, threads, n_tokens):
    cmd = [exe, "--server", "--port", "0", "-m", model, "-np", str(n_slots), "-t", str(threads),
           "-c", str(n_slots * (n_tokens + 128)), "--queue", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://([0-9.]+):(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, m.group(1), int(m.group(2))


def run_llmfile(host, port, n_clients, n_tokens):
    results = [None] * n_clients

    def client(i):
        conn = http.client.HTTPConnection(host, port, timeout=600)
        body = {"prompt": PROMPTS[i % len(PROMPTS)], "n_predict": n_tokens, "temperature": 0,
                "ignore_eos": True, "cache_prompt": False}
        conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        results[i] = json.loads(r.read())
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(r["tokens_predicted"] for r in results)
    return total / wall


def run_llamacpp(model, n_seq, n_tokens, threads):
    import llama_cpp as L
    import numpy as np
    L.llama_log_set(_quiet, ctypes.c_void_p(0))
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mdl = L.llama_model_load_from_file(model.encode(), mp)
    vocab = L.llama_model_get_vocab(mdl)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    cp = L.llama_context_default_params()
    cp.n_ctx = n_seq * (n_tokens + 128)
    cp.n_batch = cp.n_ubatch = 512
    cp.n_seq_max = n_seq
    cp.n_threads = cp.n_threads_batch = threads
    cp.no_perf = True
    ctx = L.llama_init_from_model(mdl, cp)
    batch = L.llama_batch_init(512, 0, 1)

    def tokenize(text):
        buf = (L.llama_token * 256)()
        n = L.llama_tokenize(vocab, text.encode(), len(text.encode()), buf, 256, True, False)
        return list(buf[:n])

    def decode(entries):  # [(token, pos, seq, logits)]
        batch.n_tokens = len(entries)
        for i, (tok, pos, seq, want) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, want
        assert L.llama_decode(ctx, batch) == 0

    def logits_of(i):
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))

    prompts = [tokenize(PROMPTS[s % len(PROMPTS)]) for s in range(n_seq)]
    t0 = time.perf_counter()
    entries, last = [], []
    for s, p in enumerate(prompts):
        entries += [(t, j, s, j == len(p) - 1) for j, t in enumerate(p)]
        last.append(len(entries) - 1)
    decode(entries)
    nxt = [int(np.argmax(logits_of(i))) for i in last]
    pos = [len(p) for p in prompts]
    for _ in range(n_tokens - 1):
        decode([(nxt[s], pos[s], s, True) for s in range(n_seq)])
        nxt = [int(np.argmax(logits_of(s))) for s in range(n_seq)]
        pos = [p + 1 for p in pos]
    wall = time.perf_counter() - t0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(mdl)
    return n_seq * n_tokens / wall


_quiet = None


def main():
    global _quiet
    ap = common.parser(__doc__.split("\n")[0], DEFAULT_MODEL)
    ap.add_argument("-c", "--clients", default="1,2,4,8")
    ap.add_argument("-n", "--tokens", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--runs", type=int, default=2)
    ap.add_argument("--no-llamacpp", action="store_true")
    a = ap.parse_args()
    counts = [int(x) for x in a.clients.split(",")]
    if not a.no_llamacpp:
        import llama_cpp as L
        _quiet = L.llama_log_callback(lambda level, text, ud: None)
    proc, host, port = start_server(a.llmfile, a.model, max(counts), a.threads, a.tokens)
    rows = []
    try:
        run_llmfile(host, port, 1, 4)  # warm-up
        for n in counts:
            ours, theirs = [], []
            for _ in range(a.runs):
                ours.append(run_llmfile(host, port, n, a.tokens))
                if not a.no_llamacpp:
                    theirs.append(run_llamacpp(a.model, n, a.tokens, a.threads))
            rows.append((n, statistics.median(ours), statistics.median(theirs) if theirs else None))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"model {os.path.basename(a.model)}, {a.threads} threads, {a.tokens} tokens per request, "
          f"median of {a.runs}\n")
    print("| clients | llmfile --server total tok/s | llama.cpp batched total tok/s | ratio |")
    print("|--------:|-----------------------------:|------------------------------:|------:|")
    for n, ours, theirs in rows:
        t = f"{theirs:.1f}" if theirs else "-"
        r = f"{ours / theirs:.2f}" if theirs else "-"
        print(f"| {n} | {ours:.1f} | {t} | {r} |")


if __name__ == "__main__":
    main()
