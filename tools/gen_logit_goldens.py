#!/usr/bin/env python3
"""Record llama.cpp's logits for the random test models (tools/make_test_models.py).

Usage:
    tools/gen_logit_goldens.py [--out DIR] [--only NAMES] [--keep-models DIR]

    --out          output folder (default tests/data/goldens/logits)
    --only         comma-separated model or variant names (see make_test_models.py --list)
    --keep-models  write the models there instead of a temporary folder

Needs llama-cpp-python (import llama_cpp), numpy and gguf.

For each model, three kinds of file (all in the format below):

  <name>.bin      llama.cpp, the fixed sequence of N_TOKENS tokens (BOS + fixed
                  ids) decoded in ONE batch with logits at every position
                  (n_ctx 64, n_batch = n_ubatch = 64, 2 threads, flash attention
                  disabled, KV cache F16, default CPU backend incl. weight repacking)
  <name>.seq.bin  llama.cpp, the same sequence decoded one token per llama_decode
                  call (the generation path); only for weight types in SEQ_TYPES
  <name>.ref.bin  exact math: this script's numpy float64 forward pass on the
                  dequantized weights (no activation quantization, f32 KV cache,
                  exact tanh-GELU), stored as float32

llama.cpp quantizes matmul activations (to Q8_0/Q8_1 for the legacy quants,
Q8_K for the K-quants, F16/BF16 for F16/BF16 weights), so for quantized models
its logits sit noticeably away from exact math (manifest.json records
max|llama.cpp - ref| per model): use .ref.bin for tight checks of an engine that
keeps activations in float, and .bin/.seq.bin with a tolerance of that order.

File format (little-endian):
    offset  size        field
    0       4           magic b"LFLG"
    4       4  u32      version = 1
    8       4  u32      n_tokens
    12      4  u32      n_vocab
    16      4  u32      flags: bit 0 = sequential (one token per decode; else one
                        batch), bit 1 = exact-math reference (not llama.cpp)
    20      32          sha256 digest (raw bytes) of the model .gguf the logits came from
    52      4*n_tokens  i32 token ids (position i holds token i)
    ...     4*n_tokens*n_vocab  f32 logits[n_tokens][n_vocab]
                        (row i: logits after seeing tokens 0..i)

Also writes manifest.json (generator versions, per-model sha256, tokens,
llama.cpp-vs-reference and batch-vs-sequential differences, top-1 margins) and README.md (this format).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import struct
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_test_models as mtm  # noqa: E402

REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "goldens", "logits")

MAGIC = b"LFLG"
VERSION = 1
FLAG_SEQ = 1
FLAG_REF = 2
HEADER = struct.Struct("<4sIIII32s")   # 52 bytes

N_TOKENS = 24
SEQ_TYPES = {"F32", "Q8_0", "Q4_K"}    # which weight types also get a .seq.bin
N_THREADS = 2
N_CTX = 64


def fixed_tokens(bos: int, n: int = N_TOKENS):
    """BOS followed by n-1 fixed ids in [4, VOCAB_SIZE) (never a control token in
    either vocab layout of make_test_models)."""
    rng = np.random.default_rng(1234)
    return [int(bos)] + [int(t) for t in rng.integers(4, mtm.VOCAB_SIZE, size=n - 1)]


def sha256_file(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def write_golden(path, tokens, logits, model_sha: bytes, flags: int):
    logits = np.ascontiguousarray(logits, dtype="<f4")
    n_tokens, n_vocab = logits.shape
    assert len(tokens) == n_tokens and len(model_sha) == 32
    with open(path, "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, n_tokens, n_vocab, flags, model_sha))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.tobytes())


def read_golden(path):
    """-> dict(tokens=int32[n], logits=float32[n][vocab], sha256=hex str, seq=bool, ref=bool)"""
    with open(path, "rb") as f:
        data = f.read()
    magic, ver, n, nv, flags, sha = HEADER.unpack_from(data, 0)
    if magic != MAGIC or ver != VERSION:
        raise ValueError(f"{path}: not a v{VERSION} logit golden")
    off = HEADER.size
    toks = np.frombuffer(data, "<i4", n, off)
    off += 4 * n
    logits = np.frombuffer(data, "<f4", n * nv, off).reshape(n, nv)
    if off + 4 * n * nv != len(data):
        raise ValueError(f"{path}: size mismatch")
    return dict(tokens=toks, logits=logits, sha256=sha.hex(), seq=bool(flags & FLAG_SEQ),
                ref=bool(flags & FLAG_REF))


# ----------------------------------------------------------------------------
# exact-math reference (numpy, float64): the same forward pass on the
# dequantized weights, without llama.cpp's activation quantization (Q8_0/Q8_1/
# Q8_K/F16 activations in its matmuls), F16 KV cache or GELU lookup table.

def _field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def _rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x, pos, base, neox):
    """x [n_tok][n_head][d]; neox rotates (i, i+d/2), normal rotates (2i, 2i+1)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., :d // 2], x[..., d // 2:]
        return np.concatenate([a * c - b * s, a * s + b * c], -1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_logits(path, tokens):
    """float64 logits [n_tokens][n_vocab] for llama/qwen2/qwen3/gemma3 GGUFs as
    written by make_test_models.py (one sequence, positions 0..n-1)."""
    import gguf
    r = gguf.GGUFReader(path)
    W = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = tuple(int(v) for v in reversed(t.shape.tolist()))
        W[t.name] = np.asarray(x, dtype=np.float64).reshape(shape)
    arch = _field(r, "general.architecture")
    K = lambda k, d=None: _field(r, f"{arch}.{k}", d)  # noqa: E731
    n_embd, n_layer = K("embedding_length"), K("block_count")
    n_head, n_kv = K("attention.head_count"), K("attention.head_count_kv")
    hd = K("attention.key_length", n_embd // n_head)
    eps, base = K("attention.layer_norm_rms_epsilon"), K("rope.freq_base", 10000.0)
    gemma = arch == "gemma3"
    neox = arch in ("qwen2", "qwen3", "gemma3")
    n_swa = K("attention.sliding_window", 0) if gemma else 0
    pattern = K("attention.sliding_window_pattern", 6)
    base_swa = K("rope.freq_base_swa", 10000.0)
    toks = np.asarray(tokens)
    n = len(toks)
    pos = np.arange(n)
    E = W["token_embd.weight"]
    x = E[toks].copy()
    if gemma:
        x *= np.sqrt(float(n_embd))
    g = n_head // n_kv
    for il in range(n_layer):
        p = f"blk.{il}."
        is_swa = bool(n_swa) and (il % pattern < pattern - 1)
        h = _rmsnorm(x, W[p + "attn_norm.weight"], eps)
        q, k, v = (h @ W[p + f"attn_{m}.weight"].T for m in "qkv")
        if p + "attn_q.bias" in W:
            q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
        q, k, v = q.reshape(n, n_head, hd), k.reshape(n, n_kv, hd), v.reshape(n, n_kv, hd)
        if p + "attn_q_norm.weight" in W:
            q = _rmsnorm(q, W[p + "attn_q_norm.weight"], eps)
            k = _rmsnorm(k, W[p + "attn_k_norm.weight"], eps)
        b = base_swa if is_swa else base
        q, k = _rope(q, pos, b, neox) / np.sqrt(hd), _rope(k, pos, b, neox)
        mask = pos[None, :] > pos[:, None]
        if is_swa:
            mask |= (pos[:, None] - pos[None, :]) >= n_swa
        att = np.empty((n, n_head, hd))
        for hh in range(n_head):
            sc = q[:, hh, :] @ k[:, hh // g, :].T
            sc[mask] = -np.inf
            sc = np.exp(sc - sc.max(1, keepdims=True))
            att[:, hh, :] = (sc / sc.sum(1, keepdims=True)) @ v[:, hh // g, :]
        o = att.reshape(n, n_head * hd) @ W[p + "attn_output.weight"].T
        if gemma:
            o = _rmsnorm(o, W[p + "post_attention_norm.weight"], eps)
        x = x + o
        h = _rmsnorm(x, W[p + "ffn_norm.weight"], eps)
        gt, up = h @ W[p + "ffn_gate.weight"].T, h @ W[p + "ffn_up.weight"].T
        a = _gelu_tanh(gt) if gemma else gt / (1 + np.exp(-gt))
        f = (a * up) @ W[p + "ffn_down.weight"].T
        if gemma:
            f = _rmsnorm(f, W[p + "post_ffw_norm.weight"], eps)
        x = x + f
    x = _rmsnorm(x, W["output_norm.weight"], eps)
    return x @ W.get("output.weight", E).T


# ----------------------------------------------------------------------------
# thin llama.cpp wrapper (low-level API of llama-cpp-python)

class LlamaCpp:
    """One model + one context, exact control over the context parameters."""

    _log_cb = None

    def __init__(self, path: str, n_ctx: int = N_CTX, n_batch: int = N_CTX,
                 n_threads: int = N_THREADS, quiet: bool = True):
        import llama_cpp as L
        self.L = L
        if quiet and LlamaCpp._log_cb is None:
            LlamaCpp._log_cb = L.llama_log_callback(lambda level, text, ud: None)
            L.llama_log_set(LlamaCpp._log_cb, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp failed to load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.type_k = L.GGML_TYPE_F16
        cp.type_v = L.GGML_TYPE_F16
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp failed to create a context")
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.n_batch = n_batch

    def close(self):
        L = self.L
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    @property
    def bos(self) -> int:
        return self.L.llama_vocab_bos(self.vocab)

    @property
    def eos(self) -> int:
        return self.L.llama_vocab_eos(self.vocab)

    def reset(self):
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def decode(self, tokens, pos0: int, all_logits: bool):
        """Decode tokens at positions pos0.. in one llama_decode call; return the
        logits rows [n][n_vocab] (all positions, or only the last one)."""
        n = len(tokens)
        assert 0 < n <= self.n_batch
        b = self.batch
        b.n_tokens = n
        for i, t in enumerate(tokens):
            b.token[i] = int(t)
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if (all_logits or i == n - 1) else 0
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        rows = range(n) if all_logits else [n - 1]
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        for k, i in enumerate(rows):
            p = self.L.llama_get_logits_ith(self.ctx, i)
            out[k] = np.ctypeslib.as_array(p, shape=(self.n_vocab,))
        return out

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False):
        L = self.L
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return [buf[i] for i in range(n)]

    def piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self.L.llama_token_to_piece(self.vocab, tok, buf, 256, 0, False)
        return buf.raw[:max(n, 0)]


def versions():
    import llama_cpp
    import gguf
    sysinfo = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "gguf_py": getattr(gguf, "__version__", None) or _pkg_version("gguf"),
        "numpy": np.__version__,
        "system_info": sysinfo.decode() if isinstance(sysinfo, bytes) else str(sysinfo),
    }


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


def margins(logits):
    s = np.sort(logits, axis=1)
    return s[:, -1] - s[:, -2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only")
    ap.add_argument("--keep-models")
    a = ap.parse_args(argv)

    os.makedirs(a.out, exist_ok=True)
    tmp = None
    mdir = a.keep_models
    if not mdir:
        tmp = tempfile.TemporaryDirectory(prefix="llmfile-models-")
        mdir = tmp.name
    models = mtm.build(mdir, a.only)
    manifest = {"generator": "tools/gen_logit_goldens.py", "n_tokens": N_TOKENS,
                "llama_cpp_context": {"n_ctx": N_CTX, "n_batch": N_CTX, "n_ubatch": N_CTX,
                                      "n_threads": N_THREADS, "flash_attn": False,
                                      "type_k": "f16", "type_v": "f16"},
                "versions": versions(), "models": {}}
    for name, path in models:
        t = name.split("-", 1)[1]
        sha = sha256_file(path)
        with LlamaCpp(path) as lc:
            toks = fixed_tokens(lc.bos)
            lc.reset()
            lb = lc.decode(toks, 0, all_logits=True)
            write_golden(os.path.join(a.out, name + ".bin"), toks, lb, sha, 0)
            entry = {"sha256": sha.hex(), "n_vocab": int(lc.n_vocab), "tokens": toks,
                     "argmax": [int(i) for i in lb.argmax(1)],
                     "logit_sd_mean": float(lb.std(1).mean()),
                     "top1_margin_min": float(margins(lb).min()),
                     "top1_margin_median": float(np.median(margins(lb)))}
            if t in SEQ_TYPES:
                lc.reset()
                ls = np.concatenate([lc.decode([tok], i, all_logits=True) for i, tok in enumerate(toks)])
                write_golden(os.path.join(a.out, name + ".seq.bin"), toks, ls, sha, FLAG_SEQ)
                entry["batch_vs_seq_max_abs_diff"] = float(np.abs(lb - ls).max())
                entry["seq_vs_ref_max_abs_diff"] = None  # filled below
        if not np.isfinite(lb).all():
            raise SystemExit(f"{name}: non-finite logits from llama.cpp")
        lr = reference_logits(path, toks)
        write_golden(os.path.join(a.out, name + ".ref.bin"), toks, lr, sha, FLAG_REF)
        entry["batch_vs_ref_max_abs_diff"] = float(np.abs(lb - lr).max())
        entry["batch_vs_ref_rms_diff"] = float(np.sqrt(((lb - lr) ** 2).mean()))
        entry["argmax_agree_batch_vs_ref"] = float((lb.argmax(1) == lr.argmax(1)).mean())
        if "seq_vs_ref_max_abs_diff" in entry:
            entry["seq_vs_ref_max_abs_diff"] = float(np.abs(ls - lr).max())
        manifest["models"][name] = entry
        extra = f"  vs ref max|d| {entry['batch_vs_ref_max_abs_diff']:.2e}"
        if "batch_vs_seq_max_abs_diff" in entry:
            extra += f"  batch/seq max|d| {entry['batch_vs_seq_max_abs_diff']:.2e}"
        print(f"{name:16s} sd {entry['logit_sd_mean']:.2f}  margin min {entry['top1_margin_min']:.3f} "
              f"median {entry['top1_margin_median']:.3f}{extra}")
    if not a.only:
        with open(os.path.join(a.out, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        with open(os.path.join(a.out, "README.md"), "w") as f:
            f.write("# llama.cpp logit goldens for the random test models\n\n"
                    "Generated by `python3 tools/gen_logit_goldens.py` (models from "
                    "`tools/make_test_models.py`). See manifest.json for versions.\n\n```\n"
                    + __doc__[__doc__.index("For each model"):] + "```\n")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
