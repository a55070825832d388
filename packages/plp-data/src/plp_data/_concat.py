"""Several datasets as one: their union with disjoint label spaces (torchreid's ``sources``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from plp_data._base import PlpDataModule, Splits
from plp_data._datasets import _LabelledDataset
from plp_data._errors import PlpDataError
from plp_data._registry import DATAMODULES

__all__ = ["ConcatDataModule"]

# What the union sets for all its parts: a part may not set them itself.
_UNION_ARGS = frozenset(
    {
        "batch_size",
        "eval_batch_size",
        "num_workers",
        "pipeline",
        "sampler",
        "seed",
        "val_classes",
        "val_fraction",
    }
)


class _Part(Dataset[tuple[Any, ...]]):
    """One part's items with labels shifted by ``offset``, images resized to ``size``."""

    def __init__(
        self, dataset: Dataset[Any], offset: int, size: tuple[int, int] | None, cameras: bool
    ) -> None:
        self.dataset, self.offset, self.size, self.cameras = dataset, offset, size, cameras

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image, label, *rest = self.dataset[index]
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = torch.nn.functional.interpolate(
                image.unsqueeze(0), size=self.size, mode="bilinear", antialias=True
            ).squeeze(0)
        item = (image, torch.as_tensor(label) + self.offset)
        # Cameras matter only between images of one identity, which never span two parts.
        return (*item, *rest[:1]) if self.cameras else item


def _labels_of(dataset: Dataset[Any]) -> np.ndarray:
    """Return every label of ``dataset`` (read item by item for datasets that hold none)."""
    if isinstance(dataset, _LabelledDataset):
        return dataset.labels.numpy()
    return np.array([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


def _part_names(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The prefix of each part: its dataset name, numbered from the second of a name on."""
    names: list[str] = []
    for spec in specs:
        name = str(spec["name"])
        seen = sum(1 for other in names if other.split("#")[0] == name)
        names.append(name if seen == 0 else f"{name}#{seen + 1}")
    return names


@DATAMODULES.register("concat")
class ConcatDataModule(PlpDataModule):
    """The union of several datasets, trained on as one (torchreid's ``sources``).

    Each part is built from ``{name, args}`` as ``[data]`` would be. Labels stay apart: part
    ``k``'s labels (of every split) are shifted by the label span of the parts before it (the
    largest label of any of their splits plus one), so no two parts share a label and a part's
    test classes stay its trainval classes where they were. Class names are prefixed by the
    part's dataset name (``"cifar10/cat"``; the second part of one name is ``"name#2"``).

    Every part is resized to the run's ``image_size``: a part whose datamodule takes
    ``image_size`` (image files, MNIST, CIFAR) resizes in its own transforms, before its own
    augmentation; any other part's tensors are resized after its transforms (bilinear, with
    antialiasing). Parts must agree on the number of channels. ``train``, ``trainval`` and
    ``test`` are the unions of the parts' splits; a part's extra splits keep their names behind
    its prefix (``"market1501/query"``). The union's batch size, sampler, seed and validation
    split apply to the union (a sampler draws over all its classes); parts may not set them.
    Batches go through DataLoader workers (the union has no device path).

    Args:
        datasets: The parts, ``[{name = "digits", args = {...}}, ...]`` (at least one).
        image_size: ``[height, width]`` of the run (default: the first part's).
        **kwargs: Passed to :class:`PlpDataModule` (``batch_size``, ``seed``, ``sampler``, ...).

    Raises:
        PlpDataError: No part; a part spec that is not ``{name, args}``, an unknown dataset or
            argument, a union argument set on a part; parts with different channel counts.
    """

    def __init__(
        self,
        datasets: Sequence[Mapping[str, Any]],
        image_size: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(datasets, Sequence) or not datasets:
            raise PlpDataError("concat: datasets must list at least one {name, args}")
        self.part_names = _part_names([self._check_spec(i, s) for i, s in enumerate(datasets)])
        first = self._build_part(0, datasets[0], image_size)
        size = image_size if image_size is not None else first.image_size
        if len(size) != 2 or min(size) < 1:
            raise PlpDataError(f"concat: image_size must be [height, width] > 0, got {list(size)}")
        self.image_size = (int(size[0]), int(size[1]))
        self.parts = [first] + [
            self._build_part(i, spec, self.image_size) for i, spec in enumerate(datasets) if i
        ]
        channels = {part.in_channels for part in self.parts}
        if len(channels) > 1:
            found = ", ".join(
                f"{name}: {part.in_channels}"
                for name, part in zip(self.part_names, self.parts, strict=True)
            )
            raise PlpDataError(f"concat: the datasets differ in channels ({found})")
        self.in_channels = self.parts[0].in_channels
        self._offsets: list[int] | None = None
        self._span = 0

    @staticmethod
    def _check_spec(index: int, spec: Any) -> Mapping[str, Any]:
        where = f"concat: datasets[{index}]"
        if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "args"}:
            raise PlpDataError(f"{where} must be {{name = ..., args = {{...}}}}, got {spec!r}")
        if spec["name"] == "concat":
            raise PlpDataError(f"{where}: a concat cannot hold another concat")
        taken = sorted(_UNION_ARGS & set(spec.get("args", {})))
        if taken:
            raise PlpDataError(
                f"{where}.args.{taken[0]}: set it on the concat datamodule (it applies to the "
                "union of the datasets)"
            )
        return spec

    def _build_part(
        self, index: int, spec: Mapping[str, Any], size: Sequence[int] | None
    ) -> PlpDataModule:
        args = dict(spec.get("args", {}))
        parameters, _ = DATAMODULES.parameters(spec["name"])
        if size is not None and "image_size" in parameters:
            given = args.setdefault("image_size", [int(size[0]), int(size[1])])
            if list(given) != [int(size[0]), int(size[1])]:
                raise PlpDataError(
                    f"concat: datasets[{index}].args.image_size = {list(given)} differs from the "
                    f"run's image_size {list(size)}; set image_size on the concat datamodule"
                )
        try:
            # The union carves its own validation part: the parts keep all of trainval.
            part = DATAMODULES.build(spec["name"], seed=self.seed, val_fraction=0.0, **args)
        except PlpDataError as error:
            raise PlpDataError(f"concat: datasets[{index}] ({spec['name']}): {error}") from None
        return part

    # -- the union ------------------------------------------------------------------------

    @property
    def offsets(self) -> list[int]:
        """The label shift of each part (loads the parts' splits on first use)."""
        if self._offsets is None:
            offsets, total = [], 0
            for part in self.parts:
                splits = part.splits
                labels = [_labels_of(d) for d in (splits.test, *splits.extra.values())]
                span = max(
                    [part.num_classes, int(splits.trainval_labels.max()) + 1]
                    + [int(array.max()) + 1 for array in labels if array.size]
                )
                offsets.append(total)
                total += span
            self._offsets, self._span = offsets, total
        return self._offsets

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """The label span of the union: every label of every part lies below it."""
        self.offsets  # noqa: B018 - computes the span
        return self._span

    @property
    def class_names(self) -> list[str]:
        """``"<dataset>/<class>"`` for every label of the union (the label where unnamed)."""
        bounds = [*self.offsets, self.num_classes]
        names: list[str] = []
        for index, (prefix, part) in enumerate(zip(self.part_names, self.parts, strict=True)):
            own = part.class_names or []
            span = bounds[index + 1] - bounds[index]
            names.extend(f"{prefix}/{own[i] if i < len(own) else i}" for i in range(span))
        return names

    def split_categories(self, split: str) -> list[str]:
        """Return the part (its prefix) each item of evaluation ``split`` comes from.

        ``trainval`` and ``test`` hold the parts in order; an extra split ``"<prefix>/<name>"``
        is that part's alone. Evaluation reports its metrics per part with these.
        """
        if split in ("trainval", "test"):
            found: list[str] = []
            for prefix, part in zip(self.part_names, self.parts, strict=True):
                dataset = part.splits.trainval if split == "trainval" else part.splits.test
                found += [prefix] * len(dataset)  # type: ignore[arg-type]
            return found
        return [split.split("/", 1)[0]] * len(self._split_dataset(split))  # type: ignore[arg-type]

    def part_of(self, name: str) -> PlpDataModule:
        """Return the part whose prefix is ``name``."""
        if name not in self.part_names:
            raise PlpDataError(f"concat has no dataset {name!r}; it has {self.part_names}")
        return self.parts[self.part_names.index(name)]

    def load_splits(self) -> Splits:
        """Return the unions of the parts' splits, labels shifted by :attr:`offsets`."""
        parts = list(zip(self.part_names, self.parts, self.offsets, strict=True))
        cameras = all(part.splits.trainval_cameras is not None for _, part, _ in parts)

        def union(datasets: list[Dataset[Any]]) -> Dataset[Any]:
            return ConcatDataset(
                [
                    self._wrapped(dataset, part, offset, cameras)
                    for dataset, (_, part, offset) in zip(datasets, parts, strict=True)
                ]
            )

        extra: dict[str, Dataset[Any]] = {
            f"{prefix}/{split}": self._wrapped(dataset, part, offset, cameras)
            for prefix, part, offset in parts
            for split, dataset in part.splits.extra.items()
        }
        trainval_cameras = (
            np.concatenate([np.asarray(part.splits.trainval_cameras) for _, part, _ in parts])
            if cameras
            else None
        )
        return Splits(
            train=union([part.splits.train for _, part, _ in parts]),
            trainval=union([part.splits.trainval for _, part, _ in parts]),
            test=union([part.splits.test for _, part, _ in parts]),
            trainval_labels=np.concatenate(
                [part.splits.trainval_labels + offset for _, part, offset in parts]
            ).astype(np.int64),
            extra=extra,
            trainval_cameras=trainval_cameras,
        )

    def _wrapped(
        self, dataset: Dataset[Any], part: PlpDataModule, offset: int, cameras: bool
    ) -> _Part:
        resize = None if tuple(part.image_size) == self.image_size else self.image_size
        return _Part(dataset, offset, resize, cameras)
