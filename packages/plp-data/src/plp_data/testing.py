"""Tiny datasets written in the real on-disk formats, for smoke tests without downloads.

Each writer produces files that the matching datamodule reads through its normal code path:
``write_idx_dataset`` (MNIST-style gzipped idx files), ``write_cifar_batches`` (CIFAR python
pickles), ``write_cifar_archive`` (the same as the distributed ``.tar.gz``),
``write_market1501`` (Market-1501 named JPEGs) and the metric-learning benchmarks' annotation
files with tiny JPEGs: ``write_cub200``, ``write_cars196`` (a real MATLAB ``cars_annos.mat``),
``write_sop`` and ``write_inshop``; ``write_csv_dataset`` writes a dataset CSV in
open-metric-learning's format (with the optional columns on request) and its JPEGs. Pixels are
seeded random noise and labels cycle through the classes, so every class is present in every
split.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "write_cars196",
    "write_csv_dataset",
    "write_digits_images",
    "write_cifar_archive",
    "write_cifar_batches",
    "write_cub200",
    "market1501_names",
    "write_idx_dataset",
    "write_inshop",
    "write_market1501",
    "write_sop",
]


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


def write_cifar_archive(
    root: str | Path, per_batch: int = 10, num_test: int = 20, cifar100: bool = False
) -> Path:
    """Write the ``.tar.gz`` of :func:`write_cifar_batches`'s folder into ``root``; return it.

    The archive is named and laid out as distributed (``cifar-10-python.tar.gz`` holding
    ``cifar-10-batches-py/``, or ``cifar-100-python.tar.gz`` holding ``cifar-100-python/``);
    no extracted folder is left in ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ("cifar-100-python.tar.gz" if cifar100 else "cifar-10-python.tar.gz")
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_cifar_batches(scratch, per_batch, num_test, cifar100)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return archive


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


def market1501_names(
    identities: int = 20, per_identity: int = 4, cameras: int = 3
) -> dict[str, list[str]]:
    """Return Market-1501 file names for a small set that ``configs/market1501.toml`` can train on.

    ``identities`` training identities (at least the config's P = 16 for its P x K sampler)
    with ``per_identity`` images each (K = 4) across ``cameras`` cameras; as many other
    identities each with one query and, from other cameras, two gallery images; plus one junk
    and one distractor gallery image.
    """
    train = [
        f"{pid:04d}_c{image % cameras + 1}s1_{pid * 100 + image:06d}_01.jpg"
        for pid in range(1, identities + 1)
        for image in range(per_identity)
    ]
    test_ids = range(identities + 1, 2 * identities + 1)
    query = [f"{pid:04d}_c1s1_{pid * 100:06d}_00.jpg" for pid in test_ids]
    gallery = [
        f"{pid:04d}_c{camera}s1_{pid * 100 + camera:06d}_01.jpg"
        for pid in test_ids
        for camera in range(2, 4)
    ]
    gallery += ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg"]
    return {"bounding_box_train": train, "query": query, "bounding_box_test": gallery}


def write_jpeg(path: str | Path, seed: int, size: tuple[int, int] = (24, 32)) -> Path:
    """Write a ``size`` ``(height, width)`` RGB JPEG of seeded noise, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")
    return path


def write_cub200(
    root: str | Path,
    classes: Sequence[int] = (1, 2, 3, 101, 102),
    per_class: int = 3,
    with_class_names: bool = True,
) -> Path:
    """Write a tiny ``CUB_200_2011/`` layout into ``root``; return ``root``.

    ``images.txt`` (``<image_id> <image_name>``), ``image_class_labels.txt`` (``<image_id>
    <class_id>``), ``train_test_split.txt``, ``classes.txt`` (``<class_id> NNN.Name_k``, unless
    ``with_class_names`` is False) and ``images/NNN.Name_k/Name_k_<i>.jpg``, ``per_class`` images
    for each of the CUB class ids in ``classes`` (1..200).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images, labels, split, names = [], [], [], []
    image_id = 0
    for class_id in classes:
        folder = f"{class_id:03d}.Bird_{class_id}"
        names.append(f"{class_id} {folder}")
        for index in range(per_class):
            image_id += 1
            name = f"{folder}/Bird_{class_id}_{index:04d}_{image_id}.jpg"
            write_jpeg(root / "images" / name, seed=image_id)
            images.append(f"{image_id} {name}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {int(index % 2 == 0)}")
    for file, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        *((("classes.txt", names),) if with_class_names else ()),
    ):
        (root / file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_cars196(
    root: str | Path, classes: Sequence[int] = (1, 2, 3, 99, 100), per_class: int = 3
) -> Path:
    """Write a tiny Cars196 layout into ``root``: ``cars_annos.mat`` and ``car_ims/``; return it.

    ``cars_annos.mat`` is a real MATLAB file (``scipy.io.savemat``) shaped as the distributed
    one: a 1xN struct array ``annotations`` with ``relative_im_path``, ``bbox_x1`` .. ``bbox_y2``,
    ``class`` and ``test`` (uint8 1x1 matrices), and a 1x196 cell array ``class_names``.
    ``per_class`` JPEGs ``car_ims/NNNNNN.jpg`` for each class id in ``classes`` (1..196).
    """
    from scipy.io import savemat

    root = Path(root)
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    count = len(classes) * per_class
    annotations = np.zeros((1, count), dtype=[(name, "O") for name in fields])
    number = 0
    for class_id in classes:
        for index in range(per_class):
            number += 1
            relative = f"car_ims/{number:06d}.jpg"
            write_jpeg(root / relative, seed=number)

            def matrix(value: int) -> np.ndarray:
                return np.array([[value]], dtype=np.uint8)

            annotations[0, number - 1] = (
                relative,
                matrix(1),
                matrix(2),
                matrix(30),
                matrix(22),
                matrix(class_id),
                matrix(index % 2),
            )
    class_names = np.empty((1, 196), dtype=object)
    class_names[0, :] = [f"Maker Model {k} 2012" for k in range(1, 197)]
    savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return root


SOP_CATEGORIES = (
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
)


def write_sop(
    root: str | Path,
    train_classes: Sequence[int] = (1, 2, 3),
    test_classes: Sequence[int] = (4, 5),
    per_class: int = 3,
) -> Path:
    """Write a tiny ``Stanford_Online_Products/`` layout into ``root``; return ``root``.

    ``Ebay_train.txt`` and ``Ebay_test.txt`` with the header ``image_id class_id super_class_id
    path`` and ``per_class`` JPEGs ``<category>_final/<class_id>_<i>.JPG`` per class; the
    super class of class ``c`` is ``(c - 1) % 12 + 1``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    image_id = 0
    for file, class_ids in (("Ebay_train.txt", train_classes), ("Ebay_test.txt", test_classes)):
        lines = ["image_id class_id super_class_id path"]
        for class_id in class_ids:
            super_class = (class_id - 1) % len(SOP_CATEGORIES) + 1
            for index in range(per_class):
                image_id += 1
                relative = f"{SOP_CATEGORIES[super_class - 1]}_final/{class_id}_{index}.JPG"
                write_jpeg(root / relative, seed=image_id)
                lines.append(f"{image_id} {class_id} {super_class} {relative}")
        (root / file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_inshop(
    root: str | Path,
    train_items: Sequence[int] = (1, 3, 4),
    test_items: Sequence[int] = (2, 5),
    per_item: int = 3,
) -> Path:
    """Write a tiny In-Shop layout into ``root``: ``list_eval_partition.txt`` and ``img/``.

    The list has the count line, the header ``image_name item_id evaluation_status`` and one
    line per image (columns padded with spaces, as distributed). Train items get ``per_item``
    ``train`` images; each test item gets one ``query`` image and ``per_item - 1`` ``gallery``
    images. Item ``k`` is ``id_<k:08d>``. Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    for item in sorted((*train_items, *test_items)):
        item_id = f"id_{item:08d}"
        for index in range(per_item):
            name = f"img/WOMEN/Dresses/{item_id}/{index + 1:02d}_1_front.jpg"
            write_jpeg(root / name, seed=len(rows) + 1)
            status = "train" if item in train_items else "query" if index == 0 else "gallery"
            rows.append(f"{name:<60} {item_id:<20} {status}")
    text = "\n".join([str(len(rows)), "image_name item_id evaluation_status", *rows]) + "\n"
    (root / "list_eval_partition.txt").write_text(text, encoding="utf-8")
    return root


def write_csv_dataset(
    root: str | Path,
    *,
    train_classes: Sequence[int | str] = (0, 1, 2),
    validation_classes: Sequence[int | str] = (3, 4),
    per_class: int = 4,
    cameras: bool = False,
    sequences: bool = False,
    boxes: bool = False,
    categories: bool = False,
    query_in_gallery: bool = False,
    size: tuple[int, int] = (32, 32),
    name: str = "dataset.csv",
) -> Path:
    """Write ``<root>/<name>``, a dataset CSV in open-metric-learning's format, and its JPEGs.

    Train classes get ``per_class`` train rows each; each validation class gets one query and
    ``per_class - 1`` gallery rows (with ``query_in_gallery``, the query is a gallery item too).
    Images ``images/<label>/<i>.jpg`` (``size`` ``(height, width)``) are a class colour plus
    seeded noise, so a model can learn the classes. Options add the optional columns:
    ``cameras`` (rows ``2k`` and ``2k + 1`` of a class on camera ``k + 1``, so a query shares
    its camera with one gallery item), ``sequences`` (the same rows share sequence
    ``<label>-<k>``), ``boxes`` (a box inside each image; the first row of each
    class has none), ``categories`` (``even`` / ``odd`` by the class's position). Returns the
    CSV's path.
    """
    root = Path(root)
    columns = ["label", "path", "split", "is_query", "is_gallery"]
    columns += ["category"] if categories else []
    columns += ["sequence"] if sequences else []
    columns += ["x_1", "x_2", "y_1", "y_2"] if boxes else []
    columns += ["camera"] if cameras else []
    rows: list[dict[str, object]] = []
    every = [(c, "train") for c in train_classes] + [(c, "validation") for c in validation_classes]
    for position, (label, split) in enumerate(every):
        colour = np.array(
            [(position * 97) % 256, (position * 53 + 80) % 256, (position * 29) % 256]
        )
        for index in range(per_class):
            relative = f"images/{label}/{index}.jpg"
            rng = np.random.default_rng([position, index])
            noise = rng.integers(-40, 41, (*size, 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / relative, "JPEG", quality=95)
            query = split == "validation" and index == 0
            row: dict[str, object] = {
                "label": label,
                "path": relative,
                "split": split,
                "is_query": "" if split == "train" else query,
                "is_gallery": "" if split == "train" else (not query or query_in_gallery),
                "category": "even" if position % 2 == 0 else "odd",
                "sequence": f"{label}-{index // 2}",
                "camera": 1 + index // 2,
            }
            if boxes and index > 0:
                row.update(x_1=1, x_2=size[1] - index, y_1=index, y_2=size[0] - 1)
            rows.append(row)
    path = root / name
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_digits_images(
    folder: str | Path, indices: Sequence[int] | None = None, *, by_label: bool = True
) -> list[Path]:
    """Write scikit-learn's digits as 8x8 grey PNGs of their raw 0..16 values; return the files.

    ``indices`` picks digits (default: all 1,797); files are ``<folder>/<label>/<index>.png``
    (``<folder>/<index>.png`` without ``by_label``). A digits run reads such files exactly as
    its own images (:meth:`plp_data.DigitsDataModule.eval_preprocessing`).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = range(len(digits.target)) if indices is None else indices
    folder = Path(folder)
    files = []
    for index in chosen:
        label = int(digits.target[index])
        path = folder / str(label) / f"{index}.png" if by_label else folder / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[index].astype(np.uint8), mode="L").save(path)
        files.append(path)
    return files
