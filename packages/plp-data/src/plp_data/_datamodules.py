"""The datamodule registry: ``build_datamodule(name, **kwargs)`` and ``available_datamodules()``."""

from __future__ import annotations

from typing import Any

from plp_data._base import PlpDataModule
from plp_data._benchmarks import (
    Cars196DataModule,
    Cub200DataModule,
    InShopDataModule,
    StanfordOnlineProductsDataModule,
)
from plp_data._digits import DigitsDataModule
from plp_data._folders import ImageFolderDataModule, Market1501DataModule
from plp_data._registry import DATAMODULES
from plp_data._torchvision_sets import (
    Cifar10DataModule,
    Cifar100DataModule,
    FashionMnistDataModule,
    KmnistDataModule,
    MnistDataModule,
)

__all__ = ["DATAMODULES", "available_datamodules", "build_datamodule", "register_datamodule"]

for _name, _cls in {
    "digits": DigitsDataModule,
    "mnist": MnistDataModule,
    "fashion_mnist": FashionMnistDataModule,
    "kmnist": KmnistDataModule,
    "cifar10": Cifar10DataModule,
    "cifar100": Cifar100DataModule,
    "image_folder": ImageFolderDataModule,
    "market1501": Market1501DataModule,
    "cub200": Cub200DataModule,
    "cars196": Cars196DataModule,
    "sop": StanfordOnlineProductsDataModule,
    "inshop": InShopDataModule,
}.items():
    DATAMODULES.register(_name)(_cls)


def register_datamodule(name: str) -> Any:
    """Return a class decorator that registers a datamodule under ``name``."""
    return DATAMODULES.register(name)


def build_datamodule(name: str, **kwargs: Any) -> PlpDataModule:
    """Return the datamodule registered as ``name``, built with ``kwargs``."""
    return DATAMODULES.build(name, **kwargs)


def available_datamodules() -> list[str]:
    """Return the names of the registered datamodules."""
    return DATAMODULES.available()
