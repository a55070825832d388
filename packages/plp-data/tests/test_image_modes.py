"""Images of more than 8 bits, floats and palettes: decoded to the right 8-bit values.

Pillow's ``convert("RGB")`` saturates every 16-bit or 32-bit value above 255 to white and every
float image in [0, 1] to black; plp scales them by their range (``plp_data._datasets``). Each
mode is written as a real file, read through both data paths (device: the decoded cache;
workers: per-image transforms) and compared with values computed here from the pixels written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plp_data import build_datamodule
from plp_data._datasets import read_rgb_image

SHAPE = (6, 5)  # height, width: the files' own size, so no resize blurs the values


def _sixteen_bit(path: Path, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 65536, SHAPE, dtype=np.uint16)
    values.flat[:2] = (0, 65535)
    Image.fromarray(values).save(path.with_suffix(".png"))  # a 16-bit greyscale PNG (I;16)
    # v * 255 / 65535 = v / 257, never exactly half-way for an integer v: no tie to break
    return ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _sixteen_bit_in_32(path: Path, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 4096, SHAPE).astype(np.int32)
    Image.fromarray(values).save(path.with_suffix(".tif"))  # mode I, values of 12 bits
    return ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _wide_integers(path: Path, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(-50_000, 300_000, SHAPE).astype(np.int32)
    Image.fromarray(values).save(path.with_suffix(".tif"))  # mode I beyond 16 bits: own range
    low, high = values.min(), values.max()
    return np.rint((values - low) * 255.0 / (high - low)).astype(np.uint8)


def _unit_floats(path: Path, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).random(SHAPE).astype(np.float32)
    values.flat[:2] = (0.0, 1.0)
    Image.fromarray(values).save(path.with_suffix(".tif"))  # mode F in [0, 1]
    return np.rint(values.astype(np.float64) * 255).astype(np.uint8)


def _wide_floats(path: Path, seed: int) -> np.ndarray:
    values = (np.random.default_rng(seed).random(SHAPE) * 10 - 3).astype(np.float32)
    values.flat[0] = np.nan  # black
    Image.fromarray(values).save(path.with_suffix(".tif"))  # mode F beyond [0, 1]: own range
    finite = values[np.isfinite(values)].astype(np.float64)
    low, high = finite.min(), finite.max()
    expected = np.rint((np.nan_to_num(values, nan=low) - low) * 255.0 / (high - low))
    return expected.astype(np.uint8)


def _palette(path: Path, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 16, SHAPE, dtype=np.uint8)
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    image = Image.frombytes("P", (SHAPE[1], SHAPE[0]), indices.tobytes())
    image.putpalette(colours.ravel().tolist())
    image.save(path.with_suffix(".png"))  # mode P
    return colours[indices]


MODES: dict[str, Callable[[Path, int], np.ndarray]] = {
    "16-bit": _sixteen_bit,
    "16-bit-in-32": _sixteen_bit_in_32,
    "32-bit": _wide_integers,
    "float-unit": _unit_floats,
    "float-wide": _wide_floats,
    "palette": _palette,
}


def _rgb(expected: np.ndarray) -> np.ndarray:
    return expected if expected.ndim == 3 else np.repeat(expected[..., None], 3, axis=-1)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_read_rgb_image_scales_each_mode_by_its_range(mode: str, tmp_path: Path) -> None:
    expected = _rgb(MODES[mode](tmp_path / "image", 0))
    (path,) = tmp_path.iterdir()
    decoded = np.asarray(read_rgb_image(path))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_both_data_paths_serve_the_scaled_values(mode: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    expected: dict[str, np.ndarray] = {}
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(3):
            stem = root / label / f"{index}"
            values = _rgb(MODES[mode](stem, seed=10 * index + len(label)))
            (path,) = root.glob(f"{label}/{index}.*")
            expected[str(path)] = values
    common = {
        "root": str(root),
        "image_size": list(SHAPE),
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],  # so a served value is the 8-bit value / 255
        "val_fraction": 0.0,
        "test_fraction": 0.5,
    }
    workers = build_datamodule("image_folder", pipeline="workers", **common)
    device = build_datamodule(
        "image_folder", pipeline="device", cache_dir=str(tmp_path / "cache"), **common
    )
    for split in ("trainval", "test"):
        paths = getattr(workers.splits, split).paths
        wanted = torch.from_numpy(np.stack([expected[str(p)] for p in paths]))
        wanted = wanted.permute(0, 3, 1, 2).float() / 255
        for dm in (workers, device):
            images = torch.cat([batch[0].cpu() for batch in dm.split_dataloader(split)])
            torch.testing.assert_close(images, wanted, atol=1e-6, rtol=0)
