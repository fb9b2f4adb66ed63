#!/usr/bin/env python3
"""Generate golden files for tests/quant/test_quant.c from the `gguf` Python
package (an implementation of ggml's formats independent of ours).

For every weight type, "<type>.deq.bin" holds a few rows of random but valid
block bytes and gguf.quants.dequantize()'s float32 output for them. For the
types gguf can quantize, "<type>.qnt.bin" holds random float32 rows (with some
edge-case blocks) and gguf.quants.quantize()'s bytes for them.

File format (all little-endian):
    char     magic[4] = "LLQG"
    uint32   version  = 1
    uint32   kind     (0: dequantize golden, 1: quantize golden)
    uint32   type     (GGUF type id)
    uint32   n_rows
    uint32   n_per_row (values per row)
    uint32   row_bytes
    kind 0:  uint8 blocks[n_rows*row_bytes], then float32 values[n_rows*n_per_row]
    kind 1:  float32 values[n_rows*n_per_row], then uint8 blocks[n_rows*row_bytes]

Usage: python3 tools/gen_quant_goldens.py [outdir]   (default tests/data/quant)
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

MAGIC = b"LLQG"
VERSION = 1
N_ROWS = 4


def write_golden(path, kind, qtype, n_per_row, blocks, values):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    assert n_per_row % block_elems == 0
    row_bytes = n_per_row // block_elems * block_bytes
    blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
    values = np.ascontiguousarray(values, dtype="<f4")
    assert blocks.size == N_ROWS * row_bytes, (qtype, blocks.size)
    assert values.size == N_ROWS * n_per_row, (qtype, values.size)
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<6I", VERSION, kind, int(qtype), N_ROWS, n_per_row, row_bytes))
        if kind == 0:
            f.write(blocks.tobytes())
            f.write(values.tobytes())
        else:
            f.write(values.tobytes())
            f.write(blocks.tobytes())


def fp16_bytes(v):
    return np.array(v, dtype="<f2").view(np.uint8)


def random_scales(rng, n, lo, hi, signed=True):
    """Random fp16 scales with magnitude log-uniform in [lo, hi]."""
    mag = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    if signed:
        mag *= rng.choice([-1.0, 1.0], n)
    return mag.astype(np.float16)


# Byte offsets of the fp16 scale fields inside each block, and the range of
# magnitudes to draw for each (mins may be larger than deltas).
SCALE_FIELDS = {
    T.Q4_0: [(0, 1e-3, 5e-2)],
    T.Q4_1: [(0, 1e-3, 5e-2), (2, 1e-2, 1.0)],
    T.Q5_0: [(0, 1e-3, 5e-2)],
    T.Q5_1: [(0, 1e-3, 5e-2), (2, 1e-2, 1.0)],
    T.Q8_0: [(0, 1e-4, 1e-2)],
    T.Q2_K: [(80, 1e-4, 1e-2), (82, 1e-4, 1e-2)],
    T.Q3_K: [(108, 1e-4, 1e-2)],
    T.Q4_K: [(0, 1e-4, 1e-2), (2, 1e-4, 1e-2)],
    T.Q5_K: [(0, 1e-4, 1e-2), (2, 1e-4, 1e-2)],
    T.Q6_K: [(208, 1e-4, 1e-2)],
}


def random_blocks(rng, qtype, n_per_row):
    """Random valid bytes for N_ROWS rows: random quants, finite fp16 scales."""
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = N_ROWS * n_per_row // block_elems
    if qtype == T.F32:
        v = rng.standard_normal(N_ROWS * n_per_row).astype(np.float32)
        v[:8] = [0.0, -0.0, 1e-40, -3e-39, 3e38, -1.5, 65504.0, 1.0]  # zeros, subnormals, big
        return v.view(np.uint8)
    if qtype in (T.F16, T.BF16):
        bits = rng.integers(0, 1 << 16, N_ROWS * n_per_row, dtype=np.uint32).astype(np.uint16)
        exp_all_ones = 0x7C00 if qtype == T.F16 else 0x7F80
        bits[(bits & exp_all_ones) == exp_all_ones] &= np.uint16(~0x4000 & 0xFFFF)  # no inf/NaN
        bits[:4] = [0x0000, 0x8000, 0x0001, 0x8001]  # +-0 and the smallest subnormals
        return bits.view(np.uint8)
    blocks = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint16).astype(np.uint8)
    for off, lo, hi in SCALE_FIELDS[qtype]:
        blocks[:, off:off + 2] = fp16_bytes(random_scales(rng, n_blocks, lo, hi)).reshape(n_blocks, 2)
    # Edge cases in the first blocks: a zero scale and a subnormal scale.
    off0 = SCALE_FIELDS[qtype][0][0]
    blocks[0, off0:off0 + 2] = [0, 0]
    blocks[1, off0:off0 + 2] = [0x01, 0x80]  # -smallest subnormal
    return blocks.reshape(-1)


def random_values(rng, n_per_row, block_elems):
    """Float rows for quantize goldens: normal values with a per-block scale,
    plus blocks that exercise ties, zeros, constants and outliers."""
    v = rng.standard_normal(N_ROWS * n_per_row).astype(np.float32)
    blocks = v.reshape(-1, block_elems)
    blocks *= np.exp(rng.uniform(-6, 3, (blocks.shape[0], 1))).astype(np.float32)
    blocks[0] = 0.0                                        # all zero
    blocks[1] = 0.75                                       # constant
    blocks[2, :] = rng.integers(-8, 8, block_elems)        # small integers: many ties
    blocks[3, 5] = 1000.0                                  # one outlier
    blocks[4, :] = np.linspace(-1, 1, block_elems)         # +-max both present
    blocks[5, 3], blocks[5, 7] = -2.5, 2.5                 # positive/negative max tie
    return v


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "quant")
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(20240611)

    deq_types = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                 T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
    for qtype in deq_types:
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        n_per_row = 1024 if block_elems == 256 else 256
        raw = random_blocks(rng, qtype, n_per_row)
        rows = raw.reshape(N_ROWS, -1)
        values = quants.dequantize(rows, qtype)
        values = np.asarray(values, dtype=np.float32).reshape(N_ROWS, n_per_row)
        write_golden(os.path.join(outdir, qtype.name.lower() + ".deq.bin"), 0, qtype, n_per_row, raw, values)

    quant_types = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
    for qtype in quant_types:
        n_per_row = 256
        values = random_values(rng, n_per_row, 32).reshape(N_ROWS, n_per_row)
        out = quants.quantize(values, qtype)
        out = np.ascontiguousarray(out).view(np.uint8).reshape(-1)
        write_golden(os.path.join(outdir, qtype.name.lower() + ".qnt.bin"), 1, qtype, n_per_row, out, values)


if __name__ == "__main__":
    main()
