"""The running service's context: what the transports and the voice conversation share.

Built by the supervisor; `web/` and `voice/` both depend on this module and never on each other.
Live reconfiguration (an admin settings edit) and store retention live here too: they change
or maintain the service, they are not HTTP.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .admin.state import AdminState
from .config import Config
from .contentfilter import ContentFilter
from .dialog import SessionRegistry
from .knowledge import KnowledgeBase
from .knowledge.embeddings import Embedder, EmbedderError
from .llm.client import Endpoint
from .llm.pool import LLMPool
from .looplag import LagMonitor
from .metrics import Metrics
from .mirror import LocalMirror
from .models_manifest import ModelError
from .store import Store
from .turns import TurnRunner

__all__ = [
    "Readiness",
    "ServiceContext",
    "admin_state",
    "apply_live",
    "endpoints_from_config",
    "is_local_endpoint",
    "load_knowledge",
    "retention_loop",
    "warm_up_endpoints",
]

log = logging.getLogger("appliance.service")

RETENTION_PERIOD_S = 3600.0


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
class ServiceContext:
    """Everything the transports (web/) and the box's own voice conversation (voice/) need
    from the running service, built by the supervisor. No globals: tests run several."""

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
    # Browser voice streams (audio.start .. audio.end) now; web/ws.py caps them at
    # voice.max_browser_sessions.
    voice_streams: int = 0
    # Loaded voice models (None: text and touch only). `object` because voice/ depends on this
    # module, not the other way; appliance.voice.engine.engine_of() narrows it.
    voice_engine: object | None = None
    # For the admin page: the conversation log, the file a settings edit is saved to (None =
    # built-in defaults, nothing to save to), and its in-memory state.
    store: Store | None = None
    config_path: Path | None = None
    admin: AdminState | None = None
    # The box's own voice conversation, mirrored to the kiosk's own screen (web/ws.py).
    local_mirror: LocalMirror = field(default_factory=LocalMirror)


def endpoints_from_config(cfg: Config) -> list[Endpoint]:
    return [
        Endpoint(
            name=ep.name,
            url=ep.url.rstrip("/"),
            model=ep.model,
            api_key=(os.environ.get(ep.api_key_env) or None) if ep.api_key_env else None,
            vision=ep.vision,
        )
        for ep in cfg.llm.endpoints
    ]


def is_local_endpoint(cfg: Config, ep: Endpoint) -> bool:
    return cfg.llm.spawn_local and f":{cfg.llm.local_port}/" in ep.url + "/"


async def warm_up_endpoints(cfg: Config, pool: LLMPool, stopping: trio.Event) -> None:
    """Probe every endpoint. Our own local server may still be loading, so it is retried until
    `budgets.probe_s`; remote endpoints get one probe each (a dead cloud must not block boot)."""
    local = [ep.name for ep in endpoints_from_config(cfg) if is_local_endpoint(cfg, ep)]
    with trio.move_on_after(cfg.budgets.probe_s):
        while not stopping.is_set():
            health = await pool.probe_all(timeout_s=min(10.0, cfg.budgets.probe_s))
            ok = {h.name for h in health if h.ok}
            if len(ok) == len(health) or not local or set(local) <= ok:
                return
            await trio.sleep(0.2)


def load_knowledge(cfg: Config) -> KnowledgeBase:
    """The FAQ index; hybrid when the embedding model loads, lexical (and said so) when not."""
    embedder = None
    if cfg.knowledge.semantic:
        try:
            embedder = Embedder.load()
        except (EmbedderError, ModelError, OSError) as exc:
            log.error("embedding model unavailable, FAQ search is lexical only: %s", exc)
    kb = KnowledgeBase.from_file(Path(cfg.knowledge.faq), embedder=embedder)
    log.info(
        "knowledge loaded",
        extra={"faq": cfg.knowledge.faq, "entries": len(kb), "hybrid": kb.hybrid},
    )
    return kb


def admin_state(ctx: ServiceContext) -> AdminState:
    """The admin state, created on first use (most kiosks never open the admin page)."""
    if ctx.admin is None:
        ctx.admin = AdminState(ctx.cfg)
    return ctx.admin


async def apply_live(ctx: ServiceContext, live: Config) -> None:
    """Make `live` the running config: everything that reads ctx.cfg / runner.cfg per use
    picks it up at once; the few objects built from it at start are updated here."""
    old = ctx.cfg
    ctx.cfg = live
    ctx.runner.cfg = live
    if live.filter.blocked_terms != old.filter.blocked_terms:
        ctx.runner.cfilter = ContentFilter(live.filter.blocked_terms)
    ctx.pool.first_token_s = live.budgets.first_token_s
    ctx.pool.stall_s = live.budgets.stall_s
    ctx.sessions.idle_reset_s = live.dialog.idle_reset_s
    ctx.sessions.history_turns = live.llm.history_turns
    if live.knowledge.faq != old.knowledge.faq:
        embedder = ctx.runner.knowledge.embedder
        ctx.runner.knowledge = await trio.to_thread.run_sync(
            functools.partial(KnowledgeBase.from_file, Path(live.knowledge.faq), embedder=embedder)
        )


async def retention_loop(ctx: ServiceContext, period_s: float = RETENTION_PERIOD_S) -> None:
    """Delete turns older than store.retention_days, now and then every hour."""
    while True:
        if ctx.store is not None:
            days = ctx.cfg.store.retention_days
            n = await trio.to_thread.run_sync(ctx.store.purge_older_than, days)
            if n:
                log.info("retention: deleted %d turns older than %g days", n, days)
        await trio.sleep(period_s)
