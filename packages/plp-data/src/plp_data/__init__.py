"""plp-data: Lightning datamodules with fixed splits, default transforms and batch samplers."""

from plp_data._base import PlpDataModule, Splits
from plp_data._benchmarks import (
    Cars196DataModule,
    Cub200DataModule,
    InShopDataModule,
    StanfordOnlineProductsDataModule,
)
from plp_data._concat import ConcatDataModule
from plp_data._csv import CsvDataModule
from plp_data._csv_table import DatasetCsv, read_dataset_csv
from plp_data._datamodules import (
    DATAMODULES,
    available_datamodules,
    build_datamodule,
    register_datamodule,
)
from plp_data._datasets import (
    ArrayImageDataset,
    FileImageDataset,
    ImageReadError,
    TensorImageDataset,
)
from plp_data._digits import DigitsDataModule
from plp_data._errors import DataNotFoundError, PlpDataError
from plp_data._folders import (
    IMAGE_SUFFIXES,
    ImageFolderDataModule,
    Market1501DataModule,
    parse_market1501_name,
)
from plp_data._hard_sampler import EmbeddingSampler, HardClassBatchSampler
from plp_data._image import ImageDataModule
from plp_data._preprocessing import Preprocessing
from plp_data._sampler_registry import SAMPLERS, available_samplers, build_sampler
from plp_data._samplers import ClassBalancedSampler, PKBatchSampler, SamplerError, ShuffleSampler
from plp_data._torchvision_sets import (
    Cifar10DataModule,
    Cifar100DataModule,
    FashionMnistDataModule,
    KmnistDataModule,
    MnistDataModule,
)
from plp_data._transforms import TransformDefaults, build_transforms
from plp_data._validation import ValidationSplit, choose_queries, held_out_classes

__all__ = [
    # registries (plp_core.Registry)
    "DATAMODULES",
    "SAMPLERS",
    "available_datamodules",
    "build_datamodule",
    "register_datamodule",
    # datamodules
    "Cars196DataModule",
    "ConcatDataModule",
    "Cifar10DataModule",
    "Cifar100DataModule",
    "CsvDataModule",
    "Cub200DataModule",
    "DigitsDataModule",
    "FashionMnistDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "InShopDataModule",
    "KmnistDataModule",
    "Market1501DataModule",
    "MnistDataModule",
    "PlpDataModule",
    "Splits",
    "StanfordOnlineProductsDataModule",
    "parse_market1501_name",
    # a dataset of your own: open-metric-learning's CSV, folders of image files
    "IMAGE_SUFFIXES",
    "DatasetCsv",
    "read_dataset_csv",
    # datasets and transforms
    "ArrayImageDataset",
    "FileImageDataset",
    "Preprocessing",
    "TensorImageDataset",
    "TransformDefaults",
    "build_transforms",
    # validation splits
    "ValidationSplit",
    "choose_queries",
    "held_out_classes",
    # samplers
    "ClassBalancedSampler",
    "EmbeddingSampler",
    "HardClassBatchSampler",
    "PKBatchSampler",
    "ShuffleSampler",
    "available_samplers",
    "build_sampler",
    # errors
    "DataNotFoundError",
    "ImageReadError",
    "PlpDataError",
    "SamplerError",
]
