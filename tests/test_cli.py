"""The command line: help, version, flag errors, bad model files, context limits."""
import os
import re
import subprocess

import pytest

from conftest import BUILD, ROOT

VOCAB = ROOT.parent / "shared" / "testdata" / "vocab" / "ggml-vocab-llama-spm.gguf"


def run(llmfile, *args, **kw):
    return subprocess.run([str(llmfile), *args], capture_output=True, text=True, timeout=120, **kw)


def test_help_lists_every_flag(llmfile):
    proc = run(llmfile, "--help")
    assert proc.returncode == 0
    for flag in ["-m", "-p", "-f", "-n", "-c", "-t", "--temp", "--top-k", "--top-p", "--min-p",
                 "--repeat-penalty", "--seed", "--version", "--tokenize", "--detokenize", "--cpu-level",
                 "--cpu-info", "--mmap"]:
        assert f" {flag}" in proc.stdout, flag


def test_version(llmfile):
    proc = run(llmfile, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("llmfile ")
    assert "chosen:" in proc.stdout


@pytest.mark.parametrize("args,expect", [
    (["--bogus"], "unknown option '--bogus'"),
    (["-n"], "-n needs a value"),
    (["-n", "ten"], "-n expects an integer"),
    (["-t", "0"], "-t expects an integer in [1,"),
    (["--temp", "-1"], "--temp expects a number"),
    (["--top-p", "nan"], "--top-p expects a number"),
    (["-c", "99999999999"], "-c expects an integer"),
    (["--cpu-level", "pentium"], "unknown CPU level 'pentium'"),
    (["-m", "/nonexistent/model.gguf", "-p", "hi"], "/nonexistent/model.gguf"),
    (["-p", "a", "-f", "b"], "either -p or -f"),
])
def test_bad_flags_give_one_clear_line(llmfile, args, expect):
    proc = run(llmfile, *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmfile: error: "), proc.stderr
    assert expect in lines[0], lines[0]


def test_truncated_model_is_a_clean_error(llmfile, tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(VOCAB.read_bytes()[:5000])
    proc = run(llmfile, "-m", str(bad), "-p", "hi")
    assert proc.returncode != 0
    assert "cut.gguf" in proc.stderr and "llmfile: error:" in proc.stderr


def test_vocab_only_file_cannot_generate(llmfile):
    proc = run(llmfile, "-m", str(VOCAB), "-p", "hi")
    assert proc.returncode != 0
    assert "token_embd.weight" in proc.stderr or "missing" in proc.stderr


def test_missing_default_model_says_how_to_get_it(llmfile, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("LLMFILE_MODEL", None)
    proc = run(llmfile, "-p", "hi", env=env)
    assert proc.returncode != 0
    assert "make model" in proc.stderr


def test_prompt_file_missing(llmfile):
    proc = run(llmfile, "-m", str(VOCAB), "-f", "/nonexistent/prompt.txt")
    assert proc.returncode != 0 and "/nonexistent/prompt.txt" in proc.stderr


VOCAB_DIR = ROOT.parent / "shared" / "testdata" / "vocab"
SEPARATOR = "\n__ggml_vocab_test__\n"


@pytest.mark.skipif(not VOCAB_DIR.exists(), reason="../shared/testdata/vocab not present")
@pytest.mark.parametrize("vocab", ["llama-spm", "phi-3", "gpt-2", "mpt", "deepseek-coder", "bert-bge"])
def test_tokenize_ids_mode_matches_conformance(llmfile, vocab):
    path = VOCAB_DIR / f"ggml-vocab-{vocab}.gguf"
    inputs = path.with_suffix(".gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
    outputs = path.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    for text, expected in list(zip(inputs, outputs))[:12]:
        if not text:
            continue  # an empty -p is a different mode (nothing to tokenize)
        proc = run(llmfile, "--tokenize", "--ids", "--no-bos", "-m", str(path), "-p", text)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[" + ", ".join(expected.split()) + "]", repr(text)


def test_detokenize_round_trip(llmfile):
    path = VOCAB_DIR / "ggml-vocab-gpt-2.gguf"
    text = "Hello, wörld! 123 \u4e16\u754c"
    ids = run(llmfile, "--tokenize", "--ids", "--no-bos", "-m", str(path), "-p", text).stdout.strip()
    proc = run(llmfile, "--detokenize", "-m", str(path), "-p", ids)
    assert proc.returncode == 0 and proc.stdout == text + "\n"


def test_unknown_pre_tokenizer_is_an_error_unless_allowed(llmfile, tmp_path):
    data = (VOCAB_DIR / "ggml-vocab-gpt-2.gguf").read_bytes()
    key = b"tokenizer.ggml.pre"
    at = data.index(key) + len(key) + 4 + 8  # value type (u32), string length (u64)
    assert data[at:at + 5] == b"gpt-2"
    bogus = tmp_path / "bogus-pre.gguf"
    bogus.write_bytes(data[:at] + b"zzz-9" + data[at + 5:])
    proc = run(llmfile, "--tokenize", "-m", str(bogus), "-p", "hi")
    assert proc.returncode != 0 and "zzz-9" in proc.stderr
    proc = run(llmfile, "--tokenize", "--allow-unknown-pre", "--ids", "--no-bos", "-m", str(bogus), "-p", "hi")
    assert proc.returncode == 0 and proc.stdout.strip() == "[5303]"


def default_model():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return os.path.join(cache, "llmfile", "default.gguf")


def run_on_terminal(llmfile, *args):
    """Runs llmfile with stderr on a pseudo-terminal; returns (exit code, stderr text)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(llmfile), *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_load_shows_a_bar_on_a_terminal_only(llmfile):
    model = default_model()
    assert os.path.exists(model), f"{model} missing: run `make model`"
    rc, err = run_on_terminal(llmfile, "-m", model, "-p", "Hello", "-n", "1", "--temp", "0")
    assert rc == 0, err
    name = os.path.basename(model)
    assert f"loading {name}: copying 100% [####################]" in err, err[-500:]
    percents = [int(p) for p in re.findall(r"copying +(\d+)%", err)]
    assert percents == sorted(percents) and len(percents) >= 2, percents
    if "arranging" in err:  # AVX-512 levels rearrange the copy's rows
        assert "arranging 100%" in err
    # the bar is erased before the timings line
    assert re.search(r"\r\x1b\[Kllmfile: load ", err), err[-300:]
    # not a terminal: no bar, no escape codes
    proc = run(llmfile, "-m", model, "-p", "Hello", "-n", "1", "--temp", "0")
    assert proc.returncode == 0 and "loading" not in proc.stderr and "\x1b" not in proc.stderr, proc.stderr
    # --mmap: nothing to copy, so no bar either (and none on a terminal)
    rc, err = run_on_terminal(llmfile, "--mmap", "-m", model, "-p", "Hello", "-n", "1", "--temp", "0")
    assert rc == 0 and "copying" not in err and "arranging" not in err, err
