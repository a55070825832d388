"""Stops and faults: signals, an evaluation's commit, resume checks, a full disk, LATEST."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plp_pipelines import ConfigError, RunError, StoppedError, load_config
from plp_pipelines._callbacks import AtomicCheckpointIO
from plp_pipelines._checkpoints import check_resumable
from plp_pipelines._config import override_config
from plp_pipelines._runs import RunPaths, record_newest
from plp_pipelines._staging import COMMIT_RECORD, Stage, finish_stages
from plp_pipelines._stopping import signals_held, stop_on_signals

ROOT = Path(__file__).resolve().parents[3]


def _message(what: str) -> str:
    return f"stopped by {what}"


def test_sigterm_and_ctrl_c_become_one_error_with_their_exit_codes() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopped = pytest.raises(StoppedError, match="stopped by SIGTERM")
    with stopped as error, stop_on_signals(_message):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs here, at the latest
    assert error.value.exit_code == 143
    with pytest.raises(StoppedError, match="stopped by Ctrl-C") as error, stop_on_signals(_message):
        raise KeyboardInterrupt
    assert error.value.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_held_signal_arrives_after_the_block() -> None:
    done = []
    with pytest.raises(StoppedError), stop_on_signals(_message):
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            done.append("moved")  # not cut short
        time.sleep(5)
        pytest.fail("SIGTERM should stop right after the held block")
    assert done == ["moved"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_commit_cut_short_is_finished_and_dead_stages_are_removed(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "test.npz").write_text("old")
    (tmp_path / "metrics.json").write_text("old")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "gone.png").write_text("a plot of the old evaluation only")
    # A process died after writing its commit record and moving the features only.
    committed = tmp_path / f".evaluate-{_dead_pid()}"
    (committed / "plots").mkdir(parents=True)
    (committed / "metrics.json").write_text("new")
    (committed / "plots" / "umap.png").write_text("new")
    (committed / COMMIT_RECORD).write_text(json.dumps({"stale": ["plots/gone.png"]}))
    (tmp_path / "features" / "test.npz").write_text("new")
    abandoned = tmp_path / f".evaluate-{_dead_pid()}"
    (abandoned / "features").mkdir(parents=True)
    (abandoned / "features" / "test.npz").write_text("never committed")
    live = tmp_path / f".evaluate-{os.getppid()}"  # a running process: left alone
    live.mkdir()
    finish_stages(tmp_path)
    assert (tmp_path / "metrics.json").read_text() == "new"
    assert (tmp_path / "plots" / "umap.png").read_text() == "new"
    assert (tmp_path / "features" / "test.npz").read_text() == "new"
    assert not (tmp_path / "plots" / "gone.png").exists()
    assert sorted(p.name for p in tmp_path.glob(".evaluate-*")) == [live.name]
    stage = Stage(paths)
    stage.file(paths.metrics).write_text("newer")
    stage.commit([])
    assert paths.metrics.read_text() == "newer" and not stage.root.exists()


def test_overrides_after_training_take_evaluate_keys_only() -> None:
    config = load_config(ROOT / "configs" / "digits.toml")
    changed = override_config(config, ["evaluate.max_rank=5"], ("evaluate",), "evaluate")
    assert changed.evaluate.max_rank == 5 and config.evaluate.max_rank != 5
    assert changed.data == config.data and changed.source == config.source
    with pytest.raises(ConfigError, match=r"^--set data\.root: cannot change after training .*"):
        override_config(config, ["data.root=/elsewhere"], ("evaluate",), "evaluate")
    with pytest.raises(ConfigError, match=r"evaluate\.max_rank: Input should be greater"):
        override_config(config, ["evaluate.max_rank=0"], ("evaluate",), "evaluate")


def test_latest_never_names_a_run_outside_its_root(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    assert not record_newest(tmp_path / "elsewhere" / "run", tmp_path / "runs")
    assert not record_newest(tmp_path / "runs", tmp_path / "runs")
    assert not (tmp_path / "runs" / "LATEST").exists()
    assert record_newest(tmp_path / "runs" / "digits" / "1", tmp_path / "runs")


def test_a_checkpoint_on_a_full_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = os.fdopen

    class Full:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.file = opened(*args, **kwargs)  # type: ignore[call-overload]

        def __getattr__(self, name: str) -> object:
            return getattr(self.file, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", Full)
    path = tmp_path / "last.ckpt"
    with pytest.raises(RunError, match=r"^cannot write .*last\.ckpt: disk full"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(4096)}}, path)
    assert os.listdir(tmp_path) == []


def _model(width: int = 8) -> torch.nn.Module:
    import plp_models

    return plp_models.PlpModel(
        num_classes=3,
        in_channels=1,
        image_size=(8, 8),
        embedding_size=4,
        backbone={"name": "small_convnet", "args": {"width": width}},
    )


def test_resume_checks_last_ckpt_like_evaluate(tmp_path: Path) -> None:
    model = _model()
    state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    good = tmp_path / "last.ckpt"
    torch.save(state, good)
    config = tmp_path / "config.toml"
    check_resumable(good, model, config)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(RunError, match=r"^cannot load checkpoint .*truncated\.ckpt: truncated"):
        check_resumable(truncated, model, config)
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({**state, "payload": print}, unsafe)
    with pytest.raises(RunError, match=r"^refused checkpoint .*unsafe\.ckpt"):
        check_resumable(unsafe, model, config)
    with pytest.raises(RunError, match=r"config\.toml no longer matches .*: backbone is "):
        check_resumable(good, _model(width=16), config)
    edited = {**state, "state_dict": {**state["state_dict"]}}
    name = next(iter(edited["state_dict"]))
    edited["state_dict"][name] = torch.zeros(1)
    torch.save(edited, tmp_path / "edited.ckpt")
    with pytest.raises(RunError, match=rf"does not hold the model of .*: weight {name} is \[1\]"):
        check_resumable(tmp_path / "edited.ckpt", model, config)
