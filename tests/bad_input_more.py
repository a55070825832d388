"""Bad-input cases of evaluation settings, repeated seeds, comparison and training methods.

Loaded by ``tests/test_bad_input.py``, which runs them with the others; the README's errors
table lists them in this order after the own-data cases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Args = Callable[[Path, Path], list[str]]
DIGITS = ["--config", "configs/digits.toml"]


def _train(*extra: str) -> Args:
    """``train`` of the digits recipe with ``extra`` arguments (``{tmp}``: the test's folder)."""
    return lambda tmp, run: [
        "train", *DIGITS, "--runs", str(tmp / "runs"), *(e.format(tmp=tmp) for e in extra)
    ]  # fmt: skip


def _evaluate(*extra: str) -> Args:
    return lambda tmp, run: ["evaluate", "--run", str(run), *extra]


def cases(case: Callable[..., Any]) -> list[Any]:
    """Return this module's cases built with test_bad_input's ``Case``."""
    return [
        case(
            "an evaluate --set key outside [evaluate]",
            _evaluate("--set", "data.batch_size=4"),
            lambda t, r: (
                r"--set data\.batch_size: cannot change after training \(the run's checkpoints "
                r"were trained with its data and model\); evaluate overrides take evaluate\.\* keys"
            ),
        ),
        case(
            "an evaluate --set value out of range",
            _evaluate("--method", "reid", "--set", "evaluate.bootstrap=-1"),
            lambda t, r: r"evaluate\.bootstrap: Input should be greater than or equal to 0",
        ),
        case(
            "a seed list that repeats a seed",
            _train("--seeds", "0,0"),
            lambda t, r: r"--seeds '0,0' repeats a seed: each seed trains one run",
        ),
        case(
            "a comparison with a run that does not exist",
            lambda tmp, run: ["compare", str(run), str(tmp / "nope")],
            lambda t, r: rf"{t / 'nope'}",
        ),
        case(
            "a miner on a loss without pairs",
            _train("--set", "loss.miner={{name='batch_hard'}}"),
            lambda t, r: r"miner 'batch_hard' with loss 'cross_entropy' needs a pair or triplet",
        ),
        case(
            "a distillation teacher that is not a run",
            _train("--set", "distill.teacher={tmp}/nope"),
            lambda t, r: r"distill\.teacher: run directory .*nope does not exist",
        ),
    ]
