"""Architecture drawings with torchviz, and a per-layer parameter summary."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["GraphFiles", "layer_summary", "model_graph"]

_warned_missing_dot = False


@dataclass(frozen=True)
class GraphFiles:
    """Files written by :func:`model_graph`; ``svg``/``png`` are None without Graphviz's dot."""

    gv: Path
    svg: Path | None
    png: Path | None
    dot_found: bool


def model_graph(model: nn.Module, example_input: torch.Tensor, path_stem: str | Path) -> GraphFiles:
    """Draw the autograd graph of ``model(example_input)``; return the files written.

    Always writes ``<path_stem>.gv`` (Graphviz source, nodes named after the parameters, e.g.
    ``backbone.features.0.weight``); writes ``.svg`` and ``.png`` too when Graphviz's ``dot`` is
    on the PATH, and otherwise says once on stderr how to install it.
    """
    import torchviz

    global _warned_missing_dot
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        output = model(example_input)
    finally:
        model.train(was_training)
    if isinstance(output, tuple | list):
        output = output[0]
    dot = torchviz.make_dot(output, params=dict(model.named_parameters()))
    gv = stem.with_suffix(".gv")
    gv.write_text(dot.source, encoding="utf-8")
    if shutil.which("dot") is None:
        if not _warned_missing_dot:
            print(
                "plp-viz: Graphviz's `dot` was not found: wrote the .gv source only "
                "(install Graphviz, e.g. `apt-get install graphviz`, for .svg and .png)",
                file=sys.stderr,
            )
            _warned_missing_dot = True
        return GraphFiles(gv, None, None, False)
    svg = Path(dot.render(filename=stem.name, directory=stem.parent, format="svg", cleanup=True))
    png = Path(dot.render(filename=stem.name, directory=stem.parent, format="png", cleanup=True))
    gv.write_text(dot.source, encoding="utf-8")  # render() with cleanup removes its own copy
    return GraphFiles(gv, svg, png, True)


def layer_summary(model: nn.Module) -> str:
    """Return a text table: each module with its own parameters, its type and their count."""
    rows = [("layer", "type", "parameters")]
    for name, module in model.named_modules():
        count = sum(p.numel() for p in module.parameters(recurse=False))
        if count:
            rows.append((name, type(module).__name__, f"{count:,}"))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows.append(("total", "", f"{total:,} ({trainable:,} trainable)"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}".rstrip()
        for row in rows
    )
