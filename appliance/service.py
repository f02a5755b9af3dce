"""The running service's context: what the transports and the voice conversation share.

Built by the supervisor; `web/` and `voice/` both depend on this module and never on each other.
Live reconfiguration (an admin settings edit) and store retention live here too: they change
or maintain the service, they are not HTTP.

A settings edit is built before it is saved: `prepare_live` makes what the new config needs (the
FAQ index, the filter) off to the side and `check_bootable` loads the file-to-be as the next start
would; only then is the file written and `swap_live` (assignments only, it cannot fail) makes it
the running config. An FAQ that cannot be loaded at start-up never keeps the box down (the admin
page, the only tool staff have to fix it, would be down with it): the service starts on a
minimal built-in FAQ that states no venue facts, says so loudly in the log, and /readyz and the
admin status page carry a note until a good FAQ is saved.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import trio

from .admin.state import AdminState
from .config import Config, ConfigError, config_to_dict, parse_config
from .contentfilter import ContentFilter
from .dialog import SessionRegistry
from .inference import InferenceSettings
from .knowledge import KnowledgeBase, KnowledgeError, TextEmbedder, parse_faq
from .knowledge.embeddings import Embedder, EmbedderError
from .knowledge.grounding import prepare
from .llm.client import Endpoint
from .llm.pool import LLMPool
from .looplag import LagMonitor
from .metrics import Metrics
from .mirror import LocalMirror
from .models_manifest import ModelError
from .store import Store
from .turns import TurnRunner

__all__ = [
    "FallbackKnowledge",
    "LivePieces",
    "Readiness",
    "ServiceContext",
    "admin_state",
    "apply_live",
    "check_bootable",
    "endpoints_from_config",
    "is_local_endpoint",
    "knowledge_note",
    "load_knowledge",
    "prepare_live",
    "retention_loop",
    "swap_live",
    "warm_prefix",
    "warm_prefix_soon",
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

    def snapshot(self, pool: LLMPool, knowledge: KnowledgeBase | None = None) -> dict[str, Any]:
        endpoints = [
            {"name": h.name, "ok": h.ok, "last_error": h.last_error, "latency_s": h.last_latency_s}
            for h in pool.health
        ]
        any_ok = any(e["ok"] for e in endpoints)
        note = knowledge_note(knowledge) if knowledge is not None else None
        return {
            "ready": self.models_warm and any_ok,
            "models_warm": self.models_warm,
            "endpoints": endpoints,
            "notes": list(self.notes) + ([note] if note else []),
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
    # Settings and FAQ edits one at a time (each is planned on, and built from, the last).
    settings_lock: trio.Lock = field(default_factory=trio.Lock)
    # The LAN admin listener's TLS as it runs: {"url", "fingerprint", "self_signed"} (None: no
    # such listener, or it runs without TLS by admin.allow_http).
    admin_tls: dict[str, Any] | None = None
    # Loaded voice models (None: text and touch only). `object` because voice/ depends on this
    # module, not the other way; appliance.voice.engine.engine_of() narrows it.
    voice_engine: object | None = None
    # For the admin page: the conversation log, the file a settings edit is saved to (None =
    # built-in defaults, nothing to save to), and its in-memory state.
    store: Store | None = None
    config_path: Path | None = None
    admin: AdminState | None = None
    # Touch to talk: set by the local voice task while it runs; True when the box's own
    # microphone now listens for one question.
    local_listen: Callable[[], bool] | None = None
    # The box's own microphone and speaker as they run (LocalVoice.status), for the admin page.
    local_voice_status: Callable[[], dict[str, Any]] | None = None
    # The box's own voice conversation, mirrored to the kiosk's own screen (web/ws.py).
    local_mirror: LocalMirror = field(default_factory=LocalMirror)
    # The prompt prefix the local endpoints last evaluated (warm_prefix); None: not yet.
    warmed_prefix: str | None = None


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


async def warm_up_endpoints(
    cfg: Config, pool: LLMPool, stopping: trio.Event, *, local: bool = True, others: bool = True
) -> None:
    """Probe every endpoint. Our own local server may still be loading, so it is retried until
    `budgets.probe_s`; remote endpoints get one probe each (a dead cloud must not block boot).
    `local=False`: leave our own server alone (not started yet); probe only the others.
    `others=False`: only our own server (it restarted; the others' health is the health
    loop's business)."""
    endpoints = endpoints_from_config(cfg)
    ours = [ep.name for ep in endpoints if is_local_endpoint(cfg, ep)]
    if not local:
        await pool.probe_all(timeout_s=min(10.0, cfg.budgets.probe_s), skip=ours)
        return
    skip = [] if others else [ep.name for ep in endpoints if ep.name not in ours]
    with trio.move_on_after(cfg.budgets.probe_s):
        while not stopping.is_set():
            health = await pool.probe_all(timeout_s=min(10.0, cfg.budgets.probe_s), skip=skip)
            ok = {h.name for h in health if h.ok}
            if len(ok) == len(health) or not ours or set(ours) <= ok:
                return
            await trio.sleep(0.2)


# A prefix warm-up that takes longer is given up (the server finishes evaluating it anyway).
_WARM_PREFIX_S = 30.0


async def warm_prefix(ctx: ServiceContext) -> None:
    """Have the local endpoints evaluate the prompt prefix every turn starts with (persona,
    instruction, FAQ), so a turn's prompt costs them only its own part. Skipped when they
    already hold this prefix. A failure is a log line: turns then pay for the prefix once."""
    messages = ctx.runner.prefix_messages()
    prefix = str(messages[0]["content"])
    if prefix == ctx.warmed_prefix:
        return
    t0 = trio.current_time()
    timeout = min(_WARM_PREFIX_S, ctx.cfg.budgets.probe_s)
    results = await ctx.pool.warm(messages, timeout_s=timeout)
    failed = {name: err for name, err in results.items() if err is not None}
    if failed:
        log.warning("prompt prefix not warmed (the next LLM turn evaluates it): %s", failed)
    elif results:
        # Only a full success counts: a failed endpoint is warmed by the next change or restart.
        ctx.warmed_prefix = prefix
        log.info(
            "prompt prefix warmed in %.2f s (%d chars) on %s",
            trio.current_time() - t0,
            len(prefix),
            ", ".join(results),
        )


def warm_prefix_soon(ctx: ServiceContext) -> None:
    """After a live FAQ, persona or config change: re-warm in the background (the change is
    in effect already; a turn meanwhile just evaluates the new prefix itself)."""
    if ctx.nursery is not None:
        ctx.nursery.start_soon(warm_prefix, ctx)


# What the box knows when the staff's FAQ cannot be loaded: no venue facts at all (the shipped
# sample describes a fictional museum; its opening hours must never reach a real visitor).
_FALLBACK_FAQ = """\
## Who can help me with my question?
Please ask a member of staff at the front desk; they will be glad to help you.
"""


class FallbackKnowledge(KnowledgeBase):
    """The minimal built-in FAQ the service runs on when the configured one cannot be loaded."""

    problem: str = ""


def knowledge_note(kb: KnowledgeBase) -> str | None:
    """The /readyz and status note while the service runs on the fallback FAQ."""
    if isinstance(kb, FallbackKnowledge):
        return f"FAQ unavailable, answering without it: {kb.problem}"
    return None


def _fallback_knowledge(problem: str) -> FallbackKnowledge:
    entries, warnings = parse_faq(_FALLBACK_FAQ)
    kb = FallbackKnowledge(entries, warnings=warnings)
    kb.problem = problem
    return kb


def load_knowledge(cfg: Config) -> KnowledgeBase:
    """The FAQ index; hybrid when the embedding model loads, lexical (and said so) when not.
    An FAQ that cannot be loaded gives the fallback (logged as an error), never a refusal."""
    embedder = None
    if cfg.knowledge.semantic:
        try:
            # On the CPU (a query is ~3 ms); its derived files in the configured cache.
            settings = InferenceSettings(providers="cpu", cache_dir=cfg.inference.cache_dir)
            embedder = Embedder.load(settings)
        except (EmbedderError, ModelError, OSError) as exc:
            log.error("embedding model unavailable, FAQ search is lexical only: %s", exc)
    try:
        kb = KnowledgeBase.from_file(Path(cfg.knowledge.faq), embedder=embedder)
    except KnowledgeError as exc:
        log.error(
            "FAQ UNAVAILABLE: %s. The kiosk runs WITHOUT the site FAQ (a built-in minimal one "
            "that only refers visitors to staff) until a good FAQ is saved on the admin page "
            "or the file is fixed.",
            exc,
            extra={"faq": cfg.knowledge.faq},
        )
        return _fallback_knowledge(str(exc))
    log.info(
        "knowledge loaded",
        extra={"faq": cfg.knowledge.faq, "entries": len(kb), "hybrid": kb.hybrid},
    )
    prepare(kb)  # the answer policy's caches now, not on the first visitor's question
    return kb


def load_prepared(path: Path, embedder: TextEmbedder | None) -> KnowledgeBase:
    """The FAQ at `path`, indexed, with the answer policy's caches built (`grounding.prepare`):
    a replaced knowledge base must not make the next visitor's question pay for them.
    Blocking."""
    kb = KnowledgeBase.from_file(path, embedder=embedder)
    prepare(kb)
    return kb


def admin_state(ctx: ServiceContext) -> AdminState:
    """The admin state, created on first use (most kiosks never open the admin page)."""
    if ctx.admin is None:
        ctx.admin = AdminState(ctx.cfg)
    return ctx.admin


@dataclass(frozen=True)
class LivePieces:
    """What a new running config needs that is built from it (None: unchanged, keep it)."""

    knowledge: KnowledgeBase | None = None
    cfilter: ContentFilter | None = None


async def prepare_live(ctx: ServiceContext, live: Config) -> LivePieces:
    """Build, off to the side, everything `live` needs that can fail (the FAQ index, the
    content filter). Raises KnowledgeError (or ValueError) with the reason; changes nothing."""
    old = ctx.cfg
    cfilter = None
    if live.filter.blocked_terms != old.filter.blocked_terms:
        cfilter = ContentFilter(live.filter.blocked_terms)
    knowledge = None
    # A changed path, or the same path while running on the fallback: load it (again).
    if live.knowledge.faq != old.knowledge.faq or knowledge_note(ctx.runner.knowledge):
        embedder = ctx.runner.knowledge.embedder
        knowledge = await trio.to_thread.run_sync(
            functools.partial(load_prepared, Path(live.knowledge.faq), embedder)
        )
    return LivePieces(knowledge=knowledge, cfilter=cfilter)


def swap_live(ctx: ServiceContext, live: Config, pieces: LivePieces) -> None:
    """Make `live` the running config: everything that reads ctx.cfg / runner.cfg per use picks
    it up at once; the few objects built from it were built by `prepare_live`. Assignments
    only: nothing here can fail half-way."""
    ctx.cfg = live
    ctx.runner.cfg = live
    if pieces.cfilter is not None:
        ctx.runner.cfilter = pieces.cfilter
    ctx.pool.first_token_s = live.budgets.first_token_s
    ctx.pool.stall_s = live.budgets.stall_s
    ctx.sessions.idle_reset_s = live.dialog.idle_reset_s
    ctx.sessions.history_turns = live.llm.history_turns
    if pieces.knowledge is not None:
        ctx.runner.knowledge = pieces.knowledge  # running turns keep the index they read
    warm_prefix_soon(ctx)  # a no-op unless the prompt prefix changed


async def apply_live(ctx: ServiceContext, live: Config) -> None:
    """prepare_live, then swap_live (raises, changing nothing, when the pieces cannot be built)."""
    swap_live(ctx, live, await prepare_live(ctx, live))


def check_bootable(saved: Config, state_dir: Path) -> None:
    """Load `saved` as the next start would (written as TOML, read back, validated, its FAQ
    parsed, its admin TLS pair loaded). Blocking; raises ConfigError naming every problem."""
    data = tomllib.loads(tomli_w.dumps(config_to_dict(saved)))
    cfg = parse_config(data, source="settings", base_dir=state_dir)
    problems = []
    try:
        KnowledgeBase.from_file(Path(cfg.knowledge.faq))
    except KnowledgeError as exc:
        problems.append(f"knowledge.faq: {exc}")
    if cfg.admin.tls_cert and cfg.admin.tls_key:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                cfg.admin.tls_cert, cfg.admin.tls_key
            )
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"admin.tls_cert: the certificate and key do not load: {exc}")
    if problems:
        raise ConfigError(problems, "settings")


async def retention_loop(ctx: ServiceContext, period_s: float = RETENTION_PERIOD_S) -> None:
    """Delete turns older than store.retention_days, now and then every hour."""
    while True:
        if ctx.store is not None:
            days = ctx.cfg.store.retention_days
            n = await trio.to_thread.run_sync(ctx.store.purge_older_than, days)
            if n:
                log.info("retention: deleted %d turns older than %g days", n, days)
        await trio.sleep(period_s)
