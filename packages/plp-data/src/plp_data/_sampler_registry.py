"""Training samplers by name: ``sampler = {name = "pk", args = {...}}`` in a datamodule config."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from plp_data._errors import PlpDataError
from plp_data._samplers import ClassBalancedSampler, PKBatchSampler

__all__ = ["SAMPLERS", "available_samplers", "build_sampler", "check_sampler_spec"]


SAMPLERS: dict[str, type[Sampler[Any]]] = {
    "class_balanced": ClassBalancedSampler,
    "pk": PKBatchSampler,
}
# Arguments the datamodule fills in itself.
_FILLED = {"labels", "seed", "num_replicas", "rank"}


def available_samplers() -> list[str]:
    """Return the sampler names accepted by ``sampler = {name = ...}``."""
    return sorted(SAMPLERS)


def check_sampler_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate ``{"name": ..., "args": {...}}`` early (at construction), returning a copy.

    Raises:
        PlpDataError: Unknown sampler name, unknown keys or arguments the sampler does not take.
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "args"}:
        raise PlpDataError(f"sampler must be {{name = ..., args = {{...}}}}, got {spec!r}")
    name, args = spec["name"], dict(spec.get("args", {}))
    if name not in SAMPLERS:
        raise PlpDataError(
            f"sampler: unknown sampler {name!r}; available: {', '.join(available_samplers())}"
        )
    accepted = set(inspect.signature(SAMPLERS[name]).parameters) - _FILLED
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise PlpDataError(
            f"sampler.args: {name!r} takes no argument {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
    return {"name": name, "args": args}


def build_sampler(name: str, labels: np.ndarray, **kwargs: Any) -> Sampler[Any]:
    """Return the sampler ``name`` over ``labels`` built with ``kwargs``."""
    if name not in SAMPLERS:
        raise PlpDataError(
            f"unknown sampler {name!r}; available: {', '.join(available_samplers())}"
        )
    factory: Any = SAMPLERS[name]
    return factory(labels, **kwargs)
