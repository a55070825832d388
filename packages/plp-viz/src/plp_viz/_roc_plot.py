"""The verification ROC on a log false-match-rate axis, its operating points marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plp_viz import _plots
from plp_viz._errors import PlpVizError

__all__ = ["plot_roc"]


def plot_roc(
    false_match_rate: Sequence[float] | np.ndarray,
    true_positive_rate: Sequence[float] | np.ndarray,
    path: str | Path,
    *,
    operating_points: Sequence[tuple[float, float, float]] = (),
    title: str | None = None,
) -> Path:
    """Draw a ROC (TPR against FMR, FMR on a log axis) and save it as an image.

    Args:
        false_match_rate: FMR of the ROC points, ascending, in ``[0, 1]``.
        true_positive_rate: TPR of the same points, in ``[0, 1]``.
        path: Where to write the figure (PNG by its suffix); parent folders are created.
        operating_points: ``(target FMR, FMR, TPR)`` of points to mark and label (e.g.
            :attr:`plp_eval.VerificationMetrics.operating_points`).
        title: Figure title; None draws "ROC".

    Returns:
        The path written.

    Raises:
        PlpVizError: Mismatched or empty arrays, or rates outside ``[0, 1]``.
    """
    fmr = np.asarray(false_match_rate, dtype=np.float64)
    tpr = np.asarray(true_positive_rate, dtype=np.float64)
    if fmr.ndim != 1 or fmr.shape != tpr.shape or len(fmr) == 0:
        raise PlpVizError(
            f"false_match_rate and true_positive_rate must be 1-D of one length, got shapes "
            f"{fmr.shape} and {tpr.shape}"
        )
    for name, rates in (("false_match_rate", fmr), ("true_positive_rate", tpr)):
        if not np.isfinite(rates).all() or rates.min() < 0 or rates.max() > 1 + 1e-12:
            raise PlpVizError(f"{name} must hold rates in [0, 1]")
    shown = fmr > 0  # a log axis has no 0: the point (0, 0) is left out
    figure, axis = _plots.pyplot().subplots(figsize=(6.0, 4.5))
    axis.plot(fmr[shown], tpr[shown], drawstyle="steps-post", label="ROC")
    for target, rate, true_rate in operating_points:
        axis.plot([max(rate, 1e-12)], [true_rate], marker="o", markersize=5, color="tab:red")
        axis.annotate(
            f"FMR≤{target:g}: TPR {true_rate:.3f}",
            (max(rate, 1e-12), true_rate),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=7,
        )
    low = fmr[shown].min() if shown.any() else 1e-4
    axis.set_xscale("log")
    axis.set_xlim(max(low, 1e-9) / 1.5, 1.0)
    axis.set_ylim(0.0, 1.02)
    axis.set_xlabel("false match rate (log)")
    axis.set_ylabel("true positive rate")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title if title is not None else "ROC")
    return _plots._save(figure, path)
