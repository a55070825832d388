"""The graph pipeline: the model's architecture drawn with torchviz, and a layer summary."""

from __future__ import annotations

from pathlib import Path

import torch

import plp_viz
from plp_pipelines._build import build_datamodule, build_model
from plp_pipelines._components import check_components
from plp_pipelines._config import Config, load_config
from plp_pipelines._errors import ConfigError
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT

__all__ = ["graph"]


def graph(
    config: str | Path | Config | None = None,
    *,
    run: str | Path | None = None,
    runs_root: str | Path = RUNS_ROOT,
    output_dir: str | Path | None = None,
) -> plp_viz.GraphFiles:
    """Write the architecture graph of a config's model (or a run's) and return the files.

    Always writes ``model.gv`` (Graphviz source) and ``layers.txt`` (parameters per layer);
    ``model.svg`` and ``model.png`` too where Graphviz's ``dot`` is installed. The files go to
    ``output_dir``, by default ``<run>/plots/graph/`` for a run and ``<runs_root>/<config
    name>/graph/`` for a config. The model is built untrained: the drawing needs no data.
    """
    if (config is None) == (run is None):
        raise ConfigError("graph: give either a config or a run, not both")
    if run is not None:
        opened = Run.open(run, runs_root=runs_root)
        recipe = opened.config
        default_dir = opened.paths.plots / "graph"
        datamodule = opened.build_datamodule()
    else:
        assert config is not None
        recipe = config if isinstance(config, Config) else load_config(config)
        default_dir = Path(runs_root) / recipe.name / "graph"
        check_components(recipe)
        datamodule = build_datamodule(recipe)
    model = build_model(recipe, datamodule).eval()
    example = torch.zeros(1, datamodule.in_channels, *datamodule.image_size)
    out = Path(output_dir) if output_dir is not None else default_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "layers.txt").write_text(plp_viz.layer_summary(model) + "\n", encoding="utf-8")
    return plp_viz.model_graph(model, example, out / "model")
