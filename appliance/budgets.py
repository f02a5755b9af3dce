"""Per-stage latency budgets as trio cancel scopes, and the per-turn timing record.

A stage runs inside `with budget(timings, "llm", seconds):`. When the budget runs out the scope is
cancelled, `Budget.expired` is set and the caller takes the stage's fallback: a slow stage costs a
worse answer, never a hung turn. Timings are recorded either way, so `/metrics` and
`reply.done.timings` show where the time went.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

__all__ = ["Budget", "Timings", "budget"]


@dataclass
class Timings:
    """Stage marks in ms since the turn started (trio clock, so MockClock tests are exact)."""

    started: float = field(default_factory=trio.current_time)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        """Record `name` once (the first occurrence wins) and return its offset in ms."""
        if name not in self.marks:
            self.marks[name] = round((trio.current_time() - self.started) * 1000.0, 2)
        return self.marks[name]

    def set(self, name: str, ms: float) -> None:
        self.marks[name] = round(ms, 2)

    def as_dict(self) -> dict[str, float]:
        return dict(self.marks)


@dataclass
class Budget:
    name: str
    seconds: float
    expired: bool = False
    elapsed_s: float = 0.0


@contextmanager
def budget(timings: Timings | None, name: str, seconds: float) -> Iterator[Budget]:
    """Run the body under a deadline of `seconds`; on expiry the body is cancelled and the
    returned Budget says so. The deadline never extends an outer, earlier deadline."""
    b = Budget(name=name, seconds=seconds)
    start = trio.current_time()
    with trio.move_on_after(seconds) as scope:
        try:
            yield b
        finally:
            b.elapsed_s = trio.current_time() - start
            if timings is not None:
                timings.set(f"{name}_ms", b.elapsed_s * 1000.0)
    b.expired = scope.cancelled_caught
