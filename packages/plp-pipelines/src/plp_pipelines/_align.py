"""The align pipeline: AlignedUMAP of several checkpoints of one architecture, on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import plp_viz
from plp_pipelines._build import build_datamodule
from plp_pipelines._config import load_config
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._evaluate import load_model
from plp_pipelines._features import extract_features
from plp_pipelines._runs import atomic_write_text

__all__ = ["ARCHITECTURE_KEYS", "align"]

# Hyper-parameters that must agree for two checkpoints to be "the same architecture".
ARCHITECTURE_KEYS = (
    "backbone",
    "head",
    "embedding_size",
    "num_classes",
    "in_channels",
    "image_size",
)


def align(
    checkpoints: Sequence[str | Path],
    *,
    split: str | None = None,
    runs_root: str | Path = "runs",
    output_dir: str | Path | None = None,
) -> Path:
    """Embed one split with every checkpoint, fit AlignedUMAP, and return the panels' PNG path.

    All checkpoints must be of one architecture (same backbone, head, embedding size and input
    shape). The data and seed come from the first checkpoint's run (``config.toml`` next to its
    ``checkpoints/`` folder). The panels share axis limits, so drift between checkpoints shows.

    Args:
        checkpoints: Two or more checkpoint files, in the order to draw them.
        split: ``trainval`` or ``test``; default ``[align] split`` of the config.
        runs_root: Where ``align/<timestamp>/`` is created when ``output_dir`` is None.
        output_dir: Folder for ``aligned_umap_<split>.png`` and ``checkpoints.txt``.
    """
    paths = [Path(p) for p in checkpoints]
    if len(paths) < 2:
        raise ConfigError(f"align needs at least two checkpoints, got {len(paths)}")
    for path in paths:
        if not path.is_file():
            raise RunError(f"checkpoint {path} does not exist")
    architectures = [_architecture(path) for path in paths]
    for path, architecture in zip(paths[1:], architectures[1:], strict=True):
        for key in ARCHITECTURE_KEYS:
            if architecture.get(key) != architectures[0].get(key):
                raise ConfigError(
                    f"align: {path} is another architecture than {paths[0]}: {key} is "
                    f"{architecture.get(key)!r}, not {architectures[0].get(key)!r}"
                )
    config_path = paths[0].resolve().parent.parent / "config.toml"
    config = load_config(config_path)
    split = split or config.align.split
    datamodule = build_datamodule(config, str(config_path))
    datamodule.setup("test")
    features, labels = [], None
    for path in paths:
        result = extract_features(
            load_model(path), datamodule.split_dataloader(split), with_logits=False
        )
        features.append(result.features)
        labels = result.labels
    assert labels is not None
    embeddings = plp_viz.aligned_umap_2d(
        features, seed=config.trainer.seed, max_samples=config.align.max_samples
    )
    out = Path(output_dir) if output_dir else _new_dir(Path(runs_root) / "align")
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"aligned_umap_{split}.png"
    plp_viz.plot_aligned(
        [e.points for e in embeddings],
        labels[embeddings[0].indices],
        png,
        titles=[f"{p.parent.parent.name}/{p.stem}" for p in paths],
    )
    atomic_write_text(out / "checkpoints.txt", "\n".join(str(p) for p in paths) + "\n")
    return png


def _architecture(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise RunError(f"cannot read checkpoint {path}: {str(error).splitlines()[0]}") from None
    hyper_parameters = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hyper_parameters, dict):
        raise RunError(f"{path} has no hyper-parameters: not a plp checkpoint")
    return hyper_parameters


def _new_dir(parent: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = parent / stamp, 1
    while candidate.exists():
        candidate, n = parent / f"{stamp}-{n}", n + 1
    return candidate
