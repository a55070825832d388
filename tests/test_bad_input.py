"""Bad input as a user meets it: ``invoke`` in a subprocess, exit code 2, one line naming the cause.

Every case checks: exit code 2, one stderr line ``plp: error: ...`` matching the expected fragment
(file / key / value / path / class and what was expected), no traceback, no run recorded as the
newest. ``test_readme_error_table_matches_the_suite`` keeps the README's table in step.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One bad input: the README's wording, how to build it, what the message must contain."""

    what: str
    args: Callable[[Path, Path], list[str]]  # (tmp dir, trained run dir) -> invoke arguments
    expected: Callable[[Path, Path], str]  # a regular expression the stderr line must match
    env: Callable[[Path], dict[str, str]] | None = None  # (tmp dir) -> environment variables


def _config(tmp: Path, text: str, name: str = "bad.toml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


DIGITS = (ROOT / "configs" / "digits.toml").read_text()


def _without(module: str) -> Callable[[Path], dict[str, str]]:
    """Return the environment of a Python in which ``module`` cannot be imported (as if not
    installed): a ``sitecustomize`` on PYTHONPATH sets ``sys.modules[module] = None``."""

    def env(tmp: Path) -> dict[str, str]:
        folder = tmp / f"without_{module}"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
        return {"PYTHONPATH": str(folder)}

    return env


def _train(*sets: str, config: str = "configs/digits.toml") -> Callable[[Path, Path], list[str]]:
    def args(tmp: Path, run: Path) -> list[str]:
        extra = [item for s in sets for item in ("--set", s.format(tmp=tmp))]
        return ["train", "--config", config, "--runs", str(tmp / "runs"), *extra]

    return args


def _image_folder(tmp: Path, per_class: dict[str, int], test: dict[str, int]) -> Path:
    for split, counts in (("train", per_class), ("test", test)):
        (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
        for name, count in counts.items():
            for i in range(count):
                path = tmp / "images" / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (i, i, i)).save(path)
    return tmp / "images"


def _on_images(
    *sets: str,
    prepare: Callable[[Path], object] = lambda tmp: None,
    counts: tuple[dict[str, int], dict[str, int]] = ({"a": 3, "b": 3}, {"a": 1, "b": 1}),
) -> Callable[[Path, Path], list[str]]:
    """Train on a folder of 8x8 images (``counts``: per class in train, test), after ``prepare``."""

    def args(tmp: Path, run: Path) -> list[str]:
        root = _image_folder(tmp, *counts)
        prepare(tmp)
        image_sets = ("data.name=image_folder", f"data.root={root}", "data.image_size=[8, 8]")
        return _train(*image_sets, *sets)(tmp, run)

    return args


def _corrupt_mnist(tmp: Path) -> Path:
    raw = tmp / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (raw / f"{name}-ubyte.gz").write_bytes(b"\x1f\x8b" + b"truncated" * 4)
    return tmp / "mnist"


def _benchmark_config(tmp: Path, name: str, root: Path) -> str:
    """A config training the digits recipe on a benchmark's files (8x8 images)."""
    text = DIGITS.replace(
        'name = "digits"\nargs = { batch_size = 64, val_fraction = 0.1, test_fraction = 0.25, '
        "split_seed = 0 }",
        f'name = "{name}"\nargs = {{ root = "{root}", image_size = [8, 8] }}',
    )
    assert f'name = "{name}"' in text
    return _config(tmp, text)


def _cars_with_infinite_class(tmp: Path) -> str:
    import numpy as np
    from scipy.io import loadmat, savemat

    from plp_data.testing import write_cars196

    root = write_cars196(tmp / "cars196", classes=(1, 99), per_class=1)
    loaded = loadmat(root / "cars_annos.mat")
    loaded["annotations"][0, 1]["class"] = np.array([[np.inf]])
    savemat(root / "cars_annos.mat", {k: loaded[k] for k in ("annotations", "class_names")})
    return _benchmark_config(tmp, "cars196", root)


def _cub_with_path_outside(tmp: Path) -> str:
    from plp_data.testing import write_cub200

    root = write_cub200(tmp / "CUB_200_2011", classes=(1, 101), per_class=2)
    (root / "images.txt").write_text("1 ../x.jpg\n2 001.Bird_1/x.jpg\n")
    return _benchmark_config(tmp, "cub200", root)


def _blocked(tmp: Path) -> None:
    (tmp / "file").write_text("a file where a folder is expected")


def _run_with_garbage_record(tmp: Path, run: Path) -> str:
    copy = tmp / "copied_run"
    copy.mkdir()
    (copy / "config.toml").write_text((run / "config.toml").read_text())
    (copy / "run.json").write_text("{ garbage")
    return str(copy)


def _runs_with_latest_folder(tmp: Path) -> str:
    (tmp / "other_runs" / "LATEST").mkdir(parents=True)
    return str(tmp / "other_runs")


def _checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def _edited_checkpoint(tmp: Path, run: Path, edit: Callable[[dict], None]) -> str:
    state = torch.load(_checkpoint(run), map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, tmp / "edited.ckpt")
    return str(tmp / "edited.ckpt")


def _nan_weights(state: dict) -> None:
    for tensor in (t for t in state["state_dict"].values() if t.is_floating_point()):
        tensor.fill_(float("nan"))


def _unsafe_weights(tmp: Path) -> Path:
    """A weights file whose pickle names a function (``print``), as a malicious one would."""
    torch.save({"conv1.weight": torch.zeros(1), "payload": print}, tmp / "evil.pth")
    return tmp / "evil.pth"


def _evaluate_edited(edit: Callable[[dict], None]) -> Callable[[Path, Path], list[str]]:
    def args(tmp: Path, run: Path) -> list[str]:
        return ["evaluate", "--run", str(run), "--checkpoint", _edited_checkpoint(tmp, run, edit)]

    return args


def _truncated(tmp: Path, run: Path) -> str:
    data = _checkpoint(run).read_bytes()
    (tmp / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    return str(tmp / "truncated.ckpt")


CASES = [
    Case(
        "missing config file",
        lambda t, r: ["train", "--config", str(t / "nope.toml"), "--runs", str(t / "runs")],
        lambda t, r: re.escape(f"{t / 'nope.toml'}: config file not found"),
    ),
    Case(
        "TOML syntax error",
        lambda t, r: ["train", "--config", _config(t, 'name = "x"\n[data\n'), "--runs", str(t)],
        lambda t, r: re.escape(str(t / "bad.toml")) + r": TOML syntax error: .*line 2",
    ),
    Case(
        "unknown key",
        lambda t, r: ["train", "--config", _config(t, DIGITS.replace("seed = 0", "sed = 0"))],
        lambda t, r: r"bad\.toml: unknown key 'sed'; allowed here: name, seed, ",
    ),
    Case(
        "wrong type",
        _train("trainer.epochs=many"),
        lambda t, r: r"trainer\.epochs: .*integer.*\(given: 'many'\)",
    ),
    Case(
        "unknown dataset",
        _train("data.name=cifar11"),
        lambda t, r: r"data\.name: unknown datamodule 'cifar11'; available: .*cifar10, cifar100, ",
    ),
    Case(
        "unknown backbone",
        _train("model.backbone.name=resnet19"),
        lambda t, r: r"unknown backbone 'resnet19'.*available: .*resnet18",
    ),
    Case(
        "unknown loss",
        _train("loss.name=tripplet"),
        lambda t, r: r"unknown loss 'tripplet'.*available: .*triplet_margin",
    ),
    Case(
        "unknown sampler",
        _train("data.sampler={{name = 'pq'}}"),
        lambda t, r: r"unknown sampler 'pq'; available: class_balanced, hard_pk, pk",
    ),
    Case(
        "missing data directory",
        _train("data.root={tmp}/nowhere", config="configs/mnist.toml"),
        lambda t, r: re.escape(str(t / "nowhere" / "MNIST" / "raw")) + r".*download = true",
    ),
    Case(
        "`download = true` without network",
        _train("data.root={tmp}/empty", "data.download=true", config="configs/mnist.toml"),
        lambda t, r: r"could not download MNIST.*put .*\.gz in " + re.escape(str(t / "empty")),
    ),
    Case(
        "empty split",
        _on_images(counts=({"a": 3, "b": 3}, {})),
        lambda t, r: r"ImageFolderDataModule: the test split is empty",
    ),
    Case(
        "a class with one sample under the P x K sampler",
        _on_images(
            "data.val_fraction=0.0",
            "data.sampler={{name = 'pk', args = {{classes_per_batch = 2, samples_per_class = 2}}}}",
            counts=({"a": 4, "b": 1, "c": 4}, {"a": 1, "b": 1, "c": 1}),
        ),
        lambda t, r: r"single sample.*\[1\].*drop_singletons",
    ),
    Case(
        "P larger than the number of classes",
        _train(
            "data.sampler={{name = 'pk', args = {{classes_per_batch = 12, samples_per_class = 4}}}}"
        ),
        lambda t, r: (
            r"classes_per_batch \(P\) = 12 is larger than the number of usable classes, 10"
        ),
    ),
    Case(
        "`--method` not one of the methods",
        lambda t, r: ["evaluate", "--run", str(r), "--method", "map"],
        lambda t, r: r"--method 'map' is not a method; expected one of accuracy, reid, ",
    ),
    Case(
        "`evaluate` with no run yet",
        lambda t, r: ["evaluate", "--runs", str(t / "no_runs")],
        lambda t, r: r"no run recorded in " + re.escape(str(t / "no_runs")),
    ),
    Case(
        "a checkpoint path that does not exist",
        lambda t, r: ["evaluate", "--checkpoint", str(t / "missing.ckpt")],
        lambda t, r: re.escape(f"checkpoint {t / 'missing.ckpt'} does not exist"),
    ),
    Case(
        "a checkpoint of another architecture",
        _evaluate_edited(lambda s: s["hyper_parameters"]["backbone"]["args"].update(width=16)),
        lambda t, r: (
            r"edited\.ckpt is another architecture than the config of run .*backbone.*'width': 16"
        ),
    ),
    Case(
        "a truncated / corrupt checkpoint file",
        lambda t, r: ["evaluate", "--run", str(r), "--checkpoint", _truncated(t, r)],
        lambda t, r: r"cannot load checkpoint .*truncated\.ckpt",
    ),
    Case(
        "features with NaN (training diverged)",
        _evaluate_edited(_nan_weights),
        lambda t, r: r"features of split 'trainval' have \d+ rows with NaN or inf",
    ),
    Case(
        "unwritable run directory",
        lambda t, r: ["train", "--runs", _config(t, "a file, not a folder", "runs_file")],
        lambda t, r: r"cannot create run directory under " + re.escape(str(t / "runs_file")),
    ),
    Case(
        "`align` with one checkpoint",
        lambda t, r: ["align", "-k", str(_checkpoint(r))],
        lambda t, r: r"align needs at least two checkpoints, got 1",
    ),
    Case(
        "`explain` with an unknown layer name",
        lambda t, r: [
            *("explain", "--run", str(r), "--algorithm", "layer_gradcam", "--layer", "bakbone")
        ],
        lambda t, r: r"no layer named 'bakbone' in PlpModel; close names: backbone",
    ),
    Case(
        "`--set` of a key that does not exist",
        _train("trainer.epoch=3"),
        lambda t, r: r"--set trainer\.epoch: no key 'epoch' in trainer \(did you mean 'epochs'\?\)",
    ),
    Case(
        "a component argument of the wrong type",
        _train("optimizer.lr=fast"),
        lambda t, r: (
            r"configs/digits\.toml: optimizer\.args\.lr: Input should be a valid number.*"
            r"\(given: 'fast'\)"
        ),
    ),
    Case(
        "a component argument out of range",
        _train("optimizer.lr=-0.1"),
        lambda t, r: r"optimizer\.args\.lr: must be > 0 and finite \(given: -0\.1\)",
    ),
    Case(
        "a component argument that does not exist",
        _train("optimizer.lrr=0.1"),
        lambda t, r: (
            r"unknown key 'optimizer\.args\.lrr': optimizer 'adam' takes lr, betas, "
            r"weight_decay, eps"
        ),
    ),
    Case(
        "a fractional batch size",
        _train("data.batch_size=2.5"),
        lambda t, r: r"data\.args\.batch_size: Input should be a valid integer.*\(given: 2\.5\)",
    ),
    Case(
        "a negative seed",
        _train("seed=-1"),
        lambda t, r: (
            r"digits\.toml: seed: Input should be greater than or equal to 0 \(given: -1\)"
        ),
    ),
    Case(
        "an unknown precision",
        _train("trainer.precision=banana"),
        lambda t, r: r"trainer\.precision: expected 'auto', .*'bf16-mixed'.* \(given: 'banana'\)",
    ),
    Case(
        "a GPU asked for on a machine without one",
        _train("trainer.accelerator=gpu"),
        lambda t, r: r"trainer\.accelerator: 'gpu' is not available on this machine",
    ),
    Case(
        "a schedule argument of the wrong type",
        _train("scheduler.warmup_epochs=three"),
        lambda t, r: r"scheduler\.args\.warmup_epochs: Input should be a valid number",
    ),
    Case(
        "unknown optimizer",
        _train("optimizer.name=adamx"),
        lambda t, r: (
            r"optimizer\.name: unknown optimizer 'adamx'; available: adam, adamw, sgd "
            r"\(did you mean 'adam'\?\)"
        ),
    ),
    Case(
        "a backbone argument of the wrong type in the config file",
        lambda t, r: [
            "train",
            "--config",
            _config(t, DIGITS.replace("width = 32", 'width = "wide"')),
            "--runs",
            str(t / "runs"),
        ],
        lambda t, r: (
            re.escape(str(t / "bad.toml"))
            + r": model\.backbone\.args\.width: Input should be a valid integer.*'wide'"
        ),
    ),
    Case(
        "a model too large for the machine",
        _train("model.backbone={{name = 'small_convnet', args = {{width = 100000}}}}"),
        lambda t, r: r"model: .* parameters need about .* GiB to train, more than .*embedding_size",
    ),
    Case(
        "the reserved run name `LATEST`",
        _train("name=LATEST"),
        lambda t, r: r"name: 'LATEST' is reserved",
    ),
    Case(
        "`runs/LATEST` that is a folder",
        lambda t, r: ["train", "--runs", _runs_with_latest_folder(t)],
        lambda t, r: r"other_runs/LATEST is not plp's record of the newest run \(a file\)",
    ),
    Case(
        "a garbage `run.json`",
        lambda t, r: ["evaluate", "--run", _run_with_garbage_record(t, r)],
        lambda t, r: r"copied_run/run\.json: not a JSON run record",
    ),
    Case(
        "an unreadable image",
        _on_images(prepare=lambda t: (t / "images/train/b/notes.jpg").write_text("not a picture")),
        lambda t, r: r"notes\.jpg: not a readable image",
    ),
    Case(
        "a Cars196 annotation with an infinite, NaN or empty class",
        lambda t, r: ["train", "--config", _cars_with_infinite_class(t), "--runs", str(t / "runs")],
        lambda t, r: r"cars_annos\.mat annotation 2: expected .*\(holds inf, not a whole number\)$",
    ),
    Case(
        "an annotation path outside the dataset folder",
        lambda t, r: ["train", "--config", _cub_with_path_outside(t), "--runs", str(t / "runs")],
        lambda t, r: r"images\.txt line 1: image_name '\.\./x\.jpg' must be a file path relative",
    ),
    Case(
        "a `cache_dir` that cannot be written",
        _on_images("data.pipeline=device", "data.cache_dir={tmp}/file/cache", prepare=_blocked),
        lambda t, r: r"image cache folder .*file/cache cannot be created \(Not a directory\); set",
    ),
    Case(
        "a crop larger than the image",
        _on_images("data.augment=[{{name = 'RandomCrop', args = {{size = 16}}}}]"),
        lambda t, r: r"data: augment\[0\]: RandomCrop of 16x16 is larger than the 8x8 images",
    ),
    Case(
        "a validation fraction that leaves nothing to train on",
        _train("data.val_fraction=0.9995"),
        lambda t, r: r"val_fraction = 0\.9995 of 1347 images holds out 1347 and keeps 0: both",
    ),
    Case(
        "a corrupt MNIST `.gz`",
        lambda t, r: _train(f"data.root={_corrupt_mnist(t)}", config="configs/mnist.toml")(t, r),
        lambda t, r: r"train-images-idx3-ubyte\.gz: not a complete gzip file",
    ),
    Case(
        "unknown pretrained weights",
        _train("model.backbone={{name = 'resnet18', args = {{weights = 'V9'}}}}"),
        lambda t, r: (
            r"model\.backbone\.args\.weights: resnet18: unknown weights 'V9'; valid: IMAGENET1K_V1"
        ),
    ),
    Case(
        "NaN where a bound says > 0",
        _train("trainer.gradient_clip_val=nan"),
        lambda t, r: r"trainer\.gradient_clip_val: Input should be a finite number \(given: nan\)$",
    ),
    Case(
        "an integer too large for its key",
        _train("trainer.epochs=99999999999999999999"),
        lambda t, r: (
            r"trainer\.epochs: Input should be less than or equal to 100000 \(given: 9+\)$"
        ),
    ),
    Case(
        "a run name that is not a safe folder name",
        _train('name="a\\nb"'),
        lambda t, r: (
            r"name: must be a name of letters, .*; '\\n' is not allowed \(given: 'a\\nb'\)$"
        ),
    ),
    Case(
        "a protocol the dataset cannot serve",
        _train("evaluate.protocol=query_gallery"),
        lambda t, r: r"evaluate\.protocol: 'query_gallery' needs the dataset's own query and",
    ),
    Case(
        "a backbone that cannot take the data's images",
        _train("model.backbone={{name = 'timm:vit_tiny_patch16_224'}}"),
        lambda t, r: r"model\.backbone: timm:vit_tiny_patch16_224 cannot take the data's 1 x 8 x 8",
    ),
    Case(
        "re-ranking k1 so large it would allocate terabytes",
        _train("evaluate.rerank_k1=1000000000"),
        lambda t, r: r"evaluate\.rerank_k1: Input should be less than or equal to 1000",
    ),
    Case(
        "a local weights file that is not a safe checkpoint",
        lambda t, r: _train(
            "model.backbone={{name = 'resnet18', args = {{weights_path = "
            f"'{_unsafe_weights(t)}'}}}}}}}}"
        )(t, r),
        lambda t, r: r"weights_path .*evil\.pth: refused: .*GLOBAL print was not an",
    ),
    Case(
        "a checkpoint whose recorded sizes would allocate terabytes",
        _evaluate_edited(lambda s: s["hyper_parameters"].update(num_classes=10**12)),
        lambda t, r: r"edited\.ckpt does not hold .* \[10, 64\] in the file, \[1000000000000, 64\]",
    ),
    Case(
        "an unknown logger",
        _train('logging.loggers=["csv", "comet"]'),
        lambda t, r: (
            r"logging\.loggers\.1: expected 'csv', 'tensorboard', 'mlflow' or 'wandb' "
            r"\(given: 'comet'\)"
        ),
    ),
    Case(
        "an MLflow logger without the mlflow package",
        _train('logging.loggers=["csv", "mlflow"]'),
        lambda t, r: (
            r"configs/digits\.toml: logging\.loggers: 'mlflow' needs the mlflow package, which is "
            r"not installed: pip install 'plp-pipelines\[mlflow\]'$"
        ),
        _without("mlflow"),
    ),
    Case(
        "a W&B logger without the wandb package",
        _train('logging.loggers=["csv", "wandb"]'),
        lambda t, r: (
            r"configs/digits\.toml: logging\.loggers: 'wandb' needs the wandb package, which is "
            r"not installed: pip install 'plp-pipelines\[wandb\]'$"
        ),
        _without("wandb"),
    ),
    Case(
        "a checkpoint monitor the run does not log",
        _train("checkpoint.monitor=val/mAPP", config="configs/digits_triplet.toml"),
        lambda t, r: (
            r"checkpoint\.monitor: 'val/mAPP' is not a metric this run logs \(did you mean "
            r"'val/mAP'\?\); it logs: train_loss, val_loss, val/mAP, val/rank1"
        ),
    ),
    Case(
        "a retrieval monitor whose validation split has no image with a match",
        _on_images("checkpoint.monitor=val/mAP", counts=({"a": 6, "b": 6}, {"a": 1, "b": 1})),
        lambda t, r: (
            r"checkpoint\.monitor: 'val/mAP' can never be computed: no class of the 2 validation "
            r"images has a second image, so no image has a match to find; hold out more "
            r"\(data\.args\.val_fraction or val_classes\)$"
        ),
    ),
    Case(
        "a negative early-stopping patience",
        _train("trainer.early_stopping={{patience=-1}}"),  # {{ }}: _train formats each --set
        lambda t, r: (
            r"trainer\.early_stopping\.patience: Input should be greater than or equal to 0 "
            r"\(given: -1\)"
        ),
    ),
    Case(
        "an EMA decay outside (0, 1)",
        _train("trainer.ema=1.5"),
        lambda t, r: r"trainer\.ema: Input should be less than 1 \(given: 1\.5\)",
    ),
    Case(
        "an unknown dataset to evaluate on",
        lambda t, r: ["evaluate", "--run", str(r), "--data", "digitz"],
        lambda t, r: r"'digitz' is neither a config file nor a datamodule \(did you mean 'digits'",
    ),
]


for _name in ("bad_input_own_data", "bad_input_more"):  # more cases (tests/ is not a package)
    _SPEC = importlib.util.spec_from_file_location(_name, ROOT / "tests" / f"{_name}.py")
    _MODULE = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
    _SPEC.loader.exec_module(_MODULE)  # type: ignore[union-attr]
    CASES += _MODULE.cases(Case)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, shared_runs: Path) -> Path:
    """A one-epoch digits run, not evaluated, in a runs root of its own (the newest run there)."""
    from plp_pipelines.testing import shared_run

    return shared_run(
        shared_runs,
        ROOT / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false"],
        tmp_path_factory.mktemp("trained"),
    )


@pytest.mark.parametrize("case", CASES, ids=[case.what for case in CASES])
def test_bad_input_is_one_line_with_exit_code_2(
    case: Case, tmp_path: Path, trained_run: Path, invoke
) -> None:
    if "GPU" in case.what and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    latest = trained_run.parent.parent / "LATEST"
    newest_before = latest.read_text()
    result = invoke(*case.args(tmp_path, trained_run), env=case.env(tmp_path) if case.env else None)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("plp: error: ")
    assert re.search(case.expected(tmp_path, trained_run), lines[0]), lines[0]
    assert latest.read_text() == newest_before
    assert not (tmp_path / "runs" / "LATEST").exists()
    assert not list((tmp_path / "runs").rglob("config.toml")), "a run folder was left behind"


def test_readme_error_table_matches_the_suite() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Errors you may see", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows[:2] == ["what", "---"]
    assert rows[2:] == [case.what for case in CASES]
