"""tasks.py as a user meets it: listing is instant, errors are one line with exit code 2."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_listing_tasks_imports_no_torch(invoke) -> None:
    # The checks before torch (unknown names, missing data) import no torch either.
    code = (
        "import sys, tasks, plp_pipelines, plp_pipelines._prechecks as p\n"
        "for s in (['data.name=mnist', 'data.root=no/such/folder'], ['loss.name=tripplet']):\n"
        "    try: p.check_before_torch(plp_pipelines.load_config('configs/digits.toml', s))\n"
        "    except plp_pipelines.ConfigError: pass\n"
        "    else: raise AssertionError(s)\n"
        "assert 'torch' not in sys.modules, 'tasks.py or the checks before torch import torch'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    listing = invoke("--list")
    assert listing.returncode == 0
    for name in (
        "train",
        "evaluate",
        "explain",
        "graph",
        "align",
        "export",
        "compare",
        "embed",
        "index",
        "search",
        "test",
        "lint",
        "bench",
    ):
        assert f"  {name} " in listing.stdout


def _load_tasks():
    """Import ``tasks.py`` from the repository root, however pytest was started."""
    if str(ROOT) not in sys.path:  # tasks.py imports dev_tasks.py beside it, as invoke allows
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tasks_and_pipelines_share_the_runs_default() -> None:
    import plp_pipelines

    assert _load_tasks().RUNS == plp_pipelines.RUNS_ROOT


def test_a_short_flag_means_one_option_on_every_task() -> None:
    """Each long option has the same short flag (or none) on every task that takes it, and each
    short flag names one option: ``-r`` is ``--run``, ``-c`` ``--config``, ``-k`` ``--checkpoint``
    everywhere (dev_tasks.SHORT_FLAGS); invoke's help shows them."""
    import copy

    from invoke import Collection

    collection = Collection.from_module(_load_tasks())
    from dev_tasks import SHORT_FLAGS  # beside tasks.py, on sys.path now

    shorts: dict[str, set[tuple[str, ...]]] = {}
    longs: dict[str, set[str]] = {}
    for name in collection.task_names:
        walked = copy.copy(collection[name])
        walked.help = dict(walked.help)  # get_arguments() pops the help it uses
        for argument in walked.get_arguments():
            long, *short = argument.names
            shorts.setdefault(long, set()).add(tuple(short))
            for flag in short:
                longs.setdefault(flag, set()).add(long)
    assert {long: short for long, short in shorts.items() if len(short) > 1} == {}
    assert {flag: long for flag, long in longs.items() if len(long) > 1} == {}
    assert {flag: long.pop() for flag, long in longs.items()} == {
        flag: long for long, flag in SHORT_FLAGS.items()
    }  # every flag of the scheme is used, and only those
    assert shorts["run"] == {("r",)} and shorts["runs"] == {()}
    assert shorts["config"] == {("c",)} and shorts["checkpoint"] == {("k",)}


def test_missing_config_is_one_line_with_exit_code_2(invoke, tmp_path: Path) -> None:
    result = invoke("train", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"plp: error: {tmp_path / 'nope.toml'}: config file not found"
    assert "Traceback" not in result.stderr


def test_unknown_key_in_override_is_reported_before_training(invoke, tmp_path: Path) -> None:
    result = invoke("train", "--runs", str(tmp_path), "--set", "trainer.epoch=3")
    assert result.returncode == 2
    assert "no key 'epoch' in trainer (did you mean 'epochs'?)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "LATEST").exists()


def test_unknown_method_and_missing_run(invoke, tmp_path: Path) -> None:
    result = invoke("evaluate", "--method", "map")
    assert result.returncode == 2
    import plp_pipelines

    methods = ", ".join([*plp_pipelines.available_methods(), "all"])
    assert f"--method 'map' is not a method; expected one of {methods}" in result.stderr
    result = invoke("evaluate", "--runs", str(tmp_path))
    assert result.returncode == 2
    assert f"no run recorded in {tmp_path}/ yet" in result.stderr


@pytest.mark.slow
def test_training_is_quiet_unless_verbose(invoke, tmp_path: Path) -> None:
    args = ("train", "--runs", str(tmp_path), "--skip-evaluate", "--set", "trainer.epochs=1")
    quiet = invoke(*args)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    for noise in (
        "Tip:",
        "GPU available",
        "TPU available",
        "LeafSpec",
        "Loading `train_dataloader`",
    ):
        assert noise not in quiet.stderr, noise
    assert "training batches: the device data path" in quiet.stdout
    verbose = invoke(*args, "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "GPU available" in verbose.stderr


@pytest.mark.slow
def test_evaluate_set_changes_this_evaluation_only(
    invoke, shared_runs: Path, tmp_path: Path
) -> None:
    """``invoke evaluate --set evaluate.max_rank=5`` ranks to 5 and records the override; the
    run's config.toml keeps its own value."""
    import json

    from plp_pipelines.testing import shared_run

    run = shared_run(
        shared_runs,
        ROOT / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false"],
        tmp_path,
    )
    config_before = (run / "config.toml").read_text()
    result = invoke(
        "evaluate", "--run", str(run), "--method", "reid", "--set", "evaluate.max_rank=5"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reid = json.loads((run / "metrics.json").read_text())["reid"]
    assert reid["overrides"] == ["evaluate.max_rank=5"]
    assert len(reid["cmc"]) == 5
    assert (run / "config.toml").read_text() == config_before


def test_a_forked_command_answers_as_a_fresh_python(invoke, tmp_path: Path) -> None:
    """The CLI tests fork each command from a server that imported torch once
    (tests/_cli_server.py): exit code and output are those of ``python -m invoke`` started anew,
    and a command past its timeout is killed without stopping the next one."""
    args = ("evaluate", "--runs", str(tmp_path))  # no run there yet: one line, exit code 2
    forked, fresh = invoke(*args), invoke(*args, fresh=True)
    assert forked.returncode == 2 and forked.stderr.startswith("plp: error: ")
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    with pytest.raises(subprocess.TimeoutExpired):
        invoke("train", "--runs", str(tmp_path / "slow"), timeout=0.2)
    assert invoke(*args).stderr == forked.stderr
