"""A metric over repeated runs (seeds): mean, spread and a t-interval of the mean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_core import CONFIDENCE
from plp_eval._errors import PlpEvalError

__all__ = ["RepeatSummary", "summarize_repeats"]


@dataclass(frozen=True)
class RepeatSummary:
    """One metric over n repeated runs (see :func:`summarize_repeats`).

    Attributes:
        values: The metric of each run, in run order.
        mean: Their mean.
        std: Their sample standard deviation (n - 1 in the denominator; NaN for one run).
        minimum: The smallest value.
        maximum: The largest value.
        interval: The t-interval of the mean, ``(low, high)``; None for one run.
        confidence: Its confidence level.
    """

    values: tuple[float, ...]
    mean: float
    std: float
    minimum: float
    maximum: float
    interval: tuple[float, float] | None
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict (NaN std as None)."""
        return {
            "values": list(self.values),
            "mean": self.mean,
            "std": None if np.isnan(self.std) else self.std,
            "min": self.minimum,
            "max": self.maximum,
            "t_interval": None if self.interval is None else list(self.interval),
            "confidence": self.confidence,
            "runs": len(self.values),
        }


def summarize_repeats(values: Sequence[float], confidence: float = CONFIDENCE) -> RepeatSummary:
    """Return the mean, standard deviation, range and t-interval of a metric over repeated runs.

    Definitions: ``std`` is the sample standard deviation ``s`` (n - 1 in the denominator);
    the interval is Student's ``mean -+ t((1 + confidence) / 2, n - 1) * s / sqrt(n)``.

    Assumptions: the runs are independent (e.g. differ only in their seed) and the metric
    varies about normally across them; the interval is about the mean over seeds of this
    recipe on this test set (the test set's own sampling is what the bootstrap interval of
    each run covers, not this one). With 2 or 3 runs it is wide (t = 12.7 for 2).

    Example:
        >>> summary = summarize_repeats([0.80, 0.82])
        >>> round(summary.mean, 4), round(summary.std, 4)  # s = 0.02 / sqrt(2)
        (0.81, 0.0141)
        >>> [round(bound, 4) for bound in summary.interval]  # 0.81 -+ 12.706 * 0.01
        [0.6829, 0.9371]

    Raises:
        PlpEvalError: No value, a value that is not finite, or a confidence outside (0, 1).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise PlpEvalError(f"values must be a non-empty list of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise PlpEvalError(f"values must be finite, got {array.tolist()}")
    if not 0.0 < confidence < 1.0:
        raise PlpEvalError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    mean = float(array.mean())
    interval = None
    std = float("nan")
    if len(array) > 1:
        from scipy import stats  # with scikit-learn; imported when needed

        std = float(array.std(ddof=1))
        half = float(stats.t.ppf((1 + confidence) / 2, len(array) - 1)) * std / np.sqrt(len(array))
        interval = (float(mean - half), float(mean + half))
    return RepeatSummary(
        values=tuple(float(v) for v in array),
        mean=mean,
        std=std,
        minimum=float(array.min()),
        maximum=float(array.max()),
        interval=interval,
        confidence=confidence,
    )
