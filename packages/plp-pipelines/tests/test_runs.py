import errno
import json
import os
from pathlib import Path

import pytest

from plp_pipelines import RunError, format_metrics_table, newest_run
from plp_pipelines._run import Run
from plp_pipelines._runs import (
    atomic_write_json,
    check_runs_root,
    create_run_dir,
    record_newest,
    resolve_run,
)


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


def test_files_honour_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_full_or_read_only_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RunError, match=rf"cannot write .*metrics\.json: {words}"):
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    assert os.listdir(tmp_path) == []  # the temporary file is gone too


def test_the_runs_root_is_checked_before_training(tmp_path: Path) -> None:
    check_runs_root(tmp_path)  # empty: fine
    (tmp_path / "LATEST").mkdir()
    with pytest.raises(RunError, match=r"LATEST is not plp's record of the newest run .*folder"):
        check_runs_root(tmp_path)
    with pytest.raises(RunError, match="'LATEST' is reserved"):
        create_run_dir(tmp_path / "other", "LATEST")


@pytest.mark.parametrize("recorded", ["/etc", "../outside", ""])
def test_a_latest_record_outside_the_runs_folder_is_refused(tmp_path: Path, recorded: str) -> None:
    (tmp_path / "LATEST").write_text(recorded + "\n")
    with pytest.raises(RunError, match=r"LATEST holds .*not a run folder under"):
        newest_run(tmp_path)


def test_a_symlinked_config_folder_keeps_its_runs_recorded(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "digits").symlink_to(elsewhere)
    run_dir = create_run_dir(runs, "digits")
    record_newest(run_dir, runs)
    assert (runs / "LATEST").read_text().strip() == f"digits/{run_dir.name}"
    assert newest_run(runs).resolve() == (elsewhere / run_dir.name).resolve()


def test_a_garbage_run_record_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('name = "x"\n')
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunError, match=r"run\.json: not a JSON run record"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text('{"best_checkpoint": 3}')
    with pytest.raises(RunError, match=r"run\.json: not a plp run record: best_checkpoint"):
        Run.open(tmp_path)


def test_resume_takes_the_newest_unfinished_run(tmp_path: Path) -> None:
    record = (
        '{"best_checkpoint": "last.ckpt", "last_checkpoint": "last.ckpt", "epochs": 1, "seed": 0}'
    )
    for stamp, finished in (("20260101-000000", False), ("20260102-000000", True)):
        checkpoints = tmp_path / "digits" / stamp / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / "last.ckpt").write_bytes(b"")
        (checkpoints.parent / "config.toml").write_text('name = "digits"\n')
        if finished:
            (checkpoints.parent / "run.json").write_text(record)
    opened = Run.open_unfinished(name="digits", runs_root=tmp_path)
    assert opened.root.name == "20260101-000000" and opened.info is None
    assert opened.last_checkpoint() == opened.root / "checkpoints" / "last.ckpt"
    finished = tmp_path / "digits" / "20260102-000000"
    with pytest.raises(RunError, match="finished training already: nothing to resume"):
        Run.open_unfinished(finished, runs_root=tmp_path)
    (opened.root / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(RunError, match="no unfinished run of 'digits'"):
        Run.open_unfinished(name="digits", runs_root=tmp_path)
    with pytest.raises(RunError, match=r"has no checkpoints/last\.ckpt to resume from"):
        Run.open_unfinished(opened.root, runs_root=tmp_path)
    with pytest.raises(RunError, match="name the run"):
        Run.open_unfinished(runs_root=tmp_path)
