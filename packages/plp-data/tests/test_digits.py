import inspect

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import plp_data
from plp_data import PlpDataError, build_datamodule


def test_digits_splits_are_fixed_stratified_and_disjoint():
    dm = build_datamodule("digits", batch_size=32, seed=0, val_fraction=0.1)
    dm.setup()
    trainval, test = dm.splits.trainval, dm.splits.test
    assert len(trainval) + len(test) == 1797
    assert len(test) == 450  # ceil(0.25 * 1797)
    test_images = {tuple(test[i][0].flatten().tolist()) for i in range(len(test))}
    overlap = sum(tuple(trainval[i][0].flatten().tolist()) in test_images for i in range(50))
    # Digits has a few duplicate images, so allow a handful but not a systematic overlap.
    assert overlap <= 2
    test_counts = np.bincount(test.labels.numpy(), minlength=10)
    class_counts = np.bincount(load_digits().target, minlength=10)
    assert np.abs(test_counts - class_counts * 450 / 1797).max() <= 1  # stratified
    again = build_datamodule("digits", seed=123)
    again.setup()
    assert torch.equal(again.splits.test.labels, test.labels)  # split_seed, not seed, fixes it


def test_validation_part_is_carved_from_trainval():
    dm = build_datamodule("digits", val_fraction=0.1, seed=3)
    train_labels = dm.train_labels
    val = dm.val_dataloader().dataset
    assert len(train_labels) + len(val) == len(dm.splits.trainval)
    assert set(dm._train_indices.tolist()).isdisjoint(dm._val_indices.tolist())
    assert build_datamodule("digits", val_fraction=0.0).val_dataloader() == []


def test_loaders_yield_normalised_batches_in_order():
    dm = build_datamodule("digits", batch_size=16, eval_batch_size=100)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 8, 8) and labels.dtype == torch.int64
    test_images, test_labels = next(iter(dm.split_dataloader("test")))
    assert test_images.shape == (100, 1, 8, 8)
    assert torch.equal(test_labels, dm.splits.test.labels[:100])
    all_pixels = torch.cat([b[0] for b in dm.split_dataloader("trainval")])
    assert abs(all_pixels.mean().item()) < 0.05 and abs(all_pixels.std().item() - 1) < 0.05


def test_same_seed_same_training_order():
    first = [b[1] for b in build_datamodule("digits", seed=7).train_dataloader()]
    second = [b[1] for b in build_datamodule("digits", seed=7).train_dataloader()]
    other = [b[1] for b in build_datamodule("digits", seed=8).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], other[0])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(PlpDataError, match=r"unknown datamodule 'nope'; available: .*digits"):
        build_datamodule("nope")
    with pytest.raises(PlpDataError, match="batch_size"):
        build_datamodule("digits", batch_size=0)
    with pytest.raises(PlpDataError, match="val_fraction"):
        build_datamodule("digits", val_fraction=1.0)
    with pytest.raises(
        PlpDataError, match="unknown split of DigitsDataModule 'query'; available: trainval, test"
    ):
        build_datamodule("digits").split_dataloader("query")
    with pytest.raises(PlpDataError, match="already registered"):
        plp_data.register_datamodule("digits")(plp_data.DigitsDataModule)


def test_public_api_is_exactly_all():
    public = {
        name
        for name in dir(plp_data)
        if not name.startswith("_") and not inspect.ismodule(getattr(plp_data, name))
    }
    assert public == set(plp_data.__all__)
