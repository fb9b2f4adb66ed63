#!/usr/bin/env python3
"""Chat-template rendering speed: llmfile's src/chat vs Python's jinja2 set up as
transformers' apply_chat_template sets it up (what llama-cpp-python's
Jinja2ChatFormatter also uses) vs llama.cpp's llama_chat_apply_template (its C
API: built-in formatters chosen by looking at the template text, not a Jinja
engine), on the same conversation, in the same run.

Usage:
    bench/chat_template_bench.py [--messages N] [--reps N] [--template NAME ...]

Templates come from tests/data/chat/templates/ (default: Gemma 3, Llama 3,
Llama 3.1, Qwen 2.5, Qwen 3, Mistral Nemo, Phi-3 mini, DeepSeek R1 distill).
The conversation is a system message and N-1 alternating user/assistant turns
of ~200 characters (default N=10), with add_generation_prompt=True.

llmfile's side is a small C driver compiled into a temporary folder from
src/chat and src/base with the Makefile's flags (-O2, baseline arch): it parses
the template once, then times chat_template_render (best of --reps batches of
200 renders). jinja2 compiles once and times render() the same way. llama.cpp
times llama_chat_apply_template. Prints microseconds per render, and whether
each side's text equals jinja2's (llmfile must; llama.cpp's built-in
formatters often differ, "n/a" where it does not recognize the template).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

import common

ROOT = common.REPO

DRIVER = r"""
#include "chat/chat.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb"); if (!f) return NULL;
    fseek(f, 0, SEEK_END); long k = ftell(f); fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)k + 1); if (fread(s, 1, (size_t)k, f) != (size_t)k) return NULL; fclose(f);
    s[k] = 0; *n = (size_t)k; return s;
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    size_t tn, cn; char *tsrc = slurp(argv[1], &tn), *json = slurp(argv[2], &cn);
    int reps = atoi(argv[3]), per = 200;
    if (!tsrc || !json) return 2;
    llm_err err; struct chat_template *t; struct chat_doc *d = chat_doc_new(); struct chat_value *ctx;
    double p0 = now();
    if (chat_template_parse(tsrc, tn, &t, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double parse = now() - p0;
    if (chat_parse_json(d, json, cn, true, &ctx, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    struct chat_output o = {0};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double a = now();
        for (int i = 0; i < per; i++) {
            chat_output_free(&o);
            if (chat_template_render(t, ctx, NULL, &o, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        }
        double b = (now() - a) / per;
        if (b < best) best = b;
    }
    FILE *f = fopen(argv[4], "wb"); fwrite(o.text, 1, o.len, f); fclose(f);
    printf("{\"seconds\": %.9f, \"parse_seconds\": %.9f}\n", best, parse);
    chat_output_free(&o); chat_template_free(t); chat_doc_free(d); free(tsrc); free(json);
    return 0;
}
"""

DEFAULT_TEMPLATES = [
    "gemma3-it.jinja", "meta-llama-Meta-Llama-3-8B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "tct-Phi-3-mini.jinja", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
]


def build_driver(tmp: str) -> str:
    return common.build_c_driver(tmp, "chat_bench", DRIVER, ['chat', 'base'])


def conversation(n: int) -> dict:
    text = ("Could you explain, step by step and with a short example, how a hash table handles collisions "
            "and what happens to lookups when the load factor grows past three quarters of its capacity? ")
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(n - 1):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {text}"})
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "Thanks!"})
    return {"messages": msgs, "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>",
            "tools": None, "documents": None}


def time_best(fn, reps: int, per: int = 200) -> float:
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        best = min(best, (time.perf_counter() - t0) / per)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10, help="messages in the conversation (default 10)")
    ap.add_argument("--reps", type=int, default=5, help="timed batches of 200 renders, best counts (default 5)")
    ap.add_argument("--template", action="append", help="template file name(s) in tests/data/chat/templates")
    args = ap.parse_args()

    import llama_cpp
    from gen_chat_goldens import make_env

    env = make_env()
    ctx = conversation(args.messages)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_driver(tmp)
        ctx_path = os.path.join(tmp, "ctx.json")
        with open(ctx_path, "w") as f:
            json.dump(ctx, f)
        for name in args.template or DEFAULT_TEMPLATES:
            path = os.path.join(ROOT, "tests", "data", "chat", "templates", name)
            src = open(path, encoding="utf-8").read()
            out_path = os.path.join(tmp, "out.txt")
            res = subprocess.run([exe, path, ctx_path, str(args.reps), out_path], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{name}: llmfile failed: {res.stderr.strip()}", file=sys.stderr)
                return 1
            ours = json.loads(res.stdout)
            ours_text = open(out_path, encoding="utf-8").read()

            tmpl = env.from_string(src)
            want = tmpl.render(**ctx)
            jinja_s = time_best(lambda: tmpl.render(**ctx), args.reps)

            # llama.cpp's C API
            msgs = (llama_cpp.llama_chat_message * len(ctx["messages"]))()
            keep = []
            for i, m in enumerate(ctx["messages"]):
                role, content = m["role"].encode(), m["content"].encode()
                keep += [role, content]
                msgs[i].role, msgs[i].content = role, content
            cap = 1 << 16
            buf = ctypes.create_string_buffer(cap)
            tb = src.encode()
            n = llama_cpp.llama_chat_apply_template(tb, msgs, len(ctx["messages"]), True, buf, cap)
            if n < 0:
                lcpp_s, lcpp_same = None, "n/a"
            else:
                lcpp_text = buf.raw[:n].decode("utf-8", "replace")
                lcpp_s = time_best(lambda: llama_cpp.llama_chat_apply_template(tb, msgs, len(ctx["messages"]), True,
                                                                             buf, cap), args.reps)
                lcpp_same = "yes" if lcpp_text == want else "no"
            rows.append((name, ours["seconds"], ours["parse_seconds"], ours_text == want, jinja_s, lcpp_s, lcpp_same))

    print(f"conversation: {len(ctx['messages'])} messages; microseconds per render (best of {args.reps} x 200)\n")
    print("| template | llmfile | (parse once) | = jinja2 | jinja2 (Python) | llama.cpp C API | llama.cpp = jinja2 |")
    print("|---|---:|---:|:-:|---:|---:|:-:|")
    for name, ours, parse, same, jinja_s, lcpp_s, lcpp_same in rows:
        lc = f"{lcpp_s * 1e6:.1f}" if lcpp_s is not None else "n/a"
        print(f"| {name} | {ours * 1e6:.1f} | {parse * 1e6:.1f} | {'yes' if same else 'NO'} | {jinja_s * 1e6:.1f} | "
              f"{lc} | {lcpp_same} |")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
