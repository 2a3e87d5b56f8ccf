"""Training on a busy machine: `vaelab train` (the bundled default config) with one CPU kept busy by another
process vs without, for `train.threads: auto` (the default) and fixed thread counts (issue 12, point 5).

Each case runs `python -m vaelab train` in a fresh process with OMP_NUM_THREADS unset (as a new user would),
so torch would otherwise use one thread per core. "busy" starts a pure-Python spin loop in another process
first, keeping one core at 100%; "busy later" starts it a few seconds into training (auto must then give a
thread back). The time is the median epoch's seconds from metrics.jsonl (no start-up); each ratio is the
median over --rounds interleaved rounds of the same round's busy / idle; the thread column is what the run
recorded. A fixed count of 2 or more under load spin-waits for minutes, so those cases train --slow-epochs
only. Load from other people on a shared machine adds to every case: the load average is printed per case.

Run: .venv/bin/python benchmarks/bench_threads.py [--epochs 60] [--rounds 2] [--cases auto,1,2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPIN = "import time\nt = time.time()\nwhile time.time() - t < 600: pass\n"


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SPIN])


def train_once(out: Path, threads: str, epochs: int, busy: str) -> tuple[float, list[int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "vaelab", "train", "--out", str(out), "--set", f"train.threads={threads}",
           "--set", f"train.epochs={epochs}", "--set", "train.figures=false", "--set", "train.progress=false"]
    spin = spinner() if busy == "busy" else None
    try:
        if spin is not None:
            time.sleep(1.0)  # the spinner is running before training starts
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if busy == "busy later":
            time.sleep(4.0)  # start-up (~2-3 s) plus the first epochs on an idle machine
            spin = spinner()
        if proc.wait() != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed")
    finally:
        if spin is not None:
            spin.kill()
            spin.wait()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["seconds"] for r in rows), [r.get("threads", 0) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--slow-epochs", type=int, default=6, help="epochs for fixed counts >= 2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cases", default="auto,1,2", help="train.threads values to compare")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"the bundled config (digits MLP, batch 64); median epoch; ratios: median over {args.rounds} interleaved rounds")
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for threads in args.cases.split(","):
                epochs = args.epochs if threads in ("auto", "1") else args.slow_epochs
                conditions = ("idle", "busy", "busy later") if threads == "auto" else ("idle", "busy")
                for busy in conditions:
                    out = Path(tmp) / f"{r}-{threads}-{busy.replace(' ', '-')}"
                    load = os.getloadavg()[0]
                    secs, used = train_once(out, threads, epochs, busy)
                    print(f"  round {r + 1} train.threads={threads:5s} {busy:11s} {1000 * secs:8.1f} ms/epoch   "
                          f"threads per epoch: {sorted(set(used))} (first {used[0]}, last {used[-1]}); "
                          f"load before {load:.2f}", flush=True)
                    results.setdefault((threads, busy), []).append(secs)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    def ratio(threads: str, busy: str) -> float:  # median over rounds of the same round's busy / idle
        return statistics.median(b / i for b, i in zip(results[threads, busy], results[threads, "idle"]))

    for threads in args.cases.split(","):
        for busy in ("busy", "busy later"):
            if (threads, busy) in results:
                print(f"train.threads={threads}: {busy} / idle = {ratio(threads, busy):.2f}x (median of rounds)")
    if ("auto", "busy") in results:
        print(f"goal: auto busy / auto idle <= ~2x: {ratio('auto', 'busy'):.2f}x")

if __name__ == "__main__":
    main()
