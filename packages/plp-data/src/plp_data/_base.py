"""The datamodule base class every plp dataset derives from."""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from plp_core import NonNegativeInt, PositiveInt, Range, unknown_choice
from plp_data._datasets import FileImageDataset
from plp_data._device import (
    DeviceDataLoader,
    DeviceImageDataset,
    DevicePlan,
    DeviceSplits,
    collate_device_batch,
)
from plp_data._errors import PlpDataError
from plp_data._hard_sampler import EmbeddingSampler, EmbeddingSource
from plp_data._preprocessing import Preprocessing
from plp_data._sampler_registry import build_sampler, check_sampler_spec
from plp_data._samplers import PKBatchSampler, ShuffleSampler
from plp_data._split import shuffle_split
from plp_data._validation import ValidationSplit, choose_queries, held_out_classes

__all__ = ["DEVICE_MEMORY_SHARE", "PIPELINES", "PlpDataModule", "Splits", "split_indices"]

PIPELINES = ("auto", "device", "workers")
# pipeline = "auto" takes the device path when all splits' uint8 images fit in this share of the
# device's memory (of the host's RAM on a CPU), leaving the rest to the model and activations.
DEVICE_MEMORY_SHARE = 0.25
# The validation share of trainval when neither val_fraction nor val_classes is given.
DEFAULT_VAL_FRACTION = 0.1


@dataclass
class Splits:
    """The datasets a datamodule provides.

    Attributes:
        train: The trainval images with the *training* transforms (augmentation).
        trainval: The same images with the evaluation transforms (the re-ID gallery).
        test: The test images with the evaluation transforms (the re-ID query).
        trainval_labels: Labels of ``trainval`` in dataset order, as int64.
        trainval_cameras: Camera ids of ``trainval`` in dataset order (None: no cameras).
        extra: Further evaluation splits (e.g. Market-1501's own ``query`` and ``gallery``).
        device: How the same splits take the device path (None: workers only).
        groups: Per evaluation split, each item's group (a dataset CSV's sequences): gallery
            items of a query's group are left out of its ranking. Splits without: no groups.
    """

    train: Dataset[Any]
    trainval: Dataset[Any]
    test: Dataset[Any]
    trainval_labels: np.ndarray
    extra: dict[str, Dataset[Any]] = field(default_factory=dict)
    device: DevicePlan | None = None
    trainval_cameras: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)


class PlpDataModule(pl.LightningDataModule):
    """A LightningDataModule with fixed trainval/test splits and a seeded validation carve-out.

    Subclasses implement :meth:`load_splits` and set ``num_classes``, ``in_channels`` and
    ``image_size``. Training batches come from trainval minus a validation part chosen with
    ``seed``: a stratified share of the images, or, for datasets whose test classes are unseen
    in training (``class_disjoint_validation``, re-ID and metric learning) or when
    ``val_classes`` is given, whole held-out classes (see :mod:`plp_data._validation`).
    :meth:`split_dataloader` serves every evaluation split in dataset order without
    augmentation; :meth:`validation_split` describes the validation images.

    Args:
        root: Directory holding the dataset files.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the evaluation loaders (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        seed: Seed of the validation carve-out and of the training shuffle.
        val_fraction: Share of trainval held out for validation (0 disables validation): of
            the images, or of the classes where validation holds out classes. Default 0.1
            unless ``val_classes`` is given.
        val_classes: Hold out this many whole classes (identities) for validation, drawn among
            the classes with two or more images; validation and training then share no class.
            Not together with ``val_fraction``.
        sampler: ``{"name": "pk" | "class_balanced", "args": {...}}`` to draw training batches
            with :class:`~plp_data.PKBatchSampler` or :class:`~plp_data.ClassBalancedSampler`
            instead of a plain shuffle (None). Both are DDP-aware: each rank draws its own batches.
        pipeline: ``"device"``: each split is one uint8 tensor on the training device, batches
            are gathered and augmented there in one go (see :mod:`plp_data._device`);
            ``"workers"``: per-image transforms in DataLoader workers; ``"auto"``: the device
            path when the datamodule supports it and its images fit in
            ``DEVICE_MEMORY_SHARE`` (a quarter) of the device's memory, else workers. The one
            used is :attr:`data_pipeline`.
    """

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    # True: validation holds out whole classes (re-ID, metric learning), else images.
    class_disjoint_validation: ClassVar[bool] = False

    def __init__(
        self,
        root: str = "data",
        batch_size: PositiveInt = 64,
        eval_batch_size: PositiveInt | None = None,
        num_workers: NonNegativeInt = 0,
        seed: Annotated[int, Range(ge=0, lt=2**32)] = 0,
        val_fraction: Annotated[float, Range(ge=0, lt=1)] | None = None,
        val_classes: PositiveInt | None = None,
        sampler: Mapping[str, Any] | None = None,
        pipeline: Literal["auto", "device", "workers"] = "auto",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise PlpDataError(f"batch_size must be >= 1, got {batch_size}")
        if pipeline not in PIPELINES:
            raise PlpDataError(
                f"data.args.pipeline must be one of {', '.join(map(repr, PIPELINES))}, "
                f"got {pipeline!r}"
            )
        if val_fraction is not None and val_classes is not None:
            raise PlpDataError(
                f"give val_fraction or val_classes, not both (given: {val_fraction}, {val_classes})"
            )
        if val_fraction is None:
            val_fraction = 0.0 if val_classes is not None else DEFAULT_VAL_FRACTION
        if not 0.0 <= val_fraction < 1.0:
            raise PlpDataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_classes is not None and val_classes < 1:
            raise PlpDataError(f"val_classes must be >= 1, got {val_classes}")
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_fraction = val_fraction
        self.val_classes = val_classes
        self.sampler = check_sampler_spec(sampler)
        self.pipeline = pipeline
        self._data_pipelines: dict[torch.device, str] = {}
        self._device_splits: dict[torch.device, DeviceSplits] = {}
        self._loaded_device_splits: DeviceSplits | None = None
        self._splits: Splits | None = None
        self._train_indices: np.ndarray | None = None
        self._val_indices: np.ndarray | None = None
        # Set by the training loop for samplers that draw from the model's embeddings.
        self.embedding_source: EmbeddingSource | None = None
        self._sampler_state: dict[str, Any] | None = None
        self._embedding_sampler: EmbeddingSampler | None = None

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

    @classmethod
    def eval_preprocessing(cls, **args: Any) -> Preprocessing | None:
        """Return how an image file becomes an input as the evaluation images do (None: unknown).

        For a datamodule built with ``args`` (a config's ``data.args``); reads no data, so a
        run can embed image files where its dataset is gone.
        """
        del args
        return None

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes, indexed by label (None: the dataset has none; show labels)."""
        return None

    @property
    def eval_splits(self) -> list[str]:
        """Names accepted by :meth:`split_dataloader`: ``trainval``, ``test`` and any extras."""
        return ["trainval", "test", *self.splits.extra]

    def split_paths(self, split: str) -> list[str] | None:
        """Return the image files of evaluation ``split`` relative to ``root``, in item order.

        None for datasets without files (digits, MNIST, CIFAR). A file outside ``root`` (an
        absolute path in a dataset CSV) is given as it is. Paths use ``/`` on every system.
        """
        dataset = self._split_dataset(split)
        if not isinstance(dataset, FileImageDataset):
            return None
        root = Path(self.root)
        return [_relative(path, root) for path in dataset.paths]

    def split_groups(self, split: str) -> np.ndarray | None:
        """Return each item's group in evaluation ``split`` (None: the dataset has none).

        Gallery items in a query's group are left out of its ranking (``query_gallery``).
        """
        self._split_dataset(split)
        return self.splits.groups.get(split)

    def _split_dataset(self, split: str) -> Dataset[Any]:
        named = {"trainval": self.splits.trainval, "test": self.splits.test, **self.splits.extra}
        if split not in named:
            kind = f"split of {type(self).__name__}"
            raise PlpDataError(unknown_choice(kind, split, self.eval_splits))
        return named[split]

    def setup(self, stage: str | None = None) -> None:
        """Load the splits and carve the validation part out of trainval (idempotent)."""
        if self._splits is not None:
            return
        splits = self.load_splits()
        for name, dataset in {"trainval": splits.trainval, "test": splits.test}.items():
            if len(dataset) == 0:  # type: ignore[arg-type]
                raise PlpDataError(f"{type(self).__name__}: the {name} split is empty")
        labels = splits.trainval_labels
        indices = np.arange(len(labels))
        if self.holds_out_classes:
            count = self.val_classes
            if count is None:  # a share of the classes, at least one
                count = max(1, round(self.val_fraction * len(np.unique(labels))))
            what = "val_classes" if self.val_classes is not None else "val_fraction"
            self._train_indices, self._val_indices = held_out_classes(
                labels, count, self.seed, what=f"{type(self).__name__}: {what}"
            )
        elif self.val_fraction > 0:
            self._train_indices, self._val_indices = split_indices(
                labels, self.val_fraction, self.seed, what=f"{type(self).__name__}: val_fraction"
            )
        else:
            self._train_indices, self._val_indices = indices, indices[:0]
        self._splits = splits

    @property
    def has_validation(self) -> bool:
        """Whether training validates: ``val_fraction > 0`` or ``val_classes`` given."""
        return self.val_fraction > 0 or self.val_classes is not None

    @property
    def holds_out_classes(self) -> bool:
        """Whether validation holds out whole classes (none shared with training)."""
        if self.val_classes is not None:
            return True
        return self.class_disjoint_validation and self.val_fraction > 0

    def validation_split(self) -> ValidationSplit | None:
        """Return the validation images in the validation loader's order (None: no validation).

        Queries are chosen per identity and camera (:func:`~plp_data._validation.choose_queries`,
        seeded by ``seed``) for the query/gallery protocol.
        """
        self.setup()
        assert self._val_indices is not None
        if len(self._val_indices) == 0:
            return None
        indices = self._val_indices
        labels = self.splits.trainval_labels[indices].astype(np.int64)
        cameras = self.splits.trainval_cameras
        cameras = None if cameras is None else np.asarray(cameras)[indices].astype(np.int64)
        return ValidationSplit(
            indices=indices,
            labels=labels,
            cameras=cameras,
            queries=choose_queries(labels, cameras, self.seed),
            class_disjoint=self.holds_out_classes,
        )

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
        device_splits = self._device_path()
        if device_splits is not None:
            return self._device_train_loader(device_splits, num_replicas, rank)
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
        built = self._train_sampler(num_replicas, rank)
        if isinstance(built, PKBatchSampler):  # yields whole batches
            return DataLoader(dataset, batch_sampler=built, **common)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=built, **common)

    def _train_sampler(self, num_replicas: int | None, rank: int | None) -> Any:
        """Build the configured training sampler; hand an embedding sampler its source/state."""
        assert self.sampler is not None
        built = build_sampler(
            self.sampler["name"],
            self.train_labels,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
            **self.sampler.get("args", {}),
        )
        if isinstance(built, EmbeddingSampler):
            built.embedding_source = self.embedding_source
            if self._sampler_state is not None:
                built.load_state_dict(self._sampler_state)
            self._embedding_sampler = built
        return built

    def train_embedding_loader(self) -> DataLoader[Any]:
        """Return the training images without augmentation, in training-dataset order.

        What an :class:`~plp_data.EmbeddingSampler`'s ``embedding_source`` embeds: row ``i`` of
        its result is training index ``i``.
        """
        self.setup()
        assert self._train_indices is not None
        device_splits = self._device_path()
        if device_splits is not None:
            return self._loader(device_splits.trainval.subset(self._train_indices))
        return self._loader(Subset(self.splits.trainval, self._train_indices.tolist()))

    def state_dict(self) -> dict[str, Any]:
        """Return what a checkpoint keeps: the embedding sampler's class graph, if any."""
        if self._embedding_sampler is None:
            return {}
        return {"sampler": self._embedding_sampler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (applied to the training sampler when it is built)."""
        self._sampler_state = state_dict.get("sampler")
        if self._sampler_state is not None and self._embedding_sampler is not None:
            self._embedding_sampler.load_state_dict(self._sampler_state)

    def val_dataloader(self) -> DataLoader[Any] | list[Any]:
        """Return the validation loader (an empty list when ``val_fraction`` is 0)."""
        self.setup()
        assert self._val_indices is not None
        if len(self._val_indices) == 0:
            return []
        device_splits = self._device_path()
        if device_splits is not None:
            return self._loader(device_splits.trainval.subset(self._val_indices))
        return self._loader(Subset(self.splits.trainval, self._val_indices.tolist()))

    def test_dataloader(self) -> DataLoader[Any]:
        """Return the loader of the test split."""
        return self.split_dataloader("test")

    def split_dataloader(self, split: str) -> DataLoader[Any]:
        """Return an unshuffled loader over an evaluation split, in dataset order."""
        device_splits = self._device_path()
        if device_splits is not None:
            named = {"trainval": device_splits.trainval, "test": device_splits.test}
            named.update(device_splits.extra)
            if split in named:
                return self._loader(named[split])
        return self._loader(self._split_dataset(split))

    def _loader(self, dataset: Dataset[Any]) -> DataLoader[Any]:
        if isinstance(dataset, DeviceImageDataset):  # whole batches, made in this process
            return DataLoader(
                dataset,
                batch_size=self.eval_batch_size,
                shuffle=False,
                collate_fn=collate_device_batch,
            )
        return DataLoader(
            dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers
        )

    # The device path ------------------------------------------------------------------------

    @property
    def data_pipeline(self) -> str:
        """The data path in use on :meth:`data_device`: ``"device"`` or ``"workers"``."""
        self._device_path()
        return self._data_pipelines[self.data_device()]

    def data_device(self) -> torch.device:
        """The device batches are served on: the trainer's root device, else the CPU."""
        trainer = getattr(self, "trainer", None)
        strategy = getattr(trainer, "strategy", None)
        return torch.device(strategy.root_device) if strategy is not None else torch.device("cpu")

    def _device_path(self) -> DeviceSplits | None:
        """Return the splits on the device path on :meth:`data_device`, or None for workers."""
        plan = self.splits.device
        device = self.data_device()
        if device not in self._data_pipelines:  # decided per device: CPU checks, then the GPU
            self._data_pipelines[device] = self._choose_pipeline(plan)
        if self._data_pipelines[device] == "workers":
            return None
        assert plan is not None
        if device not in self._device_splits:
            if self._loaded_device_splits is None:
                self._loaded_device_splits = plan.load()
            store = plan.nbytes <= DEVICE_MEMORY_SHARE * device_memory(device)
            self._device_splits[device] = self._loaded_device_splits.to(device, store=store)
        return self._device_splits[device]

    def _choose_pipeline(self, plan: DevicePlan | None) -> str:
        name = type(self).__name__
        reason = (
            f"{name} has no device path"
            if plan is None
            else (f"{name}: {plan.unsupported}" if plan.unsupported else None)
        )
        if self.pipeline == "workers":
            return "workers"
        if reason is not None:
            if self.pipeline == "device":
                raise PlpDataError(f"data.args.pipeline = 'device' is not available: {reason}")
            return "workers"
        assert plan is not None
        if self.pipeline == "device":
            return "device"
        fits = plan.nbytes <= DEVICE_MEMORY_SHARE * device_memory(self.data_device())
        return "device" if fits else "workers"

    def _device_train_loader(
        self, device_splits: DeviceSplits, num_replicas: int | None, rank: int | None
    ) -> DataLoader[Any]:
        """Index batches from the usual samplers, gathered and augmented by the dataset."""
        assert self._train_indices is not None
        dataset = device_splits.trainval.subset(self._train_indices)
        if device_splits.augmentation is not None:
            dataset = dataset.with_augmentation(device_splits.augmentation, self.seed)
        replicas = {"num_replicas": num_replicas, "rank": rank}
        if self.sampler is None:
            shuffle = ShuffleSampler(len(dataset), seed=self.seed, **replicas)
            return DeviceDataLoader(
                dataset, batch_size=self.batch_size, sampler=shuffle, **replicas
            )
        built = self._train_sampler(num_replicas, rank)
        if isinstance(built, PKBatchSampler):  # yields whole batches
            return DeviceDataLoader(dataset, batch_sampler=built, **replicas)
        return DeviceDataLoader(dataset, batch_size=self.batch_size, sampler=built, **replicas)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (as given when it lies elsewhere), with ``/`` separators."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def split_indices(
    labels: np.ndarray, fraction: float, seed: int, *, what: str = "the fraction"
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted ``(kept, held_out)`` with ``fraction`` held out.

    Stratified by label when every class can appear on both sides, a plain seeded split
    otherwise; the same labels, fraction and seed always give the same split.

    Raises:
        PlpDataError: The split would leave one side empty (the message names ``what``).
    """
    held = int(np.ceil(fraction * len(labels)))
    if not 0 < held < len(labels):
        raise PlpDataError(
            f"{what} = {fraction:g} of {len(labels)} images holds out {held} and keeps "
            f"{len(labels) - held}: both parts need an image; change {what.split(': ')[-1]}"
        )
    kept, held_out = shuffle_split(len(labels), held, seed, _stratify_or_none(labels, fraction))
    return np.sort(kept), np.sort(held_out)


def _stratify_or_none(labels: np.ndarray, fraction: float) -> np.ndarray | None:
    """Return ``labels`` when a stratified split of ``fraction`` is possible, else None."""
    _, counts = np.unique(labels, return_counts=True)
    num_held_out = int(np.ceil(fraction * len(labels)))
    if counts.min() < 2 or num_held_out < len(counts) or len(labels) - num_held_out < len(counts):
        return None
    return labels


def device_memory(device: torch.device) -> int:
    """Return the bytes of memory of ``device`` (a CUDA device's total, else the host's RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 8 GiB
        return 8 << 30
