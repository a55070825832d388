"""Weight files from elsewhere: loaded with weights_only, refused or named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from plp_models import (
    PlpModelsError,
    UnreadableWeightsError,
    UnsafeWeightsError,
    build_backbone,
    load_weights,
)

RAN: list[str] = []


class _RunsCode:
    """An object whose unpickling would call a function: what a malicious file holds."""

    def __reduce__(self):
        return (RAN.append, ("ran",))


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_load_weights_reads_tensors(tmp_path: Path) -> None:
    state = load_weights(_good(tmp_path))
    assert isinstance(state, dict) and state["fc.weight"].shape == (1000, 512)


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(2), "payload": _RunsCode()}, path)
    with pytest.raises(UnsafeWeightsError) as caught:
        load_weights(path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and not RAN
    assert message.startswith(f"{path}: refused: it holds objects other than weights")
    assert "was not an allowed global" in caught.value.reason
    with pytest.raises(PlpModelsError) as caught:  # as a backbone's weights_path
        build_backbone("resnet18", weights_path=str(path))
    assert str(caught.value).startswith(f"weights_path {path}: refused") and not RAN
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "cut", [lambda data: data[: len(data) // 2], lambda data: data[:100], lambda data: b""]
)
def test_a_truncated_file_is_one_whole_sentence(tmp_path: Path, cut) -> None:
    path = tmp_path / "cut.pth"
    path.write_bytes(cut(_good(tmp_path).read_bytes()))
    with pytest.raises(UnreadableWeightsError) as caught:
        load_weights(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read, truncated or corrupt (")
    assert message.endswith(")") and "\n" not in message
    assert "internal miniz error" not in message  # the paragraph after the first sentence


def test_junk_bytes_are_unreadable_not_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UnreadableWeightsError, match=r"junk\.pth: cannot read, truncated"):
        load_weights(path)
