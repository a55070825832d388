from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from plp_data._errors import PlpDataError
from plp_data._samplers import ClassBalancedSampler, PKBatchSampler, SamplerError


def _pk(*args: Any, **kwargs: Any) -> PKBatchSampler:
    """The sampler with the one-pass-over-the-classes epoch these tests count batches with."""
    return PKBatchSampler(*args, **{"batches_per_epoch": "classes", **kwargs})


def _labels(num_classes: int = 10, per_class: int = 6, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def _batch_classes(batch: list[int], labels: np.ndarray) -> list[int]:
    return [int(labels[i]) for i in batch]


def test_every_batch_is_p_distinct_classes_times_k_and_every_class_is_seen() -> None:
    labels = _labels(num_classes=11, per_class=5)
    sampler = _pk(labels, classes_per_batch=4, samples_per_class=3, seed=1)
    assert sampler.batch_size == 12
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(11 / 4)
    seen: set[int] = set()
    for batch in batches:
        assert len(batch) == 12
        assert all(isinstance(i, int) for i in batch)
        counts = Counter(_batch_classes(batch, labels))
        assert len(counts) == 4
        assert set(counts.values()) == {3}
        # Each class's K indices are consecutive, and distinct (class has >= K samples).
        for start in range(0, 12, 3):
            chunk = batch[start : start + 3]
            assert len(set(chunk)) == 3
            assert len({int(labels[i]) for i in chunk}) == 1
        seen |= set(counts)
    assert seen == set(range(11))


def test_len_matches_yield_count_across_shapes() -> None:
    for num_classes, p, replicas in [(10, 2, 1), (10, 3, 1), (10, 3, 2), (7, 7, 3), (9, 2, 4)]:
        labels = _labels(num_classes=num_classes, per_class=3)
        groups = math.ceil(num_classes / p)
        total = math.ceil(groups / replicas) * replicas
        for rank in range(replicas):
            sampler = _pk(labels, p, 2, num_replicas=replicas, rank=rank)
            assert sampler.total_batches() == total
            assert len(sampler) == total // replicas == len(list(sampler))


def test_two_ranks_never_share_a_batch_and_yield_equally_many() -> None:
    labels = _labels(num_classes=13, per_class=8)
    ranks = [list(_pk(labels, 3, 4, seed=5, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(math.ceil(13 / 3) / 2)
    as_tuples = [{tuple(b) for b in batches} for batches in ranks]
    assert not as_tuples[0] & as_tuples[1]
    # The class groups of the first ceil(C/P) batches partition the classes (bar the fill),
    # so the ranks' groups differ too.
    groups = [{frozenset(_batch_classes(b, labels)) for b in batches} for batches in ranks]
    assert not groups[0] & groups[1]
    # Together the ranks see every class.
    union = {c for batches in ranks for b in batches for c in _batch_classes(b, labels)}
    assert union == set(range(13))
    # Rank r's batches are batches r, r + R, ... of the single-replica epoch.
    single = list(_pk(labels, 3, 4, seed=5, num_replicas=1, rank=0))
    assert single[0] == ranks[0][0] and single[1] == ranks[1][0]


def test_same_seed_same_order_and_set_epoch_reshuffles() -> None:
    labels = _labels(num_classes=20, per_class=6)
    a = _pk(labels, 4, 3, seed=7)
    b = _pk(labels, 4, 3, seed=7)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again without set_epoch repeats the epoch
    first = list(a)
    a.set_epoch(1)
    assert a.epoch == 1
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(_pk(labels, 4, 3, seed=8)) != first
    with pytest.raises(SamplerError):
        a.set_epoch(-1)


def test_small_classes_are_drawn_with_replacement() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    sampler = _pk(labels, 3, 4, seed=0)
    (batch,) = list(sampler)
    by_class: dict[int, list[int]] = {}
    for i in batch:
        by_class.setdefault(int(labels[i]), []).append(i)
    assert {c: len(v) for c, v in by_class.items()} == {0: 4, 1: 4, 2: 4}
    assert set(by_class[0]) <= {0, 1}  # two samples, four draws: repeats
    assert len(set(by_class[1])) == 4 and len(set(by_class[2])) == 4


def test_singleton_classes_raise_with_their_labels_or_are_dropped() -> None:
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 40])
    with pytest.raises(SamplerError, match=r"\[2, 40\].*drop_singletons=True") as info:
        _pk(labels, 2, 2)
    assert isinstance(info.value, PlpDataError) and isinstance(info.value, ValueError)
    sampler = _pk(labels, 2, 2, drop_singletons=True)
    assert sampler.classes == (0, 1, 3)
    assert sampler.dropped_classes == (2, 40)
    seen = {int(labels[i]) for b in sampler for i in b}
    assert seen == {0, 1, 3}
    with pytest.raises(SamplerError, match=r"4.*3"):
        _pk(labels, 4, 2, drop_singletons=True)


def test_many_singletons_are_listed_first_ten_and_counted() -> None:
    labels = np.concatenate([np.arange(12), [100, 100]])
    with pytest.raises(SamplerError) as info:
        _pk(labels, 1, 2)
    message = str(info.value)
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in message and "10," not in message
    assert "12" in message


def test_p_larger_than_classes_and_bad_p_k_raise() -> None:
    labels = _labels(num_classes=5, per_class=4)
    with pytest.raises(SamplerError, match=r"\b6\b.*\b5\b"):
        _pk(labels, 6, 2)
    with pytest.raises(SamplerError, match="classes_per_batch"):
        _pk(labels, 0, 2)
    with pytest.raises(SamplerError, match="samples_per_class"):
        _pk(labels, 2, 1)
    with pytest.raises(SamplerError, match="rank"):
        _pk(labels, 2, 2, num_replicas=2, rank=2)
    with pytest.raises(SamplerError, match="seed"):
        _pk(labels, 2, 2, seed=-1)
    with pytest.raises(SamplerError, match="integers"):
        _pk(np.array([0.5, 1.5, 0.5, 1.5]), 2, 2)
    with pytest.raises(SamplerError, match="empty"):
        _pk([], 1, 2)


def test_labels_may_be_a_tensor_or_a_list() -> None:
    labels = _labels(num_classes=4, per_class=3)
    from_tensor = list(_pk(torch.as_tensor(labels), 2, 2, seed=3))
    from_list = list(_pk(labels.tolist(), 2, 2, seed=3))
    assert from_tensor == from_list == list(_pk(labels, 2, 2, seed=3))


def test_p_equal_to_number_of_classes_gives_one_batch_per_replica() -> None:
    labels = _labels(num_classes=4, per_class=3)
    sampler = _pk(labels, 4, 2, num_replicas=3, rank=2)
    (batch,) = list(sampler)
    assert set(_batch_classes(batch, labels)) == {0, 1, 2, 3}


def test_dataloader_with_pk_batch_sampler() -> None:
    labels = _labels(num_classes=6, per_class=5)
    data = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1)
    dataset = TensorDataset(data, torch.as_tensor(labels))
    sampler = _pk(labels, 3, 2, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == len(sampler) == 2
    batches = list(loader)
    assert len(batches) == 2
    for (x, y), indices in zip(batches, list(sampler), strict=True):
        assert x.shape == (6, 1) and y.shape == (6,)
        assert x[:, 0].long().tolist() == indices
        assert len(set(y.tolist())) == 3


def test_class_balanced_sampler_equalises_classes() -> None:
    labels = np.array([0] * 900 + [1] * 100)
    n = 20_000
    sampler = ClassBalancedSampler(labels, num_samples=n, seed=0)
    drawn = np.array(list(sampler))
    assert len(drawn) == len(sampler) == n
    assert drawn.min() >= 0 and drawn.max() < len(labels)
    ones = int((labels[drawn] == 1).sum())
    std = math.sqrt(n * 0.5 * 0.5)
    assert abs(ones - n / 2) < 5 * std
    # Within class 1 the draws spread over its samples, not one index.
    assert len(set(drawn[labels[drawn] == 1].tolist())) > 90


def test_class_balanced_sampler_ranks_determinism_and_len() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [2] * 3)
    default = ClassBalancedSampler(labels)
    assert len(default) == len(labels) == len(list(default))
    ranks = [ClassBalancedSampler(labels, 11, seed=4, num_replicas=3, rank=r) for r in range(3)]
    draws = [list(s) for s in ranks]
    assert [len(d) for d in draws] == [len(s) for s in ranks] == [4, 4, 4]
    big = [
        list(ClassBalancedSampler(labels, 300, seed=4, num_replicas=2, rank=r)) for r in range(2)
    ]
    assert big[0] != big[1]  # independent streams per rank
    again = list(ClassBalancedSampler(labels, 300, seed=4, num_replicas=2, rank=0))
    assert again == big[0]
    sampler = ClassBalancedSampler(labels, 300, seed=4, num_replicas=2, rank=0)
    sampler.set_epoch(1)
    assert list(sampler) != big[0]
    with pytest.raises(SamplerError, match="num_samples"):
        ClassBalancedSampler(labels, 0)


def test_class_balanced_sampler_in_dataloader() -> None:
    labels = np.array([0] * 40 + [1] * 8)
    dataset = TensorDataset(torch.as_tensor(labels))
    loader = DataLoader(dataset, batch_size=16, sampler=ClassBalancedSampler(labels, 64))
    ys = torch.cat([y for (y,) in loader])
    assert ys.shape == (64,)


def test_replicas_default_to_single_process() -> None:
    labels = _labels(num_classes=6, per_class=3)
    assert not torch.distributed.is_initialized()
    assert len(_pk(labels, 2, 2)) == 3
    assert len(ClassBalancedSampler(labels, 10)) == 10


def test_replicas_come_from_torch_distributed_when_initialised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plp_data import _samplers

    labels = _labels(num_classes=8, per_class=3)
    sampler = _pk(labels, 2, 2, seed=1)  # built before the "process group" exists
    balanced = ClassBalancedSampler(labels, 9, seed=1)
    explicit = [list(_pk(labels, 2, 2, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    monkeypatch.setattr(_samplers.dist, "is_available", lambda: True)
    monkeypatch.setattr(_samplers.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(_samplers.dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(_samplers.dist, "get_rank", lambda *a, **k: 1)
    assert len(sampler) == 2
    assert list(sampler) == explicit[1]
    assert len(balanced) == 5
    assert list(balanced) == list(ClassBalancedSampler(labels, 9, seed=1, num_replicas=2, rank=1))


def test_default_epoch_shows_about_every_image_and_every_class_evenly() -> None:
    labels = _labels(num_classes=10, per_class=30)  # 300 images
    sampler = PKBatchSampler(labels, classes_per_batch=4, samples_per_class=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 300 // 20
    seen = Counter(c for batch in batches for c in set(_batch_classes(batch, labels)))
    assert set(seen) == set(range(10))
    # Whole shuffles of the classes come first, so appearances differ by at most one round.
    assert max(seen.values()) - min(seen.values()) <= 2
    assert len(PKBatchSampler(labels, 4, 5, batches_per_epoch=7)) == 7


@pytest.mark.parametrize("value", [2, "images", 1.5])
def test_bad_batches_per_epoch(value: object) -> None:
    with pytest.raises(SamplerError, match="batches_per_epoch"):
        PKBatchSampler(_labels(), 4, 2, batches_per_epoch=value)  # type: ignore[arg-type]


def test_shuffle_sampler_depends_on_seed_and_epoch_only_and_splits_ranks() -> None:
    from plp_data import ShuffleSampler

    sampler = ShuffleSampler(11, seed=3, num_replicas=1, rank=0)
    first = list(sampler)
    assert sorted(first) == list(range(11)) and len(sampler) == 11
    sampler.set_epoch(1)
    second = list(sampler)
    fresh = ShuffleSampler(11, seed=3, num_replicas=1, rank=0)
    fresh.set_epoch(1)  # a resumed run: a new sampler at epoch 1 repeats the same order
    assert list(fresh) == second != first
    ranks = [ShuffleSampler(11, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    shares = [list(r) for r in ranks]
    assert [len(s) for s in shares] == [len(r) for r in ranks] == [6, 6]
    assert set(shares[0]) | set(shares[1]) == set(range(11))
    assert len(set(shares[0]) & set(shares[1])) == 1  # one index repeated to pad 11 to 12
