#!/usr/bin/env python3
"""Write small random-weight GGUF models, one per (variant, weight type).

Usage:
    tools/make_test_models.py OUTDIR [--only NAME[,NAME...]] [--list] [--check]

    OUTDIR          where <variant>-<TYPE>.gguf files go (created if missing)
    --only          comma-separated model names (e.g. llama-Q4_K,gemma3-F16)
                    or variant names (e.g. qwen3) to restrict the output
    --list          print the model names and exit
    --check         after writing, dequantize every tensor with gguf.quants and
                    print per-model weight statistics (slow-ish, debugging aid)

Everything is deterministic: numpy's default_rng seeded from a CRC of
(variant, type, tensor name), and gguf.GGUFWriter writes the bytes in a fixed
order, so the same gguf-py version reproduces byte-identical files (the logit
goldens store the sha256 of each model file to catch drift).

Quantized tensors are not produced by quantizing floats: they are random
*valid* block bytes built directly with numpy (random quants, fp16 scales and,
for the K-quants, 6-bit/4-bit sub-block scales chosen so that the dequantized
weights have roughly the intended standard deviation and, for types with a
min/offset, roughly zero mean). So no quantizer is needed anywhere.

Variants (all n_embd 256, SentencePiece-style vocab of 384 tokens):
    llama     2 layers, 4 heads / 2 KV heads, head_dim 64, n_ff 256,
              separate output.weight, rope "normal" (GPT-J style pairs)
    qwen2     like llama plus attn_q/k/v biases, rope neox
    qwen3     2 layers, 4 heads / 1 KV head, head_dim 128 (!= n_embd/n_head),
              attn_q_norm/attn_k_norm, separate output.weight, rope neox
    gemma3    2 layers, 4 heads / 1 KV head, head_dim 128, sliding window 8,
              gemma3.attention.sliding_window_pattern = 2 (uint32): layer 0 is
              sliding (rope base gemma3.rope.freq_base_swa = 20000), layer 1 is
              global (rope base 1e6); output tied to token_embd
    gemma3l6  gemma3 with 6 layers, n_ff 512, 4/2 heads, head_dim 64 and NO
              sliding_window_pattern / freq_base_swa keys, i.e. llama.cpp's
              defaults: pattern 6 (layers 0-4 sliding, layer 5 global) and
              sliding-layer rope base 10000. Only Q8_0 (keeps the size down).

Weight types: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K
(all 2-D weights incl. token_embd/output in that type; norms and biases F32).
53 models, about 66 MB in all, written in about a second.

Scales: weights ~N(0, sd) with sd 0.1 for q/k (attention scores with sd ~2.5),
1/sqrt(fan_in) for the FFN, 0.25 for output.weight (logits sd ~4); q/k norm
weights ~1.5; gemma3's tied token_embd is small (sd 0.05) with output_norm ~4 and
post-attention/post-FFN norms ~4, so that the sqrt(n_embd)-scaled input
embedding does not dominate the residual (otherwise every position's top-1
would simply be its own input token).

Vocab (384 tokens, tokenizer.ggml.model "llama"): llama/qwen use <unk>=0 <s>=1
</s>=2, gemma3 uses Gemma's <pad>=0 </s>=1 <s>=2 <unk>=3 and add_space_prefix
false; then the 256 <0xNN> byte tokens, then '\u2581', a-z, '.', ',', '\n' and
English words with all their prefixes (so SentencePiece merges reach them).
"""
from __future__ import annotations

import argparse
import os
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError:  # pragma: no cover
    sys.exit("make_test_models: the 'gguf' Python package is required (pip install gguf)")

QK_K = 256

WEIGHT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# llama_ftype values (general.file_type); informational only
FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
             "Q2_K": 10, "Q3_K": 11, "Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "BF16": 32}


@dataclass
class Variant:
    name: str
    arch: str
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_base: float
    types: list = field(default_factory=lambda: list(WEIGHT_TYPES))
    n_embd: int = 256
    n_ctx_train: int = 2048
    qkv_bias: bool = False
    qk_norm: bool = False
    gemma: bool = False            # post norms, tied output, gemma token ids
    sliding_window: int = 0
    swa_pattern: int | None = None  # written as uint32 key when not None
    rope_base_swa: float | None = None
    write_rope_dim: bool = False
    # standard deviations of the random weights (see module doc)
    sd_embd: float = 1.0
    sd_out: float = 0.25
    sd_qk: float = 0.1
    sd_vo: float = 0.0625


VARIANTS = [
    Variant("llama", "llama", n_layer=2, n_ff=256, n_head=4, n_head_kv=2, head_dim=64,
            rms_eps=1e-5, rope_base=10000.0, write_rope_dim=True),
    Variant("qwen2", "qwen2", n_layer=2, n_ff=256, n_head=4, n_head_kv=2, head_dim=64,
            rms_eps=1e-6, rope_base=1000000.0, qkv_bias=True),
    Variant("qwen3", "qwen3", n_layer=2, n_ff=256, n_head=4, n_head_kv=1, head_dim=128,
            rms_eps=1e-6, rope_base=1000000.0, qk_norm=True),
    Variant("gemma3", "gemma3", n_layer=2, n_ff=256, n_head=4, n_head_kv=1, head_dim=128,
            rms_eps=1e-6, rope_base=1000000.0, qk_norm=True, gemma=True,
            sliding_window=8, swa_pattern=2, rope_base_swa=20000.0, sd_embd=0.05),
    Variant("gemma3l6", "gemma3", n_layer=6, n_ff=512, n_head=4, n_head_kv=2, head_dim=64,
            rms_eps=1e-6, rope_base=1000000.0, qk_norm=True, gemma=True,
            sliding_window=8, sd_embd=0.05, types=["Q8_0"]),
]

VOCAB_SIZE = 384


def all_models():
    """[(model_name, Variant, weight_type)] in a fixed order."""
    return [(f"{v.name}-{t}", v, t) for v in VARIANTS for t in v.types]


# ----------------------------------------------------------------------------
# vocabulary (SentencePiece style, tokenizer.ggml.model = "llama")

_WORDS = ("the of and to in is it that was for on are with as his they be at one have "
          "this from or had by word but what some we can out other were all there when "
          "up use your how said an each she which do their time if will way about many "
          "then them write would like so these her long make thing see him two has look "
          "more day could go come did number sound no most people my over know water "
          "than call first who may down side been now find any new work part take get "
          "place made live where after back little only round man year came show every "
          "good me give our under name very through just form sentence great think say "
          "help low line differ turn cause much mean before move right boy old too same "
          "tell does set three want air well also play small end put home read hand port "
          "large spell add even land here must big high such follow act why ask men change "
          "went light kind off need house picture try us again animal point mother world").split()

SPIECE = "\u2581"  # '▁'


def build_vocab(gemma: bool):
    """Return (tokens, scores, token_types, special_ids)."""
    TT = gguf.TokenType
    if gemma:
        # Gemma layout: <pad>=0 <eos>=1 <bos>=2 <unk>=3
        head = [("<pad>", TT.CONTROL), ("</s>", TT.CONTROL), ("<s>", TT.CONTROL), ("<unk>", TT.UNKNOWN)]
        special = dict(pad=0, eos=1, bos=2, unk=3)
    else:
        head = [("<unk>", TT.UNKNOWN), ("<s>", TT.CONTROL), ("</s>", TT.CONTROL)]
        special = dict(unk=0, bos=1, eos=2)
    tokens = [t for t, _ in head]
    types = [tt for _, tt in head]
    scores = [0.0] * len(head)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(TT.BYTE)
        scores.append(0.0)
    # pieces: '▁', lowercase letters, then words with all their prefixes (so every
    # piece is reachable by SentencePiece's pairwise merges)
    pieces = [SPIECE] + [chr(c) for c in range(ord('a'), ord('z') + 1)] + [".", ",", "\n"]
    seen = set(pieces)
    for w in _WORDS:
        full = SPIECE + w
        for k in range(2, len(full) + 1):
            p = full[:k]
            if p not in seen:
                seen.add(p)
                pieces.append(p)
    n_free = VOCAB_SIZE - len(tokens)
    pieces = pieces[:n_free]
    assert len(pieces) == n_free, "not enough pieces for the vocab"
    for i, p in enumerate(pieces):
        tokens.append(p)
        types.append(TT.NORMAL)
        # longer pieces score higher so whole words win; ties broken by order
        scores.append(float(-1000 + 10 * len(p) - i * 1e-3))
    return tokens, scores, [int(t) for t in types], special


# ----------------------------------------------------------------------------
# random tensors

def _rng(*parts: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(parts).encode()))


def _f16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def _jitter(rng, n):
    """Per-block scale multipliers around 1 (log-normal)."""
    return np.exp(rng.normal(0.0, 0.3, size=n)).astype(np.float32)


def _pack_k4_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Pack 8 six-bit scales and 8 six-bit mins per block into 12 bytes (Q4_K/Q5_K)."""
    sc = sc.astype(np.uint8)
    mn = mn.astype(np.uint8)
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (mn[:, 0:4] & 63) | ((mn[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    return out


def _centered_mins(rng, sc: np.ndarray, ratio: float, hi: int) -> np.ndarray:
    """Mins close to sc*ratio (so the sub-block mean is ~0), with jitter, in [0, hi]."""
    m = np.rint(sc * ratio + rng.integers(-2, 3, size=sc.shape))
    return np.clip(m, 0, hi).astype(np.uint8)


def random_blocks(qtype: str, n_blocks: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """n_blocks random valid blocks of qtype as uint8 [n_blocks, type_size]."""
    u8 = lambda n: rng.integers(0, 256, size=(n_blocks, n), dtype=np.uint8)
    jit = _jitter(rng, n_blocks)
    f16b = lambda v: _f16(v).reshape(n_blocks, 1).view(np.uint8)

    if qtype == "Q8_0":        # d, qs[32] int8 (-127..127, as ggml's quantizer)
        qs = rng.integers(-127, 128, size=(n_blocks, 32)).astype(np.int8).view(np.uint8)
        d = sd / 73.3 * jit
        return np.concatenate([f16b(d), qs], axis=1)
    if qtype == "Q4_0":        # d, qs[16]            x = d*(q-8)
        d = sd / 4.61 * jit
        return np.concatenate([f16b(d), u8(16)], axis=1)
    if qtype == "Q4_1":        # d, m, qs[16]         x = d*q + m
        d = sd / 4.61 * jit
        m = -7.5 * d * (1.0 + rng.normal(0, 0.05, n_blocks))
        return np.concatenate([f16b(d), f16b(m), u8(16)], axis=1)
    if qtype == "Q5_0":        # d, qh[4], qs[16]     x = d*(q-16)
        d = sd / 9.23 * jit
        return np.concatenate([f16b(d), u8(4), u8(16)], axis=1)
    if qtype == "Q5_1":        # d, m, qh[4], qs[16]  x = d*q + m
        d = sd / 9.23 * jit
        m = -15.5 * d * (1.0 + rng.normal(0, 0.05, n_blocks))
        return np.concatenate([f16b(d), f16b(m), u8(4), u8(16)], axis=1)
    if qtype == "Q2_K":        # scales[16], qs[64], d, dmin   x = d*(s&15)*q - dmin*(s>>4)
        sc = rng.integers(0, 16, size=(n_blocks, 16))
        mn = np.clip(sc + rng.integers(-1, 2, size=sc.shape), 0, 15)  # dmin = 1.5*d centres
        scales = (sc | (mn << 4)).astype(np.uint8)
        d = sd / 10.0 * jit
        return np.concatenate([scales, u8(64), f16b(d), f16b(1.5 * d)], axis=1)
    if qtype == "Q3_K":        # hmask[32], qs[64], scales[12], d   x = d*(s-32)*q3
        d = sd / 43.0 * jit
        return np.concatenate([u8(32), u8(64), u8(12), f16b(d)], axis=1)
    if qtype == "Q4_K":        # d, dmin, scales[12], qs[128]  x = d*s*q - dmin*m
        sc = rng.integers(0, 64, size=(n_blocks, 8))
        mn = _centered_mins(rng, sc, 0.95, 63)
        d = sd / 168.0 * jit
        dmin = d * 7.5 / 0.95
        return np.concatenate([f16b(d), f16b(dmin), _pack_k4_scales(sc, mn), u8(128)], axis=1)
    if qtype == "Q5_K":        # d, dmin, scales[12], qh[32], qs[128]
        sc = rng.integers(0, 64, size=(n_blocks, 8))
        mn = _centered_mins(rng, sc, 0.95, 63)
        d = sd / 336.0 * jit
        dmin = d * 15.5 / 0.95
        return np.concatenate([f16b(d), f16b(dmin), _pack_k4_scales(sc, mn), u8(32), u8(128)], axis=1)
    if qtype == "Q6_K":        # ql[128], qh[64], scales[16] int8, d   x = d*s*(q-32)
        d = sd / 1367.0 * jit
        return np.concatenate([u8(128), u8(64), u8(16), f16b(d)], axis=1)
    raise ValueError(qtype)


def weight_tensor(wtype: str, rows: int, cols: int, sd: float, rng: np.random.Generator):
    """Return (array, raw_dtype) for GGUFWriter.add_tensor; numpy shape is [rows][cols]
    with cols = ggml ne0 (the input dimension)."""
    if wtype in ("F32", "F16", "BF16"):
        x = rng.normal(0.0, sd, size=(rows, cols)).astype(np.float32)
        if wtype == "F32":
            return x, None
        if wtype == "F16":
            return x.astype(np.float16), None
        u = x.view(np.uint32).astype(np.uint64)
        bf = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
        return bf, QT.BF16
    qt = QT[wtype]
    bsz, tsz = gguf.GGML_QUANT_SIZES[qt]
    if cols % bsz:
        raise ValueError(f"row length {cols} is not a multiple of {wtype} block size {bsz}")
    nb = cols // bsz
    blocks = random_blocks(wtype, rows * nb, sd, rng)
    assert blocks.shape[1] == tsz, (wtype, blocks.shape, tsz)
    return np.ascontiguousarray(blocks.reshape(rows, nb * tsz)), qt


def norm_weight(n: int, rng, mean=1.0, sd=0.1) -> np.ndarray:
    return rng.normal(mean, sd, size=n).astype(np.float32)


# ----------------------------------------------------------------------------

def write_model(path: str, v: Variant, wtype: str) -> None:
    arch = v.arch
    w = gguf.GGUFWriter(path, arch, use_temp_file=False)
    name = f"{v.name}-{wtype}"
    w.add_name(f"llmfile test {name}")
    w.add_file_type(FILE_TYPE[wtype])
    if wtype.startswith("Q"):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    n_embd, hd = v.n_embd, v.head_dim
    q_dim, kv_dim = v.n_head * hd, v.n_head_kv * hd
    w.add_context_length(v.n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(v.n_layer)
    w.add_feed_forward_length(v.n_ff)
    w.add_head_count(v.n_head)
    w.add_head_count_kv(v.n_head_kv)
    w.add_layer_norm_rms_eps(v.rms_eps)
    w.add_rope_freq_base(v.rope_base)
    w.add_key_length(hd)
    w.add_value_length(hd)
    if v.write_rope_dim:
        w.add_rope_dimension_count(hd)
    if v.sliding_window:
        w.add_sliding_window(v.sliding_window)
    if v.swa_pattern is not None:
        w.add_uint32(f"{arch}.attention.sliding_window_pattern", v.swa_pattern)
    if v.rope_base_swa is not None:
        w.add_float32(f"{arch}.rope.freq_base_swa", v.rope_base_swa)

    tokens, scores, ttypes, sp = build_vocab(v.gemma)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(ttypes)
    w.add_bos_token_id(sp["bos"])
    w.add_eos_token_id(sp["eos"])
    w.add_unk_token_id(sp["unk"])
    if "pad" in sp:
        w.add_pad_token_id(sp["pad"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if v.gemma:
        w.add_add_space_prefix(False)

    def R(tname):
        return _rng(v.name, wtype, tname)

    def add_w(tname, rows, cols, sd):
        arr, raw = weight_tensor(wtype, rows, cols, sd, R(tname))
        w.add_tensor(tname, arr, raw_dtype=raw)

    def add_f32(tname, arr):
        w.add_tensor(tname, np.ascontiguousarray(arr, dtype=np.float32))

    sd_in = 1.0 / np.sqrt(n_embd)
    add_w("token_embd.weight", VOCAB_SIZE, n_embd, v.sd_embd)
    # gemma ties the output to token_embd: a larger output norm spreads the logits,
    # and large post-norm weights (below) keep the residual from being dominated
    # by the (sqrt(n_embd)-scaled) input embedding, which would make every
    # position's top-1 simply its own input token.
    add_f32("output_norm.weight", norm_weight(n_embd, R("output_norm"), 4.0 if v.gemma else 1.0,
                                              0.4 if v.gemma else 0.1))
    if not v.gemma:
        add_w("output.weight", VOCAB_SIZE, n_embd, v.sd_out)
    for il in range(v.n_layer):
        p = f"blk.{il}."
        add_f32(p + "attn_norm.weight", norm_weight(n_embd, R(p + "attn_norm")))
        add_w(p + "attn_q.weight", q_dim, n_embd, v.sd_qk)
        add_w(p + "attn_k.weight", kv_dim, n_embd, v.sd_qk)
        add_w(p + "attn_v.weight", kv_dim, n_embd, v.sd_vo)
        if v.qkv_bias:
            add_f32(p + "attn_q.bias", R(p + "bq").normal(0, 0.3, q_dim))
            add_f32(p + "attn_k.bias", R(p + "bk").normal(0, 0.3, kv_dim))
            add_f32(p + "attn_v.bias", R(p + "bv").normal(0, 0.3, kv_dim))
        if v.qk_norm:
            # mean 1.5: after q/k RMS-norm this gives attention scores with std ~2
            add_f32(p + "attn_q_norm.weight", norm_weight(hd, R(p + "qn"), 1.5, 0.3))
            add_f32(p + "attn_k_norm.weight", norm_weight(hd, R(p + "kn"), 1.5, 0.3))
        add_w(p + "attn_output.weight", n_embd, q_dim, v.sd_vo * np.sqrt(256.0 / q_dim))
        if v.gemma:
            add_f32(p + "post_attention_norm.weight", norm_weight(n_embd, R(p + "pan"), 4.0, 0.5))
        add_f32(p + "ffn_norm.weight", norm_weight(n_embd, R(p + "ffn_norm")))
        add_w(p + "ffn_gate.weight", v.n_ff, n_embd, sd_in)
        add_w(p + "ffn_up.weight", v.n_ff, n_embd, sd_in)
        add_w(p + "ffn_down.weight", n_embd, v.n_ff, 1.0 / np.sqrt(v.n_ff))
        if v.gemma:
            add_f32(p + "post_ffw_norm.weight", norm_weight(n_embd, R(p + "pfn"), 4.0, 0.5))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


def select(only: str | None):
    models = all_models()
    if not only:
        return models
    want = set(s.strip() for s in only.split(",") if s.strip())
    sel = [m for m in models if m[0] in want or m[1].name in want]
    unknown = want - {m[0] for m in sel} - {m[1].name for m in sel}
    if unknown:
        raise SystemExit(f"make_test_models: unknown model(s): {', '.join(sorted(unknown))}")
    return sel


def build(outdir: str, only: str | None = None, quiet: bool = True):
    """Write the selected models into outdir; return [(name, path)]."""
    os.makedirs(outdir, exist_ok=True)
    out = []
    for name, v, t in select(only):
        path = os.path.join(outdir, name + ".gguf")
        write_model(path, v, t)
        if not quiet:
            print(f"{os.path.getsize(path):>10}  {path}")
        out.append((name, path))
    return out


def check(path: str) -> str:
    r = gguf.GGUFReader(path)
    parts = []
    for t in r.tensors:
        if len(t.shape) < 2:
            continue
        x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64)
        parts.append(f"{t.name}: mean {x.mean():+.4f} sd {x.std():.4f}")
    return "\n    ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--only")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        for name, _, _ in select(a.only):
            print(name)
        return 0
    if not a.outdir:
        ap.error("OUTDIR is required")
    res = build(a.outdir, a.only, quiet=False)
    total = sum(os.path.getsize(p) for _, p in res)
    print(f"{len(res)} models, {total / 1e6:.1f} MB in {a.outdir}")
    if a.check:
        for name, p in res:
            print(f"{name}:\n    {check(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
