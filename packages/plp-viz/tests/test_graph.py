import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from plp_viz import (
    layer_summary,
    model_graph,
)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def test_graph_writes_source_and_drawings_when_dot_exists(tmp_path: Path, monkeypatch, capsys):
    model = TinyNet()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    files = model_graph(model, torch.zeros(1, 1, 8, 8), tmp_path / "nodot" / "model")
    assert files.gv.is_file() and files.svg is None and not files.dot_found
    assert "features.0.weight" in files.gv.read_text()
    assert "Graphviz's `dot` was not found" in capsys.readouterr().err
    monkeypatch.undo()
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed here (CI installs it)")
    files = model_graph(model, torch.zeros(1, 1, 8, 8), tmp_path / "dot" / "model")
    assert files.dot_found and files.gv.is_file() and files.png.is_file()
    assert "classifier.weight" in files.svg.read_text()


def test_layer_summary_counts_parameters():
    summary = layer_summary(TinyNet())
    assert "features.0  Conv2d" in summary and "40" in summary  # 4*1*3*3 + 4
    assert "classifier  Linear" in summary and "15" in summary  # 4*3 + 3
    assert summary.splitlines()[-1].startswith("total") and "55 (55 trainable)" in summary
