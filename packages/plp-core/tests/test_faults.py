"""Bad numbers, unsafe names and failed writes: each refused in one line, whatever the bound."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Annotated, Any

import pytest

from plp_core import (
    MAX_COUNT,
    MAX_INT,
    MAX_NAME_LENGTH,
    PlpError,
    PositiveInt,
    Range,
    Registry,
    atomic_write,
    check_name,
    check_number,
    error_reason,
)


class _Error(PlpError):
    pass


def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry("widget", error=_Error)

    @registry.register("box")
    class Box:
        def __init__(
            self,
            weight: float = 1.0,
            betas: tuple[float, float] = (0.9, 0.99),
            size: PositiveInt = 3,
            seed: int = 0,
            limit: Annotated[float, Range(gt=0, finite=False)] = math.inf,
        ) -> None:
            self.weight, self.size, self.limit = weight, size, limit

    @registry.register("free")
    def free(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    return registry


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # unbounded floats: NaN and infinities pass every missing bound, so they are refused here
        ({"weight": math.nan}, r"^widget 'box': weight = nan: must be a number \(given NaN\)$"),
        ({"weight": -math.inf}, r"^widget 'box': weight = -inf: must be finite$"),
        ({"betas": [0.9, math.nan]}, r"betas = \[0\.9, nan\]: must be a number \(given NaN\)$"),
        # integers no torch or numpy integer holds
        ({"seed": 2**64}, r"seed = 18446744073709551616: must fit in a 64-bit integer"),
        ({"seed": -(2**70)}, r"must fit in a 64-bit integer \(within \+-9223372036854775807\)$"),
        # sizes beyond what 32-bit indices hold
        ({"size": 2**40}, rf"size = {2**40}: must be <= 2147483647$"),
        ({"size": 2**80}, r"must fit in a 64-bit integer"),
        ({"size": 0}, r"size = 0: must be > 0$"),
        # finite=False lets infinities through, never NaN
        ({"limit": math.nan}, r"limit = nan: must be > 0$"),
    ],
)
def test_numbers_that_would_break_later_are_refused_by_the_registry(args, message):
    with pytest.raises(_Error, match=message):
        _registry().build("box", **args)


def test_free_arguments_are_checked_too_and_good_ones_pass():
    registry = _registry()
    with pytest.raises(_Error, match=r"^widget 'free': x = \{'y': nan\}: must be a number"):
        registry.build("free", x={"y": math.nan})
    assert registry.build("box", limit=math.inf, size=MAX_COUNT, seed=MAX_INT).limit == math.inf
    assert registry.build("free", x=[1, 2.5, "a", None, True]) == {"x": [1, 2.5, "a", None, True]}


def test_range_refuses_nan_whatever_finite_says_and_huge_ints_whatever_the_bounds():
    with pytest.raises(ValueError, match="must be any number"):
        Range(finite=False).check(math.nan)
    assert Range(finite=False).check(math.inf) == math.inf
    with pytest.raises(ValueError, match="64-bit"):
        Range(ge=0).check(2**63)
    assert Range(ge=0).check(MAX_INT) == MAX_INT
    with pytest.raises(ValueError, match=r"must be >= 0 and < 4294967296$"):
        Range(ge=0, lt=2**32).check(2**32)
    assert check_number((1, [2.0, {"a": 3}])) == (1, [2.0, {"a": 3}])


def test_range_inside_pydantic_refuses_huge_ints_and_nan():
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(PositiveInt)
    with pytest.raises(pydantic.ValidationError, match="must be <= 2147483647"):
        adapter.validate_python(10**12)
    floats = pydantic.TypeAdapter(Annotated[float, Range(ge=0, le=1)])
    with pytest.raises(pydantic.ValidationError, match="must be >= 0 and <= 1 and finite"):
        floats.validate_python(math.nan)


@pytest.mark.parametrize(
    ("name", "culprit"),
    [
        ("a\nb", r"'\\n' is not allowed"),
        ("a b", r"' ' is not allowed"),
        ("a/b", r"'/' is not allowed"),
        ("..", r"it starts with '\.'"),
        (".hidden", r"it starts with '\.'"),
        ("-rf", r"it starts with '-'"),
        ("", r"it is empty"),
        ("a\x00", r"'\\x00' is not allowed"),
        ("x" * (MAX_NAME_LENGTH + 1), "at most 100 characters"),
    ],
)
def test_unsafe_names_are_refused_naming_the_character(name: str, culprit: str) -> None:
    with pytest.raises(ValueError, match=culprit) as caught:
        check_name(name)
    assert "\n" not in str(caught.value)


def test_safe_names_pass() -> None:
    for name in ("digits", "cifar_triplet-v2.1", "run+aug", "Übung3", "x" * MAX_NAME_LENGTH):
        assert check_name(name) == name


def test_atomic_write_replaces_whole_files_and_keeps_nothing_half_written(tmp_path: Path):
    path = tmp_path / "deep" / "out.bin"
    atomic_write(path, lambda file: file.write(b"first"))
    assert path.read_bytes() == b"first"

    def dying(file: Any) -> None:
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dying)
    assert path.read_bytes() == b"first" and sorted(os.listdir(path.parent)) == ["out.bin"]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
    ],
)
def test_a_failed_write_is_one_line_naming_the_path(tmp_path: Path, failure, reason):
    path = tmp_path / "out.bin"

    def full(file: Any) -> None:
        file.write(b"some")
        raise failure

    with pytest.raises(_Error, match=rf"^cannot write {path}: {reason}") as caught:
        atomic_write(path, full, error=_Error)
    assert "\n" not in str(caught.value) and os.listdir(tmp_path) == []


def test_a_path_through_a_file_is_one_line(tmp_path: Path):
    (tmp_path / "plots").write_text("a file where a folder should be")
    with pytest.raises(PlpError, match=r"cannot write .*plots/x\.png: (File exists|Not a dir)"):
        atomic_write(tmp_path / "plots" / "x.png", lambda file: file.write(b""))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            RuntimeError(
                "PytorchStreamReader failed reading zip archive: failed finding central "
                "directory. This is an internal miniz error. If you are seeing this error, "
                "there is a high likelihood that your checkpoint file is corrupted."
            ),
            "PytorchStreamReader failed reading zip archive: failed finding central directory",
        ),
        (OSError(22, "Invalid argument"), "[Errno 22] Invalid argument"),
        (EOFError(), "EOFError"),
        (ValueError("\n\n  second line only\nthird"), "second line only"),
        (ValueError("\x1b[1mbold\x1b[0m words. More."), "bold words"),
        (ValueError("version 2.6 of the file. Next"), "version 2.6 of the file"),
    ],
)
def test_error_reason_is_one_whole_sentence(error: BaseException, reason: str) -> None:
    assert error_reason(error) == reason


def test_a_long_reason_is_shortened_at_a_word() -> None:
    reason = error_reason(ValueError("word " * 100), limit=42)
    assert reason.endswith(" ...") and len(reason) <= 46 and "wor ..." not in reason
