"""``[trainer] compile``: ``torch.compile`` of a model's networks, in place.

``nn.Module.compile`` compiles a module's call in place: its parameters and ``state_dict`` keys
stay as they were, so a checkpoint of a compiled run loads into an uncompiled model and a plain
checkpoint into a compiled one. Only the network that takes the images is compiled (a
:class:`plp_models.PlpModel`'s ``backbone``, a :class:`plp_models.NetworkModel`'s ``network``),
where nearly all the compute is: the head is a linear layer or two on features that need a
gradient (dynamo reads their ``.grad`` and warns), and the losses and miners would recompile at
every batch for their data-dependent shapes.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError

__all__ = ["NETWORKS", "check_compile", "compile_model"]

NETWORKS = ("backbone", "network")
"""The attributes of a model that ``[trainer] compile`` compiles, where present."""


def compile_model(model: object) -> tuple[str, ...]:
    """Compile ``model``'s image network in place with ``torch.compile``; return its name.

    Raises:
        ConfigError: The model has none of :data:`NETWORKS` to compile.
    """
    names = tuple(name for name in NETWORKS if isinstance(getattr(model, name, None), nn.Module))
    if not names:
        raise ConfigError(
            f"trainer.compile: {type(model).__name__} has no {', '.join(NETWORKS)} module to "
            "compile; set compile = false or compile your model's networks yourself"
        )
    for name in names:
        network: nn.Module = getattr(model, name)
        if getattr(network, "_compiled_call_impl", None) is None:  # not compiled twice
            network.compile()
    return names


def check_compile(config: Config) -> None:
    """Raise ConfigError if ``[trainer] compile`` cannot work on this machine.

    On the CPU, torch.compile's code generator builds C++: it needs a compiler (``$CXX``,
    ``g++`` or ``clang++``), which would otherwise fail deep inside the first training step.
    """
    trainer = config.trainer
    if not trainer.compile:
        return
    on_cpu = trainer.accelerator == "cpu" or not torch.cuda.is_available()
    compilers = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    if on_cpu and not any(name and shutil.which(name) for name in compilers):
        raise ConfigError(
            f"{config.source}: trainer.compile: torch.compile on the CPU needs a C++ compiler "
            "(g++ or clang++ on PATH, or $CXX); install one or set compile = false"
        )
