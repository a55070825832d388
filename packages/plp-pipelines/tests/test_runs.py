import json
import os
from pathlib import Path

import pytest

from plp_pipelines import RunError, format_metrics_table, newest_run
from plp_pipelines._runs import atomic_write_json, create_run_dir, record_newest, resolve_run


def test_run_dirs_are_unique_and_newest_is_recorded(tmp_path: Path) -> None:
    first = create_run_dir(tmp_path, "digits")
    second = create_run_dir(tmp_path, "digits")
    assert first != second and first.parent == second.parent == tmp_path / "digits"
    with pytest.raises(RunError, match="no run recorded"):
        newest_run(tmp_path)
    record_newest(first, tmp_path)
    assert newest_run(tmp_path) == first
    assert (tmp_path / "LATEST").read_text().strip() == f"digits/{first.name}"


def test_resolve_run_checks_the_directory(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        resolve_run(tmp_path / "missing", tmp_path)
    with pytest.raises(RunError, match="not a plp run directory"):
        resolve_run(tmp_path, tmp_path)
    (tmp_path / "config.toml").write_text("")
    assert resolve_run(tmp_path, "unused") == tmp_path


def test_atomic_write_leaves_no_temporary_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": [1, 2]})
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_unwritable_runs_root(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be created inside a file, even by root
    with pytest.raises(RunError, match=r"cannot create run directory under .*a-file/runs/digits"):
        create_run_dir(blocker / "runs", "digits")


def test_metrics_table_lists_headline_numbers_in_order() -> None:
    table = format_metrics_table(
        {"clustering": {"nmi": 0.5}, "reid": {"mAP": 0.25, "rank-1": 1.0}, "accuracy": {}}
    )
    assert table.splitlines() == [
        "reid rank-1     1.0000",
        "reid mAP        0.2500",
        "clustering NMI  0.5000",
    ]
    assert format_metrics_table({}) == "(no metrics)"
    assert format_metrics_table({"reid": {"mAP": 0.25}, "clustering": {"nmi": 0.5}}, ["reid"]) == (
        "reid mAP  0.2500"
    )
