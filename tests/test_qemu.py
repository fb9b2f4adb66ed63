"""The whole program on older and other CPUs, under qemu user-mode emulation.

x86-64: each CPU model must pick the level the dispatch table promises, and a short
sampled generation must be byte-identical to the native run capped at that level
(the same kernels run the same instructions, so any difference means an
instruction the emulated CPU lacks ran somewhere, or dispatch went wrong).
ARM64 (static cross build, `make arm64`): each CPU picks its level, the kernel unit
tests (dots and GEMM tiles) pass there, ARMv8.6's smmla tiles give the dotprod tiles'
bits, and the real default model's greedy tokens equal llama.cpp's.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT
from test_generate import GOLDEN, default_model

QEMU_X86 = shutil.which("qemu-x86_64")
QEMU_ARM = shutil.which("qemu-aarch64")
ARM_BUILD = BUILD / "arm64"

# CPU model -> the level issue 4's table assigns it.
X86_CPUS = {
    "Opteron_G1": "sse2",    # K8
    "Opteron_G3": "sse2",    # Barcelona: SSE4a but no SSSE3
    "Conroe": "ssse3",       # Core 2
    "Nehalem": "sse42",
    "Westmere": "sse42",
    "SandyBridge": "avx",
    "Haswell": "avx2",
}
ARM_CPUS = {"cortex-a53": "armv8.0", "cortex-a76": "armv8.2", "max": "armv8.6"}
ARM_KERNEL_NAMES = {"armv8.0": "armv8_0", "armv8.2": "armv8_2_dotprod", "armv8.6": "armv8_6_i8mm"}

# Sampling at a high temperature with a fixed seed makes random-weight models produce
# varied tokens, so the comparison covers many logits, not a repeated token.
SAMPLED = ["-p", "hello world", "-n", "24", "--temp", "1.5", "--top-k", "0", "--top-p", "1",
           "--min-p", "0", "-s", "7", "-t", "2"]
MODELS = ["llama-Q8_0", "qwen3-Q4_0", "gemma3-Q6_K", "qwen2-F16", "llama-Q4_K"]

needs_qemu_x86 = pytest.mark.skipif(QEMU_X86 is None, reason="qemu-user not installed")
needs_qemu_arm = pytest.mark.skipif(QEMU_ARM is None or not (ARM_BUILD / "llmfile").exists(),
                                    reason="qemu-aarch64 or the arm64 build missing")


@pytest.fixture(scope="module")
def test_models():
    out = BUILD / "testmodels"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_test_models.py"), str(out)],
                   check=True, capture_output=True)
    return out


def run(cmd, timeout=300):
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout)


def chosen_level(proc):
    for line in proc.stdout.decode().splitlines():
        if line.startswith("chosen: "):
            return line.split()[1]
    raise AssertionError(proc.stdout.decode() + proc.stderr.decode())


@needs_qemu_x86
@pytest.mark.parametrize("cpu,level", X86_CPUS.items())
def test_x86_cpu_picks_its_level(llmfile, cpu, level):
    proc = run([QEMU_X86, "-cpu", cpu, llmfile, "--cpu-info"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert chosen_level(proc) == level


@needs_qemu_x86
@pytest.mark.parametrize("cpu,level", X86_CPUS.items())
def test_x86_cpu_generates_like_native(llmfile, test_models, cpu, level):
    for name in MODELS:
        model = test_models / f"{name}.gguf"
        emulated = run([QEMU_X86, "-cpu", cpu, llmfile, "-m", model, *SAMPLED])
        native = run([llmfile, "-m", model, *SAMPLED, "--cpu-level", level])
        assert emulated.returncode == 0, emulated.stderr.decode()
        assert native.returncode == 0, native.stderr.decode()
        assert f"{level} kernels".encode() in emulated.stderr, emulated.stderr.decode()
        assert len(emulated.stdout) > len("hello world")
        assert emulated.stdout == native.stdout, (name, emulated.stdout, native.stdout)


@needs_qemu_arm
@pytest.mark.parametrize("cpu,level", ARM_CPUS.items())
def test_arm_cpu_picks_its_level(cpu, level):
    proc = run([QEMU_ARM, "-cpu", cpu, ARM_BUILD / "llmfile", "--cpu-info"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert chosen_level(proc) == level


@needs_qemu_arm
@pytest.mark.parametrize("cpu", ARM_CPUS)
def test_arm_kernels_match_reference(cpu):
    proc = run([QEMU_ARM, "-cpu", cpu, ARM_BUILD / "tests" / "kern" / "test_levels"], timeout=600)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()
    assert b" 0 failed" in proc.stdout


@needs_qemu_arm
def test_arm_gemm_matches_reference():
    # The GEMM tiles on NEON (ARMv8.2 dotprod and up): "max" has every ARM level, and
    # test_gemm checks each against the reference (ARMv8.0 has no tiles: dots only).
    proc = run([QEMU_ARM, "-cpu", "max", ARM_BUILD / "tests" / "kern" / "test_gemm"], timeout=600)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()
    out = proc.stdout.decode()
    assert "armv8.2 (11 types with a GEMM kernel)" in out and "armv8.6 (11 types with a GEMM kernel)" in out, out
    assert " 0 failed" in out


@needs_qemu_arm
def test_arm_thread_pool_hand_overs():
    # 300000 short jobs across spinning and sleeping threads: a lost wake-up hangs
    # (test_pool's alarm ends it). qemu-aarch64 does not keep seq_cst's store-load
    # order on this host, which once hung pool_run here.
    proc = subprocess.run([QEMU_ARM, "-cpu", "max", str(ARM_BUILD / "tests" / "base" / "test_pool")],
                          capture_output=True, timeout=300, env=dict(os.environ, TEST_POOL_JOBS="300000"))
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()
    assert b" 0 failed" in proc.stdout


@needs_qemu_arm
def test_arm_i8mm_tiles_give_the_dotprod_bits(test_models):
    # ARMv8.6's smmla tiles do the dotprod tiles' float operations in their order on
    # exact integer sums, so a prompt's embedding (its rows through the GEMM) is the
    # same to the bit at either level, for every integer type with a tile.
    prompt = "the quick brown fox jumps over the lazy dog by the river bank at noon"
    for name in ["Q8_0", "Q4_0", "Q5_0", "Q4_1", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]:
        model = test_models / f"llama-{name}.gguf"
        out = {}
        for level in ["armv8.2", "armv8.6"]:
            proc = run([QEMU_ARM, "-cpu", "max", ARM_BUILD / "llmfile", "-m", model, "--embedding", "-p", prompt,
                        "-t", "2", "--cpu-level", level])
            assert proc.returncode == 0, proc.stderr.decode()
            assert f"{ARM_KERNEL_NAMES[level]} kernels".encode() in proc.stderr, proc.stderr.decode()
            out[level] = proc.stdout
        assert len(json.loads(out["armv8.6"])) > 0
        assert out["armv8.6"] == out["armv8.2"], name


@needs_qemu_arm
@pytest.mark.parametrize("cpu,level", ARM_CPUS.items())
def test_arm_cpu_greedy_matches_llamacpp(llmfile, cpu, level):
    # "1, 2, 3, 4, 5," continues with llama.cpp's top token ahead by >= 2.9 logits at
    # each of the first steps: no near-tie, so every correct kernel gives these tokens.
    case = next(c for c in GOLDEN["cases"] if c["prompt"] == "1, 2, 3, 4, 5,")
    n = 6
    assert min(case["top1_margin"][:n]) > 1.0
    expect = run([llmfile, "--detokenize", "-p", json.dumps(case["tokens"][:n])])
    assert expect.returncode == 0
    proc = run([QEMU_ARM, "-cpu", cpu, ARM_BUILD / "llmfile", "-m", default_model(), "-p", case["prompt"],
                "-n", str(n), "--temp", "0", "-t", "2"], timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"{ARM_KERNEL_NAMES[level]} kernels".encode() in proc.stderr, proc.stderr.decode()
    assert proc.stdout.rstrip(b"\n") == (case["prompt"] + expect.stdout.decode().rstrip("\n")).encode()


@needs_qemu_x86
def test_conroe_embedding_equals_native(llmfile):
    # Issue 4: an SSSE3-only CPU (Core 2) embeds correctly; the run reports its speed.
    model = default_model().parent / "minilm.gguf"
    assert model.exists(), f"{model} missing: run tools/setup_embedding_model.sh"
    text = "The quick brown fox jumps over the lazy dog."
    emulated = run([QEMU_X86, "-cpu", "Conroe", llmfile, "--embedding", "-m", model, "-p", text])
    native = run([llmfile, "--embedding", "-m", model, "-p", text])
    assert emulated.returncode == 0 and native.returncode == 0, emulated.stderr.decode() + native.stderr.decode()
    err = emulated.stderr.decode()
    assert "ssse3 kernels" in err and " tok/s" in err, err
    print("Conroe (emulated):", err.strip())
    a, b = json.loads(emulated.stdout), json.loads(native.stdout)
    assert len(a) == len(b) == 384
    dot = sum(x * y for x, y in zip(a, b))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    assert dot / norm >= 0.9999
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3
