"""The decoded-image cache: built once, rebuilt on change, never read half-written; bad files."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
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


def _built(cache: Path) -> Path:
    (built,) = [p for p in cache.iterdir() if p.suffix == ".npy"]
    return built


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:-7]), id="truncated"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes() + b"x"), id="padded"),
        pytest.param(lambda path: path.write_bytes(b"junk, not a .npy file"), id="junk"),
        pytest.param(lambda path: path.write_bytes(b""), id="empty"),
        pytest.param(lambda path: np.save(path, np.zeros((4, 8, 6, 3))), id="float64"),
        pytest.param(
            lambda path: np.save(path, np.zeros((4, 6, 8, 3), dtype=np.uint8)), id="other-shape"
        ),
        pytest.param(
            lambda path: np.save(path, np.asfortranarray(np.zeros((4, 8, 6, 3), np.uint8))),
            id="fortran-order",
        ),
        pytest.param(
            lambda path: path.write_bytes(
                path.read_bytes().replace(b"'descr': '|u1'", b"'descr': '|i1'")
            ),
            id="other-dtype-header",
        ),
    ],
)
def test_an_invalid_cache_file_is_rebuilt(tmp_path: Path, damage) -> None:
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    expected = np.array(decoded_images(paths, (8, 6), cache))
    built = _built(cache)
    damage(built)
    again = decoded_images(paths, (8, 6), cache)
    assert np.array_equal(again, expected) and _cache_files(cache) == [built.name]


def test_a_full_disk_while_writing_the_cache_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    write = plp_data._cache._write

    class FillingUp:
        """A file that takes 200 bytes, then fails as a full disk does (ENOSPC)."""

        def __init__(self, out) -> None:
            self.out, self.left = out, 200

        def write(self, data: bytes) -> int:
            if len(data) > self.left:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return self.out.write(data)

        def __getattr__(self, name: str):
            return getattr(self.out, name)

    monkeypatch.setattr(plp_data._cache, "_write", lambda out, *a: write(FillingUp(out), *a))
    with pytest.raises(PlpDataError) as caught:
        decoded_images(paths, (8, 6), cache)
    message = str(caught.value)
    assert message.startswith(f"cannot write the image cache {cache}/images-")
    assert "disk full" in message and "data.args.cache_dir" in message and "\n" not in message
    assert _cache_files(cache) == []


@pytest.mark.slow
def test_a_real_file_size_limit_is_an_os_error_not_a_crash(tmp_path: Path) -> None:
    """With a file size limit the kernel refuses writes (EFBIG), as a full disk does (ENOSPC).

    A memory-mapped writer dies of SIGBUS/SIGXFSZ there; ordinary writes get an OSError.
    """
    _write_images(tmp_path / "images")
    script = f"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from plp_data import PlpDataError
from plp_data._cache import decoded_images
paths = sorted(Path({str(tmp_path / "images")!r}).glob("*.png"))
resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
try:
    decoded_images(paths, (8, 6), {str(tmp_path / "cache")!r}, threads=1)
except PlpDataError as error:
    print(error)
    sys.exit(2)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.startswith("cannot write the image cache") and done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert _cache_files(tmp_path / "cache") == []


def test_partial_files_of_dead_builders_are_removed(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "images")
    cache = tmp_path / "cache"
    cache.mkdir()
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64]
    dead_pid = subprocess.Popen(["true"])  # a process that is gone
    dead_pid.wait()
    name = "images-0123-4x8x6.npy"
    dead = cache / f".{name}.{dead_pid.pid}-0123abcd@{host}.partial"
    live = cache / f".{name}.{os.getppid()}-0123abcd@{host}.partial"
    elsewhere = cache / f".{name}.{dead_pid.pid}-0123abcd@another-host.partial"
    old = cache / f".{name}.12-0123abcd.partial"  # an older plp's name, untouched for days
    for path in (dead, live, elsewhere, old):
        path.write_bytes(b"\x93NUMPY half")
    os.utime(old, (time.time() - 3 * 24 * 3600,) * 2)
    decoded_images(paths, (8, 6), cache)
    left = set(_cache_files(cache))
    assert live.name in left and elsewhere.name in left
    assert dead.name not in left and old.name not in left


def test_an_unwritable_default_cache_folder_falls_back_with_one_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _write_images(root / "cat")
    _write_images(root / "dog")
    (root / ".plp-cache").write_text("a file where the cache folder goes")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    common = {"root": str(root), "image_size": [8, 8], "val_fraction": 0.0}
    for _ in range(2):  # the note once per folder and process
        dm = build_datamodule("image_folder", pipeline="device", **common)
        dm.setup()
        device = next(iter(dm.split_dataloader("trainval")))[0]
    err = capfd.readouterr().err
    assert err.count("plp: note:") == 1, err
    (note,) = [line for line in err.splitlines() if "plp: note:" in line]
    assert f"{root / '.plp-cache'} cannot be created" in note
    assert str(tmp_path / "xdg" / "plp") in note and "data.args.cache_dir" in note
    assert any(p.suffix == ".npy" for p in (tmp_path / "xdg" / "plp").iterdir())
    workers = build_datamodule("image_folder", pipeline="workers", **common)
    workers.setup()
    expected = next(iter(workers.split_dataloader("trainval")))[0]
    torch.testing.assert_close(device.cpu(), expected, atol=1e-5, rtol=0)


def test_a_cache_folder_that_cannot_be_written_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A read-only folder (simulated: tests may run as root, who may write anywhere)."""
    paths = _write_images(tmp_path / "images")
    cache, fallback = tmp_path / "cache", tmp_path / "fallback"
    cache.mkdir()
    opened = Path.open

    def read_only(self: Path, mode: str = "r", *args, **kwargs):
        if self.parent == cache and "x" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return opened(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    images = decoded_images(paths, (8, 6), cache, fallback_dir=fallback)
    assert images.shape == (4, 8, 6, 3) and _cache_files(cache) == []
    assert "cannot be written (permission denied); using" in capfd.readouterr().err
    with pytest.raises(PlpDataError, match=r"cannot be written \(permission denied\); set data"):
        decoded_images(paths, (4, 4), cache)
