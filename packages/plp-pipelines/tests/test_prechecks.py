"""The checks before torch: the same names and messages as the registries and the datamodules."""

from __future__ import annotations

from pathlib import Path

import pytest

from plp_core import PlpError
from plp_pipelines import ConfigError, load_config
from plp_pipelines._catalog import CATALOG, registry
from plp_pipelines._components import check_components, check_names
from plp_pipelines._config import validate_config
from plp_pipelines._prechecks import check_before_torch, missing_data

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "configs" / "digits.toml"


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_catalog_equals_the_registries(key: str) -> None:
    names, real = CATALOG[key], registry(key)
    assert names.kind == real.kind
    assert list(names.names) == real.available(), f"{key}: add or remove the names in _catalog.py"
    for probe in ("zzz", names.names[0][:-1] + "x", "timm:resnet18", "timm:", 3):
        assert (probe in names) == (probe in real), (key, probe)
    for probe in ("zzz", names.names[0][:-1] + "x"):
        assert names.unknown_message(probe) == real.unknown_message(probe)


@pytest.mark.parametrize(
    "override",
    [
        "data.name=digitz",
        "data.sampler={name='pq'}",
        "model.backbone.name=resnet19",
        "model.head.name=embeding",
        "loss.name=tripplet",
        "loss.miner={name='hardest'}",
        "loss={terms=[{name='cross_entropy'}, {name='arcfac'}]}",
        "optimizer.name=adamx",
        "scheduler.name=cosin",
        "evaluate.datasets=['cifar10', {name='digitz'}]",
        "explain.algorithm=gradcam",
    ],
)
def test_unknown_names_give_the_registry_message_before_torch(override: str) -> None:
    config = load_config(DIGITS, [override])
    with pytest.raises(ConfigError) as quick:
        check_names(config)
    with pytest.raises(ConfigError) as full:
        check_components(config)
    assert str(quick.value) == str(full.value)
    assert "unknown" in str(quick.value)


def test_known_names_pass() -> None:
    for path in sorted((ROOT / "configs").glob("*.toml")):
        check_names(load_config(path))
    check_names(load_config(DIGITS, ["model.backbone.name=timm:resnet18"]))


def _config(name: str, **args: object) -> object:
    return validate_config({"data": {"name": name, "args": args}}, source="c.toml")


def _full_check_message(config: object) -> str:
    """Return the message the pipelines give (build the datamodule, load its splits)."""
    from plp_pipelines._build import build_datamodule
    from plp_pipelines._checks import check_data

    with pytest.raises(PlpError) as error:
        check_data(build_datamodule(config))  # type: ignore[arg-type]
    return str(error.value)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("mnist", {}),
        ("fashion_mnist", {"root": "elsewhere"}),
        ("kmnist", {}),
        ("cifar10", {}),
        ("cifar100", {"root": "elsewhere"}),
        ("image_folder", {"root": "images"}),
        ("image_folder", {}),
        ("market1501", {}),
        ("csv", {"path": "my/data.csv"}),
        ("csv", {}),
        ("cub200", {}),
        ("cars196", {"root": "elsewhere"}),
        ("sop", {}),
        ("inshop", {}),
    ],
)
def test_missing_data_is_the_datamodules_own_message(
    name: str, args: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative roots and the default ones: nothing is there
    config = _config(name, **args)
    with pytest.raises(ConfigError) as quick:
        check_before_torch(config)  # type: ignore[arg-type]
    assert str(quick.value) == _full_check_message(config)


def test_some_files_missing_and_present_data(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(b"")
    problem = missing_data("mnist", {"root": str(tmp_path)})
    assert problem is not None and "expected t10k-labels-idx1-ubyte.gz in" in problem[0]
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    assert missing_data("mnist", {"root": str(tmp_path)}) is None
    assert missing_data("mnist", {"root": str(tmp_path / "x"), "download": True}) is None
    assert missing_data("cifar10", {"root": str(tmp_path)}) is not None
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")  # extracted (or refused) on loading
    assert missing_data("cifar10", {"root": str(tmp_path)}) is None
    assert missing_data("image_folder", {"root": str(tmp_path)}) is None
    assert missing_data("image_folder", {"root": 3}) is None  # the argument check says why
    assert missing_data("digits", {}) is None
