"""Default image transforms per dataset, overridable from config.

Every pipeline is ``[Resize] -> augmentation -> ToTensor -> Normalize -> [RandomErasing]``:
evaluation transforms leave out the augmentation and the random erasing. The augmentation steps
are torchvision transform classes named in config, e.g.
``augment = [{name = "RandomHorizontalFlip", args = {p = 0.5}}]``; ``augment = []`` disables it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchvision import transforms as T

from plp_core import did_you_mean
from plp_data._errors import PlpDataError

__all__ = [
    "ResolvedTransforms",
    "TransformDefaults",
    "build_transforms",
    "resolve_transforms",
    "transforms_of",
]

Transform = Callable[[Any], Any]

MAX_IMAGE_SIDE = 16384
"""The largest height or width images are resized to (a 16384 x 16384 RGB image is 768 MiB)."""


@dataclass(frozen=True)
class TransformDefaults:
    """The normalisation and augmentation a dataset uses unless the config says otherwise.

    Attributes:
        mean: Per-channel mean of the pixels scaled to [0, 1].
        std: Per-channel standard deviation of the pixels scaled to [0, 1].
        image_size: ``(height, width)`` the images are resized to (None: keep their size).
        augment: Training augmentation steps, as ``{"name": ..., "args": {...}}`` mappings of
            torchvision transform classes applied to the PIL image. ``RandomCrop`` without a
            ``size`` crops back to the image size (after its ``padding``).
        random_erasing: Probability of torchvision's ``RandomErasing`` on the training tensor.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int] | None = None
    augment: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    random_erasing: float = 0.0


MNIST_DEFAULTS = TransformDefaults(mean=(0.1307,), std=(0.3081,))
FASHION_MNIST_DEFAULTS = TransformDefaults(mean=(0.2860,), std=(0.3530,))
KMNIST_DEFAULTS = TransformDefaults(mean=(0.1918,), std=(0.3483,))
CIFAR_AUGMENT: tuple[Mapping[str, Any], ...] = (
    {"name": "RandomCrop", "args": {"padding": 4}},
    {"name": "RandomHorizontalFlip"},
)
CIFAR10_DEFAULTS = TransformDefaults(
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=CIFAR_AUGMENT
)
CIFAR100_DEFAULTS = TransformDefaults(
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=CIFAR_AUGMENT
)
IMAGENET_DEFAULTS = TransformDefaults(
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    image_size=(224, 224),
    augment=({"name": "RandomHorizontalFlip"},),
)
# The re-ID "strong baseline" (Luo et al. 2019): 256x128, flip, pad + crop, random erasing.
REID_DEFAULTS = TransformDefaults(
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    image_size=(256, 128),
    augment=(
        {"name": "RandomHorizontalFlip"},
        {"name": "Pad", "args": {"padding": 10}},
        {"name": "RandomCrop"},
    ),
    random_erasing=0.5,
)


def _step(spec: Mapping[str, Any], where: str, size: tuple[int, int] | None) -> Transform:
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "args"}:
        raise PlpDataError(
            f"{where}: each step must be {{name = ..., args = {{...}}}}, got {spec!r}"
        )
    name = spec["name"]
    factory = getattr(T, name, None) if isinstance(name, str) else None
    if not isinstance(factory, type):
        choices = [n for n in dir(T) if n[:1].isupper() and isinstance(getattr(T, n), type)]
        raise PlpDataError(
            f"{where}: unknown torchvision transform {name!r}{did_you_mean(name, choices)}"
        )
    args = dict(spec.get("args", {}))
    if name == "RandomCrop" and "size" not in args and size is not None:
        args["size"] = list(size)  # crop back to the image size (after padding)
    try:
        return factory(**args)
    except (TypeError, ValueError) as error:
        raise PlpDataError(f"{where}: {name}({spec.get('args', {})}) failed: {error}") from None


@dataclass(frozen=True)
class ResolvedTransforms:
    """The transform parameters of one datamodule after the config's overrides.

    The device data path (:mod:`plp_data._device`) builds its batched augmentation from these, the
    workers path builds torchvision transforms from them, so both follow the same config.

    Attributes:
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        image_size: ``(height, width)`` images are resized to (None: keep their size).
        crop_size: The size a ``RandomCrop`` without ``size`` crops back to.
        augment: The training augmentation steps.
        random_erasing: Probability of random erasing on training tensors.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int] | None
    crop_size: tuple[int, int] | None
    augment: tuple[Mapping[str, Any], ...]
    random_erasing: float


def resolve_transforms(
    defaults: TransformDefaults,
    *,
    native_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: Sequence[int] | None = None,
    augment: Sequence[Mapping[str, Any]] | None = None,
    random_erasing: float | None = None,
) -> ResolvedTransforms:
    """Return ``defaults`` with the config's overrides applied and checked.

    Arguments as :func:`build_transforms`.

    Raises:
        PlpDataError: Inconsistent mean/std, a bad image size or erasing probability.
    """
    mean = tuple(defaults.mean if mean is None else mean)
    std = tuple(defaults.std if std is None else std)
    # "not s > 0" and isfinite: NaN fails every comparison, so "s <= 0" would let it through
    finite = all(math.isfinite(v) for v in (*mean, *std))
    if len(mean) != len(std) or not finite or any(not s > 0 for s in std):
        raise PlpDataError(
            f"mean {mean} and std {std} must have one finite value per channel, std > 0"
        )
    if image_size is not None and (
        len(image_size) != 2 or not all(1 <= side <= MAX_IMAGE_SIDE for side in image_size)
    ):
        raise PlpDataError(
            f"image_size must be [height, width], each in 1..{MAX_IMAGE_SIDE}, "
            f"got {list(image_size)}"
        )
    size = defaults.image_size if image_size is None else (int(image_size[0]), int(image_size[1]))
    steps = defaults.augment if augment is None else tuple(augment)
    erasing = defaults.random_erasing if random_erasing is None else random_erasing
    if not 0.0 <= erasing <= 1.0:
        raise PlpDataError(f"random_erasing must be a probability in [0, 1], got {erasing}")
    return ResolvedTransforms(mean, std, size, size or native_size, steps, erasing)


def build_transforms(
    defaults: TransformDefaults,
    *,
    native_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: Sequence[int] | None = None,
    augment: Sequence[Mapping[str, Any]] | None = None,
    random_erasing: float | None = None,
) -> tuple[Transform, Transform]:
    """Return the ``(train, eval)`` transforms of a PIL image, overriding ``defaults``.

    Args:
        defaults: The dataset's defaults.
        native_size: The size of the dataset's images, used when there is no resize.
        mean: Override of the normalisation mean (one value per channel).
        std: Override of the normalisation standard deviation.
        image_size: Override of ``(height, width)``.
        augment: Override of the training augmentation steps (``[]`` for none).
        random_erasing: Override of the random-erasing probability (0 disables it).

    Returns:
        The training transform (with augmentation) and the evaluation transform.

    Raises:
        PlpDataError: An unknown transform name, bad arguments or inconsistent mean/std.
    """
    spec = resolve_transforms(
        defaults,
        native_size=native_size,
        mean=mean,
        std=std,
        image_size=image_size,
        augment=augment,
        random_erasing=random_erasing,
    )
    return transforms_of(spec)


def transforms_of(spec: ResolvedTransforms) -> tuple[Transform, Transform]:
    """Return the ``(train, eval)`` torchvision transforms of a PIL image that ``spec`` names.

    Raises:
        PlpDataError: An unknown transform name or bad arguments.
    """
    size = spec.image_size
    resize: list[Transform] = [] if size is None else [T.Resize(list(size))]
    tensor: list[Transform] = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    erasing = spec.random_erasing
    steps = [_step(s, f"augment[{i}]", spec.crop_size) for i, s in enumerate(spec.augment)]
    _check_crops(steps, spec.crop_size)
    train = T.Compose(
        [*resize, *steps, *tensor, *([T.RandomErasing(p=erasing)] if erasing > 0 else [])]
    )
    return train, T.Compose([*resize, *tensor])


def _pair(value: Any) -> tuple[int, int] | None:
    """Return a torchvision size as ``(height, width)``; None when it is not one fixed size."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, Sequence) and len(value) == 1:
        return int(value[0]), int(value[0])
    return None


def _padded(size: tuple[int, int], padding: Any) -> tuple[int, int]:
    """Return ``size`` after torchvision's ``padding`` (an int, ``[x, y]`` or ``[l, t, r, b]``)."""
    if padding is None:
        return size
    if isinstance(padding, int):
        return size[0] + 2 * padding, size[1] + 2 * padding
    pads = [int(v) for v in padding]
    if len(pads) == 1:
        return size[0] + 2 * pads[0], size[1] + 2 * pads[0]
    if len(pads) == 2:
        return size[0] + 2 * pads[1], size[1] + 2 * pads[0]
    return size[0] + pads[1] + pads[3], size[1] + pads[0] + pads[2]


def _check_crops(steps: Sequence[Transform], size: tuple[int, int] | None) -> None:
    """Raise PlpDataError if a ``RandomCrop`` would ask for more than the image it gets.

    The image size is followed through the steps whose output size is known (``Pad``,
    ``RandomCrop``, ``CenterCrop``, ``RandomResizedCrop``, ``Resize`` to ``[h, w]``); after any
    other step it is unknown and nothing more is checked. torchvision would only fail at the
    first training batch, after the run has started.
    """
    for index, step in enumerate(steps):
        if size is None:
            return
        if isinstance(step, T.RandomCrop):
            padded = _padded(size, step.padding)
            crop = _pair(step.size)
            if (
                crop is not None
                and not step.pad_if_needed
                and (crop[0] > padded[0] or crop[1] > padded[1])
            ):
                raise PlpDataError(
                    f"augment[{index}]: RandomCrop of {crop[0]}x{crop[1]} is larger than the "
                    f"{padded[0]}x{padded[1]} images it gets; give a smaller size, more padding "
                    "or pad_if_needed = true"
                )
            size = crop
        elif isinstance(step, T.Pad):
            size = _padded(size, step.padding)
        elif isinstance(step, T.CenterCrop | T.RandomResizedCrop):
            size = _pair(step.size)
        elif isinstance(step, T.Resize):
            size = _pair(step.size) if not isinstance(step.size, int) else None
        elif not isinstance(step, T.RandomHorizontalFlip | T.RandomVerticalFlip | T.ColorJitter):
            size = None
