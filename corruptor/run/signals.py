"""SIGTERM as an exception in the driver, so a terminated build cleans up like Ctrl-C.

Python's default SIGTERM ends the process at once: no ``except``/``finally`` runs, so Ray
tasks already submitted keep running on the cluster after the driver is gone. Inside
``terminate_raises()`` a SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread instead, and the runner's cleanup cancels them.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM; a KeyboardInterrupt so every Ctrl-C path (cancel the
    shards in flight, "interrupted; run again to resume", exit 130) handles it too."""


def _raise(signum, frame) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    # Signal handlers can only be set from the main thread; elsewhere, leave things as they are.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
