"""The datamodule registry: plp-losses' one :class:`~plp_losses.Registry`, raising PlpDataError."""

from __future__ import annotations

from typing import Any

from plp_data._errors import PlpDataError
from plp_losses import Registry

__all__ = ["DATAMODULES"]

DATAMODULES: Registry[Any] = Registry("datamodule", error=PlpDataError)
