#!/usr/bin/env python3
"""Greedy-generation goldens from llama.cpp for the default model (Gemma 3 270M).

Usage:
    tools/setup_default_model.sh            # once: fetches/links the model
    tools/gen_generation_goldens.py [-m MODEL] [-n 64] [--out FILE]

    -m     model file (default ${XDG_CACHE_HOME:-~/.cache}/llmfile/default.gguf)
    -n     generated tokens per prompt (default 64)
    --out  default tests/data/goldens/gemma3-270m-greedy.json

For each prompt: tokenize as llama.cpp does (add_special=True, so BOS is
prepended when the model asks for it; parse_special=False, except for the
chat-format prompts in SPECIAL_PROMPTS, whose <start_of_turn>/<end_of_turn> are
parsed as control tokens: parse_special=True), decode the prompt
in one batch, then N times: take the argmax of the last logits (ties -> lowest
id, as numpy.argmax) and decode that token. Generation does NOT stop at EOS:
every step's argmax is recorded and `eos_at` lists the steps whose token is an
end-of-generation token. llama.cpp settings: n_ctx 256, n_batch = n_ubatch = 256,
2 threads, flash attention disabled, KV cache F16.

Output JSON:
{
  "model": file name, "model_sha256": hex, "n_predict": N,
  "settings": {...}, "versions": {...},
  "cases": [
    {"prompt": str, "parse_special": bool, "prompt_tokens": [ids incl. BOS], "tokens": [N ids],
     "text": detokenized tokens (UTF-8, invalid bytes replaced),
     "eos_at": [step indices whose token is end-of-generation],
     "top1_margin": [N floats: best minus second-best logit at each step;
                     a tiny margin marks a step where another engine may
                     legitimately pick a different token]}
  ]
}
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_logit_goldens import LlamaCpp, sha256_file, versions  # noqa: E402

REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "goldens", "gemma3-270m-greedy.json")
DEFAULT_MODEL = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                             "llmfile", "default.gguf")

PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "def fibonacci(n):",
    "Explain photosynthesis in one sentence.",
    "1, 2, 3, 4, 5,",
    "Übersetze ins Englische: Der Hund schläft.",
]
# (prompt, parse_special): Gemma's chat format with its control tokens parsed,
# so that <end_of_turn> (an end-of-generation token) is likely to appear.
SPECIAL_PROMPTS = [
    "<start_of_turn>user\nWhat is 2+2? Answer with one number.<end_of_turn>\n<start_of_turn>model\n",
]

N_CTX = 256


def generate(lc: LlamaCpp, prompt: str, n_predict: int, parse_special: bool = False):
    ptoks = lc.tokenize(prompt, add_special=True, parse_special=parse_special)
    lc.reset()
    logits = lc.decode(ptoks, 0, all_logits=False)[-1]
    out, margins = [], []
    pos = len(ptoks)
    for _ in range(n_predict):
        tok = int(np.argmax(logits))
        top2 = np.partition(logits, -2)[-2:]
        margins.append(round(float(top2[1] - top2[0]), 4))
        out.append(tok)
        logits = lc.decode([tok], pos, all_logits=False)[-1]
        pos += 1
    text = b"".join(lc.piece(t) for t in out).decode("utf-8", errors="replace")
    eos = [i for i, t in enumerate(out) if lc.L.llama_vocab_is_eog(lc.vocab, t)]
    return dict(prompt=prompt, parse_special=parse_special, prompt_tokens=[int(t) for t in ptoks],
                tokens=out, text=text, eos_at=eos, top1_margin=margins)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default=DEFAULT_MODEL)
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    if not os.path.exists(a.model):
        sys.exit(f"gen_generation_goldens: {a.model} not found; run tools/setup_default_model.sh")
    real = os.path.realpath(a.model)
    res = {"model": os.path.basename(real), "model_sha256": sha256_file(real).hex(),
           "n_predict": a.n_predict,
           "settings": {"n_ctx": N_CTX, "n_batch": N_CTX, "n_ubatch": N_CTX, "n_threads": 2,
                        "flash_attn": False, "type_k": "f16", "type_v": "f16",
                        "tokenize": "add_special=True parse_special=False",
                        "sampling": "argmax of the last logits, no stop at EOS"},
           "versions": versions(), "cases": []}
    with LlamaCpp(a.model, n_ctx=N_CTX, n_batch=N_CTX) as lc:
        for p, special in [(p, False) for p in PROMPTS] + [(p, True) for p in SPECIAL_PROMPTS]:
            c = generate(lc, p, a.n_predict, special)
            res["cases"].append(c)
            print(f"--- {p!r} {c['prompt_tokens']}\n{c['text']!r}\n    eos_at {c['eos_at']} "
                  f"min margin {min(c['top1_margin']):.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
