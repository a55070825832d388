"""Lightning plumbing the train pipeline adds: atomic checkpoints, a stop on a non-finite loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from plp_pipelines._errors import TrainingDivergedError
from plp_pipelines._runs import atomic_write

__all__ = ["AtomicCheckpointIO", "RecordInterrupt", "StopOnNonFiniteLoss"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its folder, then renames it into place.

    A process killed while saving leaves the previous checkpoint intact instead of a truncated
    file under the checkpoint's name.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` through a temporary file and ``os.replace``."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_write(path, lambda file: _save(checkpoint, file))


class _Writes:
    """A file that remembers the OSError its ``write`` raised.

    torch's checkpoint writer turns a failed write into ``RuntimeError("... file write
    failed")``; the OSError under it (a full disk) is what :func:`atomic_write` reports in one
    line.
    """

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return int(self.file.write(data))
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def _save(checkpoint: dict[str, Any], file: Any) -> None:
    """Save ``checkpoint`` to ``file``; a failed write raises its OSError, not torch's text."""
    writes = _Writes(file)
    try:
        torch.save(checkpoint, writes)  # type: ignore[arg-type]
    except RuntimeError:
        if writes.error is not None:
            raise writes.error from None
        raise


class RecordInterrupt(pl.Callback):
    """Remembers the exception that ended ``fit``.

    Lightning answers Ctrl-C with ``sys.exit(1)`` after its own clean-up; the recorded
    ``KeyboardInterrupt`` tells the train pipeline that the exit was a Ctrl-C.
    """

    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Record ``exception``."""
        self.exception = exception


class StopOnNonFiniteLoss(pl.Callback):
    """Stops training with :class:`TrainingDivergedError` as soon as a training loss is NaN or inf.

    The checkpoints already written (the last good epoch) are kept; the run is not recorded as
    the newest.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Raise TrainingDivergedError if this batch's loss is not finite."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            return
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        kept = f"; the last good checkpoint is {last}" if last.is_file() else ""
        raise TrainingDivergedError(
            f"training diverged: the loss is {value} at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step} (batch {batch_idx}){kept}; lower the learning rate "
            "or set [trainer] gradient_clip_val"
        )
