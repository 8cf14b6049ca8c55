"""Ctrl-C as a request: long runs (training, search) finish the unit of work in progress, write
their state, and stop; a second Ctrl-C aborts at once."""
from __future__ import annotations

import signal
import sys


class StopFlag:
    """Within ``with``, SIGINT/SIGTERM set ``.set`` instead of raising; the loop checks it between
    units of work (``unit`` names them in the message)."""

    def __init__(self, unit: str = "step"):
        self.unit, self.set, self.old = unit, False, {}

    def __enter__(self):
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: signals stay as they were
            self.old = {}
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        print(f"\nstopping after this {self.unit}; Ctrl-C again to abort", file=sys.stderr)

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
