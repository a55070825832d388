"""The one registry every plp package uses (stdlib only): names, arguments, bounds, metadata."""

import math
from typing import Annotated, Any

import pytest

from plp_core import PlpError, PositiveFloat, PositiveInt, Range, Registry, check_choice


class _Error(Exception):
    pass


def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry("widget", error=_Error, filled=("size",))

    @registry.register("box")
    class Box:
        def __init__(
            self,
            size: int,
            lr: PositiveFloat = 0.1,
            fraction: Annotated[float, Range(gt=0, lt=1)] = 0.5,
            count: PositiveInt | None = None,
        ) -> None:
            self.size, self.lr, self.fraction, self.count = size, lr, fraction, count

    @registry.register("free")
    def free(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    return registry


def test_build_available_and_duplicates():
    registry = _registry()
    assert registry.available() == ["box", "free"]
    assert "box" in registry and "crate" not in registry
    box = registry.build("box", size=3, lr=0.5)
    assert (box.size, box.lr, box.fraction) == (3, 0.5, 0.5)
    with pytest.raises(_Error, match="widget 'box' is already registered"):
        registry.register("box")(dict)
    with pytest.raises(_Error, match=r"^unknown widget 'bx'; available: box, free \(did you mean"):
        registry.build("bx")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"lr": -0.1}, r"widget 'box': lr = -0.1: must be > 0 and finite"),
        ({"lr": math.nan}, r"lr = nan: must be > 0 and finite"),
        ({"lr": math.inf}, r"lr = inf: must be > 0 and finite"),
        ({"fraction": 1.0}, r"fraction = 1.0: must be > 0 and < 1 and finite"),
        ({"count": 0}, r"count = 0: must be > 0$"),
        ({"lrr": 1.0}, r"takes no argument 'lrr' \(did you mean 'lr'\?\); it takes: lr, fraction"),
    ],
)
def test_bad_arguments_are_one_line_naming_them(args, message):
    with pytest.raises(_Error, match=message):
        _registry().build("box", size=1, **args)


def test_ranges_allow_none_and_the_bounds_themselves():
    registry = _registry()
    assert registry.build("box", size=1, count=None).count is None
    assert Range(ge=0).check(0) == 0
    with pytest.raises(ValueError, match=r"must be >= 0$"):
        Range(ge=0).check(-1)


def test_parameters_leave_out_filled_arguments_and_keep_bounds():
    parameters, takes_kwargs = _registry().parameters("box")
    assert list(parameters) == ["lr", "fraction", "count"] and not takes_kwargs
    assert parameters["lr"].ranges() == [Range(gt=0)]
    # found inside ``X | None``; a size also has the cap of 32-bit indices
    assert parameters["count"].ranges() == [Range(gt=0), Range(le=2**31 - 1)]
    assert not parameters["lr"].required and parameters["lr"].default == 0.1
    free, takes_kwargs = _registry().parameters("free")
    assert free == {} and takes_kwargs
    assert _registry().build("free", anything=1) == {"anything": 1}


def test_range_validates_inside_pydantic_too():
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(PositiveFloat)
    assert adapter.validate_python(2.0) == 2.0
    with pytest.raises(pydantic.ValidationError, match="must be > 0 and finite"):
        adapter.validate_python(-1.0)


def test_parameters_follow_kwargs_up_the_class_hierarchy():
    registry: Registry[Any] = Registry("module", error=_Error)

    class Base:
        def __init__(self, batch_size: PositiveInt = 64, seed: int = 0) -> None:
            self.batch_size, self.seed = batch_size, seed

    @registry.register("child")
    class Child(Base):
        def __init__(self, test_fraction: float = 0.2, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.test_fraction = test_fraction

    parameters, takes_kwargs = registry.parameters("child")
    assert list(parameters) == ["test_fraction", "batch_size", "seed"] and not takes_kwargs
    with pytest.raises(_Error, match=r"module 'child': batch_size = 0: must be > 0$"):
        registry.build("child", batch_size=0)
    with pytest.raises(_Error, match=r"takes no argument 'batch'"):
        registry.build("child", batch=3)
    assert registry.build("child", batch_size=3, test_fraction=0.5).batch_size == 3


def test_metadata_lives_on_the_entry_and_filters_names():
    registry: Registry[Any] = Registry("method", error=_Error)
    registry.register("plain")(dict)
    registry.register("layered", needs_layer=True, experimental=True)(dict)
    assert registry.entry("layered").metadata["needs_layer"] is True
    assert registry.entry("plain").metadata == {}
    assert registry.available(needs_layer=True) == ["layered"]
    assert registry.is_experimental("layered") and not registry.is_experimental("plain")
    with pytest.raises(TypeError):
        registry.entry("layered").metadata["needs_layer"] = False  # read-only


def test_a_prefix_serves_a_family_of_names_through_the_same_checks():
    registry: Registry[Any] = Registry("backbone", error=_Error, filled=("channels",))

    class Hub:
        def __init__(self, model: str, channels: int = 3, pretrained: bool = False) -> None:
            self.model, self.channels, self.pretrained = model, channels, pretrained

    registry.register("small")(dict)
    registry.register_prefix("hub:", Hub, hint="any hub model as 'hub:<model>'")
    built = registry.build("hub:net", channels=1, pretrained=True)
    assert (built.model, built.channels, built.pretrained) == ("net", 1, True)
    assert "hub:net" in registry and "hub:" not in registry and "net" not in registry
    parameters, takes_kwargs = registry.parameters("hub:net")
    assert list(parameters) == ["pretrained"] and not takes_kwargs
    with pytest.raises(_Error, match=r"'hub:net' takes no argument 'pretrain' \(did you mean"):
        registry.build("hub:net", pretrain=True)
    with pytest.raises(
        _Error,
        match=r"^unknown backbone 'smal'; available: small \(did you mean "
        r"'small'\?\); or any hub model as 'hub:<model>'$",
    ):
        registry.build("smal")
    with pytest.raises(_Error, match="already registered"):
        registry.register("hub:x")(dict)


def test_the_default_error_is_the_root_and_choices_have_one_message():
    registry: Registry[Any] = Registry("widget")
    with pytest.raises(PlpError, match=r"^unknown widget 'x'; available: $"):
        registry.get("x")
    assert check_choice("cosine", ("euclidean", "cosine"), kind="distance") == "cosine"
    with pytest.raises(
        PlpError,
        match=r"^unknown distance 'cosin'; available: euclidean, cosine "
        r"\(did you mean 'cosine'\?\)$",
    ):
        check_choice("cosin", ("euclidean", "cosine"), kind="distance")
    with pytest.raises(ValueError, match=r"^--method 'map' is not a method; expected one of a, b$"):
        check_choice("map", ("a", "b"), kind="method", flag="--method", error=ValueError)


def test_doctests() -> None:
    import doctest

    from plp_core import _bounds, _choices, _errors, _files, _names, _registry

    for module in (_bounds, _choices, _errors, _files, _names, _registry):
        assert doctest.testmod(module).failed == 0
