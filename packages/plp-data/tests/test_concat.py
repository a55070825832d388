"""The concat datamodule: disjoint labels, prefixed names, one image size, bad specs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from plp_data import ConcatDataModule, PlpDataError, build_datamodule, testing


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("concat")
    testing.write_idx_dataset(root / "mnist", num_train=40, num_test=20)
    testing.write_idx_dataset(root / "fashion", folder="FashionMNIST", num_train=30, num_test=10)
    testing.write_cifar_batches(root / "cifar")
    testing.write_market1501(root / "market", testing.market1501_names(identities=6))
    return root


def concat(roots, *parts, **kwargs) -> ConcatDataModule:
    specs = [{"name": name, "args": args} for name, args in parts]
    return build_datamodule("concat", datasets=specs, **kwargs)


def items(loader):
    return [(x, y) for x, y, *_ in loader]


def test_labels_are_disjoint_names_prefixed_and_images_one_size(roots):
    data = concat(
        roots,
        ("digits", {}),
        ("mnist", {"root": str(roots / "mnist")}),
        ("fashion_mnist", {"root": str(roots / "fashion")}),
        image_size=[12, 12],
        val_fraction=0.0,
        batch_size=16,
    )
    assert data.part_names == ["digits", "mnist", "fashion_mnist"]
    assert data.offsets == [0, 10, 20] and data.num_classes == 30
    names = data.class_names
    assert names[3] == "digits/3" and names[13] == "mnist/3"
    assert names[20] == "fashion_mnist/T-shirt/top"
    assert data.in_channels == 1 and data.image_size == (12, 12)
    # MNIST resizes in its own transforms; digits' tensors are resized afterwards.
    assert data.parts[1].image_size == (12, 12) and data.parts[0].image_size == (8, 8)

    digits = data.parts[0]
    own = [digits.splits.trainval_labels, data.parts[1].splits.trainval_labels]
    expected = np.concatenate([own[0], own[1] + 10, data.parts[2].splits.trainval_labels + 20])
    assert np.array_equal(data.splits.trainval_labels, expected)
    test_labels = torch.cat([y for _, y in items(data.split_dataloader("test"))]).numpy()
    spans = [(0, 10), (10, 20), (20, 30)]
    sizes = [len(part.splits.test) for part in data.parts]
    start = 0
    for (low, high), size in zip(spans, sizes, strict=True):  # each part in its own range
        part = test_labels[start : start + size]
        assert part.min() >= low and part.max() < high
        start += size
    for images, _ in items(data.train_dataloader()):
        assert tuple(images.shape[1:]) == (1, 12, 12)
    # Each test item's part, in the union's order (the evaluation's categories).
    categories = data.split_categories("test")
    assert len(categories) == len(test_labels)
    expected_parts = np.repeat(["digits", "mnist", "fashion_mnist"], sizes).tolist()
    assert categories == expected_parts
    assert all(
        name.split("/", 1)[0] == part
        for name, part in zip(np.array(names)[test_labels], categories, strict=True)
    )


def test_a_sampler_draws_over_the_union(roots):
    sampler = {"name": "pk", "args": {"classes_per_batch": 4, "samples_per_class": 2}}
    data = concat(roots, ("digits", {}), ("mnist", {"root": str(roots / "mnist")}), sampler=sampler)
    seen = Counter()
    for _, labels in items(data.train_dataloader()):
        assert len(set(labels.tolist())) == 4
        seen.update(labels.tolist())
    assert set(seen) == set(np.unique(data.train_labels))
    assert any(label >= 10 for label in seen) and any(label < 10 for label in seen)


def test_reid_parts_keep_cameras_and_extra_splits_behind_their_prefix(roots):
    market = {"root": str(roots / "market"), "augment": [], "random_erasing": 0.0}
    data = concat(roots, ("market1501", market), ("market1501", market), val_fraction=0.0)
    assert data.part_names == ["market1501", "market1501#2"]
    assert set(data.eval_splits) >= {"market1501/query", "market1501#2/gallery"}
    first = data.parts[0]
    span = data.offsets[1]
    assert span > first.num_classes  # query/gallery ids lie beyond the training classes
    _, y, cameras = next(iter(data.split_dataloader("market1501#2/query")))
    assert y.min() >= span and len(cameras) == len(y)
    assert data.splits.trainval_cameras is not None
    query = data.split_categories("market1501#2/query")
    assert query == ["market1501#2"] * len(data.split_dataloader("market1501#2/query").dataset)


@pytest.mark.parametrize(
    ("parts", "kwargs", "message"),
    [
        ((), {}, "at least one"),
        ((("digits", {"batch_size": 4}),), {}, r"datasets\[0\].args.batch_size: set it on"),
        ((("digit", {}),), {}, "unknown datamodule 'digit'.*did you mean 'digits'"),
        ((("digits", {}), ("cifar10", {"root": "CIFAR"})), {}, "differ in channels"),
        (
            (("mnist", {"root": "MNIST", "image_size": [20, 20]}),),
            {"image_size": [16, 16]},
            r"image_size = \[20, 20\] differs from the run's image_size \[16, 16\]",
        ),
        ((("concat", {}),), {}, "cannot hold another concat"),
    ],
)
def test_bad_specs_say_what_is_wrong(roots, parts, kwargs, message):
    folders = {"CIFAR": str(roots / "cifar"), "MNIST": str(roots / "mnist")}
    fixed = [
        (
            name,
            {
                key: folders.get(value, value) if key == "root" else value
                for key, value in args.items()
            },
        )
        for name, args in parts
    ]
    with pytest.raises(PlpDataError, match=message):
        concat(roots, *fixed, **kwargs)
