"""The datamodule base class every plp dataset derives from."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Subset

from plp_data._errors import PlpDataError
from plp_data._sampler_registry import build_sampler, check_sampler_spec
from plp_data._samplers import PKBatchSampler, ShuffleSampler

__all__ = ["PlpDataModule", "Splits", "split_indices"]


@dataclass
class Splits:
    """The datasets a datamodule provides.

    Attributes:
        train: The trainval images with the *training* transforms (augmentation).
        trainval: The same images with the evaluation transforms (the re-ID gallery).
        test: The test images with the evaluation transforms (the re-ID query).
        trainval_labels: Labels of ``trainval`` in dataset order, as int64.
        extra: Further evaluation splits (e.g. Market-1501's own ``query`` and ``gallery``).
    """

    train: Dataset[Any]
    trainval: Dataset[Any]
    test: Dataset[Any]
    trainval_labels: np.ndarray
    extra: dict[str, Dataset[Any]] = field(default_factory=dict)


class PlpDataModule(pl.LightningDataModule):
    """A LightningDataModule with fixed trainval/test splits and a seeded validation carve-out.

    Subclasses implement :meth:`load_splits` and set ``num_classes``, ``in_channels`` and
    ``image_size``. Training batches come from trainval minus a stratified validation part of
    ``val_fraction`` (chosen with ``seed``); :meth:`split_dataloader` serves every evaluation split
    in dataset order without augmentation.

    Args:
        root: Directory holding the dataset files.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the evaluation loaders (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        seed: Seed of the validation carve-out and of the training shuffle.
        val_fraction: Share of trainval held out for validation (0 disables validation).
        sampler: ``{"name": "pk" | "class_balanced", "args": {...}}`` to draw training batches
            with :class:`~plp_data.PKBatchSampler` or :class:`~plp_data.ClassBalancedSampler`
            instead of a plain shuffle (None). Both are DDP-aware: each rank draws its own batches.
    """

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        sampler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise PlpDataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise PlpDataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_fraction = val_fraction
        self.sampler = check_sampler_spec(sampler)
        self._splits: Splits | None = None
        self._train_indices: np.ndarray | None = None
        self._val_indices: np.ndarray | None = None

    @abstractmethod
    def load_splits(self) -> Splits:
        """Return the datasets of this datamodule (read from ``root``)."""

    @property
    def splits(self) -> Splits:
        """The loaded splits (loaded on first use)."""
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    @property
    def eval_splits(self) -> list[str]:
        """Names accepted by :meth:`split_dataloader`: ``trainval``, ``test`` and any extras."""
        return ["trainval", "test", *self.splits.extra]

    def setup(self, stage: str | None = None) -> None:
        """Load the splits and carve the validation part out of trainval (idempotent)."""
        if self._splits is not None:
            return
        splits = self.load_splits()
        for name, dataset in {"trainval": splits.trainval, "test": splits.test}.items():
            if len(dataset) == 0:  # type: ignore[arg-type]
                raise PlpDataError(f"{type(self).__name__}: the {name} split is empty")
        indices = np.arange(len(splits.trainval_labels))
        if self.val_fraction > 0:
            self._train_indices, self._val_indices = split_indices(
                splits.trainval_labels, self.val_fraction, self.seed
            )
        else:
            self._train_indices, self._val_indices = indices, indices[:0]
        self._splits = splits

    @property
    def train_labels(self) -> np.ndarray:
        """Labels of the training part, in the order of the training dataset."""
        self.setup()
        assert self._train_indices is not None
        return self.splits.trainval_labels[self._train_indices]

    def train_dataset(self) -> Dataset[Any]:
        """Return the training part of trainval, with the training transforms."""
        self.setup()
        assert self._train_indices is not None
        return Subset(self.splits.train, self._train_indices.tolist())

    @property
    def uses_custom_sampler(self) -> bool:
        """True: plp's samplers split the training batches between ranks themselves.

        A Trainer must then be built with ``use_distributed_sampler=False`` (plp's train
        pipeline does), so that Lightning does not shard them a second time.
        """
        return True

    def _replicas(self) -> tuple[int | None, int | None]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader[Any]:
        """Return the training loader: the configured sampler, else a :class:`ShuffleSampler`.

        Either way the batches of an epoch depend on ``seed`` and the epoch alone, so a resumed
        run trains on exactly the batches an uninterrupted one does.
        """
        num_replicas, rank = self._replicas()
        dataset = self.train_dataset()
        common: dict[str, Any] = {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
        }
        if self.sampler is None:
            shuffle = ShuffleSampler(
                len(dataset),  # type: ignore[arg-type]
                seed=self.seed,
                num_replicas=num_replicas,
                rank=rank,
            )
            return DataLoader(dataset, batch_size=self.batch_size, sampler=shuffle, **common)
        built = build_sampler(
            self.sampler["name"],
            self.train_labels,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
            **self.sampler.get("args", {}),
        )
        if isinstance(built, PKBatchSampler):  # yields whole batches
            return DataLoader(dataset, batch_sampler=built, **common)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=built, **common)

    def val_dataloader(self) -> DataLoader[Any] | list[Any]:
        """Return the validation loader (an empty list when ``val_fraction`` is 0)."""
        self.setup()
        assert self._val_indices is not None
        if len(self._val_indices) == 0:
            return []
        return self._loader(Subset(self.splits.trainval, self._val_indices.tolist()))

    def test_dataloader(self) -> DataLoader[Any]:
        """Return the loader of the test split."""
        return self.split_dataloader("test")

    def split_dataloader(self, split: str) -> DataLoader[Any]:
        """Return an unshuffled loader over an evaluation split, in dataset order."""
        if split == "trainval":
            return self._loader(self.splits.trainval)
        if split == "test":
            return self._loader(self.splits.test)
        if split in self.splits.extra:
            return self._loader(self.splits.extra[split])
        raise PlpDataError(
            f"unknown split {split!r} for {type(self).__name__}; "
            f"available: {', '.join(self.eval_splits)}"
        )

    def _loader(self, dataset: Dataset[Any]) -> DataLoader[Any]:
        return DataLoader(
            dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers
        )


def split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted ``(kept, held_out)`` with ``fraction`` held out.

    Stratified by label when every class can appear on both sides, a plain seeded split
    otherwise; the same labels, fraction and seed always give the same split.
    """
    kept, held_out = train_test_split(
        np.arange(len(labels)),
        test_size=fraction,
        random_state=seed,
        stratify=_stratify_or_none(labels, fraction),
    )
    return np.sort(kept), np.sort(held_out)


def _stratify_or_none(labels: np.ndarray, fraction: float) -> np.ndarray | None:
    """Return ``labels`` when a stratified split of ``fraction`` is possible, else None."""
    _, counts = np.unique(labels, return_counts=True)
    num_held_out = int(np.ceil(fraction * len(labels)))
    if counts.min() < 2 or num_held_out < len(counts) or len(labels) - num_held_out < len(counts):
        return None
    return labels
