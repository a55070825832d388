"""scikit-learn's bundled 8x8 digits: the offline default dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from plp_core import Fraction, NonNegativeInt
from plp_data._base import PlpDataModule, Splits, split_indices
from plp_data._datasets import TensorImageDataset
from plp_data._device import DeviceImageDataset, DevicePlan, DeviceSplits
from plp_data._preprocessing import Preprocessing
from plp_data._registry import DATAMODULES

__all__ = ["DigitsDataModule"]

# Mean and standard deviation of the digits pixels after scaling to [0, 1] (all 1,797 images).
DIGITS_MEAN = 0.3074
DIGITS_STD = 0.3739


@DATAMODULES.register("digits")
class DigitsDataModule(PlpDataModule):
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes), needing no download.

    The trainval/test split is stratified by class and fixed by ``split_seed`` (not by ``seed``,
    so that runs with different training seeds are evaluated on the same test images). Images are
    scaled to [0, 1] and normalised with the dataset's mean and standard deviation; there is no
    augmentation.

    Args:
        test_fraction: Share of the images in the test split.
        split_seed: Seed of the trainval/test split.
        **kwargs: Passed to :class:`PlpDataModule` (``batch_size``, ``seed``, ...). ``root`` is
            accepted and ignored: the data ships with scikit-learn.
    """

    num_classes = 10
    in_channels = 1
    image_size = (8, 8)

    def __init__(
        self, test_fraction: Fraction = 0.25, split_seed: NonNegativeInt = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    @classmethod
    def eval_preprocessing(cls, **args: Any) -> Preprocessing:
        """Grey 8x8 images of the raw 0..16 values scikit-learn's digits hold, ``/ 16``, normalised.

        An image file embedded by a digits run holds those raw values (as
        :func:`plp_data.testing.write_digits_images` writes them).
        """
        del args
        return Preprocessing(1, (8, 8), (DIGITS_MEAN,), (DIGITS_STD,), scale=16.0)

    @property
    def class_names(self) -> list[str]:
        """The digits ``"0"`` .. ``"9"``, indexed by label."""
        return [str(digit) for digit in range(10)]

    def load_splits(self) -> Splits:
        """Return the fixed, stratified trainval/test split of the digits."""
        pixels, target = _load_digits()
        images = (pixels.astype(np.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD
        labels = target.astype(np.int64)
        trainval_idx, test_idx = split_indices(
            labels, self.test_fraction, self.split_seed, what="DigitsDataModule: test_fraction"
        )
        tensor = torch.from_numpy(images).unsqueeze(1)
        label_tensor = torch.from_numpy(labels)
        trainval = TensorImageDataset(tensor[trainval_idx], label_tensor[trainval_idx])
        test = TensorImageDataset(tensor[test_idx], label_tensor[test_idx])
        raw = pixels.astype(np.uint8)  # 0..16; the device path divides by 16 as above

        def device_splits() -> DeviceSplits:
            def split(idx: np.ndarray) -> DeviceImageDataset:
                return DeviceImageDataset(
                    raw[idx], labels[idx], (DIGITS_MEAN,), (DIGITS_STD,), scale=16.0
                )

            return DeviceSplits(split(trainval_idx), split(test_idx), {}, augmentation=None)

        return Splits(
            train=trainval,
            trainval=trainval,
            test=test,
            trainval_labels=labels[trainval_idx],
            device=DevicePlan(raw.nbytes, device_splits),
        )


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's digits as ``load_digits()`` does: ``(images (N, 8, 8), target)``.

    Read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``) as its
    ``load_digits`` reads it, without importing scikit-learn (and SciPy, pandas): ~0.5 s of
    every digits setup.
    """
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        from sklearn.datasets import load_digits  # raises the plain ImportError

        digits = load_digits()
        return digits.images, digits.target
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as file:
        data = np.loadtxt(file, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)
