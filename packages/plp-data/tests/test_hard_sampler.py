"""The hard-class sampler: neighbouring classes share batches; deterministic, DDP, resume."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pytest
import torch

from plp_data import HardClassBatchSampler, PKBatchSampler, SamplerError, build_sampler
from plp_data._hard_sampler import class_neighbours

CLUSTERS, PER_CLUSTER, PER_CLASS = 10, 4, 6  # 40 classes in 10 groups of 4 look-alikes


def clustered(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and embeddings where the classes of a cluster lie near each other."""
    rng = np.random.default_rng(seed)
    classes = CLUSTERS * PER_CLUSTER
    labels = rng.permutation(np.repeat(np.arange(classes), PER_CLASS))
    centres = rng.normal(size=(CLUSTERS, 16)) * 10
    offsets = rng.normal(size=(classes, 16))
    cluster = np.arange(classes) // PER_CLUSTER
    embeddings = (
        centres[cluster[labels]] + offsets[labels] + 0.1 * rng.normal(size=(len(labels), 16))
    )
    return labels, embeddings.astype(np.float32)


def neighbour_share(sampler, labels: np.ndarray, epochs=(1, 2)) -> float:
    """Share of the class pairs in a batch whose classes are in the same cluster."""
    same = total = 0
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in sampler:
            classes = sorted({int(labels[i]) for i in batch})
            for a, b in combinations(classes, 2):
                same += a // PER_CLUSTER == b // PER_CLUSTER
                total += 1
    return same / total


def hard(labels, embeddings=None, **kwargs) -> HardClassBatchSampler:
    args = {"classes_per_batch": 4, "samples_per_class": 2, "neighbours": 3, "seed": 7}
    sampler = HardClassBatchSampler(labels, **(args | kwargs))
    if embeddings is not None:
        sampler.embedding_source = lambda: torch.from_numpy(embeddings)
    return sampler


def test_class_graph_links_each_class_to_its_cluster():
    labels, embeddings = clustered()
    graph = class_neighbours(embeddings, labels, 3)
    assert graph.shape == (40, 3)
    for position, row in enumerate(graph):
        assert position not in row
        assert set(row // PER_CLUSTER) == {position // PER_CLUSTER}


def test_neighbour_classes_share_batches_far_more_than_random_pk():
    labels, embeddings = clustered()
    share = neighbour_share(hard(labels, embeddings), labels)
    random_share = neighbour_share(PKBatchSampler(labels, 4, 2, seed=7), labels)
    # By chance, 3 of the 39 other classes are in a class's cluster: about 8 %.
    assert random_share < 0.2
    assert share > 0.95


def test_warm_up_epochs_are_plain_pk_and_need_no_embeddings():
    labels, _ = clustered()
    sampler = hard(labels, warmup_epochs=2)
    plain = PKBatchSampler(labels, 4, 2, seed=7)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        plain.set_epoch(epoch)
        assert list(sampler) == list(plain)
    sampler.set_epoch(2)
    with pytest.raises(SamplerError, match="hard_pk needs the model's embeddings"):
        list(sampler)


def test_every_batch_is_p_distinct_classes_times_k():
    labels, embeddings = clustered()
    sampler = hard(labels, embeddings, classes_per_batch=6, neighbours=2)  # needs a second ring
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == PKBatchSampler(labels, 6, 2).total_batches()
    for batch in batches:
        counts = Counter(int(labels[i]) for i in batch)
        assert len(counts) == 6 and set(counts.values()) == {2}


def test_same_seed_and_epoch_same_batches_and_the_graph_refreshes_on_schedule():
    labels, embeddings = clustered()
    calls = []

    def source():
        calls.append(1)
        return embeddings

    first, second = hard(labels, refresh_epochs=2), hard(labels, refresh_epochs=2)
    first.embedding_source = second.embedding_source = source
    for epoch in (1, 2, 3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        assert list(first) == list(second)
    assert first.refresh_epoch(2) == 1 and first.refresh_epoch(3) == 3
    assert len(calls) == 4  # epochs 1 and 3, for each sampler
    first.set_epoch(4)
    other = list(first)
    first.set_epoch(3)
    assert list(first) != other


def test_a_resumed_sampler_draws_the_batches_of_an_uninterrupted_one():
    labels, embeddings = clustered()
    running = hard(labels, embeddings, refresh_epochs=3)
    running.set_epoch(1)
    list(running)  # builds the graph of epochs 1-3
    state = running.state_dict()
    assert isinstance(state["graph"], torch.Tensor)

    resumed = hard(labels, refresh_epochs=3)

    def no_source():
        raise AssertionError("a resumed run between refreshes must not embed again")

    resumed.embedding_source = no_source
    resumed.load_state_dict(state)
    for epoch in (2, 3):
        running.set_epoch(epoch)
        resumed.set_epoch(epoch)
        assert list(resumed) == list(running)
    with pytest.raises(SamplerError, match="does not fit 40 classes with 5 neighbours"):
        hard(labels, neighbours=5).load_state_dict(state)


def test_two_ranks_split_the_one_process_batches():
    labels, embeddings = clustered()
    single = hard(labels, embeddings, num_replicas=1, rank=0)
    ranks = [hard(labels, embeddings, num_replicas=2, rank=r) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(1)
    every = list(single)
    parts = [list(sampler) for sampler in ranks]
    assert len(parts[0]) == len(parts[1])
    assert parts[0] == every[0::2][: len(parts[0])]
    assert parts[1] == every[1::2][: len(parts[1])]


def test_registered_with_its_arguments_checked():
    labels, _ = clustered()
    built = build_sampler("hard_pk", labels, seed=0, classes_per_batch=4, samples_per_class=2)
    assert isinstance(built, HardClassBatchSampler)
    with pytest.raises(SamplerError, match="classes_per_batch \\(P\\) >= 2"):
        HardClassBatchSampler(labels, 1, 2)
    with pytest.raises(SamplerError, match="neighbours >= 1"):
        HardClassBatchSampler(labels, 2, 2, neighbours=0)
    sampler = hard(labels, warmup_epochs=0)
    sampler.embedding_source = lambda: np.zeros((3, 2))
    with pytest.raises(SamplerError, match="gave 3 rows for 240 training samples"):
        list(sampler)


@pytest.mark.parametrize("pipeline", ["device", "workers"])
def test_a_datamodule_feeds_its_sampler_and_keeps_the_graph_in_its_state(pipeline):
    from plp_data import DigitsDataModule

    spec = {"name": "hard_pk", "args": {"classes_per_batch": 3, "samples_per_class": 2}}

    def module():
        return DigitsDataModule(sampler=spec, pipeline=pipeline, batch_size=6)

    data = module()

    def pixels():  # stands in for the model: the flattened, unaugmented training images
        return torch.cat([images.flatten(1) for images, _ in data.train_embedding_loader()])

    data.embedding_source = pixels
    loader = data.train_dataloader()
    sampler = loader.batch_sampler.sampler
    assert isinstance(sampler, HardClassBatchSampler)
    sampler.set_epoch(1)
    first = [labels.tolist() for _, labels in loader]
    assert len(pixels()) == len(data.train_labels)
    state = data.state_dict()

    resumed = module()
    resumed.load_state_dict(state)  # no embedding source: the saved graph serves
    resumed_loader = resumed.train_dataloader()
    resumed_loader.batch_sampler.sampler.set_epoch(1)
    assert [labels.tolist() for _, labels in resumed_loader] == first
