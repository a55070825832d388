"""Training samplers by name: ``sampler = {name = "pk", args = {...}}`` in a datamodule config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from plp_data._errors import PlpDataError
from plp_data._registry import SAMPLERS

__all__ = ["SAMPLERS", "available_samplers", "build_sampler", "check_sampler_spec"]


def available_samplers() -> list[str]:
    """Return the sampler names accepted by ``sampler = {name = ...}``."""
    return SAMPLERS.available()


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
    try:
        SAMPLERS.check(name, args)
    except PlpDataError as error:
        raise PlpDataError(f"sampler: {error}") from None
    return {"name": name, "args": args}


def build_sampler(name: str, labels: np.ndarray, **kwargs: Any) -> Sampler[Any]:
    """Return the sampler ``name`` over ``labels`` built with ``kwargs``."""
    return SAMPLERS.build(name, labels=labels, **kwargs)
