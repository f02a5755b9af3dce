"""The bench registry and the shared pieces: targets, the appliance config under test, options.

A bench is a `Bench` (name, options, an async `run(args) -> dict`, headline fields, targets)
registered in `BENCHES`; `appliance bench NAME` and `appliance bench all` are built from it, so a
new bench (e.g. `voice`) is one module plus one `register(...)` call.
"""

from __future__ import annotations

import argparse
import operator
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BENCHES",
    "DEFAULT_REPLY",
    "Bench",
    "Target",
    "bench_dir",
    "evaluate",
    "register",
    "service_config",
]

# ~19 words: a kiosk-length answer, streamed word by word by the scripted server.
DEFAULT_REPLY = (
    "We are open from half past nine until five every day, and the cafe closes at half past four."
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "==": operator.eq,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Target:
    """A promise checked against a result field, e.g. Target("added_p99_ms", "<=", 50)."""

    field: str
    op: Literal["<=", "==", ">="]
    value: float
    note: str = ""

    def check(self, result: dict[str, Any]) -> dict[str, Any]:
        actual = result.get(self.field)
        met = isinstance(actual, int | float) and _OPS[self.op](float(actual), self.value)
        out: dict[str, Any] = {
            "field": self.field,
            "target": f"{self.op} {self.value:g}",
            "value": actual,
            "met": bool(met),
        }
        if self.note:
            out["note"] = self.note
        return out


def evaluate(result: dict[str, Any], targets: tuple[Target, ...]) -> list[dict[str, Any]]:
    """Each target checked; one whose field the run did not produce at all (a part left out by
    an option, e.g. one configuration of `bench echo`) is left out. A field produced as None
    is a missed target."""
    return [t.check(result) for t in targets if t.field in result]


RunFn = Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Bench:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: RunFn  # runs under trio.run; returns the result fields (must include "errors")
    headline: tuple[str, ...]
    targets: tuple[Target, ...] = ()
    # False: only on its own (`appliance bench NAME`), never part of `all`: an evaluation of
    # tens of minutes (`understand`) or an attack on the box rather than a measure (`faults`).
    in_all: bool = True
    # The Markdown page written next to its JSON when run on its own (`all` writes one summary).
    markdown: Callable[[dict[str, Any]], str] | None = None


BENCHES: dict[str, Bench] = {}


def register(bench: Bench) -> None:
    """Add a bench; `all` runs benches in registration order."""
    BENCHES[bench.name] = bench


def service_config(
    *, port: int, llm_url: str, workdir: Path, voice: str = "auto", answer_mode: str = "open"
) -> dict[str, Any]:
    """The appliance under test for text/load: every turn takes the LLM path (no FAQ shortcut,
    no embedding model), no sound card, rate limits far above the offered load (the bench
    measures the service, not its abuse protection), its own store in the bench's temp dir.
    `voice` is voice.enabled: "auto" loads the voice models as the box does (idle here)."""
    return {
        "web": {
            "host": "127.0.0.1",
            "port": port,
            "rate_per_s": 100000.0,
            "rate_burst": 100000,
            "heartbeat_s": 60.0,
        },
        "llm": {
            "spawn_local": False,
            "endpoints": [{"name": "scripted", "url": llm_url, "model": "bench"}],
        },
        "audio": {"enabled": False},
        "voice": {"enabled": "auto" if voice == "auto" else False},
        # The streaming path's own cost: the scripted reply is not checked against facts.
        "knowledge": {"semantic": False, "answer_mode": answer_mode, "fact_guard": False},
        "store": {"path": str(workdir / "bench.db")},
    }


@contextmanager
def bench_dir(name: str, args: argparse.Namespace) -> Iterator[Path]:
    """A temp dir for one bench (configs, the appliance's log, its store); removed afterwards
    unless `--keep` asked to look at the logs."""
    if args.workdir is not None:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a new --workdir is made
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.workdir))
    try:
        yield path
    finally:
        if getattr(args, "keep", False):
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)
