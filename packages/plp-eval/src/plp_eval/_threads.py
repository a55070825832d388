"""The process's thread pools (BLAS, OpenMP), looked up once."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["thread_controller"]


@functools.cache
def thread_controller() -> Any:
    """Return threadpoolctl's controller of the loaded BLAS and OpenMP libraries (cached).

    Looking the libraries up takes milliseconds; limiting them (``.limit(limits=1)``) keeps
    memory-bound numpy work from spinning threads on a busy machine.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
