import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import plp_losses
from plp_losses import PlpLossesError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert len(blocks) == 2
    assert torch.isfinite(namespace["loss"]) and namespace["mined_loss"] > 0


def test_importing_adds_only_torch_modules():
    code = (
        "import sys, torch; before = set(sys.modules); import plp_losses; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if not m.startswith(('plp_losses', 'plp_core', 'torch'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", plp_losses.available())
def test_dtype_and_device_follow_the_embeddings(name, dtype, device):
    sized = {"center", "arcface"}
    loss = (
        plp_losses.build(name, num_classes=3, embedding_size=4)
        if name in sized
        else (plp_losses.build(name))
    )
    loss = loss.to(device)
    x = torch.randn(6, 4 if loss.takes == "embeddings" else 3, dtype=dtype, device=device)
    x.requires_grad_(True)
    value = loss(x, torch.tensor([0, 0, 1, 1, 2, 2], device=device))
    value.backward()
    assert value.dtype == dtype and value.device.type == device
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_every_loss_argument_bound_is_checked_before_construction():
    with pytest.raises(PlpLossesError, match=r"loss 'ntxent': temperature = 0: must be > 0"):
        plp_losses.build("ntxent", temperature=0)
    with pytest.raises(PlpLossesError, match=r"label_smoothing = 1.0: must be >= 0 and < 1"):
        plp_losses.build("cross_entropy", label_smoothing=1.0)


@pytest.mark.parametrize("name", plp_losses.available())
def test_every_loss_signature_resolves(name):
    parameters, _ = plp_losses.LOSSES.parameters(name)
    signature = inspect.signature(plp_losses.registered(name))
    assert list(parameters) == list(signature.parameters)
    assert all(p.annotation is not Any for p in parameters.values())
