"""Device-aware defaults, on the CPU; the CUDA branches with ``torch.cuda`` monkeypatched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import plp_pipelines._devices as devices
from plp_pipelines._devices import (
    DETERMINISTIC_NOTE,
    DeviceSpeedups,
    is_convolutional,
    resolve_accelerator,
    resolve_precision,
)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def with_bf16(native: bool) -> None:
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True: native
        )

    return with_bf16


def test_auto_is_the_cpu_in_full_precision_without_a_gpu(no_gpu: None) -> None:
    assert resolve_accelerator("auto") == "cpu"
    assert resolve_precision("auto", "auto") == "32-true"


def test_auto_is_cuda_with_bf16_where_supported_else_fp16(cuda) -> None:
    cuda(True)
    assert resolve_accelerator("auto") == "cuda"
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    cuda(False)
    assert resolve_precision("auto", "cuda") == "16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"  # the CPU asked for explicitly


def test_explicit_settings_are_kept(cuda) -> None:
    cuda(True)
    assert resolve_accelerator("cpu") == "cpu"
    assert resolve_precision("32-true", "cuda") == "32-true"
    assert resolve_precision("16-mixed", "auto") == "16-mixed"


def _trainer(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def _convnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))


def test_speedups_on_cuda_set_tf32_and_channels_last_and_note_determinism(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    notes: list[str] = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    monkeypatch.setattr(devices, "rank_zero_info", notes.append)
    monkeypatch.setattr(DeviceSpeedups, "_noted", False)
    model = _convnet()
    for _ in range(2):
        DeviceSpeedups(deterministic=True).setup(_trainer("cuda"), model, "fit")  # type: ignore[arg-type]
    assert calls == ["high", "high"]
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert notes == [DETERMINISTIC_NOTE]  # once per process


def test_speedups_do_nothing_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    model = _convnet()
    DeviceSpeedups(deterministic=True).setup(_trainer("cpu"), model, "fit")  # type: ignore[arg-type]
    assert calls == [] and model[0].weight.is_contiguous()
    assert not model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_only_convolutional_networks_count_as_convolutional() -> None:
    assert is_convolutional(_convnet())
    assert not is_convolutional(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
