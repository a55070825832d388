"""The training curves of report.md: drawn when training logged, kept by later evaluations."""

from __future__ import annotations

import os
from pathlib import Path

from plp_pipelines._report import _training_curves


def _write_log(path: Path) -> None:
    path.parent.mkdir(parents=True)
    rows = [
        "epoch,step,train_loss,val_loss",
        *(f"{e},{e},{1 / (e + 1)},{2 / (e + 1)}" for e in range(3)),
    ]
    path.write_text("\n".join(rows) + "\n")


def test_training_curves_are_kept_until_a_newer_log_exists(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "csv" / "metrics.csv"
    _write_log(log)
    in_run = tmp_path / "plots" / "training_curves.png"
    staged = tmp_path / "stage" / "plots" / "training_curves.png"
    # no figure in the run yet: drawn into the stage
    assert _training_curves(log, in_run, staged) == staged
    assert staged.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    in_run.parent.mkdir()
    os.replace(staged, in_run)  # as the stage's commit does
    # the run's figure is newer than the log: it stands, nothing is drawn
    assert _training_curves(log, in_run, staged) == in_run
    assert not staged.exists()
    # a resumed training wrote the log since: drawn anew
    newer = in_run.stat().st_mtime_ns + 10**9
    os.utime(log, ns=(newer, newer))
    assert _training_curves(log, in_run, staged) == staged
    assert staged.is_file()
    # no log: no curves, even with an old figure in the run
    assert _training_curves(tmp_path / "missing.csv", in_run, staged) is None
