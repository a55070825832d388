"""Base of the datamodules that read real image files: transforms and the no-network errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from plp_core import Range
from plp_data._base import PlpDataModule
from plp_data._cache import decoded_images, default_cache_dir, user_cache_dir
from plp_data._device import DeviceImageDataset, DevicePlan, DeviceSplits, device_augmentation
from plp_data._errors import DataNotFoundError, PlpDataError
from plp_data._preprocessing import Preprocessing
from plp_data._transforms import TransformDefaults, resolve_transforms, transforms_of

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
        cache_dir: Folder of the decoded-image cache of file datasets on the device path
            (default: ``<root>/.plp-cache``, or ``~/.cache/plp`` when that cannot be written,
            with a note; a folder given here that cannot be written is an error).
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
        random_erasing: Annotated[float, Range(ge=0, le=1)] | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.download = download
        self.cache_dir = cache_dir
        self.transform_spec = resolve_transforms(
            self.transform_defaults,
            native_size=getattr(self, "image_size", None),
            mean=mean,
            std=std,
            image_size=image_size,
            augment=augment,
            random_erasing=random_erasing,
        )
        self.train_transform, self.eval_transform = transforms_of(self.transform_spec)
        size = image_size if image_size is not None else self.transform_defaults.image_size
        if size is not None:
            self.image_size = (int(size[0]), int(size[1]))
        self.in_channels = len(mean if mean is not None else self.transform_defaults.mean)

    @classmethod
    def eval_preprocessing(
        cls,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        image_size: Sequence[int] | None = None,
        **args: Any,
    ) -> Preprocessing | None:
        """Return the evaluation preprocessing of this dataset built with these arguments.

        The dataset's channels (one per mean value), its resize (``image_size``, else the
        native size of datasets that have one), ``x / 255`` and its normalisation: what its
        evaluation transform does to a PIL image.
        """
        del args
        spec = resolve_transforms(
            cls.transform_defaults,
            native_size=getattr(cls, "image_size", None),
            mean=mean,
            std=std,
            image_size=image_size,
        )
        size = spec.image_size or spec.crop_size
        if size is None:
            return None
        return Preprocessing(len(spec.mean), (int(size[0]), int(size[1])), spec.mean, spec.std)

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

    def device_plan(
        self,
        images: dict[str, Callable[[], np.ndarray]],
        labels: dict[str, np.ndarray],
        cameras: dict[str, np.ndarray] | None = None,
        *,
        nbytes: int,
    ) -> DevicePlan:
        """Return the device path of this datamodule's splits.

        Args:
            images: Per split (``trainval``, ``test``, extras), a function returning its uint8
                images ``(N, H, W[, C])`` at the size the evaluation transform gives.
            labels: Per split, its labels.
            cameras: Per split, its camera ids (None: no cameras).
            nbytes: The bytes of all the uint8 images (known before loading them).
        """
        spec = self.transform_spec
        try:
            augmentation = device_augmentation(spec)
            unsupported = None
        except PlpDataError as error:
            augmentation, unsupported = None, str(error)

        def load() -> DeviceSplits:
            built = {
                name: DeviceImageDataset(
                    read(),
                    labels[name],
                    spec.mean,
                    spec.std,
                    cameras=None if cameras is None else cameras.get(name),
                )
                for name, read in images.items()
            }
            trainval, test = built.pop("trainval"), built.pop("test")
            has_steps = augmentation is not None and (
                augmentation.steps or augmentation.random_erasing > 0
            )
            return DeviceSplits(trainval, test, built, augmentation if has_steps else None)

        return DevicePlan(nbytes, load, unsupported)

    def file_device_plan(
        self,
        paths: dict[str, Sequence[Path]],
        labels: dict[str, np.ndarray],
        cameras: dict[str, np.ndarray] | None = None,
        boxes: dict[str, np.ndarray | None] | None = None,
    ) -> DevicePlan:
        """Return the device path of splits of image files, decoded once into the image cache.

        Splits given the same list of paths share one cache (Market-1501's test and query).
        The cache lives in ``cache_dir`` (see :mod:`plp_data._cache`). ``boxes`` (per split,
        as :class:`~plp_data.FileImageDataset` takes them) crop the images before the resize.
        """
        size = self.transform_spec.image_size
        distinct = {id(files): files for files in paths.values()}
        if size is None:
            return DevicePlan(
                0,
                lambda: None,  # type: ignore[arg-type,return-value]
                "the images have no common size (set data.args.image_size)",
            )
        # A cache_dir the user chose is used or refused; the default one falls back to the
        # per-user cache folder (with a note) when it cannot be written.
        folder = Path(self.cache_dir) if self.cache_dir else default_cache_dir(self.root)
        fallback = None if self.cache_dir or folder == user_cache_dir() else user_cache_dir()
        loaded: dict[int, np.ndarray] = {}

        def reader(files: Sequence[Path], crops: np.ndarray | None) -> Callable[[], np.ndarray]:
            def read() -> np.ndarray:
                if id(files) not in loaded:
                    loaded[id(files)] = decoded_images(
                        files, size, folder, fallback_dir=fallback, boxes=crops
                    )
                return loaded[id(files)]

            return read

        nbytes = sum(len(files) for files in distinct.values()) * size[0] * size[1] * 3
        crops = boxes or {}
        readers = {name: reader(files, crops.get(name)) for name, files in paths.items()}
        return self.device_plan(readers, labels, cameras, nbytes=nbytes)


def resized(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Return uint8 ``images`` resized to ``size`` as the workers path's ``Resize`` does (PIL)."""
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    from PIL import Image
    from torchvision.transforms import functional

    return np.stack(
        [np.asarray(functional.resize(Image.fromarray(image), list(size))) for image in images]
    )
