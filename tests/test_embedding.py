"""Embeddings against llama.cpp's: the CLI (`--embedding`) and the engine API
(tests/runtime/check_embed, plain and under ASan/UBSan) on all-MiniLM-L6-v2
converted to a bert GGUF (tools/setup_embedding_model.sh), on random encoder
models (bert, nomic-bert: tools/make_encoder_test_models.py) and on random
decoder models (tools/make_test_models.py). Goldens: tests/data/goldens/embed-*.json,
written by tools/gen_embedding_goldens.py with llama-cpp-python."""
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import BUILD, ROOT

GOLDENS = ROOT / "tests" / "data" / "goldens"
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmfile")
MINILM = os.path.join(CACHE, "minilm.gguf")
CHECK = BUILD / "tests" / "runtime" / "check_embed"
SAN_CHECK = BUILD / "san-tests" / "runtime" / "check_embed"
ENCODERS = ["bert-F32", "bert-Q8_0", "nomic-bert-F16"]
DECODERS = ["gemma3-F16", "llama-Q8_0"]
RANDOM = ENCODERS + DECODERS

# Cosine and max |ours - llama.cpp| over the normalised vector's components.
# Measured: MiniLM (F16 weights) >= 0.9999997 and <= 1.2e-4 (F16 activation
# rounding and the half-table GELU flip differently in the last bit); gemma3-F16
# <= 7e-5, bert-F32 <= 1e-5, nomic-bert-F16 <= 1e-4; Q8_0 models (Q8_0
# activations: a last-bit difference flips a quant now and then) up to 1.9e-3.
# On CPUs with AVX-512 FP16 the F16 GEMM keeps fp16 sums over 16 products
# (src/kern/impl/gemm_f16h.inc): MiniLM <= 3.8e-4 (cos >= 0.999998), gemma3-F16
# <= 7e-4, nomic-bert-F16 <= 1.4e-3 (cos >= 0.99998).
# A wrong pooling, a missing bias or a causal mask costs far more (cos < 0.99).
MIN_COS = 0.9999
MAX_DIFF = {"minilm": 1e-3, "gemma3-F16": 1e-3, "llama-Q8_0": 5e-3, "bert-F32": 1e-3, "bert-Q8_0": 5e-3,
            "nomic-bert-F16": 2e-3}


def load(name):
    with open(GOLDENS / f"embed-{name}.json", encoding="utf-8") as f:
        return json.load(f)


def compare(ours, golden, name, what):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(golden, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: {ours.shape} values, llama.cpp {ref.shape}"
    assert abs(np.linalg.norm(ours) - 1) < 1e-5, f"{what}: not normalised (|v| = {np.linalg.norm(ours)})"
    cos = float(ours @ ref / np.linalg.norm(ref))
    diff = float(np.abs(ours - ref).max())
    assert cos >= MIN_COS and diff <= MAX_DIFF[name], f"{what}: cosine {cos:.9f}, max diff {diff:.3g}"


@pytest.fixture(scope="session")
def minilm():
    assert os.path.isfile(MINILM), f"{MINILM} missing: run tools/setup_embedding_model.sh (make test does)"
    return MINILM


@pytest.fixture(scope="session")
def random_models():
    out = BUILD / "testmodels"
    for tool, names in (("make_test_models.py", DECODERS), ("make_encoder_test_models.py", ENCODERS)):
        subprocess.run([sys.executable, str(ROOT / "tools" / tool), str(out), "--only", ",".join(names)],
                       check=True, capture_output=True)
    for name in RANDOM:
        digest = hashlib.sha256((out / f"{name}.gguf").read_bytes()).hexdigest()
        assert digest == load(name)["model_sha256"], \
            f"{name}.gguf differs from the model the golden was made from: rerun tools/gen_embedding_goldens.py"
    return out


def model_path(name, minilm, random_models):
    return minilm if name == "minilm" else str(random_models / f"{name}.gguf")


def run(llmfile, *args):
    return subprocess.run([str(llmfile), *args], capture_output=True, text=True, timeout=120)


CASES = [(name, case) for name in ["minilm", *RANDOM] for case in load(name)["cases"]]


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{c['pooling']}-{c['name']}" for n, c in CASES])
def test_cli_embedding_matches_llamacpp(llmfile, minilm, random_models, name, case):
    args = ["-m", model_path(name, minilm, random_models), "--embedding", "-p", case["text"], "-t", "2"]
    if case["pooling"] != "model":
        args += ["--pooling", case["pooling"]]
    proc = run(llmfile, *args)
    assert proc.returncode == 0, proc.stderr
    compare(json.loads(proc.stdout), case["embedding"], name, f"{name} {case['name']} ({case['pooling']})")
    # The timing line, and as many tokens as llama.cpp made of the text (our tokenizer agrees).
    m = re.search(r"^llmfile: (\d+) tokens, [0-9.]+ tok/s", proc.stderr, re.M)
    assert m, proc.stderr
    assert int(m.group(1)) == len(case["tokens"]), proc.stderr


def engine_batches(name):
    """(pooling, cases) groups of a golden, each embedded in one engine_embed_batch call."""
    groups = {}
    for case in load(name)["cases"]:
        groups.setdefault(case["pooling"], []).append(case)
    return [(name, pooling, cases) for pooling, cases in groups.items()]


def run_check(binary, model, cases, pooling, n_seq_max, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(" ".join(map(str, c["tokens"])) + "\n" for c in cases))
    proc = subprocess.run([str(binary), model, str(tokens), "default" if pooling == "model" else pooling,
                           str(n_seq_max)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [list(map(float, line.split())) for line in proc.stdout.splitlines()]
    assert len(rows) == len(cases), proc.stdout[:200] + proc.stderr
    return rows


@pytest.mark.parametrize("name,pooling,cases", [b for n in ["minilm", *RANDOM] for b in engine_batches(n)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_engine_batch_matches_llamacpp(minilm, random_models, tmp_path, name, pooling, cases):
    """All texts in one engine_embed_batch call (several sequences per forward pass;
    a decoder with 4 cache sequences), each also alone: same vectors, llama.cpp's."""
    rows = run_check(CHECK, model_path(name, minilm, random_models), cases, pooling, 4, tmp_path)
    for row, case in zip(rows, cases):
        compare(row, case["embedding"], name, f"{name} {case['name']} ({pooling}, batched)")


@pytest.mark.parametrize("name", ["minilm", "nomic-bert-F16", "gemma3-F16"])
def test_engine_batch_under_sanitizers(minilm, random_models, tmp_path, name):
    golden = load(name)["cases"]
    pooling = golden[0]["pooling"]  # the golden's default: "model" (the file's) or "mean" (decoders)
    cases = [c for c in golden if c["pooling"] == pooling and len(c["tokens"]) < 120]
    rows = run_check(SAN_CHECK, model_path(name, minilm, random_models), cases, pooling, 3, tmp_path)
    for row, case in zip(rows, cases):
        compare(row, case["embedding"], name, f"{name} {case['name']} (ASan build)")


def test_converted_minilm_is_what_llamacpp_expects(minilm):
    gguf = pytest.importorskip("gguf")
    r = gguf.GGUFReader(minilm)
    kv = {k: f.contents() for k, f in r.fields.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")}
    assert kv["general.architecture"] == "bert"
    assert kv["bert.pooling_type"] == 1 and kv["bert.attention.causal"] is False
    assert (kv["bert.embedding_length"], kv["bert.block_count"], kv["bert.attention.head_count"]) == (384, 6, 12)
    assert kv["tokenizer.ggml.model"] == "bert" and kv["tokenizer.ggml.cls_token_id"] == 101
    assert kv["tokenizer.ggml.bos_token_id"] == 101 and kv["tokenizer.ggml.seperator_token_id"] == 102
    names = {t.name: t for t in r.tensors}
    assert names["token_embd.weight"].tensor_type.name == "F16"
    assert names["position_embd.weight"].tensor_type.name == "F32"
    assert "blk.5.layer_output_norm.bias" in names and len(names) == 5 + 6 * 16


def test_help_mentions_embedding(llmfile):
    proc = run(llmfile, "--help")
    assert " --embedding" in proc.stdout and " --pooling" in proc.stdout


@pytest.mark.parametrize("args,expect", [
    (["--pooling", "mean", "-p", "x"], "--pooling needs --embedding"),
    (["--embedding", "--pooling", "max", "-p", "x"], "--pooling expects mean, cls or last, got 'max'"),
    (["--embedding", "--tokenize", "-p", "x"], "--embedding cannot be combined with --tokenize"),
])
def test_bad_embedding_flags(llmfile, minilm, args, expect):
    proc = run(llmfile, "-m", minilm, *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmfile: error: ") and expect in lines[0], proc.stderr


def test_encoder_cannot_generate(llmfile, minilm):
    proc = run(llmfile, "-m", minilm, "-p", "hello")
    assert proc.returncode != 0 and "use --embedding" in proc.stderr and "bert" in proc.stderr, proc.stderr


def test_input_longer_than_positions(llmfile, minilm):
    proc = run(llmfile, "-m", minilm, "--embedding", "-p", "word " * 600)
    assert proc.returncode != 0
    assert "602 tokens, more than the 512" in proc.stderr, proc.stderr


def test_context_beyond_positions(llmfile, minilm):
    proc = run(llmfile, "-m", minilm, "--embedding", "-p", "hi", "-c", "1024")
    assert proc.returncode != 0 and "exceeds the 512 positions" in proc.stderr, proc.stderr


@pytest.mark.parametrize("tensor", ["blk.3.ffn_up.weight", "token_embd_norm.bias", "position_embd.weight"])
def test_missing_tensor_is_a_clear_error(llmfile, minilm, tmp_path, tensor):
    # Rename the tensor in the header (same length keeps the file valid): it is then missing.
    data = open(minilm, "rb").read()
    name = tensor.encode()
    assert data.count(name) == 1
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data.replace(name, name[:-1] + b"X"))
    proc = run(llmfile, "-m", str(broken), "--embedding", "-p", "hello")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"missing tensor '{tensor}'" in lines[0] and "broken.gguf" in lines[0], proc.stderr


def test_wrong_tensor_shape_is_a_clear_error(llmfile, minilm, tmp_path):
    # Layer 0's attn_q renamed away and its ffn_up ([1536][384]) named attn_q instead ([384][384] expected).
    data = open(minilm, "rb").read()
    broken = tmp_path / "shape.gguf"
    broken.write_bytes(data.replace(b"blk.0.attn_q.weight", b"blk.0.attn_Q.weight")
                       .replace(b"blk.0.ffn_up.weight", b"blk.0.attn_q.weight"))
    proc = run(llmfile, "-m", str(broken), "--embedding", "-p", "hello")
    assert proc.returncode != 0 and "tensor 'blk.0.attn_q.weight' has shape" in proc.stderr, proc.stderr
