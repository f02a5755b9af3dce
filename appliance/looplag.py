"""Event-loop lag: a task that asks to wake every `interval` and measures how late it woke.

A blocking call on the loop (a model run, a big file read) shows up here at once; the watchdog
stops petting systemd while the lag stays high, so a wedged loop gets the process restarted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

__all__ = ["LagMonitor"]


class LagMonitor:
    def __init__(
        self,
        interval: float = 0.05,
        window: int = 2000,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._observe = observe
        self.last = 0.0

    async def run(self) -> None:
        while True:
            expected = trio.current_time() + self.interval
            await trio.sleep_until(expected)
            lag = max(0.0, trio.current_time() - expected)
            self.last = lag
            self.samples.append(lag)
            if self._observe is not None:
                self._observe(lag)

    def percentile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        idx = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
        return ordered[idx]

    def healthy(self, limit_s: float = 1.0) -> bool:
        """False while the loop is stalled (the last wake-up was late by more than limit_s)."""
        return self.last < limit_s
