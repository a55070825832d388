"""Tiny datasets written in the real on-disk formats, for smoke tests without downloads.

Each writer produces files that the matching datamodule reads through its normal code path:
``write_idx_dataset`` (MNIST-style gzipped idx files), ``write_cifar_batches`` (CIFAR python
pickles) and ``write_market1501`` (Market-1501 named JPEGs). Pixels are seeded random noise and
labels cycle through the classes, so every class is present in every split.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_cifar_batches", "write_idx_dataset", "write_market1501"]


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as a gzip-compressed idx file of unsigned bytes (the MNIST format)."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path = Path(path)
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())
    return path


def write_idx_dataset(
    root: str | Path, folder: str = "MNIST", num_train: int = 20, num_test: int = 10, seed: int = 0
) -> Path:
    """Write ``<root>/<folder>/raw/{train,t10k}-{images,labels}-*.gz``; return the raw folder.

    Labels are ``index % 10``; images are random 28x28 bytes.
    """
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return raw


def write_cifar_batch(
    path: str | Path, labels: Sequence[int] | np.ndarray, label_key: str = "labels", seed: int = 0
) -> Path:
    """Write one CIFAR python batch (protocol-2 pickle of ``data`` (N, 3072) uint8 and labels)."""
    rng = np.random.default_rng(seed)
    entry = {
        "batch_label": "plp test batch",
        label_key: [int(v) for v in labels],
        "data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
        "filenames": [f"image_{i}.png" for i in range(len(labels))],
    }
    path = Path(path)
    path.write_bytes(pickle.dumps(entry, protocol=2))
    return path


def write_cifar_batches(
    root: str | Path, per_batch: int = 10, num_test: int = 20, cifar100: bool = False
) -> Path:
    """Write a tiny ``cifar-10-batches-py/`` (or ``cifar-100-python/``); return that folder.

    CIFAR-10 gets five training batches of ``per_batch`` images, a ``test_batch`` and
    ``batches.meta``; CIFAR-100 gets ``train``, ``test`` and ``meta`` with fine labels.
    """
    num_classes = 100 if cifar100 else 10
    folder = Path(root) / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    if cifar100:
        write_cifar_batch(folder / "train", np.arange(5 * per_batch) % num_classes, "fine_labels")
        write_cifar_batch(folder / "test", np.arange(num_test) % num_classes, "fine_labels", 9)
        (folder / "meta").write_bytes(
            pickle.dumps({"fine_label_names": list(map(str, range(100)))})
        )
        return folder
    for i in range(1, 6):
        labels = (np.arange(per_batch) + i * per_batch) % num_classes
        write_cifar_batch(folder / f"data_batch_{i}", labels, seed=i)
    write_cifar_batch(folder / "test_batch", np.arange(num_test) % num_classes, seed=9)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    return folder


MARKET_EXAMPLE: Mapping[str, Sequence[str]] = {
    "bounding_box_train": (
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "0007_c1s3_077419_03.jpg",
        "0010_c6s1_001001_02.jpg",
    ),
    "query": ("0003_c1s1_001001_00.jpg", "0005_c2s1_001001_00.jpg"),
    "bounding_box_test": (
        "-1_c1s1_000401_03.jpg",  # junk: skipped
        "0000_c1s1_000151_01.jpg",  # distractor: kept in the gallery
        "0003_c1s1_001051_01.jpg",
        "0003_c4s1_001051_01.jpg",
        "0005_c3s1_001051_01.jpg",
    ),
}


def write_market1501(root: str | Path, names: Mapping[str, Sequence[str]] = MARKET_EXAMPLE) -> Path:
    """Write 64x128 JPEGs named as in Market-1501 into ``<root>/<folder>/``; return ``root``."""
    root = Path(root)
    for folder, files in names.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(files):
            Image.new("RGB", (64, 128), (i * 30 % 256, 0, 0)).save(root / folder / name, "JPEG")
    return root
