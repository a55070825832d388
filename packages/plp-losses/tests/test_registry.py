"""The one registry every plp package uses (stdlib only): names, arguments, bounds."""

import inspect
import math
from typing import Annotated, Any

import pytest

import plp_losses
from plp_losses import PlpLossesError, PositiveFloat, PositiveInt, Range, Registry


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
    assert parameters["count"].ranges() == [Range(gt=0)]  # found inside ``X | None``
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


def test_every_loss_argument_bound_is_checked_before_construction():
    with pytest.raises(PlpLossesError, match=r"loss 'ntxent': temperature = 0: must be > 0"):
        plp_losses.build("ntxent", temperature=0)
    with pytest.raises(PlpLossesError, match=r"label_smoothing = 1.0: must be >= 0 and < 1"):
        plp_losses.build("cross_entropy", label_smoothing=1.0)


@pytest.mark.parametrize("name", plp_losses.available())
def test_every_loss_signature_resolves(name):
    parameters, _ = plp_losses.LOSSES.parameters(name)
    signature = inspect.signature(plp_losses.registered(name))
    assert list(parameters) == list(signature.parameters)
    assert all(p.annotation is not Any for p in parameters.values())


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
