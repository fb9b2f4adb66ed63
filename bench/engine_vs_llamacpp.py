#!/usr/bin/env python3
"""Prompt-processing and generation speed: build/llmfile vs llama.cpp (llama-cpp-python).

Usage:
    python3 bench/engine_vs_llamacpp.py [-m MODEL] [-t 1,4] [-n 64] [-P 256] [-r 3]
                                        [--llmfile build/llmfile] [--flash-attn auto|on|off]
                                        [--json FILE] [--wait-idle SECONDS] [--best]

    -m   model (default ${XDG_CACHE_HOME:-~/.cache}/llmfile/default.gguf,
         see tools/setup_default_model.sh)
    -t   comma-separated thread counts to test (default: 2)
    -n   tokens to generate (default 64)
    -P   approximate prompt length in tokens (default 256): a fixed English text
         repeated/truncated to that many llama.cpp tokens, passed to both engines
    -r   runs per engine and thread count; runs alternate llmfile, llama.cpp,
         llmfile, ... and the table shows the median (default 3)
    --wait-idle  before each run, wait up to SECONDS for one second in which the
         CPUs were at least 90% idle (a machine shared with other work: llama.cpp's
         spinning threads lose far more than llmfile's to a busy core)
    --best  show the best of the runs instead of the median

Both sides are greedy and exclude model loading. llmfile is run as
`llmfile -m MODEL -p PROMPT -n N -t T --temp 0` and its stderr timings are
parsed by parse_llmfile_timings() (the one place that knows the format).
llama.cpp: one llama_decode of the whole prompt (n_batch = n_ubatch = 512),
then N single-token llama_decode calls with argmax; its flash attention is
left at llama.cpp's default (auto) unless --flash-attn says otherwise.
Prints a markdown table; ratio = llmfile tok/s / llama.cpp tok/s (> 1: llmfile faster).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

import common

DEFAULT_MODEL = common.cache_path("default.gguf")

TEXT = ("The history of the printing press begins in the fifteenth century, when movable "
        "type made it possible to reproduce books quickly and cheaply. Before that, every "
        "copy of a text had to be written by hand, and a single book could take months to "
        "finish. The new machines spread from city to city across Europe, and within fifty "
        "years millions of volumes had been printed. Scholars could compare editions, "
        "merchants could publish prices, and ordinary people began to read pamphlets about "
        "science, religion and politics. ")


def parse_llmfile_timings(stderr: str) -> dict:
    """-> {"pp_tokens", "pp_tps", "tg_tokens", "tg_tps"} from llmfile's stderr.

    Accepts llama.cpp-like lines ("prompt eval: N tokens, X tok/s", "eval: N tokens,
    Y tok/s") as well as llmfile's one-line summary
    ("llmfile: load .. | prompt N tokens, .. ms, X tok/s | generated N tokens, .. ms, Y tok/s").
    """
    out = {}
    for seg in re.split(r"[|\n]", stderr):
        m = re.search(r"(\d+)\s+tokens?\b.*?([0-9.]+)\s*(?:tok|tokens)/s", seg)
        if not m:
            continue
        n, tps = int(m.group(1)), float(m.group(2))
        low = seg.lower()
        if "prompt" in low:
            out["pp_tokens"], out["pp_tps"] = n, tps
        elif re.search(r"\b(eval|generated|generation|gen)\b", low):
            out["tg_tokens"], out["tg_tps"] = n, tps
    if "pp_tps" not in out or "tg_tps" not in out:
        raise ValueError("could not find prompt/generation timings in llmfile's stderr:\n" + stderr[-2000:])
    return out


def run_llmfile(exe, model, prompt, n, threads):
    cmd = [exe, "-m", model, "-p", prompt, "-n", str(n), "-t", str(threads), "--temp", "0"]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return parse_llmfile_timings(r.stderr)


def run_llamacpp(model, ptoks, n, threads, flash_attn):
    lc = common.llamacpp_context(model, len(ptoks) + n + 8, max(512, len(ptoks)), threads, flash_attn)
    try:
        t0 = time.perf_counter()
        logits = lc.decode(ptoks, 0, all_logits=False)[-1]
        t1 = time.perf_counter()
        pos = len(ptoks)
        for _ in range(n):
            tok = int(np.argmax(logits))
            logits = lc.decode([tok], pos, all_logits=False)[-1]
            pos += 1
        t2 = time.perf_counter()
    finally:
        lc.close()
    return {"pp_tokens": len(ptoks), "pp_tps": len(ptoks) / (t1 - t0),
            "tg_tokens": n, "tg_tps": n / (t2 - t1)}


def cpu_idle_fraction(interval=1.0):
    """Fraction of CPU time spent idle over the next `interval` seconds (/proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = snap()
    time.sleep(interval)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def wait_idle(max_seconds):
    """Waits until one second was >= 90% idle, or max_seconds passed."""
    deadline = time.time() + max_seconds
    while time.time() < deadline:
        if cpu_idle_fraction() >= 0.9:
            return


def make_prompt(model, n_tokens):
    from gen_logit_goldens import LlamaCpp
    lc = LlamaCpp(model, n_ctx=64, n_batch=64)
    try:
        text = TEXT
        while len(lc.tokenize(text)) < n_tokens:
            text += TEXT
        # trim by words to about n_tokens
        words = text.split(" ")
        lo, hi = 1, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(lc.tokenize(" ".join(words[:mid]))) <= n_tokens:
                lo = mid
            else:
                hi = mid - 1
        prompt = " ".join(words[:lo])
        return prompt, lc.tokenize(prompt)
    finally:
        lc.close()


def main(argv=None):
    ap = common.parser(__doc__.split("\n")[0], DEFAULT_MODEL)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("-P", "--prompt-tokens", type=int, default=256)
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--json")
    ap.add_argument("--wait-idle", type=float, default=0.0)
    ap.add_argument("--best", action="store_true")
    a = ap.parse_args(argv)
    pick = max if a.best else statistics.median

    if not os.path.exists(a.model):
        sys.exit(f"model {a.model} not found (tools/setup_default_model.sh)")
    if not os.access(a.llmfile, os.X_OK):
        sys.exit(f"{a.llmfile} not built (make)")
    prompt, ptoks = make_prompt(a.model, a.prompt_tokens)
    threads = [int(x) for x in a.threads.split(",") if x]
    rows, raw = [], []
    for t in threads:
        res = {"llmfile": [], "llama.cpp": []}
        for _ in range(a.runs):
            if a.wait_idle:
                wait_idle(a.wait_idle)
            res["llmfile"].append(run_llmfile(a.llmfile, a.model, prompt, a.n_predict, t))
            if a.wait_idle:
                wait_idle(a.wait_idle)
            res["llama.cpp"].append(run_llamacpp(a.model, ptoks, a.n_predict, t, a.flash_attn))
        raw.append({"threads": t, **res})
        for key, label in (("pp", f"prompt {len(ptoks)} tok"), ("tg", f"generate {a.n_predict} tok")):
            ours = pick(r[f"{key}_tps"] for r in res["llmfile"])
            theirs = pick(r[f"{key}_tps"] for r in res["llama.cpp"])
            ours_n = res["llmfile"][0][f"{key}_tokens"]
            rows.append((t, label, ours, ours_n, theirs, ours / theirs))
    print(f"\nmodel `{os.path.basename(os.path.realpath(a.model))}`, {'best' if a.best else 'median'} of "
          f"{a.runs} alternating runs, llama.cpp flash-attn {a.flash_attn}\n")
    print("| threads | test | llmfile tok/s | llama.cpp tok/s | ratio |")
    print("|--------:|------|--------------:|----------------:|------:|")
    for t, label, ours, ours_n, theirs, ratio in rows:
        note = "" if str(ours_n) in label else f" (llmfile: {ours_n} tok)"
        print(f"| {t} | {label}{note} | {ours:.2f} | {theirs:.2f} | {ratio:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "prompt_tokens": len(ptoks), "n_predict": a.n_predict,
                       "flash_attn": a.flash_attn, "runs": raw}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
