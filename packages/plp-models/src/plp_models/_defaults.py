"""The default training settings per dataset: the one place in code that states them.

``configs/<name>.toml`` spells the same values out for the command line (a test checks that the
two agree); Python users start from :func:`default_settings`. Sources: the digits and MNIST values
were tuned here on CPU; CIFAR follows the usual ResNet-18 recipe (SGD 0.1, momentum 0.9, weight
decay 5e-4, cosine); Market-1501 follows the re-ID "strong baseline" (Luo et al. 2019: Adam
3.5e-4, warm-up 10 epochs, step decay at 40, 120 epochs, BNNeck, CE + batch-hard triplet, P x K
= 16 x 4).
"""

from __future__ import annotations

import copy
from typing import Any

from plp_models._errors import PlpModelsError

__all__ = ["DEFAULT_SETTINGS", "default_settings"]

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "digits": {
        "batch_size": 64,
        "epochs": 15,
        "backbone": "small_convnet",
        "embedding_size": 64,
        "optimizer": {"name": "adam", "args": {"lr": 3e-3, "weight_decay": 1e-4}},
        "scheduler": {"name": "cosine", "args": {"warmup_epochs": 1}},
    },
    "mnist": {
        "batch_size": 128,
        "epochs": 10,
        "backbone": "small_convnet",
        "embedding_size": 64,
        "optimizer": {"name": "adam", "args": {"lr": 1e-3, "weight_decay": 1e-4}},
        "scheduler": {"name": "cosine", "args": {"warmup_epochs": 1}},
    },
    "cifar10": {
        "batch_size": 128,
        "epochs": 60,
        "backbone": "resnet18_cifar",
        "embedding_size": 128,
        "optimizer": {
            "name": "sgd",
            "args": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
        },
        "scheduler": {"name": "cosine", "args": {"warmup_epochs": 2}},
    },
    "market1501": {
        "batch_size": 64,
        "epochs": 120,
        "backbone": "resnet50",
        "embedding_size": 2048,
        "optimizer": {"name": "adam", "args": {"lr": 3.5e-4, "weight_decay": 5e-4}},
        "scheduler": {
            "name": "step",
            "args": {"warmup_epochs": 10, "step_epochs": 40, "gamma": 0.1},
        },
    },
}


def default_settings(dataset: str) -> dict[str, Any]:
    """Return a copy of the default training settings of ``dataset``.

    Args:
        dataset: A key of :data:`DEFAULT_SETTINGS` (``digits``, ``mnist``, ``cifar10``,
            ``market1501``).

    Raises:
        PlpModelsError: Unknown dataset (the message lists the known ones).
    """
    if dataset not in DEFAULT_SETTINGS:
        raise PlpModelsError(
            f"no default settings for {dataset!r}; known: {', '.join(sorted(DEFAULT_SETTINGS))}"
        )
    return copy.deepcopy(DEFAULT_SETTINGS[dataset])
