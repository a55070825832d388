"""Optimizers and learning-rate schedules by name, with typed, bounded arguments.

Each is a small factory registered in :data:`~plp_models.OPTIMIZERS` or
:data:`~plp_models.SCHEDULERS`, so its signature is what a config may set (and what is checked
before a run starts): ``optimizer = {name = "sgd", args = {lr = 0.1, momentum = 0.9}}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from plp_core import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Range
from plp_models._errors import PlpModelsError
from plp_models._registry import OPTIMIZERS, SCHEDULERS

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler"]

Momentum = Annotated[float, Range(ge=0, lt=1)]
Parameters = Iterable[torch.nn.Parameter]


@OPTIMIZERS.register("sgd")
def sgd(
    parameters: Parameters,
    lr: PositiveFloat = 0.1,
    momentum: Momentum = 0.0,
    weight_decay: NonNegativeFloat = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Return ``torch.optim.SGD`` (``nesterov`` needs ``momentum`` > 0)."""
    if nesterov and not momentum:
        raise PlpModelsError("optimizer 'sgd': nesterov = true needs momentum > 0")
    return torch.optim.SGD(
        parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


@OPTIMIZERS.register("adam")
def adam(
    parameters: Parameters,
    lr: PositiveFloat = 1e-3,
    betas: tuple[Momentum, Momentum] = (0.9, 0.999),
    weight_decay: NonNegativeFloat = 0.0,
    eps: PositiveFloat = 1e-8,
) -> torch.optim.Optimizer:
    """Return ``torch.optim.Adam`` (L2 weight decay added to the gradient)."""
    return torch.optim.Adam(
        parameters, lr=lr, betas=(betas[0], betas[1]), weight_decay=weight_decay, eps=eps
    )


@OPTIMIZERS.register("adamw")
def adamw(
    parameters: Parameters,
    lr: PositiveFloat = 1e-3,
    betas: tuple[Momentum, Momentum] = (0.9, 0.999),
    weight_decay: NonNegativeFloat = 1e-2,
    eps: PositiveFloat = 1e-8,
) -> torch.optim.Optimizer:
    """Return ``torch.optim.AdamW`` (decoupled weight decay)."""
    return torch.optim.AdamW(
        parameters, lr=lr, betas=(betas[0], betas[1]), weight_decay=weight_decay, eps=eps
    )


def build_optimizer(
    name: str, parameters: Iterable[torch.nn.Parameter], **kwargs: Any
) -> torch.optim.Optimizer:
    """Return the optimizer ``name`` (sgd, adam, adamw) over ``parameters``."""
    return OPTIMIZERS.build(name, parameters=parameters, **kwargs)


def _warmup_then(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    after: Any,
) -> LambdaLR:
    """Return a per-step LambdaLR: linear warm-up to the base rate, then ``after(step)``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return float(after(step - warmup_steps))

    return LambdaLR(optimizer, factor)


@SCHEDULERS.register("none")
def constant(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: NonNegativeFloat = 0.0,
) -> LRScheduler | None:
    """Return the base rate throughout (after the warm-up); None when there is no warm-up."""
    if not warmup_epochs:
        return None
    return _warmup_then(optimizer, round(warmup_epochs * steps_per_epoch), lambda step: 1.0)


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: NonNegativeFloat = 0.0,
    min_factor: Annotated[float, Range(ge=0, le=1)] = 0.0,
) -> LRScheduler:
    """Return a cosine decay from the base rate to ``min_factor`` x base by the last step."""
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    decay_steps = max(total_steps - warmup_steps, 1)

    def after(step: int) -> float:
        progress = min(step / decay_steps, 1.0)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return _warmup_then(optimizer, warmup_steps, after)


@SCHEDULERS.register("step")
def step(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: NonNegativeFloat = 0.0,
    step_epochs: PositiveInt = 10,
    gamma: Annotated[float, Range(gt=0, le=1)] = 0.1,
) -> LRScheduler:
    """Return the base rate multiplied by ``gamma`` every ``step_epochs`` epochs."""
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    return LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / warmup_steps
            if step < warmup_steps
            else gamma ** (step // (step_epochs * steps_per_epoch))
        ),
    )


@SCHEDULERS.register("one_cycle")
def one_cycle(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: NonNegativeFloat = 0.0,
    pct_start: Fraction = 0.3,
) -> LRScheduler:
    """Return the one-cycle policy (Smith 2018) peaking at the base rate.

    It has its own warm-up (``pct_start`` of the steps), so ``warmup_epochs`` must be 0.
    """
    if warmup_epochs:
        raise PlpModelsError("one_cycle has its own warm-up (pct_start); set warmup_epochs = 0")
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=max(total_steps, 1), pct_start=pct_start
    )


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    **kwargs: Any,
) -> LRScheduler | None:
    """Return the per-step schedule ``name`` (linear warm-up first); None for a constant rate.

    - ``none``: the base rate (after ``warmup_epochs`` of linear warm-up, if any).
    - ``cosine``: cosine decay from the base rate to ``min_factor`` x base (default 0) by the end.
    - ``step``: multiply by ``gamma`` (default 0.1) every ``step_epochs`` (default 10) epochs.
    - ``one_cycle``: the one-cycle policy (Smith 2018) with peak at the base rate; it has its own
      warm-up (``pct_start``, default 0.3), so ``warmup_epochs`` must be 0.

    Args:
        name: One of ``none``, ``cosine``, ``step``, ``one_cycle``.
        optimizer: The optimizer whose rate is scheduled.
        total_steps: Optimizer steps in the whole run.
        steps_per_epoch: Optimizer steps per epoch.
        **kwargs: The schedule's own options (``warmup_epochs`` and those listed above).
    """
    return SCHEDULERS.build(
        name,
        optimizer=optimizer,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        **kwargs,
    )
