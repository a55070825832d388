"""``invoke evaluate`` as a user waits for it: seconds until the metrics show, and until done.

Trains one small digits run, then runs ``python -m invoke evaluate --run RUN --method M`` in
fresh processes (every ``invoke evaluate`` is one) and times, from the start of the process,
the first metrics line on stdout and the exit. The metrics are printed before the plots are
drawn (UMAP's first fit in a process costs seconds), so "to metrics / to exit" is the share of
the wait the metrics no longer pay. Best of ``--rounds`` runs per row.

    uv run python bench/evaluate_startup.py --sizes small   # make bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _train(runs: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "train",
            "--runs",
            str(runs),
            "--skip-evaluate",
            "--set",
            "trainer.epochs=2",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return runs / (runs / "LATEST").read_text().strip()


def _time_evaluate(run: Path, method: str) -> tuple[float, float]:
    """Return (seconds to the first metrics line, seconds to exit) of one evaluate process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "evaluate", "--run", str(run), "--method", method],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    to_metrics = float("nan")
    for line in process.stdout:
        if to_metrics != to_metrics and line[:1].isalpha() and "  0." in line:
            to_metrics = time.perf_counter() - start
    process.wait()
    if process.returncode:
        raise SystemExit(f"evaluate failed with exit code {process.returncode}")
    return to_metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=("small", "all"), default="small")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.sizes == "small" else 3)
    methods = ("reid",) if args.sizes == "small" else ("reid", "all")
    with tempfile.TemporaryDirectory() as folder:
        run = _train(Path(folder))
        print("| method | to metrics (s) | to exit (s) | to metrics / to exit |")
        print("| --- | ---: | ---: | ---: |")
        for method in methods:
            times = [_time_evaluate(run, method) for _ in range(rounds)]
            to_metrics = min(t[0] for t in times)
            to_exit = min(t[1] for t in times)
            print(f"| {method} | {to_metrics:.1f} | {to_exit:.1f} | {to_metrics / to_exit:.2f} |")


if __name__ == "__main__":
    main()
