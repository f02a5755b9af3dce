"""What the web layer needs from the running service, in one object (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..config import Config
from ..dialog import SessionRegistry
from ..llm.pool import LLMPool
from ..looplag import LagMonitor
from ..metrics import Metrics
from ..store import Store
from ..turns import TurnRunner

__all__ = ["Readiness", "WebContext"]


@dataclass
class Readiness:
    """READY needs warm local models and at least one LLM endpoint that answered."""

    models_warm: bool = False
    started_at: float = 0.0
    notes: list[str] = field(default_factory=list)

    def snapshot(self, pool: LLMPool) -> dict[str, Any]:
        endpoints = [
            {"name": h.name, "ok": h.ok, "last_error": h.last_error, "latency_s": h.last_latency_s}
            for h in pool.health
        ]
        any_ok = any(e["ok"] for e in endpoints)
        return {
            "ready": self.models_warm and any_ok,
            "models_warm": self.models_warm,
            "endpoints": endpoints,
            "notes": list(self.notes),
        }


@dataclass
class WebContext:
    cfg: Config
    sessions: SessionRegistry
    runner: TurnRunner
    pool: LLMPool
    metrics: Metrics
    readiness: Readiness
    lag: LagMonitor
    # Set when the service begins a graceful stop: sockets close with 1001, SSE streams end.
    stopping: trio.Event = field(default_factory=trio.Event)
    # Where SSE turns run (they outlive the request handler's own task).
    nursery: trio.Nursery | None = None
    sse_scopes: set[trio.CancelScope] = field(default_factory=set)
    ws_open: int = 0
    # Loaded voice models (None: text and touch only). Typed loosely to keep the web layer
    # importable without the voice stack; appliance.voice.engine.engine_of() narrows it.
    voice_engine: Any = None
    # For the admin page: the conversation log, the file a settings edit is saved to (None =
    # built-in defaults, nothing to save to), and its in-memory state (appliance.admin.auth).
    store: Store | None = None
    config_path: Path | None = None
    admin: Any = None
