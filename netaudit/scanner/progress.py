"""Progress on stderr, only when a person is watching (stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from netaudit.core.model import Endpoint
from netaudit.core.textsafe import terminal_safe


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.done_count = self.identified = 0
        self.interval = interval
        self.started = time.monotonic()
        self.last = 0.0

    def discovered(self, done: int) -> None:
        self.done_count += done
        self._draw()

    def fingerprinted(self, endpoint: Endpoint) -> None:
        self.identified += 1
        if self.enabled and endpoint.kind not in (None, "unknown"):
            self._line(f"found {endpoint.kind} at {endpoint.address}")
        self._draw(force=True)

    def update(self, done: int, identified: int) -> None:
        """Totals counted by other processes (scan --workers)."""
        self.done_count, self.identified = done, identified
        self._draw()

    def _line(self, text: str) -> None:
        self.stream.write("\r\033[K" + terminal_safe(text) + "\n")

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < self.interval):
            return
        self.last = now
        pct = 100 * self.done_count / self.total if self.total else 100
        self.stream.write(f"\r\033[Kscanning: {self.done_count}/{self.total} ports ({pct:.0f}%), "
                          f"{self.identified} open ports fingerprinted, {now - self.started:.1f}s")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
