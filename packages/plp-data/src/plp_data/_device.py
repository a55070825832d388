"""The device data path: a split as one uint8 tensor, gathered and augmented in whole batches.

Instead of decoding and transforming one PIL image at a time in DataLoader workers, a split lives
as one ``(N, H, W, C)`` uint8 tensor (on the training device when it fits, else in host memory);
a batch of indices from the usual samplers is gathered at once and augmented on the device with
batched tensor operations. The evaluation transform is the workers path's ``ToTensor`` +
``Normalize``, computed the same way (``x.float() / 255``, then ``(x - mean) / std``).

Random draws of a training batch come from ``numpy.random.default_rng([seed, epoch, batch,
stream])`` (drawn on the host, then moved), so they depend on the seed, the epoch and the global
batch index alone: the same on CPU and CUDA, after a resume, and under DDP (rank ``r`` of ``R``
draws for its local batch ``b`` what the global batch ``b * R + r`` draws).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from plp_data._errors import PlpDataError
from plp_data._samplers import _resolve_replicas
from plp_data._transforms import ResolvedTransforms

__all__ = [
    "DeviceAugmentation",
    "DeviceDataLoader",
    "DeviceImageDataset",
    "DevicePlan",
    "DeviceSplits",
    "KeyedBatch",
    "KeyedBatchSampler",
    "collate_device_batch",
    "device_augmentation",
]

# Distinguishes the augmentation's random stream from the samplers' streams.
_AUGMENT_STREAM = 0x4155
# torchvision's RandomErasing defaults (scale of the erased area, log-uniform aspect ratio).
ERASING_SCALE = (0.02, 0.33)
ERASING_RATIO = (0.3, 3.3)
_ERASING_ATTEMPTS = 10


@dataclass(frozen=True)
class _Pad:
    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class _Crop:
    height: int
    width: int


@dataclass(frozen=True)
class _Flip:
    p: float
    vertical: bool


_Step = _Pad | _Crop | _Flip


def _padding(value: Any, where: str) -> _Pad:
    """Torchvision's padding convention: int, ``[left/right, top/bottom]`` or ``[l, t, r, b]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _Pad(value, value, value, value)
    if isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
        if len(value) == 1:
            return _Pad(*(value[0],) * 4)
        if len(value) == 2:
            return _Pad(value[0], value[1], value[0], value[1])
        if len(value) == 4:
            return _Pad(*value)
    raise PlpDataError(f"{where}: padding must be an int or 1, 2 or 4 ints, got {value!r}")


def _size(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if (
        isinstance(value, Sequence)
        and len(value) in (1, 2)
        and all(isinstance(v, int) for v in value)
    ):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    raise PlpDataError(f"{where}: size must be an int or [height, width], got {value!r}")


def _translate(
    spec: Mapping[str, Any], where: str, crop_size: tuple[int, int] | None
) -> list[_Step]:
    """Return the batched steps of one torchvision augmentation step, or raise naming why not."""
    name, args = spec.get("name"), dict(spec.get("args", {}))
    constant = args.pop("fill", 0) == 0 and args.pop("padding_mode", "constant") == "constant"
    if name in ("RandomHorizontalFlip", "RandomVerticalFlip"):
        p = float(args.pop("p", 0.5))
        if args:
            raise PlpDataError(f"{where}: {name} argument(s) {sorted(args)} not supported")
        return [_Flip(p, vertical=name == "RandomVerticalFlip")]
    if name == "Pad" and constant:
        steps: list[_Step] = [_padding(args.pop("padding"), where)] if "padding" in args else []
        if args or not steps:
            raise PlpDataError(f"{where}: Pad({spec.get('args', {})}) not supported")
        return steps
    if name == "RandomCrop" and constant and not args.pop("pad_if_needed", False):
        steps = []
        if args.get("padding") is not None:
            steps.append(_padding(args.pop("padding"), where))
        args.pop("padding", None)
        size = args.pop("size", None)
        target = _size(size, where) if size is not None else crop_size
        if args or target is None:
            raise PlpDataError(f"{where}: RandomCrop({spec.get('args', {})}) not supported")
        return [*steps, _Crop(*target)]
    raise PlpDataError(
        f"{where}: {name}({spec.get('args', {})}) has no batched version on the device path "
        "(it takes RandomCrop, Pad, RandomHorizontalFlip, RandomVerticalFlip)"
    )


class DeviceAugmentation:
    """Batched training augmentation of uint8 images, then normalisation and random erasing.

    Implements what the workers path does to each PIL image: the ``augment`` steps in order
    (``Pad``, ``RandomCrop`` with constant-0 padding, horizontal / vertical flips), then
    ``ToTensor`` + ``Normalize`` and torchvision's ``RandomErasing(p)`` with its default scale
    ``(0.02, 0.33)``, log-uniform ratio ``(0.3, 3.3)``, 10 attempts and value 0. Each image draws
    its own crop offset, flip and erasing box, with torchvision's distributions.

    Args:
        steps: The batched steps (built by :func:`device_augmentation`).
        random_erasing: Probability of erasing a box of each image.
    """

    def __init__(self, steps: Sequence[_Step], random_erasing: float) -> None:
        self.steps = tuple(steps)
        self.random_erasing = float(random_erasing)

    def __repr__(self) -> str:
        return f"DeviceAugmentation(steps={list(self.steps)}, random_erasing={self.random_erasing})"

    def geometry(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Return the padded, cropped and flipped uint8 batch ``(N, C, H, W)``."""
        for step in self.steps:
            if isinstance(step, _Pad):
                pad = (step.left, step.right, step.top, step.bottom)
                images = torch.nn.functional.pad(images, pad)
            elif isinstance(step, _Crop):
                images = _random_crop(images, step.height, step.width, rng)
            else:
                flip = torch.from_numpy(rng.random(len(images)) < step.p).to(images.device)
                flipped = images.flip(-2 if step.vertical else -1)
                images = torch.where(flip[:, None, None, None], flipped, images)
        return images

    def erase(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Return the normalised float batch with random boxes set to 0 (probability ``p``)."""
        if self.random_erasing <= 0:
            return images
        top, left, height, width = erasing_boxes(
            len(images), images.shape[-2], images.shape[-1], self.random_erasing, rng
        )
        device = images.device
        rows = torch.arange(images.shape[-2], device=device)
        cols = torch.arange(images.shape[-1], device=device)

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(values).to(device)[:, None]

        top_t, left_t = column(top), column(left)
        in_rows = (rows >= top_t) & (rows < top_t + column(height))
        in_cols = (cols >= left_t) & (cols < left_t + column(width))
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        return images.masked_fill(mask, 0.0)


def erasing_boxes(
    count: int, height: int, width: int, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(top, left, box_height, box_width)`` of ``count`` random-erasing draws.

    torchvision's ``RandomErasing.get_params`` per image: with probability ``p``, up to 10
    attempts of an area ``U(0.02, 0.33) * H * W`` and a log-uniform aspect ratio in
    ``(0.3, 3.3)``; the first box that fits strictly inside the image is placed uniformly. Images
    not erased (or without a fitting attempt) get a 0x0 box.
    """
    erase = rng.random(count) < p
    areas = height * width * rng.uniform(*ERASING_SCALE, size=(count, _ERASING_ATTEMPTS))
    low, high = math.log(ERASING_RATIO[0]), math.log(ERASING_RATIO[1])
    log_ratio = rng.uniform(low, high, size=(count, _ERASING_ATTEMPTS))
    ratios = np.exp(log_ratio)
    box_h = np.rint(np.sqrt(areas * ratios)).astype(np.int64)
    box_w = np.rint(np.sqrt(areas / ratios)).astype(np.int64)
    fits = (box_h < height) & (box_w < width)
    first = fits.argmax(axis=1)
    chosen = erase & fits.any(axis=1)
    rows = np.arange(count)
    box_h = np.where(chosen, box_h[rows, first], 0)
    box_w = np.where(chosen, box_w[rows, first], 0)
    top = rng.integers(0, height - box_h + 1)
    left = rng.integers(0, width - box_w + 1)
    return top, left, box_h, box_w


def _random_crop(
    images: torch.Tensor, height: int, width: int, rng: np.random.Generator
) -> torch.Tensor:
    """Crop each image of ``images`` at its own uniform offset (torchvision's ``RandomCrop``)."""
    count, channels, full_h, full_w = images.shape
    if (full_h, full_w) == (height, width):
        return images
    if full_h < height or full_w < width:
        raise PlpDataError(
            f"RandomCrop: crop {height}x{width} is larger than the (padded) image {full_h}x{full_w}"
        )
    device = images.device
    top = torch.from_numpy(rng.integers(0, full_h - height + 1, size=count)).to(device)
    left = torch.from_numpy(rng.integers(0, full_w - width + 1, size=count)).to(device)
    rows = top[:, None] + torch.arange(height, device=device)
    cols = left[:, None] + torch.arange(width, device=device)
    # One gather over the flattened pixels (much faster than 4-D advanced indexing on a CPU).
    flat = (rows[:, :, None] * full_w + cols[:, None, :]).view(count, 1, height * width)
    pixels = images.reshape(count, channels, full_h * full_w)
    cropped = pixels.gather(2, flat.expand(count, channels, height * width))
    return cropped.view(count, channels, height, width)


def device_augmentation(spec: ResolvedTransforms) -> DeviceAugmentation:
    """Return the batched augmentation of ``spec``'s training transform.

    Raises:
        PlpDataError: A step has no batched version (the message names it); the workers path
            still runs it.
    """
    steps: list[_Step] = []
    for i, step in enumerate(spec.augment):
        steps.extend(_translate(step, f"augment[{i}]", spec.crop_size))
    return DeviceAugmentation(steps, spec.random_erasing)


class KeyedBatch(list[int]):
    """A batch of dataset indices that knows its epoch and global batch index."""

    def __init__(self, indices: Sequence[int], epoch: int, batch: int) -> None:
        super().__init__(indices)
        self.epoch = epoch
        self.batch = batch


class KeyedBatchSampler(Sampler[KeyedBatch]):
    """Wraps a batch sampler so that each batch carries ``(epoch, global batch index)``.

    The epoch is the inner sampler's (Lightning sets it through ``.sampler.set_epoch``); the
    global index of this rank's ``b``-th batch is ``b * num_replicas + rank``.

    Args:
        batch_sampler: Yields lists of indices (a ``BatchSampler`` or :class:`PKBatchSampler`).
        num_replicas: Processes sharing an epoch (``None``: from :mod:`torch.distributed`).
        rank: This process's index among them (``None``: from :mod:`torch.distributed`).
    """

    def __init__(
        self, batch_sampler: Any, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__()
        self.batch_sampler = batch_sampler
        self._num_replicas = num_replicas
        self._rank = rank

    @property
    def sampler(self) -> Any:
        """The sampler whose ``set_epoch`` Lightning calls (the inner one's)."""
        return getattr(self.batch_sampler, "sampler", self.batch_sampler)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[KeyedBatch]:
        replicas, rank = _resolve_replicas(self._num_replicas, self._rank)
        epoch = int(getattr(self.sampler, "epoch", 0))
        for local, indices in enumerate(self.batch_sampler):
            yield KeyedBatch(indices, epoch, local * replicas + rank)


class DeviceDataLoader(DataLoader[Any]):
    """A training DataLoader over a :class:`DeviceImageDataset` whose batches know their key.

    Built like any DataLoader (``sampler=`` + ``batch_size=``, or ``batch_sampler=``), so
    ``loader.sampler`` / ``loader.batch_sampler`` are plp's samplers and Lightning's
    ``set_epoch`` reaches them; iterating wraps the index batches in :class:`KeyedBatchSampler`
    so that the dataset augments each with its own ``(seed, epoch, batch)`` stream. No workers:
    the batches are made in this process, on the device.

    Args:
        dataset: The training images.
        num_replicas: Processes sharing an epoch (``None``: from :mod:`torch.distributed`).
        rank: This process's index among them (``None``: from :mod:`torch.distributed`).
        **kwargs: ``sampler``, ``batch_size`` or ``batch_sampler``, as for a DataLoader.
    """

    def __init__(
        self,
        dataset: DeviceImageDataset,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, collate_fn=collate_device_batch, **kwargs)
        self.num_replicas = num_replicas
        self.rank = rank

    @property
    def _index_sampler(self) -> Any:
        inner = super()._index_sampler
        if not self._auto_collation:
            return inner
        return KeyedBatchSampler(inner, num_replicas=self.num_replicas, rank=self.rank)


class DeviceImageDataset(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """uint8 images ``(N, H, W, C)`` served in whole batches ``(images, labels[, cameras])``.

    ``dataset.__getitems__(indices)`` (which a DataLoader with auto-batching calls) gathers the
    batch, moves it to ``device``, augments it when the indices are a :class:`KeyedBatch` and an
    augmentation is set, and normalises it: ``(x / scale - mean) / std`` in float32. Use
    :func:`collate_device_batch` as the loader's ``collate_fn``.

    Args:
        images: ``(N, H, W, C)`` or ``(N, H, W)`` uint8 images (array or tensor, any device).
        labels: ``(N,)`` integer labels.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        cameras: ``(N,)`` camera ids, or None.
        scale: The pixel value that maps to 1.0 (255; 16 for scikit-learn's digits).
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: Any,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        cameras: Any = None,
        scale: float = 255.0,
    ) -> None:
        tensor = torch.as_tensor(images) if not isinstance(images, torch.Tensor) else images
        if tensor.dtype != torch.uint8 or tensor.ndim not in (3, 4):
            raise PlpDataError(
                f"device path: images must be uint8 (N, H, W[, C]), got {tensor.dtype} "
                f"{tuple(tensor.shape)}"
            )
        self.images = tensor if tensor.ndim == 4 else tensor.unsqueeze(-1)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.cameras = None if cameras is None else torch.as_tensor(np.asarray(cameras)).long()
        if len(self.labels) != len(self.images):
            raise PlpDataError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(mean) != self.images.shape[-1] or len(std) != len(mean):
            raise PlpDataError(
                f"mean {tuple(mean)} / std {tuple(std)}: need one value per channel "
                f"({self.images.shape[-1]})"
            )
        self.mean, self.std, self.scale = tuple(mean), tuple(std), float(scale)
        self.device = self.images.device
        self.indices: torch.Tensor | None = None
        self.augmentation: DeviceAugmentation | None = None
        self.seed = 0
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the uint8 images."""
        return self.images.numel()

    def to(
        self,
        device: torch.device | str,
        *,
        store: bool = True,
        moved: dict[int, torch.Tensor] | None = None,
    ) -> DeviceImageDataset:
        """Return a copy that serves batches on ``device``.

        With ``store`` the images move there too; otherwise they stay where they are and each
        batch is gathered there, pinned (for CUDA) and copied (a split larger than the device).
        ``moved`` maps the ``data_ptr`` of images already moved to their copy, so datasets
        sharing images share the copy too.
        """
        device = torch.device(device)
        copy = self._view()
        copy.device = device
        if store and self.images.device != device:
            moved = {} if moved is None else moved
            key = self.images.data_ptr()
            if key not in moved:
                moved[key] = self.images.to(device)
            copy.images = moved[key]
        copy.labels, copy.cameras = self.labels.to(device), _to(self.cameras, device)
        copy.indices = _to(self.indices, device)
        return copy

    def subset(self, indices: Sequence[int] | np.ndarray) -> DeviceImageDataset:
        """Return the dataset restricted to ``indices`` (no copy of the images)."""
        view = self._view()
        chosen = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        base = chosen if self.indices is None else self.indices.cpu()[chosen]
        view.indices = base.to(self.images.device)
        return view

    def with_augmentation(self, augmentation: DeviceAugmentation, seed: int) -> DeviceImageDataset:
        """Return the dataset augmenting keyed (training) batches with ``augmentation``."""
        view = self._view()
        view.augmentation, view.seed = augmentation, int(seed)
        return view

    def _view(self) -> DeviceImageDataset:
        view = object.__new__(DeviceImageDataset)
        view.__dict__.update(self.__dict__)
        view._stats = {}
        return view

    def __len__(self) -> int:
        return len(self.labels) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(part[0] for part in self.__getitems__([index]))

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Return the batch ``(images, labels[, cameras])`` of ``indices`` on the device."""
        if self.device.type != "cpu":
            return self._batch(indices)
        # These ops are small and memory-bound: on a CPU, one thread makes them without
        # OpenMP's barrier stalls, which cost 30x on a shared 2-core machine (measured).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._batch(indices)
        finally:
            torch.set_num_threads(threads)

    def _batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        positions = torch.as_tensor(list(indices), dtype=torch.long)
        if self.indices is not None:
            positions = self.indices[positions.to(self.indices.device)]
        images = self._gather(positions)
        rng = None
        if self.augmentation is not None and isinstance(indices, KeyedBatch):
            rng = np.random.default_rng([self.seed, indices.epoch, indices.batch, _AUGMENT_STREAM])
            images = self.augmentation.geometry(images, rng)
        images = self._normalise(images)
        if rng is not None and self.augmentation is not None:
            images = self.augmentation.erase(images, rng)
        on_device = positions.to(self.labels.device)
        labels = self.labels[on_device]
        if self.cameras is None:
            return images, labels
        return images, labels, self.cameras[on_device]

    def _gather(self, positions: torch.Tensor) -> torch.Tensor:
        """The uint8 batch ``(N, C, H, W)`` on ``self.device``."""
        if self.images.device == self.device:
            batch = self.images[positions.to(self.device)]
        else:  # host storage: gather there, copy through pinned memory
            batch = self.images[positions.cpu()]
            if self.device.type == "cuda":
                batch = batch.pin_memory()
            batch = batch.to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2)
        # NHWC storage is channels_last already: keep it for CUDA convolutions.
        return batch if self.device.type == "cuda" else batch.contiguous()

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        if device not in self._stats:
            shape = (1, len(self.mean), 1, 1)
            mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(shape)
            std = torch.tensor(self.std, dtype=torch.float32, device=device).view(shape)
            self._stats[device] = (mean, std)
        mean, std = self._stats[device]
        # The order of ToTensor (divide) and Normalize (subtract, divide), for equal floats.
        return images.float().div_(self.scale).sub_(mean).div_(std)


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def collate_device_batch(batch: Any) -> Any:
    """Return a batch made by :meth:`DeviceImageDataset.__getitems__` as it is.

    Lists of single items (from a dataset without ``__getitems__``) are collated by torch's
    ``default_collate``.
    """
    if isinstance(batch, tuple):
        return batch
    return default_collate(batch)


@dataclass
class DeviceSplits:
    """A datamodule's evaluation splits on the device path, and its training augmentation.

    Attributes:
        trainval: The trainval images (training batches are a subset of them, augmented).
        test: The test images.
        extra: Further evaluation splits by name.
        augmentation: The training augmentation (None: none).
    """

    trainval: DeviceImageDataset
    test: DeviceImageDataset
    extra: dict[str, DeviceImageDataset]
    augmentation: DeviceAugmentation | None

    def to(self, device: torch.device, *, store: bool = True) -> DeviceSplits:
        """Return the splits serving batches on ``device`` (stored there when ``store``)."""
        moved: dict[int, torch.Tensor] = {}
        return DeviceSplits(
            self.trainval.to(device, store=store, moved=moved),
            self.test.to(device, store=store, moved=moved),
            {
                name: split.to(device, store=store, moved=moved)
                for name, split in self.extra.items()
            },
            self.augmentation,
        )


@dataclass
class DevicePlan:
    """How a datamodule's splits can take the device path, known before anything is loaded.

    Attributes:
        nbytes: Bytes of the uint8 images of all splits (decides ``pipeline = "auto"``).
        load: Returns the splits (for file datasets: builds or opens the decoded cache).
        unsupported: Why the device path cannot serve this datamodule (None: it can).
    """

    nbytes: int
    load: Callable[[], DeviceSplits]
    unsupported: str | None = None
