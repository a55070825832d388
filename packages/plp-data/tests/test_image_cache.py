"""The decoded-image cache: built once, rebuilt on change, never read half-written; bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

import plp_data._cache
from plp_data import PlpDataError, build_datamodule
from plp_data._cache import decoded_images, default_cache_dir
from plp_data._datasets import ImageReadError


def _write_images(folder: Path, count: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        pixels = np.random.default_rng(i).integers(0, 256, (10, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_cache_is_built_once_and_equals_pil_decoding(tmp_path: Path):
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    images = decoded_images(paths, (8, 6), cache)
    resize = T.Resize([8, 6])  # what the workers path does to each PIL image
    expected = np.stack([np.asarray(resize(Image.open(p).convert("RGB"))) for p in paths])
    assert images.shape == (4, 8, 6, 3) and np.array_equal(images, expected)
    (built,) = _cache_files(cache)
    modified = (cache / built).stat().st_mtime_ns
    again = decoded_images(paths, (8, 6), cache)  # reused, not rewritten
    assert np.array_equal(again, images) and (cache / built).stat().st_mtime_ns == modified


def test_cache_is_rebuilt_when_a_file_changes(tmp_path: Path):
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    before = np.array(decoded_images(paths, (8, 6), cache))
    Image.new("RGB", (12, 10), (0, 0, 0)).save(paths[2])
    os.utime(paths[2], ns=(1, 1))  # a different modification time whatever the clock's grain
    after = decoded_images(paths, (8, 6), cache)
    assert len(_cache_files(cache)) == 2
    assert np.array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert after[2].max() == 0 and before[2].max() > 0
    decoded_images(paths, (4, 4), cache)  # another image size: another cache
    assert len(_cache_files(cache)) == 3


def test_an_interrupted_build_leaves_nothing_that_a_later_run_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    decode = plp_data._cache._decode

    def dying(path: Path, size: tuple[int, int]) -> np.ndarray:
        if path == paths[2]:
            raise KeyboardInterrupt
        return decode(path, size)

    monkeypatch.setattr(plp_data._cache, "_decode", dying)
    with pytest.raises(KeyboardInterrupt):
        decoded_images(paths, (8, 6), cache, threads=1)
    assert _cache_files(cache) == []  # no final file, and the partial one is removed
    monkeypatch.setattr(plp_data._cache, "_decode", decode)
    # A partial file of another (killed) process is never taken for the cache.
    (cache / ".images-x.partial").write_bytes(b"\x93NUMPY half")
    images = decoded_images(paths, (8, 6), cache)
    assert images[2].any()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("notes.jpg", lambda path: path.write_text("not an image")),
        ("empty.png", lambda path: path.write_bytes(b"")),
        ("folder.jpg", lambda path: path.mkdir()),
    ],
)
def test_a_corrupt_image_is_one_line_naming_it(tmp_path: Path, name: str, make) -> None:
    _write_images(tmp_path / "root" / "cat")
    _write_images(tmp_path / "root" / "dog")
    bad = tmp_path / "root" / "dog" / name
    make(bad)
    # Building the cache (device path) ...
    dm = build_datamodule(
        "image_folder", root=str(tmp_path / "root"), image_size=[8, 8], pipeline="device"
    )
    with pytest.raises(ImageReadError) as caught:
        dm.setup()
        dm.train_dataloader()
    message = str(caught.value)
    assert str(bad) in message and "\n" not in message and "not a readable image" in message
    assert isinstance(caught.value, PlpDataError)
    # ... and mid-epoch in a DataLoader worker (workers path).
    dm = build_datamodule(
        "image_folder",
        root=str(tmp_path / "root"),
        image_size=[8, 8],
        pipeline="workers",
        num_workers=1,
        batch_size=2,
        test_fraction=0.5,
        val_fraction=0.0,
    )
    split = "trainval" if bad in dm.splits.trainval.paths else "test"
    with pytest.raises(ImageReadError) as caught:
        list(dm.split_dataloader(split))
    message = str(caught.value)
    assert str(bad) in message and "\n" not in message


def test_default_cache_folder_is_under_a_writable_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    assert default_cache_dir(tmp_path) == tmp_path / ".plp-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir(tmp_path / "missing") == tmp_path / "xdg" / "plp"


def test_an_unwritable_cache_folder_names_the_setting(tmp_path: Path):
    paths = _write_images(tmp_path / "images")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PlpDataError, match=r"cannot be created.*data.args.cache_dir"):
        decoded_images(paths, (8, 6), blocker / "cache")


def test_a_vanished_file_is_named(tmp_path: Path):
    paths = _write_images(tmp_path / "images")
    paths[1].unlink()
    with pytest.raises(ImageReadError, match=r"1\.png: cannot read"):
        decoded_images(paths, (8, 6), tmp_path / "cache")
