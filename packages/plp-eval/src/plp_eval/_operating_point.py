"""An operating point of a ROC, and the most false accepts a target rate allows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["OperatingPoint", "allowed"]


@dataclass(frozen=True)
class OperatingPoint:
    """One operating point of a ROC.

    Attributes:
        target: The false rate asked for (FMR, or FAR for open-set identification).
        threshold: Accept when ``distance <= threshold`` (``-inf``: accept nothing).
        false_rate: The false rate reached there (``<= target``).
        true_rate: The true rate there (TPR; DIR for open-set identification).
    """

    target: float
    threshold: float
    false_rate: float
    true_rate: float

    def to_dict(self, false: str = "FMR", true: str = "TPR") -> dict[str, Any]:
        """Return the point as a JSON-serialisable dict (``-inf`` threshold as None)."""
        return {
            f"target_{false}": self.target,
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            false: self.false_rate,
            true: self.true_rate,
        }


def allowed(target: float, total: int) -> int:
    """The most false accepts ``k`` with ``k / total <= target`` (0: the target is too small)."""
    k = math.floor(target * total)
    while k + 1 <= total and (k + 1) / total <= target:
        k += 1
    while k > 0 and k / total > target:
        k -= 1
    return k
