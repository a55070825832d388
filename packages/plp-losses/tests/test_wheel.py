import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

TRAINING_STEP = textwrap.dedent(
    """
    import sys
    import torch
    from plp_losses import TripletMarginLoss, build

    assert not any(name.split(".")[0] in {"numpy", "pytorch_metric_learning"}
                   for name in sys.modules if name.split(".")[0] != "torch"), "extra import"
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.arange(16) % 4
    loss_fn = TripletMarginLoss(margin=0.5, mining="batch_hard")
    before = loss_fn(model(x), y)
    before.backward()
    optimiser.step()
    after = loss_fn(model(x), y)
    assert after < before, (after, before)
    print("ok", before.item(), after.item())
    """
)


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    return [name.split(">")[0].split("=")[0].strip() for name in names]


@pytest.mark.slow
def test_wheel_installs_and_trains_with_torch_and_plp_core_only(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    for package in ("plp-core", "plp-losses"):
        subprocess.run(
            [uv, "build", "--package", package, "--wheel", "--out-dir", str(tmp_path)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    (core,) = tmp_path.glob("plp_core-*.whl")
    (wheel,) = tmp_path.glob("plp_losses-*.whl")
    assert _requires(core) == []  # the standard library only
    assert _requires(wheel) == ["plp-core", "torch"]

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", str(venv), "--python", "3.11"], check=True, capture_output=True)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    torch_version = importlib.metadata.version("torch")
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            f"torch=={torch_version}",
            str(core),
            str(wheel),
            "pytest",
        ],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [str(python), "-c", TRAINING_STEP], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
