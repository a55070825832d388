"""``invoke evaluate`` as a user waits for it, against its floor and against drawing the UMAP.

Trains one small digits run, then times fresh processes (every ``invoke evaluate`` is one)
from their start to the first metrics line on stdout and to their exit:

- floor: ``import torch, pytorch_lightning`` plus the ranking work (``plp_eval.reid_metrics``
  of the run's saved test features against trainval), the least an evaluation can cost;
- ``invoke evaluate --method reid``: the command line, as a user runs it;
- ``evaluate(methods=["reid"])`` and ``evaluate(methods=["reid"], umap=True)``: the pipeline
  from Python without and with the UMAP, i.e. ``--method reid`` now and as it was before it
  stopped drawing the UMAP (UMAP's numba compile is not cached across processes);
- with ``--sizes all``, also ``invoke evaluate`` (``--method all``: every method and the UMAP);
- with ``--train``, also ``invoke train --config configs/digits.toml``: what ``make train`` runs
  after its ``uv sync`` (15 epochs, then the test pipeline with the UMAP).

With ``--errors``, instead: ``invoke train`` of configs with an unknown component name or
missing data files, each a fresh process that must end with exit code 2 (goal: <= 3 s), beside
``import torch, pytorch_lightning`` (what they cost when checked after the imports).

Best of ``--rounds`` runs per row, the rows taking turns. Next to the wall time, the CPU
seconds of the process (all its threads), the steadier measure on a shared, loaded machine.

    uv run python bench/evaluate_startup.py --sizes small   # make bench
"""

from __future__ import annotations

import argparse
import os
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


def _commands(run: Path, sizes: str, train: bool = False) -> dict[str, list[str]]:
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
    if train:
        runs = str(run.parent.parent / "make-train")
        commands["make train: invoke train (digits)"] = [
            *[sys.executable, "-m", "invoke", "train", "--config", "configs/digits.toml"],
            *["--runs", runs],
        ]
    return commands


ERRORS = {  # invoke train arguments of configs that must fail before torch loads
    "unknown datamodule (data.name = digitz)": ["--set", "data.name=digitz"],
    "unknown loss (loss.name = tripplet)": ["--set", "loss.name=tripplet"],
    "unknown backbone (model.backbone.name = resnet19)": ["--set", "model.backbone.name=resnet19"],
    "missing data: configs/cifar.toml": ["--config", "configs/cifar.toml"],
    "missing data: configs/mnist.toml": ["--config", "configs/mnist.toml"],
    "missing data: configs/market1501.toml": ["--config", "configs/market1501.toml"],
}


def _errors(rounds: int) -> None:
    """Print the seconds to the error of each config in :data:`ERRORS` (best of ``rounds``)."""
    with tempfile.TemporaryDirectory() as folder:
        nowhere = ["--set", f"data.root={folder}/nowhere", "--runs", folder]
        imports = [sys.executable, "-c", "import torch, pytorch_lightning"]
        times = {"import torch, pytorch_lightning": [_time(imports) for _ in range(rounds)]}
        for name, args in ERRORS.items():
            command = [sys.executable, "-m", "invoke", "train", *args, *nowhere]
            times[name] = [_time(command, expect=2) for _ in range(rounds)]
    print("| invoke train of | to exit code 2 (s) | CPU s |")
    print("| --- | ---: | ---: |")
    for name, runs in times.items():
        print(f"| {name} | {min(t[1] for t in runs):.2f} | {min(t[2] for t in runs):.2f} |")


def _time(command: list[str], expect: int = 0) -> tuple[float, float, float]:
    """Return (seconds to the first metrics line, to exit, CPU seconds) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
    )
    assert process.stdout is not None
    to_metrics = float("nan")
    for line in process.stdout:
        if to_metrics != to_metrics and line[:1].isalpha() and "  0." in line:
            to_metrics = time.perf_counter() - start
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != expect:
        raise SystemExit(f"{command[:5]} ended with exit code {process.returncode}")
    return to_metrics, time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=("small", "all"), default="small")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--train", action="store_true", help="also time make train's command")
    parser.add_argument("--errors", action="store_true", help="time config errors instead")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.sizes == "small" else 3)
    if args.errors:
        _errors(rounds)
        return
    with tempfile.TemporaryDirectory() as folder:
        run = _train(Path(folder))
        _time(_commands(run, "small")['evaluate(methods=["reid"])'])  # writes the features
        commands = _commands(run, args.sizes, args.train)
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, command in commands.items():
                times[name].append(_time(command))
    best = {name: min(t[1] for t in runs) for name, runs in times.items()}
    cpu = {name: min(t[2] for t in runs) for name, runs in times.items()}
    floor, floor_cpu = next(iter(best.values())), next(iter(cpu.values()))
    print("| process | to metrics (s) | to exit (s) | exit / floor | CPU s | CPU / floor CPU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in times.items():
        to_metrics = min(t[0] for t in runs)
        print(
            f"| {name} | {to_metrics:.1f} | {best[name]:.1f} | {best[name] / floor:.2f} "
            f"| {cpu[name]:.1f} | {cpu[name] / floor_cpu:.2f} |"
        )
    before, after = 'evaluate(methods=["reid"], umap=True) (before)', 'evaluate(methods=["reid"])'
    print(
        f"\n--method reid without / with the UMAP: wall {best[after] / best[before]:.2f}, "
        f"CPU {cpu[after] / cpu[before]:.2f}"
    )


if __name__ == "__main__":
    main()
