"""``invoke evaluate`` as a user waits for it, against its floor and against drawing the UMAP.

Trains one small digits run, then times fresh processes (every ``invoke evaluate`` is one)
from their start to the first metrics line on stdout and to their exit:

- floor: ``import torch, pytorch_lightning`` plus the ranking work (``plp_eval.reid_metrics``
  of the run's saved test features against trainval), the least an evaluation can cost;
- ``invoke evaluate --method reid``: the command line, as a user runs it;
- ``evaluate(methods=["reid"])`` and ``evaluate(methods=["reid"], umap=True)``: the pipeline
  from Python without and with the UMAP, i.e. ``--method reid`` now and as it was before it
  stopped drawing the UMAP (UMAP's numba compile is not cached across processes);
- with ``--sizes all``, also ``invoke evaluate`` (``--method all``: every method and the UMAP).

Best of ``--rounds`` runs per row, the rows taking turns.

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

FLOOR = """
import sys, time
import numpy as np
import torch, pytorch_lightning
imported = time.perf_counter()
import plp_eval
run = sys.argv[1]
test, trainval = (np.load(f"{run}/features/{s}.npz") for s in ("test", "trainval"))
plp_eval.reid_metrics(test["features"], test["labels"], trainval["features"], trainval["labels"])
print("reid  0.0", flush=True)
"""

PIPELINE = """
import sys
import plp_pipelines
plp_pipelines.evaluate(
    sys.argv[1], methods=["reid"], umap={umap},
    on_metrics=lambda m: print(plp_pipelines.format_metrics_table(m, ["reid"]), flush=True),
)
"""


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


def _commands(run: Path, sizes: str) -> dict[str, list[str]]:
    python = [sys.executable, "-c"]
    invoke = [sys.executable, "-m", "invoke", "evaluate", "--run", str(run)]
    commands = {
        "floor: import torch, pytorch_lightning + ranking": [*python, FLOOR, str(run)],
        "invoke evaluate --method reid": [*invoke, "--method", "reid"],
        'evaluate(methods=["reid"])': [*python, PIPELINE.format(umap=None), str(run)],
        'evaluate(methods=["reid"], umap=True) (before)': [
            *python,
            PIPELINE.format(umap=True),
            str(run),
        ],
    }
    if sizes == "all":
        commands["invoke evaluate (all methods + UMAP)"] = [*invoke, "--method", "all"]
    return commands


def _time(command: list[str]) -> tuple[float, float]:
    """Return (seconds to the first metrics line, seconds to exit) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
    )
    assert process.stdout is not None
    to_metrics = float("nan")
    for line in process.stdout:
        if to_metrics != to_metrics and line[:1].isalpha() and "  0." in line:
            to_metrics = time.perf_counter() - start
    process.wait()
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed with exit code {process.returncode}")
    return to_metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=("small", "all"), default="small")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.sizes == "small" else 3)
    with tempfile.TemporaryDirectory() as folder:
        run = _train(Path(folder))
        _time(_commands(run, "small")['evaluate(methods=["reid"])'])  # writes the features
        commands = _commands(run, args.sizes)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, command in commands.items():
                times[name].append(_time(command))
        best = {name: min(t[1] for t in runs) for name, runs in times.items()}
        floor = next(iter(best.values()))
        print("| process | to metrics (s) | to exit (s) | exit / floor |")
        print("| --- | ---: | ---: | ---: |")
        for name, runs in times.items():
            to_metrics = min(t[0] for t in runs)
            print(f"| {name} | {to_metrics:.1f} | {best[name]:.1f} | {best[name] / floor:.2f} |")
        before = best['evaluate(methods=["reid"], umap=True) (before)']
        after = best['evaluate(methods=["reid"])']
        print(f"\n--method reid without / with the UMAP: {after / before:.2f}")


if __name__ == "__main__":
    main()
