"""Typed bounds of numeric arguments, read by the registry and by pydantic alike."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

__all__ = [
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "Parameter",
    "PositiveFloat",
    "PositiveInt",
    "Range",
]


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument, used as ``Annotated[float, Range(gt=0)]``.

    ``finite`` (the default) also refuses NaN and infinities. The check runs in
    :meth:`plp_core.Registry.build` and, through ``__get_pydantic_core_schema__``, in any pydantic
    model (pydantic is imported only when pydantic asks, so plp-core keeps to the standard
    library).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    finite: bool = True

    def describe(self, integer: bool = False) -> str:
        """Return the allowed values in words, e.g. ``'> 0 and finite'`` (``'> 0'`` for ints)."""
        parts = [
            f"{symbol} {bound:g}"
            for symbol, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
            if bound is not None
        ]
        if self.finite and not integer:
            parts.append("finite")
        return " and ".join(parts) or "any number"

    def check(self, value: Any) -> Any:
        """Return ``value`` if it lies in the range; else raise ValueError saying what is."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value  # the type is the type checker's business, not the range's
        ok = not (self.finite and not math.isfinite(value))
        ok = ok and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
        ok = ok and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le)
        if not ok:
            raise ValueError(f"must be {self.describe(integer=isinstance(value, int))}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        """Return the schema of ``source`` followed by this range check (pydantic's protocol).

        The schema is pydantic-core's plain-dict form of ``no_info_after_validator_function``,
        written out so that plp-core imports nothing of pydantic's.
        """
        return {
            "type": "function-after",
            "function": {"type": "no-info", "function": self.check},
            "schema": handler(source),
        }


PositiveInt = Annotated[int, Range(gt=0)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(gt=0, lt=1)]


@dataclass(frozen=True)
class Parameter:
    """One argument a config may give a component.

    Attributes:
        name: The keyword.
        annotation: Its type hint (``Any`` when it has none or it cannot be resolved).
        default: Its default, or ``inspect.Parameter.empty`` when it is required.
    """

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        """Whether the argument has no default."""
        return self.default is inspect.Parameter.empty

    def ranges(self) -> list[Range]:
        """Return the :class:`Range` constraints of the annotation (also inside ``X | None``)."""
        found: list[Range] = []
        stack = [self.annotation]
        while stack:
            hint = stack.pop()
            if typing.get_origin(hint) is Annotated:
                found.extend(m for m in hint.__metadata__ if isinstance(m, Range))
                stack.append(typing.get_args(hint)[0])
            else:
                stack.extend(a for a in typing.get_args(hint) if a is not type(None))
        return found
