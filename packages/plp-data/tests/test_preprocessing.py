"""Image files preprocessed exactly as each datamodule's own evaluation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from plp_data import (
    DATAMODULES,
    DigitsDataModule,
    PlpDataError,
    Preprocessing,
    build_datamodule,
)
from plp_data.testing import write_csv_dataset, write_digits_images, write_idx_dataset


def _images(dm: object, split: str) -> torch.Tensor:
    return torch.cat([batch[0] for batch in dm.split_dataloader(split)])  # type: ignore[attr-defined]


@pytest.mark.parametrize("pipeline", ["workers", "device"])
def test_digit_files_equal_the_runs_own_test_images(pipeline: str, tmp_path: Path) -> None:
    dm = build_datamodule("digits", val_fraction=0.0, pipeline=pipeline)
    expected = _images(dm, "test")
    # The test split's indices into load_digits(), found by value (the split is fixed).
    flat = load_digits().images.reshape(1797, -1)
    wanted = ((expected.reshape(len(expected), -1).numpy() * 0.3739 + 0.3074) * 16).round()
    indices = [int(np.flatnonzero((flat == row).all(axis=1))[0]) for row in wanted[:20]]
    files = write_digits_images(tmp_path, indices, by_label=False)
    preprocessing = DigitsDataModule.eval_preprocessing()
    pixels = np.stack([preprocessing.read(path) for path in files])
    assert pixels.shape == (20, 8, 8, 1) and pixels.max() <= 16
    assert torch.equal(preprocessing.normalise(pixels), expected[:20])


def test_csv_files_with_boxes_equal_the_datamodule_images(tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path, boxes=True, size=(40, 30))
    args = {"path": str(path), "image_size": [24, 20], "val_fraction": 0.0, "pipeline": "workers"}
    dm = build_datamodule("csv", **args)
    preprocessing = DATAMODULES.get("csv").eval_preprocessing(**args)
    assert preprocessing == Preprocessing(3, (24, 20), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    table = dm.table  # type: ignore[attr-defined]
    rows = np.flatnonzero(table.is_gallery)
    pixels = np.stack([preprocessing.read(table.paths[i], table.boxes[i]) for i in rows])
    torch.testing.assert_close(
        preprocessing.normalise(pixels), _images(dm, "gallery"), atol=1e-6, rtol=0
    )


def test_mnist_png_and_a_colour_file_of_another_size(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, num_train=4, num_test=4)
    dm = build_datamodule("mnist", root=str(tmp_path), val_fraction=0.0)
    preprocessing = DATAMODULES.get("mnist").eval_preprocessing()
    assert (preprocessing.channels, preprocessing.image_size) == (1, (28, 28))
    expected = _images(dm, "test")
    raw = ((expected[:, 0] * 0.3081 + 0.1307) * 255).round().to(torch.uint8).numpy()
    for i, image in enumerate(raw):
        Image.fromarray(image, mode="L").save(tmp_path / f"{i}.png")
    pixels = np.stack([preprocessing.read(tmp_path / f"{i}.png") for i in range(4)])
    torch.testing.assert_close(preprocessing.normalise(pixels), expected, atol=1e-6, rtol=0)
    # A colour file of another size: grey (ITU-R 601-2 luma), then resized to 28x28.
    Image.new("RGB", (50, 40), (200, 100, 0)).save(tmp_path / "colour.png")
    grey = preprocessing.read(tmp_path / "colour.png")
    assert grey.shape == (28, 28, 1)
    assert int(grey[14, 14, 0]) == (200 * 299 + 100 * 587) // 1000


def test_records_round_trip_and_bad_ones_are_refused() -> None:
    preprocessing = Preprocessing(1, (8, 8), (0.3,), (0.4,), scale=16.0)
    assert Preprocessing.from_dict(preprocessing.to_dict()) == preprocessing
    with pytest.raises(PlpDataError, match="not a preprocessing record"):
        Preprocessing.from_dict({"channels": 1})
    with pytest.raises(PlpDataError, match="expected 1 or 3 channels"):
        Preprocessing(2, (8, 8), (0.1, 0.2), (0.3, 0.4))
    with pytest.raises(PlpDataError, match=r"expected uint8 images \(N, H, W, 1\)"):
        preprocessing.normalise(np.zeros((2, 8, 8, 3), dtype=np.uint8))
