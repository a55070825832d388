"""The validation part of trainval: held-out images or held-out classes, and its queries."""

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

from plp_data import (
    DigitsDataModule,
    PlpDataError,
    _validation,
    build_datamodule,
    choose_queries,
    held_out_classes,
)
from plp_data.testing import market1501_names, write_cub200, write_market1501


def test_val_classes_holds_out_whole_classes_shared_with_no_training_image():
    dm = build_datamodule("digits", val_classes=3, seed=5)
    split = dm.validation_split()
    assert split is not None and split.class_disjoint
    val_classes, train_classes = set(split.labels.tolist()), set(dm.train_labels.tolist())
    assert len(val_classes) == 3 and val_classes.isdisjoint(train_classes)
    assert len(val_classes | train_classes) == 10
    trainval_labels = dm.splits.trainval_labels
    # every image of a held-out class is held out, and nothing else
    assert np.array_equal(
        split.indices, np.flatnonzero(np.isin(trainval_labels, list(val_classes)))
    )
    assert len(split.indices) + len(dm.train_labels) == len(trainval_labels)
    again = build_datamodule("digits", val_classes=3, seed=5).validation_split()
    other = build_datamodule("digits", val_classes=3, seed=6).validation_split()
    assert again is not None and np.array_equal(again.indices, split.indices)
    assert other is not None and set(other.labels.tolist()) != val_classes


def test_classification_datasets_still_hold_out_images_of_every_class():
    dm = build_datamodule("digits", seed=0)
    split = dm.validation_split()
    assert split is not None and not split.class_disjoint and dm.has_validation
    assert set(split.labels.tolist()) == set(dm.train_labels.tolist()) == set(range(10))
    assert build_datamodule("digits", val_fraction=0.0).validation_split() is None
    assert not build_datamodule("digits", val_fraction=0.0).has_validation


def test_validation_loader_serves_the_split_in_order():
    dm = build_datamodule("digits", val_classes=2, seed=1, eval_batch_size=50)
    split = dm.validation_split()
    assert split is not None
    labels = torch.cat([batch[1] for batch in dm.val_dataloader()]).numpy()
    assert np.array_equal(labels, split.labels)


def _market_datamodule(root: Path, **args: object):
    write_market1501(root, market1501_names(identities=20, per_identity=6, cameras=3))
    return build_datamodule("market1501", root=str(root), **args)


def test_market1501_holds_out_identities_with_a_query_per_camera(tmp_path):
    dm = _market_datamodule(tmp_path, val_fraction=0.25, seed=0, eval_batch_size=7)
    split = dm.validation_split()
    assert split is not None and split.class_disjoint and split.cameras is not None
    real_ids = np.unique(dm._train[1])  # trainval labels are these ids relabelled 0..N-1
    val_ids = set(real_ids[split.labels].tolist())
    train_ids = set(real_ids[dm.train_labels].tolist())
    test_ids = set(dm.splits.extra["query"].labels.tolist()) | set(
        dm.splits.extra["gallery"].labels.tolist()
    )
    assert len(val_ids) == 5  # a quarter of 20 identities
    assert val_ids.isdisjoint(train_ids) and val_ids.isdisjoint(test_ids)
    # the loader's cameras and labels are the split's, in order (what validation ranks)
    batches = list(dm.val_dataloader())
    assert np.array_equal(torch.cat([b[1] for b in batches]).numpy(), split.labels)
    assert np.array_equal(torch.cat([b[2] for b in batches]).numpy(), split.cameras)
    # one query per identity and camera; each has a gallery match from another camera
    queries = split.queries
    pairs = list(zip(split.labels[queries].tolist(), split.cameras[queries].tolist(), strict=True))
    assert len(pairs) == len(set(pairs)) == 5 * 3
    for label, camera in pairs:
        gallery = ~queries & (split.labels == label)
        assert (split.cameras[gallery] != camera).any()


def test_choose_queries_moves_a_query_without_a_match_to_the_gallery():
    # id 1: one image per camera: all three drawn, then one moved so the others have a match
    # id 2: one camera only: no query can have a match from another camera
    labels = np.array([1, 1, 1, 2, 2])
    cameras = np.array([1, 2, 3, 4, 4])
    queries = choose_queries(labels, cameras, seed=0)
    assert queries[:3].sum() == 2 and not queries[3:].any()
    # without cameras: one query per identity with two or more images
    queries = choose_queries(np.array([5, 5, 5, 6, 7, 7]), None, seed=3)
    assert queries.sum() == 2 and not queries[3]
    assert queries[:3].sum() == 1 and queries[4:].sum() == 1


def test_benchmark_validation_shares_no_class_with_train_or_test(tmp_path):
    write_cub200(tmp_path, classes=(1, 2, 3, 4, 5, 101, 102), per_class=3)
    dm = build_datamodule("cub200", root=str(tmp_path), val_classes=2, seed=0)
    split = dm.validation_split()
    assert split is not None and split.class_disjoint
    val, train = set(split.labels.tolist()), set(dm.train_labels.tolist())
    test = set(dm.splits.test.labels.tolist())
    assert len(val) == 2 and len(train) == 3
    assert val.isdisjoint(train) and val.isdisjoint(test)


def test_held_out_classes_draws_only_classes_with_a_match():
    labels = np.array([0, 1, 1, 2, 2, 3])
    for seed in range(10):
        kept, held_out = held_out_classes(labels, 2, seed)
        assert sorted(set(labels[held_out].tolist())) == [1, 2]
        assert np.array_equal(np.sort(np.concatenate([kept, held_out])), np.arange(6))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"val_fraction": 0.1, "val_classes": 2}, r"give val_fraction or val_classes, not both"),
        ({"val_classes": 10}, r"val_classes: holding out 10 of 10 classes leaves none to train"),
        ({"val_classes": 0}, r"val_classes = 0: must be > 0"),
    ],
)
def test_bad_validation_arguments_are_one_line(args, message):
    with pytest.raises(PlpDataError, match=message):
        build_datamodule("digits", **args).setup()


def test_worked_examples_doctest():
    assert doctest.testmod(_validation, raise_on_error=True).attempted >= 4


def test_direct_construction_checks_val_classes_too():
    with pytest.raises(PlpDataError, match=r"val_classes must be >= 1, got 0"):
        DigitsDataModule(val_classes=0)


def test_too_few_classes_with_a_match():
    with pytest.raises(PlpDataError, match=r"3 validation classes asked for, but only 2 classes"):
        held_out_classes(np.array([0, 0, 1, 1, 2, 3]), 3, 0)
