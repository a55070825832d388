"""A quiet console: Lightning's tips, device lines and known-harmless warnings kept out of sight.

The command-line tasks call :func:`quiet_console` unless ``--verbose`` is given; Python users who
want the same call it themselves. Errors and plp's own output are untouched.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["QUIET_WARNINGS", "quiet_console"]

# Lightning's loggers: "GPU available", "TPU available", "Tip: ... litlogger", "Loading
# `train_dataloader` to estimate ...", "`Trainer.fit` stopped ..." are INFO messages there.
# Importing Lightning sets its top-level logger back to INFO, so the loggers that emit them
# (children, which Lightning leaves alone) are set too.
LIGHTNING_LOGGERS = (
    "pytorch_lightning",
    "pytorch_lightning.utilities.rank_zero",
    "lightning",
    "lightning.pytorch",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric",
    "lightning_fabric.utilities.rank_zero",
)

# Warnings that say nothing a plp user can act on (plp chooses these settings on purpose).
QUIET_WARNINGS = (
    r".*does not have many workers.*",  # plp's device path serves batches without workers
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\).*",  # torch's pytree deprecation inside Lightning
    r".*It is recommended to use `self\.log\(.*sync_dist=True`.*",  # plp syncs what it compares
    r".*GPU available but not used.*",
    r".*Starting from v1\.9\.0, `tensorboardX`.*",
    r".*TensorBoard support.*",
)


def quiet_console() -> None:
    """Lower Lightning's loggers to warnings and ignore :data:`QUIET_WARNINGS`."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
