"""The export pipeline: a run's embedding model as ONNX, checked against PyTorch.

By default the model carries its preprocessing: it takes uint8 pixels and does the layout,
scaling and normalisation of the run's evaluation images itself, and its metadata says what it
expects (:mod:`plp_pipelines._export_pixels`); ``input = "float"`` exports the bare
``embed(images)`` of normalised float tensors. torch, the exporter and the run's model are
imported only once the arguments are checked, so that a wrong ``--format`` is reported at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plp_pipelines._embed import run_preprocessing
from plp_pipelines._errors import PlpError, RunError
from plp_pipelines._export_pixels import (
    FORMATS,
    INPUT_TYPES,
    INPUTS,
    check_export_arguments,
    metadata_props,
    pixel_embedder,
    pixels_of,
)
from plp_pipelines._protocols import ModelFacts, as_embedding_model
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, atomic_write

if TYPE_CHECKING:
    import torch

    import plp_data

__all__ = ["FORMATS", "INPUTS", "INPUT_TYPES", "ExportResult", "export"]

TOLERANCE = 1e-4  # largest max-abs difference of onnxruntime's embeddings from PyTorch's
OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and how well the exported model matches PyTorch.

    Attributes:
        path: The exported file, ``<run>/export/model.onnx``.
        max_abs_diff: Largest absolute difference between onnxruntime's and PyTorch's
            embeddings over the check's inputs.
        inputs: ``"test"`` (the run's first test images) or ``"random"``.
        batch_sizes: The batch sizes checked (the dynamic batch axis).
        input: ``"uint8"`` (pixels, preprocessing in the graph) or ``"float"``.
        metadata: The model's ``metadata_props`` (JSON values; uint8 exports only).
    """

    path: Path
    max_abs_diff: float
    inputs: str
    batch_sizes: tuple[int, ...]
    input: str = "uint8"
    metadata: dict[str, str] = field(default_factory=dict)


def export(
    run: str | Path | None = None,
    *,
    format: str = "onnx",
    inputs: str = "test",
    samples: int = 8,
    checkpoint: str | Path | None = None,
    runs_root: str | Path = RUNS_ROOT,
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    input: str = "uint8",
    preprocessing: plp_data.Preprocessing | None = None,
) -> ExportResult:
    """Export a run's embedding model and return where it went and its difference from PyTorch.

    The model's ``embed(images)`` (what the test pipeline extracts) is exported with torch's
    ONNX exporter to ``<run>/export/model.onnx``, output ``embeddings`` ``(batch, D)``, the
    batch axis dynamic. Input ``images``: with ``input = "uint8"`` (the default) uint8 pixels
    ``(batch, H, W, 3)`` (``(batch, H, W)`` for one channel) at the run's evaluation size, the
    scaling, normalisation and layout done in the graph exactly as plp does them, and
    ``metadata_props`` holding ``image_size``, ``channels``, ``mean``, ``std``, ``scale``,
    ``metric``, ``threshold`` (the run's verification threshold, or null), ``embedding_size``
    and the plp version; with ``input = "float"`` normalised float32 ``(batch, C, H, W)``.
    Before the file is written (atomically: a temporary file, then a rename), onnxruntime runs
    the model on ``samples`` inputs as one batch and one at a time and its embeddings are
    compared with PyTorch's (for uint8: with plp's own path, ``embed`` of the pixels
    normalised by :meth:`plp_data.Preprocessing.normalise`); above a max abs difference of
    1e-4 nothing is written and RunError is raised.

    Args:
        run: The run directory; the newest run under ``runs_root`` when None.
        format: ``onnx``.
        inputs: ``test``: the run's first test images; ``random``: seeded standard-normal
            inputs of the model's input shape (no dataset needed).
        samples: How many inputs the check uses.
        checkpoint: A checkpoint instead of the run's best.
        runs_root: Folder holding the run directories.
        model: A model object to load the checkpoint's weights into (for runs trained from
            objects rather than a config).
        datamodule: The datamodule whose ``split_dataloader("test")`` gives the images.
        input: ``uint8`` (pixels in, preprocessing in the graph) or ``float``.
        preprocessing: The run's preprocessing (runs trained from objects; else the config's).

    Raises:
        ConfigError: Unknown format, inputs or input type, or ``samples`` < 1.
        RunError: Missing run or checkpoint, a model the exporter cannot trace, test data that
            cannot be read, or onnxruntime's output off by more than 1e-4.
    """
    check_export_arguments(format, inputs, input, samples)
    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    paths, config = opened.paths, opened.config
    model = opened.load_model(checkpoint, model)
    embedder = _embedder(model.cpu()).eval()
    reading = run_preprocessing(opened, preprocessing) if input == "uint8" else None
    if inputs == "test":
        images = _test_images(opened, datamodule, samples)
    elif reading is not None:
        images = _random_pixels(reading, config.seed, samples)
    else:
        images = _random_images(model, config.seed, samples)
    exported, reference = embedder, embedder
    if reading is not None:
        if inputs == "test":
            images = pixels_of(images, reading)
        exported = pixel_embedder(embedder, reading)
        reference = _normalised(embedder, reading)
    data = _to_onnx(exported, images)
    metadata = {} if reading is None else _metadata(opened, reference, images, reading)
    if metadata:
        data = _with_metadata(data, metadata)
    batch_sizes = (len(images), 1) if len(images) > 1 else (1,)
    difference = _max_abs_diff(data, reference, images)
    if not difference <= TOLERANCE:  # NaN fails too
        raise RunError(
            f"onnxruntime's embeddings differ from PyTorch's by {difference:.3g} (max abs) on "
            f"{len(images)} {inputs} inputs, above the {TOLERANCE:g} tolerance: "
            f"{paths.root / 'export' / 'model.onnx'} not written"
        )
    path = atomic_write(paths.root / "export" / "model.onnx", lambda file: file.write(data))
    return ExportResult(path, difference, inputs, batch_sizes, input, metadata)


def _normalised(embedder: torch.nn.Module, reading: plp_data.Preprocessing) -> Any:
    """Plp's own path from pixels: :meth:`~plp_data.Preprocessing.normalise`, then ``embed``."""

    def reference(pixels: torch.Tensor) -> torch.Tensor:
        return embedder(reading.normalise(pixels))

    return reference


def _metadata(
    opened: Run, reference: Any, pixels: torch.Tensor, reading: plp_data.Preprocessing
) -> dict[str, str]:
    import torch

    from plp_pipelines._search import run_threshold

    with torch.no_grad():
        size = int(reference(pixels[:1]).shape[1])
    return metadata_props(
        reading,
        metric=opened.config.evaluate.reid_metric,
        threshold=run_threshold(opened),
        embedding_size=size,
    )


def _random_pixels(reading: plp_data.Preprocessing, seed: int, samples: int) -> torch.Tensor:
    """Return seeded uniform uint8 pixels ``(samples, H, W[, 3])`` of the run's input size."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    shape = (samples, *reading.image_size) + ((3,) if reading.channels == 3 else ())
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def _embedder(model: torch.nn.Module) -> torch.nn.Module:
    """Return a module whose forward is ``model.embed``: the path the test pipeline extracts."""
    import torch

    embedding_model = as_embedding_model(model)

    class Embedder(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model  # registered, so the exporter sees its weights

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return embedding_model.embed(images)

    return Embedder(model)


def _test_images(run: Run, datamodule: Any, samples: int) -> torch.Tensor:
    """Return the first ``samples`` images of the run's test split, on the CPU."""
    import torch

    import plp_data

    try:
        datamodule = run.build_datamodule(datamodule)
        datamodule.setup("test")
        batches = []
        count = 0
        for batch in datamodule.split_dataloader("test"):
            batches.append(batch[0].detach().cpu())
            count += len(batch[0])
            if count >= samples:
                break
    except (PlpError, plp_data.PlpDataError) as error:
        raise RunError(f"{error} (export --inputs random needs no data)") from None
    return torch.cat(batches)[:samples]


def _random_images(model: torch.nn.Module, seed: int, samples: int) -> torch.Tensor:
    """Return seeded standard-normal inputs of the model's ``(in_channels, *image_size)``."""
    import torch

    hyper_parameters = ModelFacts.of(model).hyper_parameters
    if "in_channels" not in hyper_parameters or "image_size" not in hyper_parameters:
        raise RunError(
            "--inputs random needs the model's in_channels and image_size hyper-parameters; "
            "this model has none: use --inputs test"
        )
    shape = (samples, int(hyper_parameters["in_channels"]), *hyper_parameters["image_size"])
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def _with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    """Return the serialised ONNX model ``data`` with ``metadata`` in its ``metadata_props``."""
    import onnx

    proto = onnx.load_from_string(data)
    onnx.helper.set_model_props(proto, metadata)
    return bytes(proto.SerializeToString())


def _to_onnx(embedder: torch.nn.Module, images: torch.Tensor) -> bytes:
    """Return the serialised ONNX model of ``embedder`` with a dynamic batch axis."""
    import warnings

    import torch

    # The exporter specialises a batch of 1; two rows keep the batch axis symbolic.
    example = images[:2] if len(images) >= 2 else torch.cat([images, images])
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's progress notes and deprecations
            program = torch.onnx.export(
                embedder,
                (example,),
                input_names=["images"],
                output_names=["embeddings"],
                dynamic_shapes={"images": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many kinds; all mean "cannot export"
        cause: BaseException = error
        while cause.__cause__ is not None:  # the exporter wraps the model's own error
            cause = cause.__cause__
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()
        first = text.splitlines()[0][:200] if text else ""
        raise RunError(
            f"torch cannot export the model to ONNX: {type(cause).__name__}: {first}"
        ) from None
    assert program is not None  # always, without a file name
    return bytes(program.model_proto.SerializeToString())


def _max_abs_diff(data: bytes, embedder: Any, images: torch.Tensor) -> float:
    """Return the largest |onnxruntime - PyTorch| over the batch and over single inputs."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = embedder(images).float().numpy()
    whole = session.run(["embeddings"], {"images": images.numpy()})[0]
    single = np.concatenate(
        [session.run(["embeddings"], {"images": image[None].numpy()})[0] for image in images]
    )
    if whole.shape != expected.shape or single.shape != expected.shape:
        return float("inf")
    return float(max(np.abs(whole - expected).max(), np.abs(single - expected).max()))
