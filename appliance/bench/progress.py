"""A one-line progress indicator on stderr, redrawn in place (at most ~10 times a second)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """`label  done/total  extra`, redrawn with `\\r` on a terminal; when stderr is not a terminal
    (CI logs, tests) only every ~10 % and the final line are written, so logs stay short."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_decile = -1

    def advance(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if self._tty:
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                self._draw(extra, end="")
        else:
            decile = min(10, self.done * 10 // self.total)
            if decile != self._last_decile and decile < 10:
                self._last_decile = decile
                self._draw(extra, end="\n")

    def close(self, extra: str = "") -> None:
        self._draw(extra, end="\n")

    def _draw(self, extra: str, end: str) -> None:
        pct = 100 * self.done // self.total
        line = f"{self.label}: {self.done}/{self.total} ({pct}%) {extra}".rstrip()
        prefix = "\r\x1b[2K" if self._tty else ""
        self.stream.write(prefix + line + end)
        self.stream.flush()
