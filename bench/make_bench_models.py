#!/usr/bin/env python3
"""Write random-weight llama models in the shape of TinyLlama 1.1B, for speed tests.

Usage:
    bench/make_bench_models.py [OUTDIR] [--types F16,Q8_0,Q4_0,Q4_K_M] [--layers N] [--force]

    OUTDIR    default ${XDG_CACHE_HOME:-~/.cache}/llmfile/bench
    --types   which files to write (default all four): tinyllama-<TYPE>.gguf
    --layers  fewer layers for a quick test (default 22, TinyLlama's)
    --force   rewrite files that already exist (default: keep them)

Shape (TinyLlama 1.1B): n_embd 2048, 22 layers, 32 heads / 4 KV heads (head_dim
64), n_ff 5632, vocab 32000, rope base 10000, rms eps 1e-5, separate output.weight.
The F16 model is written with the `gguf` package: weights ~N(0, sd) from numpy's
default_rng seeded per tensor name (tools/make_test_models.py's _rng), so the file
is the same on every run. Q8_0, Q4_0 and Q4_K_M are made from it by llama.cpp's
own quantizer (llama_cpp.llama_model_quantize), so their tensor type mix is what
llama.cpp users get (Q4_K_M: Q4_K with Q6_K for output, half the attn_v/ffn_down).

Vocab: SentencePiece style (tokenizer.ggml.model "llama"): <unk> <s> </s>, the
256 byte tokens, then make_test_models' pieces (letters, English words with all
their prefixes), then every two- and three-letter piece with and without the
leading '\u2581' until 32000 tokens; every piece is reachable by pairwise merges.

Takes about a minute and 4.4 GB of disk for the four files (F16 2.2 GB).
"""
from __future__ import annotations

import argparse
import itertools
import os
import string
import sys
import time

import numpy as np

import common  # noqa: E402  (also puts tools/ on sys.path)
import make_test_models as mtm  # noqa: E402

import gguf  # noqa: E402

N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_FF, N_VOCAB = 2048, 22, 32, 4, 5632, 32000
HEAD_DIM = N_EMBD // N_HEAD

# llama_ftype of each quantized output (llama.h)
QUANT_FTYPES = {"Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15}
ALL_TYPES = ["F16", "Q8_0", "Q4_0", "Q4_K_M"]

DEFAULT_OUT = common.cache_path("bench")


def build_vocab():
    """(tokens, scores, token_types) of N_VOCAB SentencePiece-style pieces."""
    TT = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TT.UNKNOWN, TT.CONTROL, TT.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TT.BYTE] * 256
    sp = mtm.SPIECE
    pieces = [sp] + list(string.ascii_lowercase) + [".", ",", "\n"]
    seen = set(pieces)

    def add(p):
        if p not in seen and len(tokens) + len(pieces) < N_VOCAB:
            seen.add(p)
            pieces.append(p)

    for w in mtm._WORDS:
        full = sp + w
        for k in range(2, len(full) + 1):
            add(full[:k])
    letters = string.ascii_lowercase
    for k in (2, 3):
        for combo in itertools.product(letters, repeat=k):
            s = "".join(combo)
            add(s)
            add(sp + s)
    assert len(tokens) + len(pieces) == N_VOCAB, len(tokens) + len(pieces)
    scores = [0.0] * len(tokens)
    for i, p in enumerate(pieces):
        tokens.append(p)
        types.append(TT.NORMAL)
        scores.append(float(-1000 + 10 * len(p) - i * 1e-4))  # longer pieces win
    return tokens, scores, [int(t) for t in types]


def f16_weight(name, rows, cols, sd):
    rng = mtm._rng("bench", name)
    return rng.standard_normal(size=(rows, cols), dtype=np.float32).__imul__(sd).astype(np.float16)


def write_f16(path, n_layer):
    w = gguf.GGUFWriter(path, "llama", use_temp_file=False)
    w.add_name("llmfile bench tinyllama-shape random")
    w.add_file_type(1)  # MOSTLY_F16
    w.add_context_length(2048)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD_DIM)
    tokens, scores, ttypes = build_vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(ttypes)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    kv_dim = N_HEAD_KV * HEAD_DIM
    sd_in, sd_ff = 1.0 / np.sqrt(N_EMBD), 1.0 / np.sqrt(N_FF)
    w.add_tensor("token_embd.weight", f16_weight("token_embd", N_VOCAB, N_EMBD, 1.0))
    w.add_tensor("output_norm.weight", mtm.norm_weight(N_EMBD, mtm._rng("bench", "output_norm")))
    w.add_tensor("output.weight", f16_weight("output", N_VOCAB, N_EMBD, 2.0 * sd_in))
    for il in range(n_layer):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", mtm.norm_weight(N_EMBD, mtm._rng("bench", p + "an")))
        w.add_tensor(p + "attn_q.weight", f16_weight(p + "q", N_EMBD, N_EMBD, 2.0 * sd_in))
        w.add_tensor(p + "attn_k.weight", f16_weight(p + "k", kv_dim, N_EMBD, 2.0 * sd_in))
        w.add_tensor(p + "attn_v.weight", f16_weight(p + "v", kv_dim, N_EMBD, sd_in))
        w.add_tensor(p + "attn_output.weight", f16_weight(p + "o", N_EMBD, N_EMBD, 0.5 * sd_in))
        w.add_tensor(p + "ffn_norm.weight", mtm.norm_weight(N_EMBD, mtm._rng("bench", p + "fn")))
        w.add_tensor(p + "ffn_gate.weight", f16_weight(p + "gate", N_FF, N_EMBD, sd_in))
        w.add_tensor(p + "ffn_up.weight", f16_weight(p + "up", N_FF, N_EMBD, sd_in))
        w.add_tensor(p + "ffn_down.weight", f16_weight(p + "down", N_EMBD, N_FF, 0.5 * sd_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def quantize(src, dst, ftype, threads):
    import llama_cpp as L
    params = L.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    rc = L.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"make_bench_models: llama_model_quantize({dst}) failed ({rc})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--types", default=",".join(ALL_TYPES))
    ap.add_argument("--layers", type=int, default=N_LAYER)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    types = [t.strip() for t in a.types.split(",") if t.strip()]
    bad = [t for t in types if t not in ALL_TYPES]
    if bad:
        ap.error(f"unknown type(s) {', '.join(bad)} (known: {', '.join(ALL_TYPES)})")
    os.makedirs(a.outdir, exist_ok=True)
    suffix = "" if a.layers == N_LAYER else f"-{a.layers}l"
    path = lambda t: os.path.join(a.outdir, f"tinyllama{suffix}-{t}.gguf")
    f16 = path("F16")
    if a.force or not os.path.exists(f16):
        t0 = time.time()
        write_f16(f16 + ".tmp", a.layers)
        os.replace(f16 + ".tmp", f16)
        print(f"wrote {f16} ({os.path.getsize(f16) / 1e9:.2f} GB, {time.time() - t0:.0f} s)")
    for t in types:
        if t == "F16":
            continue
        out = path(t)
        if not a.force and os.path.exists(out):
            continue
        t0 = time.time()
        quantize(f16, out + ".tmp", QUANT_FTYPES[t], a.threads)
        os.replace(out + ".tmp", out)
        print(f"wrote {out} ({os.path.getsize(out) / 1e9:.2f} GB, {time.time() - t0:.0f} s)")
    for t in types:
        print(path(t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
