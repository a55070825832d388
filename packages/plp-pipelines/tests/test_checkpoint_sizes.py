"""A checkpoint's recorded sizes are checked against its weights before the model is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import plp_models
from plp_pipelines import RunError
from plp_pipelines._checkpoints import load_model, read_checkpoint


def _checkpoint(tmp_path: Path, **changes: object) -> Path:
    model = plp_models.PlpModel(num_classes=3, in_channels=1, image_size=(8, 8), embedding_size=4)
    hyper_parameters = {**dict(model.hparams), **changes}
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper_parameters}, path)
    return path


def test_a_checkpoint_that_fits_its_sizes_loads(tmp_path: Path) -> None:
    model = load_model(_checkpoint(tmp_path))
    assert model.hparams["num_classes"] == 3


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (
            {"num_classes": 10**12},  # 10^12 x 4 floats: 16 TB if it were built
            r"does not hold the model its hyper-parameters describe: .* is \[3, 4\] in the file, "
            r"\[1000000000000, 4\] by its recorded sizes \(num_classes = 1000000000000, "
            r"embedding_size = 4, in_channels = 1, image_size = \[8, 8\]\); refused before",
        ),
        ({"embedding_size": 2**40}, r"does not hold the model its hyper-parameters describe"),
        ({"num_classes": 10**30}, r"cannot rebuild the model of .*model\.ckpt: "),
        ({"num_classes": "many"}, r"cannot rebuild the model of .*model\.ckpt: "),
    ],
    ids=["terabytes-of-classes", "huge-embedding", "overflowing", "not-a-number"],
)
def test_recorded_sizes_that_do_not_fit_the_weights_are_refused(
    tmp_path: Path, changes: dict[str, object], pattern: str
) -> None:
    path = _checkpoint(tmp_path, **changes)
    with pytest.raises(RunError, match=pattern) as caught:  # refused, not a 16 TB allocation
        load_model(path)
    assert "\n" not in str(caught.value)


def test_missing_weights_are_named(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["state_dict"][next(iter(state["state_dict"]))]
    torch.save(state, path)
    with pytest.raises(RunError, match=r"lacks weights of the model its hyper-parameters"):
        load_model(path)


def test_a_truncated_checkpoint_is_one_whole_sentence(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RunError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == (
        f"cannot load checkpoint {path}: truncated or corrupt (PytorchStreamReader failed "
        "reading zip archive: failed finding central directory)"
    )
