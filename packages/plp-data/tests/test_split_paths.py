"""Every dataset with files names each evaluation item's file, relative to the data root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from plp_data import PlpDataError, build_datamodule
from plp_data.testing import (
    write_cars196,
    write_cub200,
    write_inshop,
    write_market1501,
    write_sop,
)


def _folder(root: Path) -> Path:
    for split, name, count in (("train", "a", 2), ("train", "b", 2), ("test", "a", 1)):
        for i in range(count):
            path = root / split / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(path)
    return root


WRITERS: dict[str, Callable[[Path], Path]] = {
    "image_folder": _folder,
    "market1501": write_market1501,
    "cub200": write_cub200,
    "cars196": write_cars196,
    "sop": write_sop,
    "inshop": write_inshop,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_split_paths_are_the_files_relative_to_the_root(name: str, tmp_path: Path) -> None:
    root = WRITERS[name](tmp_path / "data")
    dm = build_datamodule(name, root=str(root), image_size=[8, 8], val_fraction=0.0)
    for split in dm.eval_splits:
        paths = dm.split_paths(split)
        assert paths is not None
        dataset = {"trainval": dm.splits.trainval, "test": dm.splits.test, **dm.splits.extra}[split]
        assert len(paths) == len(dataset)  # type: ignore[arg-type]
        for relative, file in zip(paths, dataset.paths, strict=True):  # type: ignore[attr-defined]
            assert not Path(relative).is_absolute()
            assert (root / relative).resolve() == Path(file).resolve()
    if name == "market1501":
        assert dm.split_paths("query") == [
            "query/0003_c1s1_001001_00.jpg",
            "query/0005_c2s1_001001_00.jpg",
        ]
    assert dm.split_groups("test") is None


def test_datasets_without_files_have_no_paths() -> None:
    dm = build_datamodule("digits", val_fraction=0.0)
    assert dm.split_paths("test") is None
    assert dm.split_groups("test") is None
    with pytest.raises(PlpDataError, match=r"unknown split of DigitsDataModule 'tset'; .*'test'\?"):
        dm.split_paths("tset")
    assert isinstance(next(iter(dm.split_dataloader("test")))[0], torch.Tensor)
