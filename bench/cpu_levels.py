#!/usr/bin/env python3
"""What dispatch costs, and what each CPU level gets, on this machine.

1. Dispatch cost: the portable binary (baseline code + every kernel level, the best
   chosen at start-up) against `make native` (everything -march=native, one level,
   no choice), same model and threads, alternated round by round in one run.
   Prints portable/native for pp512 and tg128 (issue 4 wants >= 0.98).
2. Per-level speed: the portable binary capped at each level the CPU supports
   (--cpu-level), pp512 and tg128: what a K8, a Core 2, ... a Zen 4 gets.

  python3 bench/cpu_levels.py [-m MODEL] [-t 2] [--rounds 5] [-p 512] [-n 128] [--skip-levels]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


def build():
    subprocess.run(["make", "-s", "-C", str(ROOT), "-j2", "all"], check=True)
    subprocess.run(["make", "-s", "-C", str(ROOT), "native"], check=True)


def bench(exe, model, args):
    cmd = [str(exe), "bench", "-m", str(model), "-o", "json", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {r["test"]: r for r in json.loads(out.stdout)}


def levels(exe):
    out = subprocess.run([str(exe), "--cpu-info"], capture_output=True, text=True, check=True).stdout
    return [line.replace("*", " ").split()[0] for line in out.splitlines() if " supported " in line]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.expanduser("~/.cache/llmfile/default.gguf"))
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-levels", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        build()
    portable, native = BUILD / "llmfile", BUILD / "native" / "llmfile"
    pp, tg = f"pp{a.p}", f"tg{a.n}"
    common = ["-p", a.p, "-n", a.n, "-t", a.threads, "-r", 1]

    print(f"# llmfile: CPU levels on {os.uname().nodename} ({time.strftime('%Y-%m-%d')}), model "
          f"{pathlib.Path(a.model).name}, {a.threads} threads\n")
    runs = {"portable": {pp: [], tg: []}, "native": {pp: [], tg: []}}
    for r in range(a.rounds):
        order = [("portable", portable), ("native", native)]
        if r % 2:
            order.reverse()
        for name, exe in order:
            res = bench(exe, a.model, common)
            for test in (pp, tg):
                runs[name][test].append(res[test]["avg_ts"])
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(
            f"{n} {t} {runs[n][t][-1]:.1f}" for n in runs for t in (pp, tg)), file=sys.stderr)
    print("## Dispatch cost: portable binary vs -march=native single-level build\n")
    print("| test | portable t/s | native t/s | portable / native |")
    print("| ---- | -----------: | ---------: | ----------------: |")
    for test in (pp, tg):
        # Medians: one descheduled round on a shared machine should not decide the ratio.
        p_med, n_med = statistics.median(runs["portable"][test]), statistics.median(runs["native"][test])
        print(f"| {test} | {p_med:.2f} | {n_med:.2f} | {p_med / n_med:.3f} |")
    print()
    if a.skip_levels:
        return
    print("## Speed of each kernel level (portable binary, --cpu-level)\n")
    print(f"| level | {pp} t/s | {tg} t/s |")
    print("| ----- | ------: | ------: |")
    for level in levels(portable):
        res = bench(portable, a.model, [*common[:-1], 2, "--cpu-level", level])
        print(f"| {level} | {res[pp]['avg_ts']:.2f} ± {res[pp]['stddev_ts']:.2f} | "
              f"{res[tg]['avg_ts']:.2f} ± {res[tg]['stddev_ts']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
