"""The align pipeline: AlignedUMAP of several checkpoints of one architecture, on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import plp_viz
from plp_pipelines._checkpoints import architecture_of, check_architecture
from plp_pipelines._config import override_config
from plp_pipelines._errors import ConfigError
from plp_pipelines._features import extract_features
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, atomic_write_text

__all__ = ["align"]


def align(
    checkpoints: Sequence[str | Path],
    *,
    split: str | None = None,
    runs_root: str | Path = RUNS_ROOT,
    output_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
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
        overrides: ``align.key=value`` settings for this call only (``--set``), e.g.
            ``align.max_samples=2000``; ``split`` still wins. Other sections are refused.

    Raises:
        ConfigError: Fewer than two checkpoints, an override outside ``[align]``, an unknown
            key or a bad value.
        RunError: A missing or unsafe checkpoint, checkpoints of different architectures.
    """
    paths = [Path(p) for p in checkpoints]
    if len(paths) < 2:
        raise ConfigError(f"align needs at least two checkpoints, got {len(paths)}")
    architectures = [architecture_of(path) for path in paths]
    for path, architecture in zip(paths[1:], architectures[1:], strict=True):
        check_architecture(architecture, architectures[0], path, str(paths[0]))
    run = Run.open(checkpoint=paths[0])
    config = override_config(run.config, overrides, ("align",), "align")
    split = split or config.align.split
    datamodule = run.build_datamodule()
    datamodule.setup("test")
    features, labels = [], None
    for path in paths:
        result = extract_features(
            run.load_model(path), datamodule.split_dataloader(split), with_logits=False
        )
        features.append(result.features)
        labels = result.labels
    assert labels is not None
    embeddings = plp_viz.aligned_umap_2d(
        features, seed=config.seed, max_samples=config.align.max_samples
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


def _new_dir(parent: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = parent / stamp, 1
    while candidate.exists():
        candidate, n = parent / f"{stamp}-{n}", n + 1
    return candidate
