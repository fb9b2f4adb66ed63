#!/usr/bin/env python3
"""tinyBLAS against llama.cpp, and both against the machine's limits (issue 5).

For each model (the default Gemma 3 270M and random-weight TinyLlama-1.1B-shaped
models in F16, Q8_0, Q4_0 and Q4_K_M written by bench/make_bench_models.py) and
thread count, alternately, round by round:
  pp512: `llmfile bench -p 512 -n 0` vs llama.cpp decoding 512 random tokens at once;
  tg128: `llmfile bench -p 0 -n 128` vs llama.cpp decoding 128 tokens one by one,
         with the machine's limits probed right before and after each pair;
  for the --depth-models (default: the default model), also both after --depth
  tokens already in the context (default 4096; "pp512 @ d4096"), where attention
  over the KV cache takes a large share: speeds and ratios only.
Then prints medians, llmfile/llama.cpp ratios and each result as a fraction of its
physical limit:
  generation: tok/s x bytes of weights read per token / bandwidth
  prompt:     FLOP/s / peak (fp32 FMA peak for float weights, int8 dot peak for quantized)
each run against the better of the two probes that bracket it (the machine's
limits swing about 2x on a shared host), the median over rounds. Bandwidth is
the probe's sustained rate (bench/probe/limits.c: its huge-page passes' bytes
over their time, about a second), as a generation run of seconds streams; the
best single 0.1 s pass, typically 5-10% higher, is printed beside it.

  python3 bench/tinyblas_vs_llamacpp.py [-t 2] [-r 3] [--models default,F16,Q8_0,Q4_0,Q4_K_M]
        [-p 512] [-n 128] [--depth 4096] [--depth-models default] [--json FILE]
llama.cpp comes from the PyPI package llama-cpp-python (built with GGML_NATIVE);
llmfile from build/llmfile.
"""
import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
import common  # noqa: E402  (also puts tools/ on sys.path)
BUILD = ROOT / "build"
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "llmfile"
BENCH_MODELS = CACHE / "bench"
FLOAT_TYPES = {"F32", "F16", "BF16"}


def probe_exe():
    exe = BUILD / "bench" / "limits"
    src = ROOT / "bench" / "probe" / "limits.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O3", "-march=native", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


def probe(threads, mib=1024):
    out = subprocess.run([str(probe_exe()), str(threads), str(mib)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def model_facts(path):
    """Bytes read per generated token and FLOPs per prompt token, from the tensors."""
    from gguf import GGUFReader
    r = GGUFReader(str(path))
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def kv(key):
        f = r.fields.get(f"{arch}.{key}")
        return int(f.parts[f.data[0]][0]) if f else None

    names = {t.name for t in r.tensors}
    read_bytes, matmul_params, embd_row_bytes = 0, 0, 0
    for t in r.tensors:
        n = int(np.prod([int(x) for x in t.shape]))
        if t.name == "token_embd.weight":
            rows = int(t.shape[-1]) if len(t.shape) > 1 else 1
            embd_row_bytes = int(t.n_bytes) // max(rows, 1)
            if "output.weight" not in names:  # tied output: the whole matrix is read
                read_bytes += int(t.n_bytes)
            continue
        read_bytes += int(t.n_bytes)
        if len(t.shape) >= 2 and t.name != "output.weight":
            matmul_params += n
    read_bytes += embd_row_bytes
    n_layer, n_embd, n_head = kv("block_count"), kv("embedding_length"), kv("attention.head_count")
    head_dim = kv("attention.key_length") or n_embd // n_head
    wtype = path_type(path, r)
    return {"arch": arch, "read_bytes": read_bytes, "matmul_params": matmul_params, "n_layer": n_layer,
            "attn_width": n_head * head_dim, "type": wtype}


def path_type(path, reader):
    names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
             12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
    f = reader.fields.get("general.file_type")
    return names.get(int(f.parts[f.data[0]][0]), "?") if f else "?"


def prompt_flops_per_token(facts, n_prompt):
    # Weights: 2 FLOP per parameter per token. Attention: QK^T and PV over on average
    # n_prompt/2 earlier tokens, 2 x 2 FLOP per (key, width) pair.
    return 2 * facts["matmul_params"] + 4 * (n_prompt / 2) * facts["attn_width"] * facts["n_layer"]


def llmfile_bench(model, threads, pp, tg, depth=0):
    cmd = [str(BUILD / "llmfile"), "bench", "-m", str(model), "-t", str(threads), "-p", str(pp), "-n", str(tg),
           "-d", str(depth), "-r", "1", "-o", "json"]
    rows = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return rows[0]["avg_ts"]


def llamacpp_bench(model, threads, pp, tg, depth=0):
    """The same measurement on llama.cpp: a warm-up, then one timed run, random
    tokens, after `depth` tokens decoded untimed (in batches of max(512, pp))."""
    import llama_cpp as L
    n = max(pp, tg)
    n_batch = max(512, pp)
    lc = common.llamacpp_context(str(model), depth + n + 8, n_batch, threads)  # llama.cpp's default flash attention
    try:
        rng = np.random.default_rng(42)
        n_vocab = lc.n_vocab
        toks = [int(x) for x in rng.integers(0, n_vocab, size=depth + n)]
        best = None
        for _ in range(2):  # warm-up, then measured
            L.llama_memory_clear(L.llama_get_memory(lc.ctx), True)
            for p0 in range(0, depth, n_batch):
                lc.decode(toks[p0:min(depth, p0 + n_batch)], p0, all_logits=False)
            t0 = time.perf_counter()
            if pp:
                lc.decode(toks[depth:depth + pp], depth, all_logits=False)
            else:
                for i in range(tg):
                    lc.decode([toks[depth + i]], depth + i, all_logits=False)
            best = (pp or tg) / (time.perf_counter() - t0)
        return best
    finally:
        lc.close()


def ensure_models(wanted):
    paths = {}
    for name in wanted:
        if name == "default":
            paths[name] = CACHE / "default.gguf"
            continue
        p = BENCH_MODELS / f"tinyllama-{name}.gguf"
        if not p.exists():
            subprocess.run([sys.executable, str(ROOT / "bench" / "make_bench_models.py"), str(BENCH_MODELS),
                            "--types", name], check=True)
        paths[name] = p
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--models", default="default,F16,Q8_0,Q4_0,Q4_K_M")
    ap.add_argument("--depth", type=int, default=4096)
    ap.add_argument("--depth-models", default="default")
    ap.add_argument("--json")
    a = ap.parse_args()
    models = ensure_models(a.models.split(","))
    threads = [int(t) for t in a.threads.split(",")]
    results = []
    for t in threads:
        peaks = probe(t, 256)
        print(f"limits, {t} threads: {peaks}", file=sys.stderr)
        for name, path in models.items():
            facts = model_facts(path)
            runs = {"pp_ours": [], "pp_peer": [], "tg_ours": [], "tg_peer": []}
            # Probes before the prompt runs, between them and the generation runs, and after.
            probes = [peaks]
            fracs = {f"{test}_frac_{who}": [] for test in ("pp", "tg") for who in ("ours", "peer")}
            limits = {"pp": [], "tg": [], "tg_best": []}
            is_float = facts["type"] in FLOAT_TYPES
            flop = prompt_flops_per_token(facts, a.p)
            for r in range(a.rounds):
                first_ours = r % 2 == 0
                # -p 0 or -n 0 skips that test (its speeds read as nan).
                for ours in (first_ours, not first_ours):
                    if a.p == 0:
                        runs["pp_ours" if ours else "pp_peer"].append(math.nan)
                    elif ours:
                        runs["pp_ours"].append(llmfile_bench(path, t, a.p, 0))
                    else:
                        runs["pp_peer"].append(llamacpp_bench(path, t, a.p, 0))
                probes.append(probe(t))
                for ours in (first_ours, not first_ours):
                    if a.n == 0:
                        runs["tg_ours" if ours else "tg_peer"].append(math.nan)
                    elif ours:
                        runs["tg_ours"].append(llmfile_bench(path, t, 0, a.n))
                    else:
                        runs["tg_peer"].append(llamacpp_bench(path, t, 0, a.n))
                probes.append(probe(t))
                key = "fp32_gflops" if is_float else "int8_gops"
                peak = max(probes[-3][key], probes[-2][key])
                bw = max(probes[-2]["bandwidth_sustained_gbs"], probes[-1]["bandwidth_sustained_gbs"])
                limits["pp"].append(peak)
                limits["tg"].append(bw)
                limits["tg_best"].append(max(probes[-2]["bandwidth_gbs"], probes[-1]["bandwidth_gbs"]))
                for who in ("ours", "peer"):
                    fracs[f"pp_frac_{who}"].append(runs[f"pp_{who}"][-1] * flop / (peak * 1e9))
                    fracs[f"tg_frac_{who}"].append(runs[f"tg_{who}"][-1] * facts["read_bytes"] / (bw * 1e9))
                print(f"{name} t={t} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()) +
                      f", peak {peak:.0f} G/s, bw {bw:.1f} GB/s (best pass {limits['tg_best'][-1]:.1f})",
                      file=sys.stderr)
            if a.depth > 0 and name in a.depth_models.split(","):
                for key in ("ppd_ours", "ppd_peer", "tgd_ours", "tgd_peer"):
                    runs[key] = []
                for r in range(a.rounds):
                    first_ours = r % 2 == 0
                    for test, pp, tg in (("ppd", a.p, 0), ("tgd", 0, a.n)):
                        for ours in (first_ours, not first_ours):
                            if ours:
                                runs[f"{test}_ours"].append(llmfile_bench(path, t, pp, tg, a.depth))
                            else:
                                runs[f"{test}_peer"].append(llamacpp_bench(path, t, pp, tg, a.depth))
                    print(f"{name} t={t} depth {a.depth} round {r + 1}: " +
                          ", ".join(f"{k} {runs[k][-1]:.1f}" for k in ("ppd_ours", "ppd_peer", "tgd_ours", "tgd_peer")),
                          file=sys.stderr)
            med = {k: statistics.median(v) for k, v in runs.items()}
            results.append({"model": name, "file": str(path), "type": facts["type"], "threads": t, **med,
                            "bw_gbs": statistics.median(limits["tg"]), "bw_best_gbs": statistics.median(limits["tg_best"]),
                            "peak_gops": statistics.median(limits["pp"]),
                            "read_bytes": facts["read_bytes"], "flop_per_token": flop,
                            **{k: statistics.median(v) for k, v in fracs.items()},
                            "probes": probes[1:]})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    print(f"\n{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs; median of {a.rounds} alternating rounds\n")
    print(f"| model | threads | test | llmfile t/s | llama.cpp t/s | ratio | llmfile % of limit | llama.cpp % of limit |")
    print(f"| ----- | ------: | ---- | ----------: | ------------: | ----: | -----------------: | -------------------: |")
    for x in results:
        label = "default Gemma 3 270M" if x["model"] == "default" else f"TinyLlama 1.1B {x['model']}"
        if a.p > 0:
            print(f"| {label} | {x['threads']} | pp{a.p} | {x['pp_ours']:.1f} | {x['pp_peer']:.1f} | "
                  f"{x['pp_ours'] / x['pp_peer']:.2f} | {100 * x['pp_frac_ours']:.0f}% of {x['peak_gops']:.0f} G/s | "
                  f"{100 * x['pp_frac_peer']:.0f}% |")
        if a.n > 0:
            print(f"| {label} | {x['threads']} | tg{a.n} | {x['tg_ours']:.1f} | {x['tg_peer']:.1f} | "
                  f"{x['tg_ours'] / x['tg_peer']:.2f} | {100 * x['tg_frac_ours']:.0f}% of {x['bw_gbs']:.1f} GB/s "
                  f"(best pass {x['bw_best_gbs']:.1f}) | "
                  f"{100 * x['tg_frac_peer']:.0f}% |")
        for test, size in (("ppd", a.p), ("tgd", a.n)):
            if f"{test}_ours" in x:
                print(f"| {label} | {x['threads']} | {test[:2]}{size} @ d{a.depth} | {x[test + '_ours']:.1f} | "
                      f"{x[test + '_peer']:.1f} | {x[test + '_ours'] / x[test + '_peer']:.2f} | | |")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
