"""Optimizers and learning-rate schedules built from ``{name, args}`` specs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from plp_models._errors import PlpModelsError

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
SCHEDULERS = ("none", "cosine", "step", "one_cycle")


def build_optimizer(
    name: str, parameters: Iterable[torch.nn.Parameter], **kwargs: Any
) -> torch.optim.Optimizer:
    """Return the optimizer ``name`` (sgd, adam, adamw) over ``parameters``."""
    if name not in OPTIMIZERS:
        raise PlpModelsError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](parameters, **kwargs)


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    **kwargs: Any,
) -> LRScheduler | None:
    """Return a per-step schedule: linear warm-up, then ``name``; None for ``"none"``.

    - ``cosine``: cosine decay from the base rate to ``min_factor`` x base (default 0) by the end.
    - ``step``: multiply by ``gamma`` (default 0.1) every ``step_epochs`` (default 10) epochs.
    - ``one_cycle``: the one-cycle policy (Smith 2018) with peak at the base rate; it has its own
      warm-up (``pct_start``, default 0.3), so ``warmup_epochs`` must be 0.

    Args:
        name: One of ``none``, ``cosine``, ``step``, ``one_cycle``.
        optimizer: The optimizer whose rate is scheduled.
        total_steps: Optimizer steps in the whole run.
        steps_per_epoch: Optimizer steps per epoch.
        warmup_epochs: Epochs of linear warm-up from 0 to the base rate.
        **kwargs: The schedule's own options listed above.
    """
    if name not in SCHEDULERS:
        raise PlpModelsError(f"unknown scheduler {name!r}; available: {', '.join(SCHEDULERS)}")
    if name == "none" and not warmup_epochs:
        return None
    if name == "one_cycle":
        if warmup_epochs:
            raise PlpModelsError("one_cycle has its own warm-up (pct_start); set warmup_epochs = 0")
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lrs, total_steps=max(total_steps, 1), **kwargs
        )
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    min_factor = float(kwargs.pop("min_factor", 0.0))
    gamma = float(kwargs.pop("gamma", 0.1))
    step_epochs = int(kwargs.pop("step_epochs", 10))
    if kwargs:
        raise PlpModelsError(f"unknown options for scheduler {name!r}: {', '.join(kwargs)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "cosine":
            progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1)))
        if name == "step":
            return gamma ** (step // (step_epochs * steps_per_epoch))
        return 1.0

    return LambdaLR(optimizer, factor)
