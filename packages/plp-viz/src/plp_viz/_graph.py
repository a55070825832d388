"""Architecture drawings with torchviz, and a per-layer parameter summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plp_core import atomic_write
from plp_viz._errors import PlpVizError

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
    on the PATH, and otherwise says once on stderr how to install it. Each file is written
    whole or not at all.

    Raises:
        PlpVizError: A file cannot be written (a full or read-only disk, a path through a file)
            or ``dot`` fails: one line naming the file.
    """
    import torchviz

    global _warned_missing_dot
    stem = Path(path_stem)
    was_training = model.training
    model.eval()
    try:
        output = model(example_input)
    finally:
        model.train(was_training)
    if isinstance(output, tuple | list):
        output = output[0]
    dot = torchviz.make_dot(output, params=dict(model.named_parameters()))
    gv = atomic_write(
        stem.with_suffix(".gv"), lambda file: file.write(dot.source.encode()), error=PlpVizError
    )
    if shutil.which("dot") is None:
        if not _warned_missing_dot:
            print(
                "plp: note: Graphviz's `dot` was not found: wrote the .gv source only "
                "(install Graphviz, e.g. `apt-get install graphviz`, for .svg and .png)",
                file=sys.stderr,
            )
            _warned_missing_dot = True
        return GraphFiles(gv, None, None, False)
    svg, png = (_render(dot, stem, image_format) for image_format in ("svg", "png"))
    return GraphFiles(gv, svg, png, True)


def _render(dot: Any, stem: Path, image_format: str) -> Path:
    """Return ``<stem>.<format>`` drawn by Graphviz's ``dot``, written atomically."""
    path = stem.with_suffix(f".{image_format}")
    try:
        drawing = dot.pipe(format=image_format)
    # graphviz's ExecutableNotFound is a RuntimeError, its CalledProcessError subprocess's
    except (RuntimeError, subprocess.CalledProcessError, OSError) as failure:
        reason = str(failure).strip().splitlines()[-1][:200] if str(failure).strip() else ""
        raise PlpVizError(f"Graphviz's dot cannot draw {path}: {reason}") from None
    return atomic_write(path, lambda file: file.write(drawing), error=PlpVizError)


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
