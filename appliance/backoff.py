"""Restart delays for things that crash: doubling, capped, forgiven after a healthy run. Pure."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """`delay(ran_s)` after each failure: `initial_s`, doubling to `max_s`. A run of at least
    `healthy_s` counts as recovered, so the next failure waits `initial_s` again: a server that
    crashes once a day must not inherit the delay of a crash loop at boot.

    `immediate`: the first failure of a streak (the very first, or the first after a healthy run
    or a `reset`) retries at once, and only the ones after it wait `initial_s`, doubling. For a
    process whose restart is what the visitor waits for: a one-off crash costs no extra wait,
    a crash loop still backs off."""

    initial_s: float = 1.0
    max_s: float = 30.0
    healthy_s: float = 30.0
    immediate: bool = False
    _next: float = 0.0

    def delay(self, ran_s: float) -> float:
        if ran_s >= self.healthy_s or self._next <= 0.0:
            self._next = self.initial_s
            if self.immediate:
                return 0.0
        wait = self._next
        self._next = min(self._next * 2.0, self.max_s)
        return wait

    def reset(self) -> None:
        """A success that is known as such (a device that works again): start a new streak."""
        self._next = 0.0
