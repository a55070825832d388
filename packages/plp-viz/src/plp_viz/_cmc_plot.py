"""CMC curves: the share of queries matched within each rank."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from plp_core import DEFAULT_MAX_RANK
from plp_viz import _plots
from plp_viz._errors import PlpVizError

__all__ = ["plot_cmc"]


def _cmc_curves(cmc: np.ndarray | Mapping[str, np.ndarray], max_rank: int) -> dict[str, np.ndarray]:
    if max_rank < 1:
        raise PlpVizError(f"max_rank must be >= 1, got {max_rank}")
    named: Mapping[str, Any] = cmc if isinstance(cmc, Mapping) else {"": cmc}
    if not named:
        raise PlpVizError("cmc mapping is empty: give at least one curve")
    curves: dict[str, np.ndarray] = {}
    for name, values in named.items():
        where = f"cmc[{name!r}]" if name else "cmc"
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PlpVizError(f"{where} must be a 1-D array of numbers: {error}") from None
        if array.ndim != 1 or len(array) == 0:
            raise PlpVizError(f"{where} must be a non-empty 1-D array, got shape {array.shape}")
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0 + 1e-9:
            raise PlpVizError(
                f"{where} must hold fractions in [0, 1] (not percentages), "
                f"got values from {np.nanmin(array):g} to {np.nanmax(array):g}"
            )
        curves[str(name)] = array[:max_rank]
    return curves


def _bands(intervals: Any, curves: dict[str, np.ndarray]) -> dict[str, tuple[Any, Any]]:
    """Return each named curve's ``(low, high)`` band, cut to the curve's ranks, or raise."""
    if intervals is None:
        return {}
    named = intervals if isinstance(intervals, Mapping) else {"": intervals}
    bands = {}
    for name, band in named.items():
        if str(name) not in curves:
            raise PlpVizError(f"intervals name a curve {name!r} that is not in cmc")
        length = len(curves[str(name)])
        try:
            low, high = (np.asarray(side, dtype=np.float64)[:length] for side in band)
        except (TypeError, ValueError):
            raise PlpVizError(f"intervals[{name!r}] must be a (low, high) pair of arrays") from None
        if low.shape != (length,) or high.shape != (length,) or (low > high).any():
            raise PlpVizError(
                f"intervals[{name!r}] must be (low, high) arrays of at least {length} values "
                "with low <= high"
            )
        bands[str(name)] = (low, high)
    return bands


def plot_cmc(
    cmc: np.ndarray | Mapping[str, np.ndarray],
    path: str | Path,
    *,
    max_rank: int = DEFAULT_MAX_RANK,
    title: str | None = None,
    intervals: Any = None,
) -> Path:
    """Draw a cumulative matching characteristic curve and save it as an image.

    Args:
        cmc: ``(R,)`` fractions in ``[0, 1]``, ``cmc[k - 1]`` being the share of queries with a
            correct match within the first ``k`` results; or a mapping of names to such arrays,
            drawn as one labelled line each (for comparing models or checkpoints).
        path: Where to write the figure (PNG by its suffix); parent folders are created.
        max_rank: Last rank drawn; each curve shows ranks ``1..min(max_rank, R)``.
        title: Figure title; None draws "CMC".
        intervals: Confidence bands drawn around the curves: ``(low, high)`` arrays of the
            curve's length (e.g. ``plp_eval.bootstrap(...).curves["cmc"]``), or a mapping of
            curve names to such pairs (curves without one get no band).

    Returns:
        The path written.

    Raises:
        PlpVizError: If a curve is empty, not 1-D, or holds values outside ``[0, 1]``, if the
            mapping is empty, if ``max_rank < 1``, or if a band does not fit its curve.
    """
    curves = _cmc_curves(cmc, max_rank)
    bands = _bands(intervals, curves)
    figure, axis = _plots.pyplot().subplots(figsize=(6.0, 4.5))
    longest = 1
    for name, values in curves.items():
        ranks = np.arange(1, len(values) + 1)
        longest = max(longest, len(values))
        label = f"{name + ': ' if name else ''}rank-1 {values[0]:.1%}"
        if name in bands:
            low, high = bands[name]
            label += f" [{low[0]:.1%}, {high[0]:.1%}]"
        (line,) = axis.plot(
            ranks, values, marker="o" if len(values) <= 20 else None, markersize=3, label=label
        )
        if name in bands:
            axis.fill_between(ranks, *bands[name], color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_xlim(1, max(longest, 2))
    axis.set_ylim(0.0, 1.0)
    axis.set_xlabel("rank")
    axis.set_ylabel("matching rate")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title if title is not None else "CMC")
    return _plots._save(figure, path)
