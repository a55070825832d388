"""README "Your own data": its commands run as written, in a fresh folder, end to end."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    """The ``uv run ...`` lines of the section's code blocks, in order."""
    section = (ROOT / "README.md").read_text().split("## Your own data", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    return [line for block in blocks for line in block.splitlines() if line.startswith("uv run ")]


def test_your_own_data_commands_run_as_written(tmp_path: Path, invoke) -> None:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    commands = _commands()
    assert [c.split()[2] for c in commands] == [
        "python", "invoke", "invoke", "invoke", "invoke", "invoke",
    ]  # fmt: skip
    for command in commands:
        # `uv run` is this environment; invoke finds tasks.py in the repository (its -r).
        words = shlex.split(command, comments=True)[2:]
        if words[0] == "invoke":
            result = invoke("-r", str(ROOT), *words[1:], cwd=tmp_path, timeout=900)
        else:
            result = subprocess.run(
                [sys.executable, *words[1:]],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                check=False,
            )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    run = tmp_path / "runs" / (tmp_path / "runs" / "LATEST").read_text().strip()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["verification"]["threshold"] is not None
    with np.load(run / "embeddings" / "images.npz") as data:
        assert len(data["paths"]) == 8 * 8 + 20 * 8  # every image of the folder
    meta = json.loads((run / "index" / "gallery" / "meta.json").read_text())
    assert meta["kind"] == "flat" and meta["count"] == 224
    (results,) = (run / "search").glob("*/results.json")
    answer = json.loads(results.read_text())["queries"][0]
    assert answer["query"] == "3.jpg" and answer["results"][0]["path"] == "9/3.jpg"
    assert (run / "export" / "model.onnx").is_file()
