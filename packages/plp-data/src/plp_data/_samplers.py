"""Samplers for metric learning: PxK batches and class-balanced draws.

Two samplers live here:

* :class:`PKBatchSampler`, a *batch* sampler whose every batch holds ``P`` distinct classes with
  ``K`` samples each, so every anchor in a batch has at least one positive. Pass it to a
  :class:`torch.utils.data.DataLoader` as ``batch_sampler=`` (not ``sampler=``, and without
  ``batch_size``/``shuffle``).
* :class:`ClassBalancedSampler`, an index sampler that draws with replacement so that every class
  is drawn equally often in expectation. Pass it as ``sampler=``.

Both are deterministic: the same ``seed`` and epoch (set with ``set_epoch``) give the same indices,
on every process. Both shard themselves across distributed processes: with ``R`` replicas each
rank yields its own part of the epoch (disjoint batches for :class:`PKBatchSampler`, independent
draws for :class:`ClassBalancedSampler`), and every rank yields equally many items, so no rank
waits on a collective that the others never reach.

Distributed training:
    When ``num_replicas``/``rank`` are left as ``None`` they are taken from
    :mod:`torch.distributed` if it is available and initialised (world size and rank), else
    ``1``/``0``; this is looked up each time the sampler is iterated or its length is asked, so a
    sampler built before the process group is initialised still shards correctly afterwards.
    Because these samplers already shard themselves, a Lightning ``Trainer`` that uses them under
    DDP must be built with ``use_distributed_sampler=False``; otherwise Lightning wraps them in a
    ``DistributedSampler`` of its own and the sharding happens twice (or fails, for a batch
    sampler). Lightning does not call ``set_epoch`` on a batch sampler it does not know about, so
    call ``sampler.set_epoch(trainer.current_epoch)`` yourself (for example in
    ``on_train_epoch_start``) to reshuffle between epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from plp_core import PositiveInt
from plp_data._errors import PlpDataError
from plp_data._registry import SAMPLERS

__all__ = ["ClassBalancedSampler", "PKBatchSampler", "SamplerError", "ShuffleSampler"]

# Distinguishes the two samplers' random streams, so the same seed does not make them correlated.
_PK_STREAM = 0x504B
_BALANCED_STREAM = 0x4342


class SamplerError(PlpDataError, ValueError):
    """A sampler's arguments or labels cannot give the batches asked for; the message says why."""


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``labels`` as a 1-D ``int64`` array, raising :class:`SamplerError` if it is not one.

    Args:
        labels: One integer class label per dataset index (a sequence, array or tensor).

    Returns:
        The labels as a new 1-D ``int64`` NumPy array.

    Raises:
        SamplerError: If the labels are empty, not one-dimensional or not integers.
    """
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    else:
        array = np.asarray(labels)
    if array.ndim != 1:
        raise SamplerError(f"labels must be one-dimensional, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise SamplerError("labels is empty: a sampler needs at least one labelled sample")
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise SamplerError(f"labels must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=True)


def _check_seed(seed: int) -> int:
    """Return ``seed`` if it is a non-negative integer, else raise :class:`SamplerError`."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SamplerError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Resolve the number of replicas and this process's rank.

    ``None`` means: ask :mod:`torch.distributed` if it is available and initialised, else use
    ``1`` replica and rank ``0``.

    Args:
        num_replicas: The number of processes the epoch is split over, or ``None``.
        rank: This process's index among them, or ``None``.

    Returns:
        ``(num_replicas, rank)``.

    Raises:
        SamplerError: If ``num_replicas < 1`` or ``rank`` is not in ``[0, num_replicas)``.
    """
    distributed = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if distributed else 1
    if rank is None:
        rank = dist.get_rank() if distributed else 0
    if num_replicas < 1:
        raise SamplerError(f"num_replicas must be at least 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise SamplerError(f"rank must be in [0, {num_replicas}), got {rank}")
    return int(num_replicas), int(rank)


def _check_replicas_now(num_replicas: int | None, rank: int | None) -> None:
    """Validate whatever of ``num_replicas``/``rank`` is given explicitly, at construction."""
    if num_replicas is not None and num_replicas < 1:
        raise SamplerError(f"num_replicas must be at least 1, got {num_replicas}")
    if rank is not None and rank < 0:
        raise SamplerError(f"rank must be non-negative, got {rank}")
    if num_replicas is not None and rank is not None and rank >= num_replicas:
        raise SamplerError(f"rank must be in [0, {num_replicas}), got {rank}")


class _EpochMixin:
    """``set_epoch`` / ``epoch``: the epoch that, with the seed, fixes a sampler's next pass."""

    _epoch: int = 0

    @property
    def epoch(self) -> int:
        """The epoch last set with :meth:`set_epoch` (0 initially)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which together with ``seed`` fixes the next pass (Lightning calls it).

        Args:
            epoch: A non-negative integer, usually the trainer's current epoch.

        Raises:
            SamplerError: If ``epoch`` is negative.
        """
        if epoch < 0:
            raise SamplerError(f"epoch must be non-negative, got {epoch}")
        self._epoch = int(epoch)


@SAMPLERS.register("pk")
class PKBatchSampler(_EpochMixin, Sampler[list[int]]):
    """Yields batches of ``P`` distinct classes times ``K`` samples each (a "PxK" batch sampler).

    **An epoch.** The usable classes are shuffled (seeded by ``seed`` and the epoch) and cut into
    groups of ``P``; if the last group is short it is filled with other classes drawn at random
    (never one already in it), so every class appears in at least one batch per epoch. Further
    shuffles are cut the same way until the epoch has ``batches_per_epoch`` batches, by default
    ``max(ceil(num_classes / P), num_samples // (P * K))``: every class at least once, and about
    as many images as the dataset holds. The count is rounded *up* to a multiple of
    ``num_replicas`` with extra groups of ``P`` distinct classes drawn at random, so that every
    rank gets the same number.
    Rank ``r`` of ``R`` takes batches ``r, r + R, r + 2R, ...``: ranks never share a batch, and
    ``len(sampler)`` is the number of batches one rank yields.

    **A batch.** For each of its ``P`` classes, ``K`` of that class's indices are drawn: without
    replacement if the class has at least ``K`` samples, with replacement otherwise. A batch is
    the ``K`` indices of its first class, then the ``K`` of its second, and so on, so it has
    ``batch_size = P * K`` indices.

    Every batch is fixed by ``seed``, the epoch and its position in the epoch alone, so the ranks
    agree without communicating, and batch ``j`` is the same whatever ``num_replicas`` is.
    ``set_epoch`` changes the shuffle; the same ``seed`` and epoch always give the same batches.

    Args:
        labels: One integer class label per dataset index (a sequence, NumPy array or tensor).
        classes_per_batch: ``P``, the number of distinct classes in a batch (at least 1).
        samples_per_class: ``K``, the number of samples of each class in a batch (at least 2, so
            that every anchor has a positive).
        seed: Seed of the shuffle (a non-negative integer); combined with the epoch.
        num_replicas: How many processes share an epoch. ``None``: the world size of
            :mod:`torch.distributed` if it is initialised, else 1 (looked up when iterating).
        rank: This process's index among them. ``None``: the :mod:`torch.distributed` rank if it
            is initialised, else 0 (looked up when iterating).
        drop_singletons: Skip classes that have exactly one sample (they cannot give a positive
            pair) instead of raising.
        batches_per_epoch: Batches in an epoch over all replicas before rounding:
            ``"samples"``, ``"classes"`` or a number, as described above.

    Raises:
        SamplerError: If ``P < 1`` or ``K < 2``; if a class has a single sample and
            ``drop_singletons`` is false; if ``P`` exceeds the number of usable classes; or if
            the labels or the replica arguments are invalid.

    Example:
        >>> sampler = PKBatchSampler([0, 0, 1, 1, 2, 2], classes_per_batch=2, samples_per_class=2)
        >>> loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)  # doctest: +SKIP
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        classes_per_batch: PositiveInt,
        samples_per_class: PositiveInt,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_singletons: bool = False,
        batches_per_epoch: PositiveInt | Literal["samples", "classes"] = "samples",
    ) -> None:
        super().__init__()
        if classes_per_batch < 1:
            raise SamplerError(f"classes_per_batch (P) must be at least 1, got {classes_per_batch}")
        if samples_per_class < 2:
            raise SamplerError(
                f"samples_per_class (K) must be at least 2 so that every anchor has a positive, "
                f"got {samples_per_class}"
            )
        _check_replicas_now(num_replicas, rank)
        label_array = _as_labels(labels)
        classes, inverse, counts = np.unique(label_array, return_inverse=True, return_counts=True)
        singletons = classes[counts == 1]
        if singletons.size and not drop_singletons:
            shown = ", ".join(str(int(c)) for c in singletons[:10])
            more = f", ... ({singletons.size} in total)" if singletons.size > 10 else ""
            raise SamplerError(
                f"{singletons.size} class(es) have a single sample and cannot give a positive "
                f"pair: [{shown}{more}]; pass drop_singletons=True to skip them"
            )
        keep = counts >= 2
        if classes_per_batch > int(keep.sum()):
            dropped = (
                f" ({singletons.size} single-sample classes dropped)" if singletons.size else ""
            )
            raise SamplerError(
                f"classes_per_batch (P) = {classes_per_batch} is larger than the number of usable "
                f"classes, {int(keep.sum())}{dropped}"
            )
        order = np.argsort(inverse, kind="stable")
        per_class = np.split(order, np.cumsum(counts)[:-1])
        self._classes: tuple[int, ...] = tuple(int(c) for c in classes[keep])
        self._dropped: tuple[int, ...] = tuple(int(c) for c in singletons)
        self._indices: list[np.ndarray] = [idx for idx, k in zip(per_class, keep, strict=True) if k]
        self._p = int(classes_per_batch)
        self._k = int(samples_per_class)
        self._seed = _check_seed(seed)
        self._num_replicas = num_replicas
        self._rank = rank
        self._epoch = 0
        minimum = math.ceil(len(self._classes) / self._p)
        if batches_per_epoch == "samples":
            usable = sum(idx.size for idx in self._indices)
            batches_per_epoch = max(minimum, usable // (self._p * self._k))
        elif batches_per_epoch == "classes":
            batches_per_epoch = minimum
        elif not isinstance(batches_per_epoch, int) or isinstance(batches_per_epoch, bool):
            raise SamplerError(
                f"batches_per_epoch must be 'samples', 'classes' or an integer, "
                f"got {batches_per_epoch!r}"
            )
        elif batches_per_epoch < minimum:
            raise SamplerError(
                f"batches_per_epoch = {batches_per_epoch} cannot show all {len(self._classes)} "
                f"classes with P = {self._p}; it must be at least {minimum}"
            )
        self._batches = int(batches_per_epoch)

    @property
    def batch_size(self) -> int:
        """The number of indices in every batch, ``P * K``."""
        return self._p * self._k

    @property
    def classes_per_batch(self) -> int:
        """``P``, the number of distinct classes in a batch."""
        return self._p

    @property
    def samples_per_class(self) -> int:
        """``K``, the number of samples of each class in a batch."""
        return self._k

    @property
    def classes(self) -> tuple[int, ...]:
        """The class labels batches are drawn from, sorted (single-sample ones excluded)."""
        return self._classes

    @property
    def dropped_classes(self) -> tuple[int, ...]:
        """The single-sample class labels skipped because of ``drop_singletons=True``."""
        return self._dropped

    @property
    def sampler(self) -> PKBatchSampler:
        """This sampler itself, so that Lightning's per-epoch ``set_epoch`` reaches it.

        Lightning calls ``batch_sampler.sampler.set_epoch``, never ``batch_sampler.set_epoch``.
        """
        return self

    def total_batches(self) -> int:
        """Number of batches in an epoch over all replicas (a multiple of ``num_replicas``)."""
        replicas, _ = _resolve_replicas(self._num_replicas, self._rank)
        return math.ceil(self._batches / replicas) * replicas

    def __len__(self) -> int:
        """Number of batches this rank yields per epoch."""
        replicas, _ = _resolve_replicas(self._num_replicas, self._rank)
        return self.total_batches() // replicas

    def _rng(self, *key: int) -> np.random.Generator:
        """A generator seeded by ``seed``, the epoch and ``key``, the same on every rank."""
        return np.random.default_rng([self._seed, self._epoch, _PK_STREAM, *key])

    def _class_group(self, batch: int, base: list[np.ndarray]) -> np.ndarray:
        """The ``P`` distinct class positions (indices into ``classes``) of batch ``batch``."""
        if batch < len(base):
            return base[batch]
        # A batch added to round up to a multiple of num_replicas: P distinct random classes.
        return self._rng(1, batch).choice(len(self._classes), size=self._p, replace=False)

    def _base_groups(self) -> list[np.ndarray]:
        """The first ``batches_per_epoch`` class groups: shuffles cut into groups of ``P``."""
        n, p = len(self._classes), self._p
        rng = self._rng(0)
        groups: list[np.ndarray] = []
        while len(groups) < self._batches:
            perm = rng.permutation(n)
            cut = [perm[i : i + p] for i in range(0, n, p)]
            last = cut[-1]
            if last.size < p:
                others = np.setdiff1d(np.arange(n), last, assume_unique=True)
                fill = rng.choice(others, size=p - last.size, replace=False)
                cut[-1] = np.concatenate([last, fill])
            groups.extend(cut)
        return groups[: self._batches]

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch, each a list of ``P * K`` indices."""
        replicas, rank = _resolve_replicas(self._num_replicas, self._rank)
        base = self._base_groups()
        k = self._k
        for index in range(rank, self.total_batches(), replicas):
            # Each batch has its own stream, so batch j is the same whatever num_replicas is.
            rng = self._rng(2, index)
            batch: list[int] = []
            for position in self._class_group(index, base):
                pool = self._indices[int(position)]
                chosen = rng.choice(pool, size=k, replace=pool.size < k)
                batch.extend(int(i) for i in chosen)
            yield batch

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(P={self._p}, K={self._k}, classes={len(self._classes)}, "
            f"seed={self._seed}, epoch={self._epoch})"
        )


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(_EpochMixin, Sampler[int]):
    """Draws dataset indices with replacement so that every class is drawn equally often.

    Each index is drawn with probability proportional to ``1 / count(label)``, so each of the
    ``C`` classes has probability ``1 / C`` per draw whatever its size. An epoch is
    ``num_samples`` draws over all replicas; each rank yields ``ceil(num_samples / R)`` of them
    from its own random stream, derived from ``seed``, the epoch and the rank, so ranks draw
    independently and every rank yields equally many indices. The same ``seed``, epoch and rank
    always give the same indices.

    Args:
        labels: One integer class label per dataset index (a sequence, NumPy array or tensor).
        num_samples: Draws per epoch over all replicas (at least 1); defaults to ``len(labels)``.
        seed: Seed of the draws (a non-negative integer); combined with the epoch and the rank.
        num_replicas: How many processes share an epoch. ``None``: the world size of
            :mod:`torch.distributed` if it is initialised, else 1 (looked up when iterating).
        rank: This process's index among them. ``None``: the :mod:`torch.distributed` rank if it
            is initialised, else 0 (looked up when iterating).

    Raises:
        SamplerError: If ``num_samples < 1``, or the labels or replica arguments are invalid.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        num_samples: PositiveInt | None = None,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        label_array = _as_labels(labels)
        if num_samples is None:
            num_samples = int(label_array.size)
        if num_samples < 1:
            raise SamplerError(f"num_samples must be at least 1, got {num_samples}")
        _check_replicas_now(num_replicas, rank)
        _, inverse, counts = np.unique(label_array, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse]
        self._probabilities: np.ndarray = weights / weights.sum()
        self._num_classes = int(counts.size)
        self._num_samples = int(num_samples)
        self._seed = _check_seed(seed)
        self._num_replicas = num_replicas
        self._rank = rank
        self._epoch = 0

    @property
    def num_samples(self) -> int:
        """Draws per epoch over all replicas."""
        return self._num_samples

    @property
    def num_classes(self) -> int:
        """The number of distinct classes in the labels."""
        return self._num_classes

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch, ``ceil(num_samples / num_replicas)``."""
        replicas, _ = _resolve_replicas(self._num_replicas, self._rank)
        return math.ceil(self._num_samples / replicas)

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's draws of the current epoch."""
        replicas, rank = _resolve_replicas(self._num_replicas, self._rank)
        rng = np.random.default_rng([self._seed, self._epoch, rank, _BALANCED_STREAM])
        size = math.ceil(self._num_samples / replicas)
        drawn = rng.choice(self._probabilities.size, size=size, replace=True, p=self._probabilities)
        yield from (int(i) for i in drawn)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self._num_samples}, "
            f"classes={self._num_classes}, seed={self._seed}, epoch={self._epoch})"
        )


_SHUFFLE_STREAM = 0x5348


class ShuffleSampler(_EpochMixin, Sampler[int]):
    """A plain shuffle whose order is fixed by ``seed`` and the epoch alone, split between ranks.

    The default training sampler of plp's datamodules. Because each epoch's permutation depends
    only on ``(seed, epoch)`` (not on a generator that advanced through earlier epochs), a run
    resumed from a checkpoint at epoch ``e`` sees exactly the batches an uninterrupted run sees.
    With ``R`` replicas the permutation is padded by wrapping around to a multiple of ``R`` and
    rank ``r`` takes positions ``r, r + R, ...`` (as torch's ``DistributedSampler`` does), so every
    rank yields ``ceil(num_samples / R)`` indices.

    Args:
        num_samples: Size of the dataset.
        seed: Seed of the shuffle (a non-negative integer); combined with the epoch.
        num_replicas: Processes sharing an epoch (``None``: from :mod:`torch.distributed`).
        rank: This process's index among them (``None``: from :mod:`torch.distributed`).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise SamplerError(f"num_samples must be at least 1, got {num_samples}")
        _check_replicas_now(num_replicas, rank)
        self._num_samples = int(num_samples)
        self._seed = _check_seed(seed)
        self._num_replicas = num_replicas
        self._rank = rank
        self._epoch = 0

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch, ``ceil(num_samples / num_replicas)``."""
        replicas, _ = _resolve_replicas(self._num_replicas, self._rank)
        return math.ceil(self._num_samples / replicas)

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's share of the epoch's permutation."""
        replicas, rank = _resolve_replicas(self._num_replicas, self._rank)
        order = np.random.default_rng([self._seed, self._epoch, _SHUFFLE_STREAM]).permutation(
            self._num_samples
        )
        total = math.ceil(self._num_samples / replicas) * replicas
        order = np.resize(order, total)  # wraps around to pad
        yield from (int(i) for i in order[rank:total:replicas])
