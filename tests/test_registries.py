"""Every registry, every entry: built from its defaults (plus what its caller fills in)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import plp_data
import plp_losses
import plp_models
import plp_viz
from plp_core import Registry
from plp_data import testing


def _image_folder(root: Any) -> Any:
    for label in ("a", "b"):
        for index in range(4):
            testing.write_jpeg(root / label / f"{index}.jpg", seed=index)
    return root


# File datasets are checked when built: each gets a tiny copy in its real format.
WRITERS = {
    "cars196": testing.write_cars196,
    "csv": testing.write_csv_dataset,
    "cub200": testing.write_cub200,
    "image_folder": _image_folder,
    "inshop": testing.write_inshop,
    "market1501": testing.write_market1501,
    "sop": testing.write_sop,
}

REGISTRIES: dict[str, Registry[Any]] = {
    "loss": plp_losses.LOSSES,
    "datamodule": plp_data.DATAMODULES,
    "sampler": plp_data.SAMPLERS,
    "backbone": plp_models.BACKBONES,
    "head": plp_models.HEADS,
    "optimizer": plp_models.OPTIMIZERS,
    "scheduler": plp_models.SCHEDULERS,
    "attribution": plp_viz.ATTRIBUTIONS,
    "miner": plp_losses.MINERS,
    "distillation": plp_losses.DISTILLATION,
}


def _filled(kind: str, name: str) -> dict[str, Any]:
    """What the caller of each kind fills in itself, and arguments without a default."""
    parameter = nn.Parameter(torch.zeros(3))
    return {
        "loss": {"num_classes": 3, "embedding_size": 4},
        "datamodule": {"datasets": [{"name": "digits"}]} if name == "concat" else {},
        "sampler": {"labels": np.repeat(np.arange(4), 3), "seed": 0}
        | ({"classes_per_batch": 2, "samples_per_class": 2} if name != "class_balanced" else {}),
        "backbone": {"in_channels": 3, "image_size": (32, 32)},
        "head": {
            "in_features": 8,
            "embedding_size": 4,
            "num_classes": 0 if name == "embedding" else 3,
        },
        "optimizer": {"parameters": [parameter]},
        "scheduler": {
            "optimizer": torch.optim.SGD([parameter], lr=0.1),
            "total_steps": 10,
            "steps_per_epoch": 2,
        },
        "miner": {},
        "distillation": {"student_size": 4, "teacher_size": 8},
        "attribution": {},
    }[kind]


CASES = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry.available()]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_every_entry_builds_with_its_defaults(kind: str, name: str, tmp_path: Any) -> None:
    registry = REGISTRIES[kind]
    parameters, _ = registry.parameters(name)
    filled = {
        key: value
        for key, value in _filled(kind, name).items()
        if key in parameters or key in registry.filled  # the model gives a loss only its sizes
    }
    required = [p.name for p in parameters.values() if p.required and p.name not in filled]
    assert not required, f"{kind} {name!r} has required arguments no caller fills: {required}"
    if kind == "attribution":  # an algorithm is a function of a batch: run it on a tiny model
        model = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)
        )
        layer = "0" if registry.entry(name).metadata.get("needs_layer") else None
        result = plp_viz.explain(model, torch.rand(2, 1, 6, 6), [0, 1], algorithm=name, layer=layer)
        assert tuple(result.shape) == (2, 1, 6, 6)
        return
    if kind == "datamodule" and name in WRITERS:  # a dataset CSV is named by its path
        filled["path" if name == "csv" else "root"] = str(WRITERS[name](tmp_path))
    built = registry.build(name, **filled)
    assert built is not None or (kind, name) == ("scheduler", "none")


def test_every_needs_layer_entry_is_a_layer_algorithm() -> None:
    assert set(plp_viz.ATTRIBUTIONS.available(needs_layer=True)) == set(
        plp_viz.available_attributions()
    ) & {n for n in plp_viz.available_attributions() if n.startswith("layer_")}


def test_timm_names_go_through_the_same_checks() -> None:
    registry = plp_models.BACKBONES
    assert "timm:resnet18" in registry
    parameters, takes_kwargs = registry.parameters("timm:resnet18")
    assert set(parameters) == {"pretrained", "weights_path"} and not takes_kwargs
    with pytest.raises(plp_models.PlpModelsError, match=r"takes no argument 'pretraind' \(did"):
        registry.check("timm:resnet18", {"pretraind": True})
