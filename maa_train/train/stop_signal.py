"""SIGINT/SIGTERM during training: stop at the next step boundary, after a checkpoint.

Under torchrun a Ctrl-C arrives twice (from the terminal and forwarded by the agent); only
a later, deliberate second one aborts at once, without a checkpoint. Handlers are set on
the main thread only (Python allows no other).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager, nullcontext

log = logging.getLogger(__name__)


class StopSignal:
    def __init__(self):
        self.received: int | None = None  # the signal number, once one arrived
        self._time = 0.0

    def _on_signal(self, signum, _frame) -> None:
        if self.received is not None:
            if time.monotonic() - self._time > 2.0:
                raise KeyboardInterrupt
            return
        self.received, self._time = signum, time.monotonic()
        log.warning("%s received: stopping after this step with a checkpoint (again to abort now)",
                    signal.Signals(signum).name)

    def handlers(self):
        """Context in which SIGINT and SIGTERM ask for a stop (a no-op off the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return nullcontext()
        return _signal_handlers((signal.SIGINT, signal.SIGTERM), self._on_signal)


@contextmanager
def _signal_handlers(signums, handler):
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
