"""plp-data: Lightning datamodules with fixed splits, default transforms and batch samplers."""

from plp_data._base import PlpDataModule, Splits
from plp_data._datamodules import available_datamodules, build_datamodule, register_datamodule
from plp_data._datasets import TensorImageDataset
from plp_data._digits import DigitsDataModule
from plp_data._errors import DataNotFoundError, PlpDataError

__all__ = [
    # registry
    "available_datamodules",
    "build_datamodule",
    "register_datamodule",
    # datamodules
    "DigitsDataModule",
    "PlpDataModule",
    "Splits",
    "TensorImageDataset",
    # errors
    "DataNotFoundError",
    "PlpDataError",
]
