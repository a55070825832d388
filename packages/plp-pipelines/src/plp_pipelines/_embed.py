"""The embed pipeline: a run's model over image files, each read exactly as its test images.

Every file is decoded, converted to the run's channel count, resized to its image size, scaled
and normalised as the run's datamodule does to its own evaluation images
(:class:`plp_data.Preprocessing`, from the datamodule's ``eval_preprocessing`` and the config's
``data.args``: no dataset file is read), then embedded with the run's checkpoint. Unreadable files
are skipped and listed (or refused with ``strict``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plp_pipelines._devices import evaluation_device
from plp_pipelines._errors import RunError
from plp_pipelines._image_inputs import ImageInputs, image_inputs
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, atomic_write

if TYPE_CHECKING:
    import torch

    import plp_data

__all__ = [
    "EmbedResult",
    "EmbeddedImages",
    "Reading",
    "checkpoint_sha256",
    "embed",
    "embed_images",
    "embed_with_run",
    "run_preprocessing",
    "warn_unreadable",
]

BATCH_SIZE = 64
# Names of unreadable files listed in the warning (the rest are counted).
LISTED = 5


@dataclass(frozen=True)
class Reading:
    """How embed, index and search read a run and its images (the options the three share).

    Every option has a default: ``Reading()`` reads the newest run's best checkpoint under
    ``runs``, its files as the config's datamodule reads its test images.

    Attributes:
        checkpoint: A checkpoint instead of the run's best.
        runs_root: Folder holding the run directories.
        model: A model object to load the checkpoint into (runs trained from objects).
        preprocessing: How files are read (runs trained from objects; else the config's
            datamodule's ``eval_preprocessing``).
        batch_size: Images embedded at once.
        strict: An unreadable image is an error (default: skipped, with one warning line).
        progress: Show a progress bar on stdout.
    """

    checkpoint: str | Path | None = None
    runs_root: str | Path = RUNS_ROOT
    model: torch.nn.Module | None = None
    preprocessing: plp_data.Preprocessing | None = None
    batch_size: int = BATCH_SIZE
    strict: bool = False
    progress: bool = False

    def open(self, run: str | Path | None) -> Run:
        """Return the run (the newest under ``runs_root`` when None) with its checkpoint."""
        return Run.open(run, runs_root=self.runs_root, checkpoint=self.checkpoint)

    def resolved(self, opened: Run) -> tuple[Reading, Path, plp_data.Preprocessing]:
        """Return ``(this reading resolved, its checkpoint file, its preprocessing)`` for a run.

        Raises:
            RunError: No such checkpoint, or no way to read files (see
                :func:`run_preprocessing`).
        """
        checkpoint = opened.checkpoint(self.checkpoint)
        preprocessing = run_preprocessing(opened, self.preprocessing)
        return (
            replace(self, checkpoint=checkpoint, preprocessing=preprocessing),
            checkpoint,
            preprocessing,
        )


@dataclass(frozen=True)
class EmbeddedImages:
    """The features of the readable images of some inputs.

    Attributes:
        inputs: The readable images, in order.
        features: ``(N, D)`` float32, row ``i`` of ``inputs.files[i]``.
        unreadable: The names of the files skipped.
    """

    inputs: ImageInputs
    features: np.ndarray
    unreadable: tuple[str, ...]


@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed` wrote.

    Attributes:
        path: The ``.npz`` file: ``features``, ``paths`` and, for a CSV, ``labels``.
        count: Images embedded.
        unreadable: Files skipped as unreadable.
    """

    path: Path
    count: int
    unreadable: tuple[str, ...]


def run_preprocessing(
    opened: Run, preprocessing: plp_data.Preprocessing | None = None
) -> plp_data.Preprocessing:
    """Return ``preprocessing``, or the one of the datamodule the run's config names.

    Raises:
        RunError: A run trained from objects, or a datamodule that does not say how its images
            are preprocessed, without ``preprocessing`` given.
    """
    import plp_data

    if preprocessing is not None:
        return preprocessing
    data = opened.config.data
    hint = "pass preprocessing=plp_data.Preprocessing(...) from Python"
    if opened.made_from_objects:
        raise RunError(f"run {opened.root} was trained from Python objects: {hint}")
    factory = plp_data.DATAMODULES.get(data.name)
    found = None
    if isinstance(factory, type) and issubclass(factory, plp_data.PlpDataModule):
        try:
            found = factory.eval_preprocessing(**data.args)
        except plp_data.PlpDataError as error:
            raise RunError(f"{opened.paths.config}: data: {error}") from None
    if found is None:
        raise RunError(
            f"datamodule {data.name!r} of run {opened.root} does not say how image files are "
            f"preprocessed (its image size or normalisation): {hint}"
        )
    return found


def launch_processes(config: Any) -> torch.device | None:
    """Start the run's DDP processes when it trains on several devices; return this one's device.

    With ``[trainer] devices > 1`` (and no process group yet) Lightning Fabric starts the other
    processes (``ddp``: they run the same command) and each embeds a share of the images; None
    otherwise (one process).

    Raises:
        RunError: The devices are not there (one line).
    """
    import torch

    if config.trainer.devices <= 1:
        return None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    from lightning_fabric import Fabric

    try:
        fabric = Fabric(
            accelerator=config.trainer.accelerator, devices=config.trainer.devices, strategy="ddp"
        )
    except Exception as error:  # Lightning's MisconfigurationException and kin
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise RunError(f"trainer.devices = {config.trainer.devices}: {first[:200]}") from None
    fabric.launch()
    return fabric.device


def _writer() -> bool:
    """Whether this process writes: the only one, or rank 0 of a process group."""
    import torch

    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


def checkpoint_sha256(path: Path) -> str:
    """Return the hex SHA-256 of the checkpoint file ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embed_images(
    model: Any,
    preprocessing: plp_data.Preprocessing,
    inputs: ImageInputs,
    *,
    batch_size: int = BATCH_SIZE,
    strict: bool = False,
    progress: bool = False,
    what: str = "--images",
) -> EmbeddedImages:
    """Return ``model.embed`` of every readable image of ``inputs``, in order.

    Files are decoded in a thread pool while the model embeds the batch before (the decoding
    releases the GIL). With ``strict`` an unreadable file is an error; otherwise it is skipped.
    Under ``torch.distributed`` with several processes each rank embeds one contiguous share of
    the files and every rank gets all the features, in order (the same as one process).

    Raises:
        RunError: An unreadable file with ``strict`` (naming it), or no readable image at all.
    """
    import torch

    def rows(share: range, shown: bool) -> tuple[np.ndarray | None, list[int]]:
        return _embed_rows(
            model, preprocessing, inputs, share, batch_size=batch_size, strict=strict,
            progress=shown, what=what,
        )  # fmt: skip

    count = len(inputs.files)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed or torch.distributed.get_world_size() == 1:
        features, kept = rows(range(count), progress)
    else:
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        share = range(rank * count // world, (rank + 1) * count // world)
        try:
            local: Any = (rows(share, progress and rank == 0), None)
        except RunError as error:  # every rank must reach the gather, then all raise it
            local = (None, str(error))
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, local)
        failed = [message for _, message in gathered if message is not None]
        if failed:
            raise RunError(failed[0])
        parts = [part for part, _ in gathered if part[0] is not None]
        features = np.concatenate([part[0] for part in parts]) if parts else None
        kept = [row for part, _ in gathered for row in part[1]]
    embedded_rows = set(kept)
    unreadable = tuple(n for i, n in enumerate(inputs.names) if i not in embedded_rows)
    if features is None:
        raise RunError(f"{what} {inputs.source}: none of its {count} images is readable")
    return EmbeddedImages(inputs.subset(np.asarray(kept)), features, unreadable)


def _embed_rows(
    model: Any,
    preprocessing: plp_data.Preprocessing,
    inputs: ImageInputs,
    share: range,
    *,
    batch_size: int,
    strict: bool,
    progress: bool,
    what: str,
) -> tuple[np.ndarray | None, list[int]]:
    """Return the features of the readable images of rows ``share`` and which rows they are."""
    import torch

    import plp_data

    device = next(model.parameters()).device

    def read(index: int) -> np.ndarray | None:
        box = None if inputs.boxes is None else inputs.boxes[index]
        try:
            return preprocessing.read(inputs.files[index], box)
        except plp_data.ImageReadError as error:
            if strict:
                raise RunError(f"{what}: {error}") from None
            return None

    features: list[np.ndarray] = []
    kept: list[int] = []
    bar = _progress(len(share), progress)
    was_training = model.training
    model.eval()
    try:
        with ThreadPoolExecutor(max_workers=_threads()) as pool, torch.no_grad():
            chunks = [
                range(start, min(start + batch_size, share.stop))
                for start in range(share.start, share.stop, batch_size)
            ]
            pending = pool.map(lambda chunk: [read(i) for i in chunk], chunks)
            for chunk, pixels in zip(chunks, pending, strict=True):
                readable = [(i, p) for i, p in zip(chunk, pixels, strict=True) if p is not None]
                bar(len(chunk))
                if not readable:
                    continue
                batch = preprocessing.normalise(np.stack([p for _, p in readable]))
                embedded = model.embed(batch.to(device)).float().cpu().numpy()
                features.append(embedded)
                kept.extend(i for i, _ in readable)
    finally:
        model.train(was_training)
        bar(0, close=True)
    return (np.concatenate(features).astype(np.float32) if features else None), kept


def _threads() -> int:
    import os

    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))


def _progress(total: int, shown: bool) -> Callable[..., None]:
    """A progress bar on stdout (as Lightning's), or nothing."""
    if not shown:
        return lambda count, close=False: None
    import sys

    from tqdm import tqdm

    bar = tqdm(total=total, desc="embedding", unit="image", file=sys.stdout, leave=False)

    def update(count: int, close: bool = False) -> None:
        bar.update(count)
        if close:
            bar.close()

    return update


def embed_with_run(
    opened: Run,
    inputs: ImageInputs,
    reading: Reading,
    *,
    what: str = "--images",
    distributed: bool = False,
) -> EmbeddedImages:
    """Return ``inputs`` embedded with the run's checkpoint, read as its test images.

    With ``distributed`` and ``[trainer] devices > 1`` the DDP processes are started first.
    """
    preprocessing = run_preprocessing(opened, reading.preprocessing)
    device = launch_processes(opened.config) if distributed else None
    loaded = opened.load_model(reading.checkpoint, reading.model)
    loaded = loaded.to(device or evaluation_device(opened.config))
    return embed_images(
        loaded, preprocessing, inputs, batch_size=reading.batch_size, strict=reading.strict,
        progress=reading.progress, what=what,
    )  # fmt: skip


def warn_unreadable(unreadable: tuple[str, ...], source: Path) -> None:
    """Warn, in one line, about the files skipped as unreadable."""
    if not unreadable:
        return
    listed = ", ".join(unreadable[:LISTED])
    more = f" and {len(unreadable) - LISTED} more" if len(unreadable) > LISTED else ""
    warnings.warn(
        f"skipped {len(unreadable)} unreadable image(s) of {source}: {listed}{more}",
        stacklevel=3,
    )


def embed(
    run: str | Path | None = None,
    *,
    images: str | Path,
    out: str | Path | None = None,
    reading: Reading | None = None,
) -> EmbedResult:
    """Embed every image of a folder (recursively, sorted) or a dataset CSV with a run's model.

    Writes ``<run>/embeddings/<name>.npz`` (``name``: the folder's or CSV's; or ``out``)
    atomically, with ``features`` (float32), ``paths`` (relative to the folder, or the CSV's
    ``path`` column) and, for a CSV, ``labels``; readable without pickle. Unreadable images are
    skipped with one warning line, or refused with ``Reading(strict=True)``. With ``[trainer]
    devices > 1`` in the run's config the images are embedded by that many DDP processes
    (started here, as training starts them: from the command line) and rank 0 writes the one
    file.

    Args:
        run: The run directory; the newest run under the reading's ``runs_root`` when None.
        images: A folder of images or a dataset CSV.
        out: The file to write instead.
        reading: How the run and the images are read (:class:`Reading`: checkpoint, runs
            root, model, preprocessing, batch size, strict, progress); its defaults if None.

    Raises:
        RunError: No such run, folder or checkpoint, no readable image, or an unreadable one
            with ``strict``.
    """
    reading = reading or Reading()
    opened = reading.open(run)
    inputs = image_inputs(images)
    embedded = embed_with_run(opened, inputs, reading, distributed=True)
    path = Path(out) if out is not None else opened.root / "embeddings" / f"{inputs.name}.npz"
    if not _writer():  # DDP: every rank has every feature; rank 0 writes the one file
        return EmbedResult(path, len(embedded.features), embedded.unreadable)
    warn_unreadable(embedded.unreadable, inputs.source)
    arrays = {
        "features": embedded.features,
        "paths": np.asarray(embedded.inputs.names, dtype=str),
    }
    if embedded.inputs.labels is not None:
        arrays["labels"] = embedded.inputs.labels
    atomic_write(path, lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]
    return EmbedResult(path, len(embedded.features), embedded.unreadable)
