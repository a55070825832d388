"""Base of the datamodules that read real image files: transforms and the no-network errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from plp_data._base import PlpDataModule
from plp_data._errors import DataNotFoundError
from plp_data._transforms import TransformDefaults, build_transforms

__all__ = ["ImageDataModule"]


class ImageDataModule(PlpDataModule):
    """A datamodule over image files, with per-dataset default transforms.

    Args:
        root: Directory holding the dataset (see each dataset for the expected layout).
        download: Try to download missing files (needs network; the error says where to put the
            files by hand otherwise).
        mean: Override of the normalisation mean (one value per channel).
        std: Override of the normalisation standard deviation.
        image_size: Override of the ``[height, width]`` images are resized to.
        augment: Override of the training augmentation: a list of torchvision transforms
            ``{name = "RandomHorizontalFlip", args = {p = 0.5}}`` applied to the PIL image
            (``[]`` for none).
        random_erasing: Override of the probability of random erasing on training tensors.
        **kwargs: Passed to :class:`PlpDataModule` (``batch_size``, ``seed``, ``sampler``, ...).
    """

    transform_defaults: TransformDefaults

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        image_size: Sequence[int] | None = None,
        augment: Sequence[Mapping[str, Any]] | None = None,
        random_erasing: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.download = download
        self.train_transform, self.eval_transform = build_transforms(
            self.transform_defaults,
            native_size=getattr(self, "image_size", None),
            mean=mean,
            std=std,
            image_size=image_size,
            augment=augment,
            random_erasing=random_erasing,
        )
        size = image_size if image_size is not None else self.transform_defaults.image_size
        if size is not None:
            self.image_size = (int(size[0]), int(size[1]))
        self.in_channels = len(mean if mean is not None else self.transform_defaults.mean)

    def fetch(self, what: str, where: Path, files: str, download: Callable[[], object]) -> None:
        """Run ``download`` (when ``download = true``), turning any failure into a clear error.

        Args:
            what: The dataset's name, for messages.
            where: The folder the files must end up in.
            files: The files expected there, for messages.
            download: The function that downloads (torchvision's).

        Raises:
            DataNotFoundError: Downloading is off, or it failed (no network, bad mirror).
        """
        if not self.download:
            raise DataNotFoundError(
                f"{what} not found: expected {files} in {where}; put them there, point "
                "data.args.root elsewhere, or set data.args.download = true"
            )
        try:
            download()
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise DataNotFoundError(
                f"could not download {what} ({type(error).__name__}: {reason[:200]}); "
                f"without network, put {files} in {where} by hand"
            ) from None
