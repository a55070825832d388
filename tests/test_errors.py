"""One error root: every exception plp raises for bad input derives from plp_core.PlpError."""

from __future__ import annotations

import ast
import builtins
import importlib
from pathlib import Path

import pytest

from plp_core import PlpError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name.replace("-", "_") for p in (ROOT / "packages").glob("plp-*"))

# Exceptions used as internal signals: caught inside their package, never shown to a user.
# plp_eval: the numpy path falls back to the exact kernel; plp_pipelines: SIGTERM's handler
# raises _Signalled, turned into StoppedError (a PlpError) where the pipeline was.
INTERNAL = {"TooManyTiesError", "_Signalled"}
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_error_derives_from_the_root(package: str) -> None:
    module = importlib.import_module(package)
    exported = [getattr(module, name) for name in module.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert errors, f"{package} exports no error class"
    not_rooted = [e.__name__ for e in errors if not issubclass(e, PlpError)]
    assert not not_rooted, f"{package}: {not_rooted} do not derive from plp_core.PlpError"


def test_no_error_class_stands_on_builtin_exceptions_alone() -> None:
    """An exception class whose bases are all builtins is outside the root (unless internal)."""
    offenders = []
    for path in sorted((ROOT / "packages").glob("plp-*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name in INTERNAL | {"PlpError"}:
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if bases and bases <= BUILTIN_EXCEPTIONS:
                offenders.append(f"{path.relative_to(ROOT)}: {node.name}({', '.join(bases)})")
    assert not offenders, offenders


def test_tasks_catch_the_root_only() -> None:
    """tasks.py turns bad input into exit code 2 by catching PlpError, not by module names."""
    from plp_pipelines import StoppedError

    source = (ROOT / "tasks.py").read_text(encoding="utf-8")
    caught = {
        ast.unparse(handler.type)
        for handler in ast.walk(ast.parse(source))
        if isinstance(handler, ast.ExceptHandler) and handler.type is not None
    }
    assert caught == {"PlpError", "StoppedError"}, caught
    assert issubclass(StoppedError, PlpError)  # exit 143 or 130 instead of 2: still the root
    assert "__module__" not in source and "__name__" not in source
