"""The names in each registry a config names, known without importing torch or Lightning.

The registries (:data:`plp_data.DATAMODULES`, :data:`plp_models.BACKBONES`, ...) are filled by
the modules that define their components, which import torch and Lightning: 15-25 s before a
misspelt name could be reported. This catalog lists the same names (standard library only), so
that ``invoke train`` reports an unknown name in the first second, with the registry's own
message. ``test_catalog_equals_the_registries`` keeps it equal to the real registries: a
component registered without its name here fails that test.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plp_core import unknown_choice

__all__ = ["CATALOG", "Names", "registry"]


@dataclass(frozen=True)
class Names:
    """The names of one registry: what ``in`` and ``unknown_message`` of a Registry answer.

    Attributes:
        kind: What the registry holds, as its messages name it.
        names: Its registered names, sorted (``Registry.available()``).
        prefixes: Its name families as (prefix, hint), e.g. ``("timm:", "any timm model ...")``.
    """

    kind: str
    names: tuple[str, ...]
    prefixes: tuple[tuple[str, str], ...] = ()

    def __contains__(self, name: object) -> bool:
        return name in self.names or (
            isinstance(name, str)
            and any(name.startswith(p) and len(name) > len(p) for p, _ in self.prefixes)
        )

    def unknown_message(self, name: str) -> str:
        """Return the registry's one-line message for an unknown ``name`` (the same text)."""
        hints = "".join(f"; or {hint}" for _, hint in self.prefixes)
        return unknown_choice(self.kind, name, self.names) + hints


# Keyed by where the real registry lives: "<module>.<attribute>".
CATALOG: Mapping[str, Names] = {
    "plp_data.DATAMODULES": Names(
        "datamodule",
        (
            *("cars196", "cifar10", "cifar100", "concat", "csv", "cub200", "digits"),
            *("fashion_mnist", "image_folder", "inshop", "kmnist", "market1501", "mnist", "sop"),
        ),
    ),
    "plp_data.SAMPLERS": Names("sampler", ("class_balanced", "hard_pk", "pk")),
    "plp_losses.LOSSES": Names(
        "loss",
        (
            *("arcface", "center", "contrastive", "cross_entropy", "multi_similarity"),
            *("ntxent", "population_triplet", "triplet_margin"),
        ),
    ),
    "plp_losses.MINERS": Names(
        "miner",
        ("batch_easy_hard", "batch_hard", "multi_similarity", "pair_margin", "triplet_margin"),
    ),
    "plp_models.BACKBONES": Names(
        "backbone",
        (
            *("mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet18_cifar"),
            *("resnet50", "small_convnet"),
        ),
        (("timm:", "any timm model as 'timm:<model>'"),),
    ),
    "plp_models.HEADS": Names("head", ("classifier", "embedding", "embedding_classifier")),
    "plp_models.OPTIMIZERS": Names("optimizer", ("adam", "adamw", "sgd")),
    "plp_models.SCHEDULERS": Names("scheduler", ("cosine", "none", "one_cycle", "step")),
    "plp_viz.ATTRIBUTIONS": Names(
        "attribution",
        (
            *("gradient_shap", "input_x_gradient", "integrated_gradients", "layer_conductance"),
            *("layer_gradcam", "layer_integrated_gradients", "occlusion", "saliency"),
        ),
    ),
}


def registry(key: str) -> Any:
    """Return the real registry ``key`` names (``"plp_data.DATAMODULES"``): imports its package."""
    module, _, attribute = key.rpartition(".")
    return getattr(importlib.import_module(module), attribute)
