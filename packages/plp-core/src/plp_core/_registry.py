"""One registry for every named component of plp: losses, miners, datamodules, backbones, ...

- ``@registry.register(name, **metadata)`` registers a class or factory (the one way in; the
  same call, ``registry.register(name)(factory)``, registers one that is defined elsewhere);
  registering a name twice raises. Metadata (``needs_layer=True``, ...) lives on the entry.
- ``registry.register_prefix("timm:", factory)`` serves a family of names (``timm:<model>``)
  through the same checks: the part after the prefix is the factory's first argument.
- ``registry.build(name, **args)`` creates one; unknown names list the valid ones, unknown
  arguments list the accepted ones, and :class:`~plp_core.Range` bounds are checked first.
- ``registry.parameters(name)`` gives the arguments a config may set, with their type hints
  (``typing.Annotated`` with :class:`~plp_core.Range` where the component has bounds), so a
  validator (plp-pipelines uses pydantic) can check a whole config before anything runs.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from plp_core._bounds import Parameter, check_number
from plp_core._choices import did_you_mean, unknown_choice
from plp_core._errors import PlpError

__all__ = ["Entry", "Registry"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component.

    Attributes:
        name: The name a config gives.
        factory: The class or function that builds it.
        experimental: Whether its definition may still change.
        metadata: What else the registry knows of it (e.g. ``needs_layer`` for attributions).
    """

    name: str
    factory: Callable[..., T]
    experimental: bool = False
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class _Prefix(Generic[T]):
    prefix: str
    factory: Callable[..., T]
    hint: str
    metadata: Mapping[str, Any]


class Registry(Generic[T]):
    """Maps names to the classes or factories of one kind of component.

    Args:
        kind: What it holds, as error messages name it ("loss", "backbone", ...).
        error: The exception class to raise (the owning package's base error).
        filled: Arguments the caller fills in itself (``num_classes``, ``in_channels``, ...):
            not part of what a config may set.
    """

    def __init__(
        self, kind: str, *, error: type[Exception] = PlpError, filled: Iterable[str] = ()
    ) -> None:
        self.kind = kind
        self.error = error
        self.filled = frozenset(filled)
        self._entries: dict[str, Entry[T]] = {}
        self._prefixes: dict[str, _Prefix[T]] = {}

    # ------------------------------------------------------------------ registering
    def register(
        self, name: str, *, experimental: bool = False, **metadata: Any
    ) -> Callable[[F], F]:
        """Return a decorator that registers a class or factory under ``name``.

        Args:
            name: The name configs use.
            experimental: Marks a component whose definition may still change.
            **metadata: Facts about the entry that callers read back with :meth:`entry`.

        Raises:
            Exception: (the registry's error class) ``name`` is registered already.
        """

        def decorator(factory: F) -> F:
            if name in self._entries or self._prefix_of(name) is not None:
                raise self.error(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(
                name, factory, experimental, MappingProxyType(dict(metadata))
            )
            return factory

        return decorator

    def register_prefix(
        self, prefix: str, factory: Callable[..., T], *, hint: str, **metadata: Any
    ) -> None:
        """Serve every name ``<prefix><x>`` by ``factory(x, **args)``, checked like the others.

        Args:
            prefix: E.g. ``"timm:"``.
            factory: Called with the rest of the name as its first argument.
            hint: How the unknown-name message names the family ("any timm model as ...").
            **metadata: As for :meth:`register`.
        """
        if prefix in self._prefixes:
            raise self.error(f"{self.kind} prefix {prefix!r} is already registered")
        self._prefixes[prefix] = _Prefix(prefix, factory, hint, MappingProxyType(dict(metadata)))

    def _prefix_of(self, name: object) -> _Prefix[T] | None:
        if not isinstance(name, str):
            return None
        for prefix, served in self._prefixes.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return served
        return None

    # ------------------------------------------------------------------ looking up
    def __contains__(self, name: object) -> bool:
        return name in self._entries or self._prefix_of(name) is not None

    def available(self, **metadata: Any) -> list[str]:
        """Return the registered names, sorted; those whose metadata match when given.

        >>> registry = Registry("widget")
        >>> _ = registry.register("a", big=True)(dict)
        >>> _ = registry.register("b")(dict)
        >>> registry.available(), registry.available(big=True)
        (['a', 'b'], ['a'])
        """
        return sorted(
            name
            for name, entry in self._entries.items()
            if all(entry.metadata.get(key) == value for key, value in metadata.items())
        )

    def unknown_message(self, name: str) -> str:
        """Return the one-line message for an unknown ``name``: a close match and all names."""
        message = unknown_choice(self.kind, name, self.available())
        hints = "".join(f"; or {served.hint}" for served in self._prefixes.values())
        return message + hints

    def entry(self, name: str) -> Entry[T]:
        """Return the entry registered as ``name`` (or served by a prefix).

        Raises:
            Exception: (the registry's error class) unknown name, listing the valid ones.
        """
        if name in self._entries:
            return self._entries[name]
        served = self._prefix_of(name)
        if served is None:
            raise self.error(self.unknown_message(name))
        rest = name[len(served.prefix) :]
        return Entry(name, functools.partial(served.factory, rest), False, served.metadata)

    def get(self, name: str) -> Callable[..., T]:
        """Return the class or factory registered as ``name``."""
        return self.entry(name).factory

    def is_experimental(self, name: str) -> bool:
        """Return whether ``name`` is marked experimental."""
        return self.entry(name).experimental

    # ------------------------------------------------------------------ arguments
    def parameters(self, name: str) -> tuple[dict[str, Parameter], bool]:
        """Return the arguments a config may give ``name`` and whether it takes ``**kwargs``.

        Type hints come from the constructor's (or factory's) annotations, resolved with
        ``include_extras`` so :class:`~plp_core.Range` bounds survive; the registry's ``filled``
        arguments, ``*args`` and arguments a prefix fills are left out.
        """
        factory: Any = self.get(name)
        bound = 0
        if isinstance(factory, functools.partial):
            bound, factory = len(factory.args), factory.func
        # A class whose __init__ passes **kwargs on to its parent takes the parent's arguments
        # too: walk the MRO until an __init__ without **kwargs.
        functions = (
            [c.__dict__["__init__"] for c in factory.__mro__ if "__init__" in c.__dict__]
            if inspect.isclass(factory)
            else [factory]
        )
        result: dict[str, Parameter] = {}
        takes_kwargs = False
        for position, function in enumerate(functions):
            try:
                hints = typing.get_type_hints(function, include_extras=True)
            except Exception:  # unresolvable forward references: fall back to no hints
                hints = {}
            skip = (function is not factory) + (bound if position == 0 else 0)
            takes_kwargs = False
            for index, parameter in enumerate(inspect.signature(function).parameters.values()):
                if index < skip:
                    continue  # self, and what a prefix fills
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

    def check(self, name: str, args: Mapping[str, Any]) -> None:
        """Raise the registry's error if ``args`` has an unknown key or a value out of range.

        Every number in ``args`` (inside lists and tables too) must be one: NaN, infinities
        (unless a bound says ``finite=False``) and integers beyond 64 bits are refused whether
        or not the argument has a :class:`~plp_core.Range`.
        """
        parameters, takes_kwargs = self.parameters(name)
        unknown = sorted(set(args) - set(parameters) - self.filled)
        if unknown and not takes_kwargs:
            raise self.error(
                f"{self.kind} {name!r} takes no argument {unknown[0]!r}"
                f"{did_you_mean(unknown[0], parameters)}; "
                f"it takes: {', '.join(parameters) or 'no arguments'}"
            )
        for key, value in args.items():
            bounds = parameters[key].ranges() if key in parameters else []
            try:
                for bound in bounds:
                    bound.check(value)
                # Bounded or not, no argument is NaN or a 64-bit overflow (nor, unless a bound
                # says finite=False, an infinity): each would pass here and break later.
                check_number(value, finite=all(bound.finite for bound in bounds))
            except ValueError as error:
                raise self.error(f"{self.kind} {name!r}: {key} = {value!r}: {error}") from None

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
