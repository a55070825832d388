"""`invoke embed` of a run configured for 2 devices: DDP on 2 CPU processes, one file, same rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from plp_data.testing import write_digits_images

pytestmark = pytest.mark.slow


def test_ddp_embedding_writes_one_file_equal_to_one_process(tmp_path: Path, invoke) -> None:
    from plp_pipelines import load_config, train

    root = Path(__file__).resolve().parents[1]
    config = load_config(
        root / "configs" / "digits.toml", ["trainer.epochs=1", "evaluate.after_training=false"]
    )
    run = train(config, runs_root=tmp_path / "runs", progress_bar=False).run_dir
    write_digits_images(tmp_path / "images", range(0, 150, 2))
    args = ["embed", "--run", str(run), "--images", str(tmp_path / "images")]
    single = invoke(*args, "--out", str(tmp_path / "single.npz"))
    assert single.returncode == 0, single.stderr[-3000:]
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(re.sub(r"(?m)^devices = 1$", "devices = 2", text))
    assert "devices = 2" in (run / "config.toml").read_text()
    distributed = invoke(*args, "--out", str(tmp_path / "ddp.npz"))
    assert distributed.returncode == 0, distributed.stderr[-3000:]
    assert distributed.stdout.count("embedded 75 images") == 1  # the workers stay quiet
    with np.load(tmp_path / "single.npz") as one, np.load(tmp_path / "ddp.npz") as two:
        assert one["paths"].tolist() == two["paths"].tolist()
        np.testing.assert_allclose(one["features"], two["features"], atol=1e-5)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["ddp.npz", "single.npz"]
