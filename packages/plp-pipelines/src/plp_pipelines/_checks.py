"""What train (and resume) check before a run folder exists: data, trainer, model, protocol.

Each check loads or builds only what it must and raises :class:`ConfigError` with one line
naming the config key, so that a run folder is created only for a run that can train and be
evaluated: the data loads and its sampler builds, this machine has the accelerator, the model
fits in memory and takes the data's images (checked on PyTorch's ``meta`` device, nothing
allocated), the dataset serves ``[evaluate] protocol``, and ``ddp_spawn`` can pickle what it
sends to its processes.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import pytorch_lightning as pl
import torch

import plp_data
import plp_models
from plp_core import error_reason
from plp_pipelines._build import build_model
from plp_pipelines._compile import check_compile
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError
from plp_pipelines._protocols import DataFacts

__all__ = [
    "TRAINING_BYTES_PER_PARAMETER",
    "check_data",
    "check_model_fits",
    "check_protocol",
    "check_spawn",
    "check_trainer",
]


def check_data(datamodule: pl.LightningDataModule) -> None:
    """Load a plp datamodule's splits and build its sampler now, before any run directory exists.

    Missing files, empty splits and impossible P x K settings then fail before training starts
    (with plp-data's message) instead of inside Lightning's fit loop.
    """
    if isinstance(datamodule, plp_data.PlpDataModule):
        datamodule.setup("fit")
        datamodule.train_dataloader()  # builds (so checks) the configured sampler


def check_trainer(config: Config) -> None:
    """Raise ConfigError if this machine cannot run ``config.trainer`` as it stands.

    Checked: the accelerator exists here, the precision suits it, the devices are there, and
    ``compile`` has what torch.compile needs.
    """
    trainer, source = config.trainer, config.source
    if trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"{source}: trainer.accelerator: {trainer.accelerator!r} is not available on this "
            "machine (no CUDA device); use 'auto' or 'cpu'"
        )
    if trainer.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"{source}: trainer.accelerator: 'mps' is not available on this machine; "
            "use 'auto' or 'cpu'"
        )
    on_cpu = trainer.accelerator == "cpu" or (
        trainer.accelerator == "auto" and not torch.cuda.is_available()
    )
    if on_cpu and trainer.precision in ("16-mixed", "16-true"):
        raise ConfigError(
            f"{source}: trainer.precision: {trainer.precision!r} needs a GPU; on the CPU use "
            "'auto', '32-true', '64-true' or 'bf16-mixed'"
        )
    check_compile(config)
    if not on_cpu and torch.cuda.is_available() and trainer.devices > torch.cuda.device_count():
        raise ConfigError(
            f"{source}: trainer.devices: {trainer.devices} GPUs asked for, this machine has "
            f"{torch.cuda.device_count()}"
        )


# Bytes per parameter while training: weights, gradients and two Adam moments in float32.
TRAINING_BYTES_PER_PARAMETER = 16


def check_model_fits(
    config: Config, datamodule: Any, teacher: plp_models.PlpModel | None = None
) -> None:
    """Raise ConfigError if the config's model cannot be trained here or cannot take the data.

    The model is built on PyTorch's ``meta`` device first (shapes only, nothing allocated), so
    an absurd size is one line instead of an allocation error or a swapping machine, and a
    backbone that cannot take the data's images (a timm model made for 224 x 224 given 32 x 32)
    is one line instead of a traceback at the first batch.
    """
    try:
        with torch.device("meta"):
            meta_model = build_model(config, datamodule, teacher)
    except ConfigError:
        raise
    except Exception:
        return
    _check_input_size(config, meta_model, DataFacts.of(datamodule))
    parameters = sum(parameter.numel() for parameter in meta_model.parameters())
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    available, where = _memory()
    if needed > available:
        embedding = config.model.embedding_size
        raise ConfigError(
            f"{config.source}: model: {parameters:.3g} parameters need about "
            f"{needed / 2**30:.3g} GiB to train, more than {where}'s {available / 2**30:.3g} GiB; "
            f"check model.embedding_size (given: {embedding!r}) and model.backbone.args"
        )


def _memory() -> tuple[int, str]:
    """Return the memory of the device training will use, in bytes, and its name."""
    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[1], "the GPU"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"


def _check_input_size(config: Config, meta_model: torch.nn.Module, data: DataFacts) -> None:
    """Raise ConfigError if the model (on ``meta``) fails on a batch of the data's image size.

    An operation without a meta kernel proves nothing either way and is let through.
    """
    if data.in_channels is None or data.image_size is None or len(data.image_size) != 2:
        return
    height, width = data.image_size
    images = torch.zeros(2, data.in_channels, height, width, device="meta")
    try:
        with torch.no_grad():
            meta_model.eval()(images)
    except NotImplementedError:
        return
    except Exception as error:
        if "meta" in str(error).lower():
            return
        raise ConfigError(
            f"{config.source}: model.backbone: {config.model.backbone.name} cannot take the "
            f"data's {data.in_channels} x {height} x {width} images ({error_reason(error)}); "
            "set data.args.image_size to a size it takes, or choose another backbone"
        ) from None


def check_protocol(config: Config, datamodule: Any) -> None:
    """Raise ConfigError if the datamodule cannot serve ``[evaluate] protocol`` (set up first).

    ``query_gallery`` needs the dataset's own ``query`` and ``gallery`` splits; the others use
    ``trainval`` and ``test``, which every datamodule serves. A datamodule that does not list
    its splits (``eval_splits``) is taken at its word.
    """
    protocol = config.evaluate.protocol
    served = getattr(datamodule, "eval_splits", None)
    if protocol != "query_gallery" or not isinstance(served, list | tuple):
        return
    missing = [split for split in ("query", "gallery") if split not in served]
    if missing:
        raise ConfigError(
            f"{config.source}: evaluate.protocol: 'query_gallery' needs the dataset's own query "
            f"and gallery splits, and {type(datamodule).__name__} serves {', '.join(served)}; "
            "use 'trainval_test' or 'test_leave_one_out'"
        )


class _Discard(io.RawIOBase):
    """A file that takes every byte and keeps none (pickling to measure, not to store)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def check_spawn(config: Config, model: Any, datamodule: Any) -> None:
    """Raise ConfigError if ``ddp_spawn`` cannot pickle the model or the datamodule.

    ``ddp_spawn`` starts its processes by pickling what they train on; an object that cannot be
    pickled (a lambda, an open file, a generator) fails there, after the run folder exists.
    """
    if config.trainer.strategy != "ddp_spawn":
        return
    for what, obj in (("model", model), ("datamodule", datamodule)):
        try:
            pickle.Pickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        except Exception as error:  # PicklingError, TypeError, AttributeError ...
            raise ConfigError(
                f"{config.source}: trainer.strategy: 'ddp_spawn' pickles the {what} for each "
                f"process, and this {type(obj).__name__} cannot be pickled "
                f"({error_reason(error)}); use strategy = 'ddp'"
            ) from None
