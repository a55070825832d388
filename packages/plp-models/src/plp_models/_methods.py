"""Loss terms with a miner or a cross-batch memory, and distillation from a teacher model.

A loss term is ``{"name", "weight", "args"}`` plus, for a pair or triplet loss, optionally
``"miner": {"name", "args"}`` (a :data:`plp_losses.MINERS` entry that chooses its tuples) and
``"memory": {"size", "start_iteration"}`` (a :class:`plp_losses.CrossBatchMemory` around it).
Distillation is ``{"loss", "weight", "teacher_size"}``: a :data:`plp_losses.DISTILLATION` loss
between the student's evaluation features and a frozen teacher's, from the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

import plp_losses
from plp_models._errors import PlpModelsError

__all__ = ["TERM_KEYS", "Teacher", "build_distillation", "build_loss_term", "check_distillation"]

# Losses holding one learnable vector per class: the model fills in their sizes.
LOSSES_WITH_CLASS_WEIGHTS = frozenset({"arcface", "center"})
TERM_KEYS = frozenset({"name", "weight", "args", "miner", "memory"})
MEMORY_KEYS = frozenset({"size", "start_iteration"})
DISTILLATION_KEYS = frozenset({"loss", "weight", "teacher_size"})


class Teacher(Protocol):
    """What distillation needs of a teacher: its evaluation features of a batch."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return the features of ``images``."""
        ...


def build_loss_term(spec: Mapping[str, Any], num_classes: int, embedding_size: int) -> nn.Module:
    """Return the loss of one term, fed by its miner and memory when the spec names them.

    Raises:
        PlpModelsError: Unknown keys, a memory without a known embedding size.
        plp_losses.PlpLossesError: Unknown names or arguments, or a miner or memory with a loss
            that takes no pairs or triplets (one line naming both).
    """
    name, args = spec["name"], dict(spec.get("args", {}))
    unknown = sorted(set(spec) - TERM_KEYS)
    if unknown:
        raise PlpModelsError(f"loss {name!r}: unknown keys {unknown}")
    if name in LOSSES_WITH_CLASS_WEIGHTS:
        args.setdefault("num_classes", num_classes)
        args.setdefault("embedding_size", embedding_size)
    loss: nn.Module = plp_losses.build(name, **args)
    miner_spec, memory = spec.get("miner"), spec.get("memory")
    miner = None
    if miner_spec is not None:
        miner = plp_losses.MINERS.build(miner_spec["name"], **dict(miner_spec.get("args", {})))
        plp_losses.check_tuple_loss(loss, f"miner {miner_spec['name']!r} with loss {name!r}")
    if memory is not None:
        unknown = sorted(set(memory) - MEMORY_KEYS)
        if unknown or "size" not in memory:
            raise PlpModelsError(
                f"loss {name!r}: memory takes size (required) and start_iteration, got "
                f"{sorted(memory)}"
            )
        if embedding_size < 1:
            raise PlpModelsError(f"loss {name!r}: a memory needs the embedding size, unknown here")
        plp_losses.check_tuple_loss(loss, f"memory with loss {name!r}")
        return plp_losses.CrossBatchMemory(
            loss,
            embedding_size,
            memory["size"],
            miner=miner,
            start_iteration=memory.get("start_iteration", 0),
        )
    return loss if miner is None else plp_losses.MinedLoss(loss, miner)


def check_distillation(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"loss", "weight", "teacher_size"}`` checked (the distillation hyper-parameter).

    Raises:
        PlpModelsError: Unknown or missing keys, a weight that is not > 0.
        plp_losses.PlpLossesError: An unknown distillation loss.
    """
    unknown = sorted(set(spec) - DISTILLATION_KEYS)
    if unknown or not {"loss", "teacher_size"} <= set(spec):
        raise PlpModelsError(
            f"distillation takes loss, teacher_size (required) and weight, got {sorted(spec)}"
        )
    plp_losses.DISTILLATION.entry(spec["loss"])
    weight = float(spec.get("weight", 1.0))
    if not weight > 0:
        raise PlpModelsError(f"distillation weight must be > 0, got {weight}")
    return {"loss": spec["loss"], "weight": weight, "teacher_size": int(spec["teacher_size"])}


def build_distillation(spec: Mapping[str, Any], student_size: int) -> nn.Module:
    """Return the distillation loss of ``spec`` between ``student_size`` and its teacher size."""
    return plp_losses.DISTILLATION.build(
        spec["loss"], student_size=student_size, teacher_size=spec["teacher_size"]
    )
