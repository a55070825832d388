"""Typed bounds of numeric arguments, read by the registry and by pydantic alike."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

__all__ = [
    "MAX_COUNT",
    "MAX_INT",
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "Parameter",
    "PositiveFloat",
    "PositiveInt",
    "Range",
    "check_number",
]

MAX_INT = 2**63 - 1
"""The largest integer plp takes anywhere: what a 64-bit integer (torch, numpy, C) holds."""

MAX_COUNT = 2**31 - 1
"""The largest size, count or index plp takes (:data:`PositiveInt`): what 32-bit indices hold."""


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument, used as ``Annotated[float, Range(gt=0)]``.

    NaN lies in no range and is always refused; ``finite`` (the default) also refuses
    infinities. Integers beyond :data:`MAX_INT` are refused whatever the bounds (no torch, numpy
    or C integer holds them). The check runs in :meth:`plp_core.Registry.build` and, through
    ``__get_pydantic_core_schema__``, in any pydantic model (pydantic is imported only when
    pydantic asks, so plp-core keeps to the standard library).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    finite: bool = True

    def describe(self, integer: bool = False) -> str:
        """Return the allowed values in words, e.g. ``'> 0 and finite'`` (``'> 0'`` for ints)."""
        parts = [
            f"{symbol} {_number(bound)}"
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
        integer = isinstance(value, int)
        ok = integer or not (math.isnan(value) or (self.finite and math.isinf(value)))
        ok = ok and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
        ok = ok and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le)
        if not ok:
            raise ValueError(f"must be {self.describe(integer=integer)}")
        check_number(value, finite=self.finite)
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


def _number(bound: float) -> str:
    """Return a bound as written: integers exactly (``2147483647``), others with ``%g``."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def check_number(value: Any, *, finite: bool = True) -> Any:
    """Return ``value`` unless it holds NaN, an infinity or an integer beyond :data:`MAX_INT`.

    Looks inside lists, tuples and dicts, so ``betas = [nan, 0.9]`` is refused as well. This is
    what every number a config gives must satisfy, bounded or not (``finite=False`` lets
    infinities through, never NaN).

    >>> check_number([0.9, 0.999])
    [0.9, 0.999]
    >>> check_number(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: must be a number (given NaN)

    Raises:
        ValueError: Saying what the value must be.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("must be a number (given NaN)")
        if finite and math.isinf(value):
            raise ValueError("must be finite")
    elif isinstance(value, int) and abs(value) > MAX_INT:
        raise ValueError(f"must fit in a 64-bit integer (within +-{MAX_INT})")
    elif isinstance(value, list | tuple):
        for item in value:
            check_number(item, finite=finite)
    elif isinstance(value, dict):
        for item in value.values():
            check_number(item, finite=finite)
    return value


# Two ranges, so that each message names the bound a value misses (0: '> 0', 2**40: '<= ...').
PositiveInt = Annotated[int, Range(gt=0), Range(le=MAX_COUNT)]
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
