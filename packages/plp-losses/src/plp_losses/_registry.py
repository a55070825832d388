"""One registry for every named component of plp, losses and all the others.

Losses are registered here; datamodules, samplers, backbones, heads, optimizers, schedulers and
attribution algorithms in the other packages, each kind in a :class:`Registry` of its own.

It lives in plp-losses because that is the one package every other plp package may depend on
(plp-losses imports nothing but torch), and it uses the standard library only.

- ``@registry.register(name)`` registers a class or factory; registering a name twice raises.
- ``registry.build(name, **args)`` creates one; unknown names list the valid ones, unknown
  arguments list the accepted ones, and :class:`Range` constraints are checked first.
- ``registry.parameters(name)`` gives the arguments a config may set, with their type hints
  (``typing.Annotated`` with :class:`Range` where the component has bounds), so a validator
  (plp-pipelines uses pydantic) can check a whole config before anything runs.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from plp_losses._errors import PlpLossesError

__all__ = [
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "Parameter",
    "PositiveFloat",
    "PositiveInt",
    "Range",
    "Registry",
    "available",
    "build",
    "is_experimental",
    "register",
    "registered",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument, used as ``Annotated[float, Range(gt=0)]``.

    ``finite`` (the default) also refuses NaN and infinities. The check runs in
    :meth:`Registry.build` and, through ``__get_pydantic_core_schema__``, in any pydantic model
    (pydantic is imported only when pydantic asks, so plp-losses keeps to torch).
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
        written out so that plp-losses imports nothing of pydantic's.
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


class Registry(Generic[T]):
    """Maps names to the classes or factories of one kind of component.

    Args:
        kind: What it holds, as error messages name it ("loss", "backbone", ...).
        error: The exception class to raise (the owning package's base error).
        filled: Arguments the caller fills in itself (``num_classes``, ``in_channels``, ...):
            not part of what a config may set.
    """

    def __init__(
        self, kind: str, *, error: type[Exception] = PlpLossesError, filled: Iterable[str] = ()
    ) -> None:
        self.kind = kind
        self.error = error
        self.filled = frozenset(filled)
        self._factories: dict[str, Callable[..., T]] = {}
        self._experimental: set[str] = set()

    def register(self, name: str, *, experimental: bool = False) -> Callable[[F], F]:
        """Return a decorator that registers a class or factory under ``name``.

        ``experimental=True`` marks a component whose definition may still change.

        Raises:
            Exception: (the registry's error class) ``name`` is registered already.
        """

        def decorator(factory: F) -> F:
            if name in self._factories:
                raise self.error(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            if experimental:
                self._experimental.add(name)
            return factory

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def available(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._factories)

    def unknown_message(self, name: str) -> str:
        """Return the one-line message for an unknown ``name``: a close match and all names."""
        close = difflib.get_close_matches(str(name), self._factories, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}{hint}"

    def get(self, name: str) -> Callable[..., T]:
        """Return the class or factory registered as ``name``.

        Raises:
            Exception: (the registry's error class) unknown name, listing the valid ones.
        """
        if name not in self._factories:
            raise self.error(self.unknown_message(name))
        return self._factories[name]

    def is_experimental(self, name: str) -> bool:
        """Return whether ``name`` is marked experimental."""
        self.get(name)
        return name in self._experimental

    def parameters(self, name: str) -> tuple[dict[str, Parameter], bool]:
        """Return the arguments a config may give ``name`` and whether it takes ``**kwargs``.

        Type hints come from the constructor's (or factory's) annotations, resolved with
        ``include_extras`` so :class:`Range` bounds survive; the registry's ``filled``
        arguments and ``*args`` are left out.
        """
        factory = self.get(name)
        # A class whose __init__ passes **kwargs on to its parent takes the parent's arguments
        # too: walk the MRO until an __init__ without **kwargs.
        functions = (
            [c.__dict__["__init__"] for c in factory.__mro__ if "__init__" in c.__dict__]
            if inspect.isclass(factory)
            else [factory]
        )
        result: dict[str, Parameter] = {}
        takes_kwargs = False
        for function in functions:
            try:
                hints = typing.get_type_hints(function, include_extras=True)
            except Exception:  # unresolvable forward references: fall back to no hints
                hints = {}
            takes_kwargs = False
            for index, parameter in enumerate(inspect.signature(function).parameters.values()):
                if function is not factory and index == 0:
                    continue  # self
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    takes_kwargs = True
                elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                    continue
                elif parameter.name not in self.filled and parameter.name not in result:
                    annotation = hints.get(parameter.name, Any)
                    result[parameter.name] = Parameter(
                        parameter.name, annotation, parameter.default
                    )
            if not takes_kwargs:
                break
        return result, takes_kwargs

    def check(self, name: str, args: dict[str, Any]) -> None:
        """Raise the registry's error if ``args`` has an unknown key or a value out of range."""
        parameters, takes_kwargs = self.parameters(name)
        unknown = sorted(set(args) - set(parameters) - self.filled)
        if unknown and not takes_kwargs:
            close = difflib.get_close_matches(unknown[0], parameters, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(
                f"{self.kind} {name!r} takes no argument {unknown[0]!r}{hint}; "
                f"it takes: {', '.join(parameters) or 'no arguments'}"
            )
        for key, value in args.items():
            if key in parameters:
                for bound in parameters[key].ranges():
                    try:
                        bound.check(value)
                    except ValueError as error:
                        raise self.error(
                            f"{self.kind} {name!r}: {key} = {value!r}: {error}"
                        ) from None

    def build(self, name: str, /, **args: Any) -> T:
        """Return a new component ``name`` built with ``args`` (checked first).

        Raises:
            Exception: (the registry's error class) unknown name or argument, a value out of
                range, or arguments the constructor refuses.
        """
        factory = self.get(name)
        self.check(name, args)
        try:
            return factory(**args)
        except TypeError as error:
            raise self.error(f"{self.kind} {name!r}: {error}") from None


LOSSES: Registry[Any] = Registry("loss", filled=())


def register(name: str, *, experimental: bool = False) -> Callable[[F], F]:
    """Return a decorator that registers a loss class (or factory) under ``name``.

    ``experimental=True`` marks a loss whose definition or numerics may still change
    (see :func:`is_experimental`).

    Raises:
        PlpLossesError: ``name`` is registered already.
    """
    return LOSSES.register(name, experimental=experimental)


def build(name: str, **kwargs: Any) -> Any:
    """Return a new instance of the loss registered as ``name``, built with ``kwargs``.

    Raises:
        PlpLossesError: ``name`` is unknown (the message lists the valid names), or the
            arguments do not fit the loss.
    """
    return LOSSES.build(name, **kwargs)


def registered(name: str) -> Callable[..., Any]:
    """Return the class (or factory) registered as ``name``."""
    return LOSSES.get(name)


def available() -> list[str]:
    """Return the names of the registered losses, sorted."""
    return LOSSES.available()


def is_experimental(name: str) -> bool:
    """Return whether the loss registered as ``name`` is marked experimental."""
    return LOSSES.is_experimental(name)
