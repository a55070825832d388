"""ONNX export of a trained digits run, checked with onnxruntime against PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

import plp_data
import plp_models
from plp_data.testing import write_digits_images
from plp_pipelines import ConfigError, RunError, embed, export
from plp_pipelines._checkpoints import architecture_of, load_model
from plp_pipelines.testing import shared_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_runs: Path) -> Path:
    """A digits run trained for one epoch, not evaluated (this module's own copy)."""
    return shared_run(
        shared_runs,
        ROOT / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false"],
        tmp_path_factory.mktemp("runs"),
    )


def test_export_writes_an_onnx_model_with_a_dynamic_batch(run: Path) -> None:
    result = export(run, input="float")
    assert result.path == run / "export" / "model.onnx" and result.path.is_file()
    assert result.inputs == "test" and result.batch_sizes == (8, 1)
    assert 0.0 <= result.max_abs_diff <= 1e-4
    assert not [p for p in result.path.parent.iterdir() if p.name != "model.onnx"]  # no temp

    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["images"]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")  # symbolic batch axis

    # Independent of export(): the model rebuilt from the checkpoint, run eagerly.
    checkpoint = next((run / "checkpoints").glob("epoch=*.ckpt"))
    model = load_model(checkpoint).eval()
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for size in (1, 5):
        images = torch.randn(size, 1, 8, 8, generator=generator)
        (embeddings,) = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            expected = model.embed(images).numpy()
        assert embeddings.shape == (size, 64)
        np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-4)


def test_export_on_random_inputs(run: Path) -> None:
    result = export(run, inputs="random", samples=3)
    assert result.inputs == "random" and result.batch_sizes == (3, 1)
    assert result.input == "uint8" and result.max_abs_diff <= 1e-4


def test_uint8_export_equals_plp_on_image_files(run: Path, tmp_path: Path) -> None:
    result = export(run)  # uint8 pixels in, the digits' preprocessing in the graph
    model = onnx.load(str(result.path))
    meta = {entry.key: json.loads(entry.value) for entry in model.metadata_props}
    assert meta == {key: json.loads(value) for key, value in result.metadata.items()}
    assert meta["image_size"] == [8, 8] and meta["channels"] == 1 and meta["scale"] == 16.0
    assert meta["mean"] == [0.3074] and meta["std"] == [0.3739]
    assert meta["metric"] == "euclidean" and meta["embedding_size"] == 64
    assert meta["threshold"] is None  # the run was not evaluated with verification
    assert isinstance(meta["plp_version"], str) and meta["layout"] == "NHW uint8"
    (image,) = model.graph.input
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in image.type.tensor_type.shape.dim][1:] == [8, 8]
    # plp's own path on image files (embed) against onnxruntime on their decoded pixels.
    write_digits_images(tmp_path / "files", range(0, 40, 3), by_label=False)
    embedded = embed(run, images=tmp_path / "files", out=tmp_path / "files.npz")
    with np.load(embedded.path) as data:
        names, expected = list(data["paths"]), data["features"]
    pixels = np.stack([np.asarray(Image.open(tmp_path / "files" / name)) for name in names])
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(None, {"images": pixels})
    np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-4)


class _Drifting(plp_models.PlpModel):
    """Embeddings that change with every call: what the exporter froze no longer matches."""

    calls = 0

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().embed(images) + float(self.calls)


def test_a_mismatch_writes_nothing(run: Path, tmp_path: Path) -> None:
    checkpoint = next((run / "checkpoints").glob("epoch=*.ckpt"))
    drifting = _Drifting(**architecture_of(checkpoint))
    target = run / "export" / "model.onnx"
    target.unlink(missing_ok=True)
    with pytest.raises(RunError, match=r"differ from PyTorch's by .* above the 0.0001 tolerance"):
        export(run, model=drifting, inputs="random", samples=2, input="float")
    assert not target.exists()


class _Untraceable(plp_models.PlpModel):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise ValueError("no embedding here")


class _Plain(torch.nn.Module):
    """An object model: the same weights, no hyper-parameters (so no known input shape)."""

    def __init__(self, model: plp_models.PlpModel) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.head.embed(self.backbone(images))


class _MissingData:
    def setup(self, stage: str) -> None:
        raise plp_data.DataNotFoundError("/data/market: Market-1501 not found")


def test_export_errors_are_one_line(run: Path) -> None:
    checkpoint = next((run / "checkpoints").glob("epoch=*.ckpt"))
    hyper_parameters = architecture_of(checkpoint)
    with pytest.raises(RunError, match=r"torch cannot export the model to ONNX: .*no embedding"):
        export(run, model=_Untraceable(**hyper_parameters))
    with pytest.raises(RunError, match="needs the model's in_channels and image_size"):
        export(
            run,
            model=_Plain(plp_models.PlpModel(**hyper_parameters)),
            inputs="random",
            input="float",
        )
    plain = export(run, model=_Plain(plp_models.PlpModel(**hyper_parameters)))  # test images
    assert plain.inputs == "test" and plain.max_abs_diff <= 1e-4
    with pytest.raises(
        RunError, match=r"Market-1501 not found \(export --inputs random needs no data\)$"
    ):
        export(run, datamodule=_MissingData())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "tflite"}, "--format 'tflite' is not an export format; expected one of onnx"),
        (
            {"inputs": "train"},
            "--inputs 'train' is not a kind of inputs; expected one of test, random",
        ),
        ({"samples": 0}, "--samples must be >= 1, got 0"),
        ({"input": "int8"}, "--input 'int8' is not an input type; expected one of uint8, float"),
    ],
)
def test_bad_arguments(run: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export(run, **kwargs)  # type: ignore[arg-type]


def test_unknown_format_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "export", "--format", "tflite", "--runs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "plp: error: --format 'tflite' is not an export format; expected one of onnx"
    )
