"""`llmfile bench`: the llama-bench-like speed tool (output formats, combinations, errors).
Speeds themselves are measured in bench/, never asserted here."""
import csv
import io
import json
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT


@pytest.fixture(scope="module")
def tiny_models():
    out = BUILD / "testmodels"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_test_models.py"), str(out)],
                   check=True, capture_output=True)
    return [out / "llama-Q4_0.gguf", out / "gemma3-F16.gguf"]


def bench(llmfile, *args):
    return subprocess.run([str(llmfile), "bench", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_json_has_every_combination(llmfile, tiny_models):
    proc = bench(llmfile, "-m", f"{tiny_models[0]},{tiny_models[1]}", "-p", "8,16", "-n", "4", "-t", "1,2",
                 "-r", "2", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 * 2 * 3  # models x threads x (pp8, pp16, tg4)
    seen = {(r["model_file"], r["threads"], r["test"]) for r in rows}
    assert len(seen) == len(rows)
    for r in rows:
        assert r["avg_ts"] > 0 and r["stddev_ts"] >= 0
        assert r["n_params"] > 0 and r["size_bytes"] > 0
    names = {r["model_file"]: r["model"] for r in rows}
    assert names[str(tiny_models[0])] == "llama Q4_0"
    assert names[str(tiny_models[1])].startswith("gemma3 ")


def test_markdown_and_csv(llmfile, tiny_models):
    md = bench(llmfile, "-m", tiny_models[0], "-p", "8", "-n", "4", "-r", "1", "-t", "1")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.strip().splitlines()
    assert lines[0].startswith("| model |") and len(lines) == 4
    assert "| pp8 |" in lines[2] and "| tg4 |" in lines[3] and "±" in lines[3]
    out = bench(llmfile, "-m", tiny_models[0], "-p", "0", "-n", "4", "-r", "1", "-t", "1", "-o", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["test"] for r in rows] == ["tg4"] and float(rows[0]["avg_ts"]) > 0


def test_depth(llmfile, tiny_models):
    proc = bench(llmfile, "-m", tiny_models[0], "-p", "8", "-n", "4", "-d", "0,16", "-r", "1", "-t", "1", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["test"], r["n_tokens"], r["n_depth"]) for r in rows] == [
        ("pp8", 8, 0), ("tg4", 4, 0), ("pp8 @ d16", 8, 16), ("tg4 @ d16", 4, 16)]
    assert all(r["avg_ts"] > 0 for r in rows)
    out = bench(llmfile, "-m", tiny_models[0], "-p", "0", "-n", "2", "-d", "5", "-r", "1", "-t", "1", "-o", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["test"], r["n_depth"]) for r in rows] == [("tg2 @ d5", "5")]


def parse_profiles(stderr):
    """{test: {stage: [ms per token, share %, calls per token, GB/s or None]}, "total": ms}."""
    profiles, cur = {}, None
    for line in stderr.splitlines():
        if line.startswith("profile of "):
            cur = profiles.setdefault(line.split()[2], {})
        elif cur is not None and line.startswith("| ") and not line.startswith(("| stage", "| -")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "total":
                cur["total"] = float(cells[1])
            else:
                cur[cells[0]] = [float(cells[1]), float(cells[2].rstrip("%")), float(cells[3]),
                                 float(cells[4]) if cells[4] else None]
    return profiles


def test_profile(llmfile, tiny_models):
    proc = bench(llmfile, "-m", tiny_models[0], "-p", "8", "-n", "4", "-r", "2", "-t", "2", "-d", "3",
                 "--profile", "-o", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))  # the table stays whole on stdout
    assert [r["test"] for r in rows] == ["pp8 @ d3", "tg4 @ d3"]
    profiles = parse_profiles(proc.stderr)
    assert set(profiles) == {"pp8", "tg4"}, proc.stderr
    matrices = ["q, k, v matrices", "attention output matrix", "FFN gate, up matrices", "FFN down matrix"]
    tg = profiles["tg4"]
    n_layer = tg["q, k, v matrices"][2]
    assert n_layer >= 1 and n_layer == int(n_layer)
    for stage in matrices + ["rope, cache store", "attention"]:
        assert tg[stage][2] == n_layer, (stage, tg[stage])  # once per layer per token
    assert tg["output matrix"][2] == 1  # once per generated token (the depth's prefill is not timed)
    for stage in matrices + ["output matrix"]:
        assert tg[stage][3] > 0, stage
    assert tg["attention"][3] is None
    for p in profiles.values():
        stages = [v for k, v in p.items() if k != "total"]
        assert abs(sum(v[1] for v in stages) - 100) < 1
        assert abs(sum(v[0] for v in stages) - p["total"]) < 0.01 * p["total"] + 1e-3
    # the timed stages are most of the run: ms per token against the measured speed
    assert profiles["tg4"]["total"] <= 1e3 / float(rows[1]["avg_ts"]) * 1.05


@pytest.mark.parametrize("args,expect", [
    (["-d", "-1"], "-d expects integers in [0, 1048576]"),
    (["-t", "0"], "-t expects integers in [1, 1024]"),
    (["-p", "x"], "-p expects integers"),
    (["-o", "xml"], "-o expects md, csv or json"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["-r"], "-r needs a value"),
    (["-m", "/nonexistent.gguf"], "/nonexistent.gguf"),
])
def test_bad_flags(llmfile, args, expect):
    proc = bench(llmfile, *args)
    assert proc.returncode != 0
    assert expect in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_help(llmfile):
    proc = bench(llmfile, "--help")
    assert proc.returncode == 0
    for flag in ["-m", "-p", "-n", "-d", "-t", "-r", "-b", "-o", "--cpu-level", "--mmap", "--profile"]:
        assert f" {flag}" in proc.stdout, flag
