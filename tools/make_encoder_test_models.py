#!/usr/bin/env python3
"""Write small random-weight encoder GGUF models (bert, nomic-bert) for the embedding tests.

Usage:
    tools/make_encoder_test_models.py OUTDIR [--only NAME[,NAME...]] [--list]

Models (n_embd 128, 4 heads of 32, n_ff 256, 2 layers, WordPiece vocabulary of
about 1000 pieces: [PAD] [UNK] [CLS] [SEP] [MASK], single characters as word
starts and "##" continuations, and common English words):
    bert-F32        separate attn_q/k/v with biases, position_embd (512), token_types,
                    GELU FFN with biases, pooling mean
    bert-Q8_0       the same with Q8_0 matrices (token_embd and positions F32)
    nomic-bert-F16  fused attn_qkv, no position embeddings (RoPE NEOX, base 1000),
                    SwiGLU FFN (ffn_gate, ffn_up, ffn_down, no biases), pooling cls

Deterministic: numpy default_rng seeded from a CRC of (model, tensor), so the
same gguf-py writes byte-identical files (the goldens record each sha256).
"""
from __future__ import annotations

import argparse
import os
import sys
import zlib

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("make_encoder_test_models: the 'gguf' Python package is required")

N_EMBD, N_HEAD, N_FF, N_LAYER, N_CTX = 128, 4, 256, 2, 512
MODELS = {"bert-F32": ("bert", "F32"), "bert-Q8_0": ("bert", "Q8_0"), "nomic-bert-F16": ("nomic-bert", "F16")}

WORDS = ("the of and to in is it that was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him "
         "two has look more day could go come did number sound no most people my over know water than call "
         "first who may down side been now find any new work part take get place made live where after back "
         "little only round man year came show every good me give our under name very through just form "
         "sentence great think say help low line differ turn cause much mean before move right boy old too "
         "same tell does set three want air well also play small end put home read hand port large spell add "
         "even land here must big high such follow act why ask men change went light kind off need house "
         "picture try us again animal point mother world hello test quick brown fox jumps lazy dog text "
         "vector search question answer meaning close together").split()


def vocabulary():
    TT = gguf.TokenType
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    types = [TT.CONTROL] * 5
    chars = [chr(c) for c in range(0x21, 0x7F)]
    pieces = ["\u2581" + c for c in chars] + chars + ["\u2581" + w for w in WORDS]
    for p in dict.fromkeys(pieces):  # unique, in order
        tokens.append(p)
        types.append(TT.NORMAL)
    return tokens, [int(t) for t in types]


def rng(model, name):
    return np.random.default_rng(zlib.crc32(f"{model}/{name}".encode()))


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Rows of float32 -> Q8_0 bytes [rows][cols/32*34], as ggml's reference quantizer."""
    rows, cols = x.shape
    b = x.reshape(rows, cols // 32, 32)
    amax = np.abs(b).max(-1, keepdims=True)
    d = (amax / 127.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.rint(b * inv).astype(np.int8)
    out = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(rows, cols // 32, 2),
                          q.view(np.uint8)], axis=-1)
    return np.ascontiguousarray(out.reshape(rows, cols // 32 * 34))


def write_model(path: str, name: str) -> None:
    arch, wtype = MODELS[name]
    nomic = arch == "nomic-bert"
    w = gguf.GGUFWriter(path, arch, use_temp_file=False)
    w.add_name(f"llmfile test {name}")
    w.add_context_length(2048 if nomic else N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.CLS if nomic else gguf.PoolingType.MEAN)
    if nomic:
        w.add_rope_freq_base(1000.0)
    tokens, types = vocabulary()
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    for key, tid in (("bos", 2), ("eos", 3), ("unknown", 1), ("seperator", 3), ("padding", 0), ("cls", 2),
                     ("mask", 4)):
        w.add_uint32(f"tokenizer.ggml.{key}_token_id", tid)

    def mat(tname, rows, cols, sd):
        x = rng(name, tname).normal(0, sd, size=(rows, cols)).astype(np.float32)
        if wtype == "F16":
            w.add_tensor(tname, x.astype(np.float16))
        elif wtype == "Q8_0":
            w.add_tensor(tname, quantize_q8_0(x), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(tname, x)

    def vec(tname, n, mean, sd):
        w.add_tensor(tname, (mean + rng(name, tname).normal(0, sd, size=n)).astype(np.float32))

    e = N_EMBD
    w.add_tensor("token_embd.weight", rng(name, "tok").normal(0, 1, size=(len(tokens), e)).astype(np.float32))
    w.add_tensor("token_types.weight", rng(name, "types").normal(0, 0.1, size=(2, e)).astype(np.float32))
    if not nomic:
        w.add_tensor("position_embd.weight", rng(name, "pos").normal(0, 0.3, size=(N_CTX, e)).astype(np.float32))
    vec("token_embd_norm.weight", e, 1.0, 0.1)
    vec("token_embd_norm.bias", e, 0.0, 0.1)
    for il in range(N_LAYER):
        p = f"blk.{il}."
        if nomic:
            mat(p + "attn_qkv.weight", 3 * e, e, 0.15)
        else:
            for t in ("q", "k", "v"):
                mat(p + f"attn_{t}.weight", e, e, 0.15)
                vec(p + f"attn_{t}.bias", e, 0.0, 0.1)
        mat(p + "attn_output.weight", e, e, 1 / np.sqrt(e))
        if not nomic:
            vec(p + "attn_output.bias", e, 0.0, 0.1)
        vec(p + "attn_output_norm.weight", e, 1.0, 0.1)
        vec(p + "attn_output_norm.bias", e, 0.0, 0.1)
        if nomic:
            mat(p + "ffn_gate.weight", N_FF, e, 1 / np.sqrt(e))
        mat(p + "ffn_up.weight", N_FF, e, 1 / np.sqrt(e))
        mat(p + "ffn_down.weight", e, N_FF, 1 / np.sqrt(N_FF))
        if not nomic:
            vec(p + "ffn_up.bias", N_FF, 0.0, 0.1)
            vec(p + "ffn_down.bias", e, 0.0, 0.1)
        vec(p + "layer_output_norm.weight", e, 1.0, 0.1)
        vec(p + "layer_output_norm.bias", e, 0.0, 0.1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--only")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    names = list(MODELS) if not args.only else args.only.split(",")
    if args.list:
        print("\n".join(names))
        return
    if not args.outdir:
        ap.error("OUTDIR is required")
    os.makedirs(args.outdir, exist_ok=True)
    for n in names:
        if n not in MODELS:
            sys.exit(f"unknown model {n} (known: {', '.join(MODELS)})")
        write_model(os.path.join(args.outdir, n + ".gguf"), n)


if __name__ == "__main__":
    main()
