"""Evaluation methods by name: what each computes, draws and reports.

A method is a subclass of :class:`EvaluationMethod` registered in :data:`METHODS` with
``@METHODS.register(name, order=..., default=...)``; it lives in one module of this package,
which :func:`available_methods` imports. Adding a method is adding that one file: the config
schema, ``invoke evaluate --method``, ``metrics.json``, the printed table and ``report.md`` all
read the registry.

Method modules import nothing heavy at import time (configs are validated without torch): they
import torch, plp-eval and plp-viz inside :meth:`EvaluationMethod.compute` and
:meth:`EvaluationMethod.draw`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from plp_core import Registry, check_choice
from plp_pipelines._errors import ConfigError

if TYPE_CHECKING:
    from plp_pipelines._config import Config
    from plp_pipelines._features import SplitFeatures
    from plp_pipelines._protocols import DataFacts, SplitDataModule

__all__ = [
    "METHODS",
    "EvaluationContext",
    "EvaluationMethod",
    "available_methods",
    "build_method",
    "check_methods",
    "default_methods",
    "junk_keys",
    "query_gallery_splits",
]

METHODS: Registry[EvaluationMethod] = Registry("evaluation method", error=ConfigError)


def query_gallery_splits(protocol: str) -> tuple[str, str]:
    """Return the (query, gallery) splits of a protocol.

    >>> query_gallery_splits("trainval_test"), query_gallery_splits("test_leave_one_out")
    (('test', 'trainval'), ('test', 'test'))
    """
    return {"query_gallery": ("query", "gallery"), "test_leave_one_out": ("test", "test")}.get(
        protocol, ("test", "trainval")
    )


def junk_keys(query: SplitFeatures, gallery: SplitFeatures) -> tuple[Any, Any]:
    """Return the junk rule's per-item keys of two splits' features (:func:`plp_eval.junk_keys`).

    Passed as the cameras of a plp-eval function, they leave out of a query's ranking the
    gallery items of its label and camera, or of its group (a dataset CSV's sequence).
    """
    import plp_eval

    with_cameras = query.cameras is not None and gallery.cameras is not None
    with_groups = query.groups is not None and gallery.groups is not None
    return plp_eval.junk_keys(
        query.labels,
        gallery.labels,
        query.cameras if with_cameras else None,
        gallery.cameras if with_cameras else None,
        query.groups if with_groups else None,
        gallery.groups if with_groups else None,
    )


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a method may read: the run's config, the features, the data, the device.

    Attributes:
        config: The run's config.
        features: The features of every embedded split, by split name.
        datamodule: The datamodule (its loaders give the images plots show).
        data: What is known of the datamodule (class names, ...).
        device: The torch device to rank on.
        distributed: Whether torch.distributed is running (every rank takes part).
        checkpoint: The checkpoint evaluated.
    """

    config: Config
    features: Mapping[str, SplitFeatures]
    datamodule: SplitDataModule
    data: DataFacts
    device: Any
    distributed: bool
    checkpoint: Path

    @property
    def query_split(self) -> str:
        """The split whose images query the gallery under the run's protocol."""
        return query_gallery_splits(self.config.evaluate.protocol)[0]

    @property
    def gallery_split(self) -> str:
        """The split ranked for each query under the run's protocol."""
        return query_gallery_splits(self.config.evaluate.protocol)[1]


class EvaluationMethod:
    """One evaluation method; a new instance evaluates one checkpoint.

    Attributes:
        name: The registered name (filled in by :func:`build_method`).
        sections: The ``metrics.json`` keys it writes (default: its registered name).
        plots: The names of the plots it draws (``metrics.json`` ``plots`` keys), so that
            results of a method not recomputed are dropped together with their plots.
        every_rank: Computed on every torch.distributed rank (each ranks a share), not rank 0
            only.
        headline: ``(section, key, label)`` of the numbers printed and shown first.
    """

    name: str = ""
    sections: tuple[str, ...] = ()
    plots: ClassVar[tuple[str, ...]] = ()
    every_rank: ClassVar[bool] = False
    headline: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return the method's ``metrics.json`` sections (JSON values only)."""
        raise NotImplementedError

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Draw the method's plots to ``plot_path(file_name)``; return name -> path drawn."""
        del context, plot_path
        return {}

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the Markdown lines of the method's own ``report.md`` section (none here)."""
        del metrics
        return []


@functools.cache
def _load() -> None:
    """Import every method module of this package once (each registers its methods)."""
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


def available_methods(*, default: bool | None = None) -> list[str]:
    """Return the method names in their report order (``order`` metadata); defaults only if asked.

    Args:
        default: True: the methods a config runs when it names none; None: all of them.
    """
    _load()
    names = METHODS.available() if default is None else METHODS.available(default=default)
    return sorted(names, key=lambda name: (METHODS.entry(name).metadata.get("order", 100), name))


def default_methods() -> list[str]:
    """Return the methods a config runs when its ``[evaluate] methods`` names none."""
    return available_methods(default=True)


def check_methods(
    names: list[str], *, flag: str | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """Return ``names`` if each is a method; else raise ConfigError naming the first that is not.

    Args:
        names: The names given.
        flag: The command-line flag that gave them, for the message.
        extra: Other accepted words (``all`` on the command line), listed after the methods.
    """
    choices = [*available_methods(), *extra]
    for name in names:
        check_choice(name, choices, kind="method", error=ConfigError, flag=flag)
    return names


def build_method(name: str) -> EvaluationMethod:
    """Return a new instance of the method ``name`` (its ``name`` and ``sections`` filled in)."""
    _load()
    method = METHODS.build(name)
    method.name = name
    if not method.sections:
        method.sections = (name,)
    return method
