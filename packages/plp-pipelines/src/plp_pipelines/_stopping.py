"""SIGTERM and Ctrl-C during a pipeline: one error that says what was stopped and what next.

Python's default for SIGTERM ends the process on the spot (no ``finally`` runs, nothing is
said); Ctrl-C raises ``KeyboardInterrupt`` wherever the program happens to be. Inside
:func:`stop_on_signals` both become a :class:`StoppedError` raised where the program is, so
``finally`` blocks clean up (an evaluation's staging folder) and the command line prints one
line and exits 143 or 130.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from plp_pipelines._errors import StoppedError

__all__ = ["EXIT_CODES", "signals_held", "stop_on_signals"]

#: How the command line exits when a signal stopped it: 128 + the signal's number.
EXIT_CODES = {"SIGTERM": 128 + signal.SIGTERM, "Ctrl-C": 128 + signal.SIGINT}


class _Signalled(BaseException):
    """Raised by the SIGTERM handler: a BaseException, so no ``except Exception`` swallows it."""


@contextmanager
def stop_on_signals(message: Callable[[str], str]) -> Iterator[None]:
    """Turn SIGTERM and Ctrl-C inside the block into ``StoppedError(message(<what>))``.

    Args:
        message: Returns the error's text for ``"SIGTERM"`` or ``"Ctrl-C"``: what was stopped,
            what is kept, the command that finishes the job.

    Outside the main thread (where Python cannot set signal handlers) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Signalled

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except _Signalled:
        raise StoppedError(message("SIGTERM"), EXIT_CODES["SIGTERM"]) from None
    except KeyboardInterrupt:
        raise StoppedError(message("Ctrl-C"), EXIT_CODES["Ctrl-C"]) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM and Ctrl-C back during the block; they arrive (and stop) right after it.

    For steps that must not be cut in the middle, such as moving an evaluation's results into
    place. A signal that comes meanwhile is recorded and raised again once the handlers in
    place before the block are back. Outside the main thread the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {held: signal.signal(held, record) for held in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
