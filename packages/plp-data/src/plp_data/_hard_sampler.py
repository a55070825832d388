"""A PxK batch sampler whose classes in a batch are neighbours in the model's embedding space.

Batches of mutually confusable classes, built from the model's own embeddings, with no extra
annotation: at the start of each refresh epoch the training loop hands the sampler the
embeddings of the training images (without augmentation); the sampler averages them per class,
links every class to its ``neighbours`` nearest classes (a class k-nearest-neighbour graph), and
draws each batch as a seed class plus ``P - 1`` classes from its neighbourhood.

**The interface with the training loop** is one attribute and two methods (the
:class:`EmbeddingSampler` protocol): the loop (or the datamodule on its behalf) sets
``sampler.embedding_source`` to a function that returns the embeddings of the training dataset,
row ``i`` for dataset index ``i``, the same on every process; the sampler calls it when an
epoch that needs a new graph starts to be iterated (so the model is the one that starts the
epoch, also after a resume). ``state_dict()`` / ``load_state_dict()`` carry the graph in a
checkpoint, so a run resumed between two refreshes draws the batches an uninterrupted run draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from plp_core import NonNegativeInt, PositiveInt
from plp_data._registry import SAMPLERS
from plp_data._samplers import PKBatchSampler, SamplerError, _as_labels

__all__ = ["EmbeddingSampler", "EmbeddingSource", "HardClassBatchSampler", "class_neighbours"]

#: Returns the training dataset's embeddings ``(N, D)``, row ``i`` for dataset index ``i``.
EmbeddingSource = Callable[[], "torch.Tensor | np.ndarray"]

# Rows of the class-distance matrix computed at once (bounds memory for many classes).
_BLOCK = 1024
_SEED_STREAM, _GROUP_STREAM = 5, 6


@runtime_checkable
class EmbeddingSampler(Protocol):
    """A sampler that draws batches from the model's embeddings of the training set."""

    embedding_source: EmbeddingSource | None

    def state_dict(self) -> dict[str, Any]:
        """Return what a checkpoint keeps of the sampler."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        ...


def _as_tensor(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))


def class_neighbours(
    embeddings: torch.Tensor | np.ndarray, classes: np.ndarray, count: int
) -> np.ndarray:
    """Return the ``count`` nearest other classes of each class, nearest first.

    Each embedding is L2-normalised; a class's centroid is the mean of its embeddings; classes
    are compared by the Euclidean distance between centroids, ties broken by class position.

    Args:
        embeddings: ``(N, D)`` embeddings.
        classes: ``(N,)`` class positions ``0 .. C - 1`` of the rows.
        count: Neighbours per class (at most ``C - 1``).

    Returns:
        ``(C, count)`` int64 array of class positions.
    """
    features = _as_tensor(embeddings).detach().cpu().double()
    features = torch.nn.functional.normalize(features, dim=1)
    index = torch.as_tensor(classes, dtype=torch.long)
    num_classes = int(index.max()) + 1
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    sums.index_add_(0, index, features)
    counts = torch.bincount(index, minlength=num_classes).clamp_min(1).unsqueeze(1)
    centroids = sums / counts
    result = np.empty((num_classes, count), dtype=np.int64)
    for start in range(0, num_classes, _BLOCK):
        block = torch.cdist(centroids[start : start + _BLOCK], centroids)
        rows = torch.arange(len(block))
        block[rows, rows + start] = float("inf")  # a class is not its own neighbour
        # A stable sort breaks ties by class position, the same on every machine.
        order = torch.sort(block, dim=1, stable=True).indices[:, :count]
        result[start : start + len(block)] = order.numpy()
    return result


@SAMPLERS.register("hard_pk", needs_embeddings=True)
class HardClassBatchSampler(PKBatchSampler):
    """PxK batches of neighbouring classes, the neighbourhoods taken from the model's embeddings.

    **Warm-up.** For the first ``warmup_epochs`` epochs it is :class:`PKBatchSampler`.

    **Refresh.** At epochs ``warmup_epochs + j * refresh_epochs`` (``j = 0, 1, ...``) it asks its
    ``embedding_source`` for the training embeddings and builds the class graph
    (:func:`class_neighbours`, ``neighbours`` per class); the epochs up to the next refresh use
    that graph.

    **An epoch** has as many batches as :class:`PKBatchSampler`'s (``batches_per_epoch``,
    rounded up to a multiple of the processes). Seeds are the classes in a shuffled order
    (repeated as needed), one per batch. Batch ``j`` is its seed class and ``P - 1`` classes
    drawn without replacement from the seed's neighbours; if ``P - 1`` exceeds ``neighbours``,
    all of them, then draws from the neighbours of those neighbours, then from any other class.
    Within a class, ``K`` samples are drawn as in :class:`PKBatchSampler`.

    Every draw depends on ``seed``, the epoch and the batch index only (and on the graph), so
    the ranks of a DDP run agree without communicating (rank ``r`` of ``R`` takes batches
    ``r, r + R, ...``), and the same seed and epoch give the same batches.

    Args:
        labels: One integer class label per training dataset index.
        classes_per_batch: ``P`` (at least 2).
        samples_per_class: ``K`` (at least 2).
        neighbours: Classes linked to each class in the graph (at least 1).
        refresh_epochs: Epochs between two refreshes of the graph.
        warmup_epochs: Epochs of plain PxK batches before the first refresh.
        seed: Seed of the draws; combined with the epoch.
        num_replicas: Processes sharing an epoch (``None``: from :mod:`torch.distributed`).
        rank: This process's index among them (``None``: from :mod:`torch.distributed`).
        drop_singletons: Skip single-sample classes instead of raising.
        batches_per_epoch: As for :class:`PKBatchSampler`.

    Raises:
        SamplerError: Bad ``P``, ``K``, ``neighbours`` or epochs, or labels as for
            :class:`PKBatchSampler`; when iterated past the warm-up without an
            ``embedding_source``; embeddings of the wrong length.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        classes_per_batch: PositiveInt,
        samples_per_class: PositiveInt,
        neighbours: PositiveInt = 10,
        refresh_epochs: PositiveInt = 1,
        warmup_epochs: NonNegativeInt = 1,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_singletons: bool = False,
        batches_per_epoch: PositiveInt | Literal["samples", "classes"] = "samples",
    ) -> None:
        super().__init__(
            labels,
            classes_per_batch,
            samples_per_class,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_singletons=drop_singletons,
            batches_per_epoch=batches_per_epoch,
        )
        if classes_per_batch < 2:
            raise SamplerError(f"hard_pk needs classes_per_batch (P) >= 2, got {classes_per_batch}")
        if neighbours < 1 or refresh_epochs < 1 or warmup_epochs < 0:
            raise SamplerError(
                "hard_pk needs neighbours >= 1, refresh_epochs >= 1 and warmup_epochs >= 0, got "
                f"{neighbours}, {refresh_epochs} and {warmup_epochs}"
            )
        self._neighbour_count = min(int(neighbours), len(self.classes) - 1)
        self._refresh_epochs = int(refresh_epochs)
        self._warmup_epochs = int(warmup_epochs)
        self._labels = _as_labels(labels)
        self.embedding_source: EmbeddingSource | None = None
        self._graph: np.ndarray | None = None
        self._graph_epoch: int | None = None
        self.last_refresh_seconds: float | None = None

    def refresh_epoch(self, epoch: int) -> int | None:
        """Return the epoch whose graph ``epoch`` uses (None: a warm-up epoch, plain PxK)."""
        if epoch < self._warmup_epochs:
            return None
        steps = (epoch - self._warmup_epochs) // self._refresh_epochs
        return self._warmup_epochs + steps * self._refresh_epochs

    @property
    def graph(self) -> np.ndarray | None:
        """The class graph in use: ``(C, neighbours)`` positions into :attr:`classes`."""
        return self._graph

    def state_dict(self) -> dict[str, Any]:
        """Return the graph (a tensor) and the epoch it was built at (for a checkpoint)."""
        graph = None if self._graph is None else torch.from_numpy(self._graph.copy())
        return {"graph": graph, "graph_epoch": self._graph_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a graph from :meth:`state_dict`.

        Raises:
            SamplerError: The graph does not fit this sampler's classes and ``neighbours``.
        """
        graph = state.get("graph")
        if graph is not None:
            graph = np.asarray(_as_tensor(graph).cpu().numpy(), dtype=np.int64)
            if graph.shape != (len(self.classes), self._neighbour_count):
                raise SamplerError(
                    f"hard_pk: a saved class graph of shape {graph.shape} does not fit "
                    f"{len(self.classes)} classes with {self._neighbour_count} neighbours"
                )
        self._graph, self._graph_epoch = graph, state.get("graph_epoch")

    def refresh(self) -> None:
        """Build the class graph from the ``embedding_source``'s embeddings now."""
        if self.embedding_source is None:
            raise SamplerError(
                "hard_pk needs the model's embeddings of the training set: set "
                "sampler.embedding_source (plp's train pipeline does)"
            )
        started = time.perf_counter()
        embeddings = self.embedding_source()
        if len(embeddings) != len(self._labels):
            raise SamplerError(
                f"hard_pk: the embedding source gave {len(embeddings)} rows for "
                f"{len(self._labels)} training samples"
            )
        positions = np.searchsorted(np.asarray(self.classes), self._labels)
        usable = np.isin(self._labels, np.asarray(self.classes))
        rows = torch.as_tensor(np.flatnonzero(usable))
        features = _as_tensor(embeddings).detach().cpu()[rows]
        self._graph = class_neighbours(features, positions[usable], self._neighbour_count)
        self.last_refresh_seconds = time.perf_counter() - started

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch (refreshing the graph when due)."""
        due = self.refresh_epoch(self.epoch)
        if due is not None and self._graph_epoch != due:
            self.refresh()
            self._graph_epoch = due
        yield from super().__iter__()

    def _base_groups(self) -> list[np.ndarray]:
        if self.refresh_epoch(self.epoch) is None:
            return super()._base_groups()
        seeds_rng = self._rng(_SEED_STREAM)
        rounds = math.ceil(self._batches / len(self.classes))
        seeds = np.concatenate([seeds_rng.permutation(len(self.classes)) for _ in range(rounds)])
        return [self._hard_group(int(s), batch) for batch, s in enumerate(seeds[: self._batches])]

    def _class_group(self, batch: int, base: list[np.ndarray]) -> np.ndarray:
        if batch < len(base) or self.refresh_epoch(self.epoch) is None:
            return super()._class_group(batch, base)
        # A batch added to round up to a multiple of num_replicas: a random seed class.
        seed = int(self._rng(1, batch).integers(len(self.classes)))
        return self._hard_group(seed, batch)

    def _hard_group(self, seed: int, batch: int) -> np.ndarray:
        """The seed class and ``P - 1`` classes from its neighbourhood (positions)."""
        assert self._graph is not None
        rng = self._rng(_GROUP_STREAM, batch)
        group, wanted = [seed], self._p - 1
        ring = self._graph[seed]
        while wanted > 0:
            fresh = np.setdiff1d(ring, group)  # sorted, so the draw does not depend on set order
            if fresh.size == 0:  # the neighbourhood is exhausted: any other class
                fresh = np.setdiff1d(np.arange(len(self.classes)), group)
            taken = rng.choice(fresh, size=min(wanted, fresh.size), replace=False)
            group.extend(int(c) for c in taken)
            wanted -= taken.size
            ring = np.unique(self._graph[np.asarray(group)])
        return np.asarray(group, dtype=np.int64)
