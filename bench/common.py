"""Helpers the bench scripts share: paths, the -m/--llmfile flags, llama.cpp
contexts at llama.cpp's own defaults, and small C drivers built from src/.

The scripts run as `python3 bench/NAME.py`, so this folder is on sys.path and
`import common` finds this file. Importing it also puts tools/ on sys.path
(gen_logit_goldens.LlamaCpp, make_test_models, gen_chat_goldens).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))


def cache_path(*parts: str) -> str:
    """${XDG_CACHE_HOME:-~/.cache}/llmfile/PARTS: where tools/setup_*.sh put the models."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmfile", *parts)


def parser(description: str, default_model: str) -> argparse.ArgumentParser:
    """An argument parser with -m/--model (default default_model) and --llmfile
    (default build/llmfile); each script adds its own flags."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("-m", "--model", default=default_model)
    ap.add_argument("--llmfile", default=os.path.join(REPO, "build", "llmfile"))
    return ap


def llamacpp_context(model: str, n_ctx: int, n_batch: int, threads: int, flash_attn: str = "auto"):
    """gen_logit_goldens.LlamaCpp (n_ubatch = n_batch, one sequence) with flash
    attention "auto" (llama.cpp's default), "on" or "off". LlamaCpp pins it off
    for the goldens, so for "auto" and "on" its context is made again."""
    import llama_cpp as L
    from gen_logit_goldens import LlamaCpp
    lc = LlamaCpp(model, n_ctx=n_ctx, n_batch=n_batch, n_threads=threads)
    if flash_attn == "off":
        return lc
    try:
        L.llama_free(lc.ctx)
        lc.ctx = None
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, 1
        cp.n_threads = cp.n_threads_batch = threads
        cp.no_perf = True
        cp.flash_attn_type = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED}[flash_attn]
        lc.ctx = L.llama_init_from_model(lc.model, cp)
    except BaseException:
        lc.close()
        raise
    return lc


def build_c_driver(tmp: str, name: str, source: str, layers: list[str]) -> str:
    """Compiles the C program `source` with src/LAYER/*.c of each layer into
    tmp/name, with the Makefile's flags (-O2, the baseline architecture); returns
    the executable's path."""
    src = os.path.join(tmp, name + ".c")
    with open(src, "w") as f:
        f.write(source)
    exe = os.path.join(tmp, name)
    sources = []
    for layer in layers:
        d = os.path.join(REPO, "src", layer)
        sources += [os.path.join(d, x) for x in sorted(os.listdir(d)) if x.endswith(".c")]
    arch = os.uname().machine
    base = ["-march=x86-64", "-mtune=generic"] if arch == "x86_64" else (["-march=armv8-a"] if arch == "aarch64" else [])
    cmd = [os.environ.get("CC", "cc"), "-std=c11", "-O2", *base, "-D_GNU_SOURCE", "-pthread",
           "-I" + os.path.join(REPO, "src"), "-o", exe, src, *sources, "-lm", "-pthread"]
    subprocess.run(cmd, check=True)
    return exe
