"""The root of the service: the whole trio task tree, readable in this one file.

    supervisor (root nursery, sd_notify, SIGTERM -> graceful stop)
    ├── signals                      SIGTERM/SIGINT -> ctx.stopping
    ├── loop-lag monitor             feeds /metrics and the watchdog's health check
    ├── conversation store writer    SQLite (WAL) in a worker thread, bounded queue
    ├── local LLM server             llama.cpp child process, restarted with backoff
    ├── web server                   hypercorn + quart-trio: kiosk page, /ws, /api/chat, /metrics
    │     └── turns                  per connection / SSE request, one per session at a time
    ├── local voice                  own mic -> VAD/ASR -> turn -> TTS -> own speaker
    ├── speech prefill               the usual replies' speech, made while nobody talks
    ├── endpoint health              re-probes endpoints that are down
    ├── session sweeper              forgets visitors after dialog.idle_reset_s
    └── watchdog pinger              WATCHDOG=1 only while the loop is responsive

Start-up: the voice models start loading at once, beside the LLM server's own load; load
knowledge + store, start the children, bind the web server, warm up every LLM
endpoint (a dead remote never blocks start-up) and, when the LLM phrases answers, have the local
ones evaluate the prompt prefix (service.warm_prefix; again after a restart of the local
server), then READY=1 (with answer_mode "faq" the prefix is warmed right after it).
Stop: STOPPING=1, close WebSockets with 1001, end SSE streams, let hypercorn drain, flush the
store, exit 0.
"""

from __future__ import annotations

import gc
import logging
import resource
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from .backoff import Backoff
from .config import Config
from .contentfilter import ContentFilter
from .dialog import SessionRegistry
from .inference import SessionError
from .llm.conn import KeepAlive
from .llm.local import run_local_llm
from .llm.pool import DELTA_COALESCE_S, SHOWN_COALESCE_S, LLMPool
from .looplag import LagMonitor
from .metrics import Metrics
from .models_manifest import ModelError
from .service import (
    Readiness,
    ServiceContext,
    endpoints_from_config,
    load_knowledge,
    retention_loop,
    warm_prefix,
    warm_up_endpoints,
)
from .store import AsyncStore, Store
from .systemd import Notifier, watchdog_interval, watchdog_pinger
from .turns import TurnRunner
from .voice.engine import VoiceEngine, attach_engine, bias_wake_phrase, engine_of, load_engine
from .voice.local import run_local_voice
from .voice.prefill import keep_warm
from .web.admin import serve_admin
from .web.server import serve_web

__all__ = ["Service", "run_service", "supervised"]

log = logging.getLogger("appliance.supervisor")

# The watchdog stops petting systemd while the loop lags this much: a wedged loop gets restarted.
_WATCHDOG_MAX_LAG_S = 2.0
_STOP_GRACE_S = 4.0
# Speech is made ahead only after the voice models have been idle this long (nobody talking).
_PREFILL_QUIET_S = 2.0
# The conversation log's writer gathers turns this long (AsyncStore): unseen by anyone, and
# under load one transaction and one thread hand-over carry several turns.
_STORE_GATHER_S = 0.05


@dataclass
class Service:
    """Handles to the running service, given to `task_status.started` (tests, bench, CLI)."""

    ctx: ServiceContext
    urls: list[str]

    def stop(self) -> None:
        self.ctx.stopping.set()


async def supervised(
    name: str,
    fn: Callable[[], Awaitable[None]],
    metrics: Metrics,
    *,
    max_backoff_s: float = 30.0,
) -> None:
    """Run fn forever: a crash is logged and fn restarted with backoff, never taking us down."""
    backoff = Backoff(initial_s=0.5, max_s=max_backoff_s, healthy_s=60.0)
    while True:
        began = trio.current_time()
        try:
            await fn()
            log.warning("task %s returned; restarting", name)
        except Exception:
            log.exception("task %s crashed; restarting", name)
        metrics.child_restarts.labels(task=name).inc()
        await trio.sleep(backoff.delay(trio.current_time() - began))


def _endpoint_status(pool: LLMPool) -> str:
    parts = []
    for h in pool.health:
        if h.ok is None:
            parts.append(f"{h.name}=starting")  # not probed yet: our own server, after READY
            continue
        parts.append(
            f"{h.name}={'ok' if h.ok else 'down' + (f'({h.last_error})' if h.last_error else '')}"
        )
    return "LLM " + ", ".join(parts)


async def _health_loop(pool: LLMPool, metrics: Metrics, period_s: float = 15.0) -> None:
    while True:
        await trio.sleep(period_s)
        if any(not h.ok for h in pool.health):
            await pool.probe_all(timeout_s=5.0)
        _publish_health(pool, metrics)


async def _sweep_sessions(sessions: SessionRegistry, period_s: float) -> None:
    while True:
        await trio.sleep(period_s)
        dropped = sessions.sweep(trio.current_time())
        if dropped:
            log.info("forgot %d idle sessions", dropped)


def _raise_fd_limit() -> None:
    """Each WebSocket plus its upstream LLM stream costs two descriptors: 500 visitors need more
    than the usual soft limit of 1024. Raise it to the hard limit (systemd sets that too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)


def _settle_gc() -> None:
    """After start-up: move everything loaded so far out of the collector's sight and make full
    collections rarer. With hundreds of connections a full pass over ~200k objects took
    100-150 ms of event-loop stall (measured by `appliance bench load`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _signals(stopping: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping gracefully", signal.Signals(signum).name)
            stopping.set()
            return


async def run_service(
    cfg: Config,
    *,
    notifier: Notifier | None = None,
    handle_signals: bool = True,
    config_path: Path | None = None,
    tune_gc: bool = False,
    voice_models: Future[VoiceEngine] | None = None,
    task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the appliance until SIGTERM (or `Service.stop()`), then stop gracefully.

    `voice_models`: their load, started before this module was imported (`appliance run`);
    None: started here.

    `config_path` is where the admin page saves settings edits (None: edits cannot be saved).
    `tune_gc` freezes the start-up heap once READY: for a process that runs one service (the CLI),
    not for a test process that starts many."""
    notifier = notifier or Notifier.from_env()
    metrics = Metrics()

    def observe_lag(seconds: float) -> None:
        metrics.loop_lag.observe(seconds)
        metrics.loop_lag_last.set(seconds)

    lag = LagMonitor(observe=observe_lag)
    readiness = Readiness(started_at=trio.current_time())
    stopping = trio.Event()
    _raise_fd_limit()
    # "The local LLM server (re)started and listens": a restarted one is re-warmed (size 1: a
    # pending notice covers any number of restarts).
    llm_up, llm_up_rx = trio.open_memory_channel[None](1)
    # Set once the LLM's own server may start: at once where it phrases answers, else at READY.
    llm_go = trio.Event()
    async with trio.open_nursery() as root:
        if handle_signals:
            root.start_soon(_signals, stopping)
        root.start_soon(lag.run)
        if cfg.llm.spawn_local:
            if _llm_answers_questions(cfg):
                # First of all: it loads its model in its own process while we load ours.
                await root.start(_local_llm_task, cfg, metrics, notifier, llm_up)
            else:
                root.start_soon(_local_llm_after, llm_go, cfg, metrics, notifier, llm_up)
        voice = _VoiceLoad()
        if cfg.voice.enabled is not False:
            # The voice models load while the knowledge does (the longest part of a start).
            root.start_soon(voice.run, cfg, voice_models)
        await _serve(
            cfg,
            notifier,
            metrics,
            lag,
            readiness,
            stopping,
            config_path,
            tune_gc,
            llm_up_rx,
            llm_go,
            voice,
            task_status,
        )
        root.cancel_scope.cancel()
    log.info("stopped")


async def _serve(
    cfg: Config,
    notifier: Notifier,
    metrics: Metrics,
    lag: LagMonitor,
    readiness: Readiness,
    stopping: trio.Event,
    config_path: Path | None,
    tune_gc: bool,
    llm_up: trio.MemoryReceiveChannel[None],
    llm_go: trio.Event,
    voice: _VoiceLoad,
    task_status: trio.TaskStatus[Service],
) -> None:
    """Everything but the root's own children: state, web server, warm-up, READY, stop."""
    notifier.status("loading knowledge and conversation log")
    knowledge = await trio.to_thread.run_sync(load_knowledge, cfg)
    store = Store(Path(cfg.store.path))
    await trio.to_thread.run_sync(store.open)
    astore = AsyncStore(store, gather_s=_STORE_GATHER_S, metrics=metrics)

    timeout = httpx.Timeout(connect=3.0, read=None, write=10.0, pool=5.0)
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    http = httpx.AsyncClient(timeout=timeout, limits=limits)
    keepalive = KeepAlive(connect_s=timeout.connect or 3.0, write_s=timeout.write or 10.0)
    try:
        pool = LLMPool(
            endpoints_from_config(cfg),
            http,
            keepalive=keepalive,
            first_token_s=cfg.budgets.first_token_s,
            stall_s=cfg.budgets.stall_s,
            coalesce_s=DELTA_COALESCE_S,
            shown_coalesce_s=SHOWN_COALESCE_S,
            on_error=lambda ep, kind: metrics.llm_errors.labels(endpoint=ep, kind=kind).inc(),
        )
        sessions = SessionRegistry(
            idle_reset_s=cfg.dialog.idle_reset_s, history_turns=cfg.llm.history_turns
        )
        runner = TurnRunner(
            cfg, pool, knowledge, ContentFilter(cfg.filter.blocked_terms), metrics, astore
        )
        ctx = ServiceContext(
            cfg=cfg,
            sessions=sessions,
            runner=runner,
            pool=pool,
            metrics=metrics,
            readiness=readiness,
            lag=lag,
            stopping=stopping,
            store=store,
            config_path=config_path,
        )
        try:
            async with trio.open_nursery() as services:
                await services.start(astore.run)
                async with trio.open_nursery() as turns:
                    # SSE turns live here so they can be ended before the web server drains.
                    ctx.nursery = turns
                    web_done = trio.Event()
                    urls = await services.start(_web, ctx, web_done)
                    log.info("web server listening", extra={"urls": urls})
                    if cfg.admin.host:  # the admin page on its own (LAN, TLS) listener
                        urls += await services.start(serve_admin, ctx)
                    services.start_soon(
                        supervised, "retention", lambda: retention_loop(ctx), metrics
                    )

                    notifier.status("warming up LLM endpoints and voice models")
                    llm_first = _llm_answers_questions(cfg)
                    async with trio.open_nursery() as warm:
                        warm.start_soon(_load_voice, cfg, ctx, voice)
                        # Staff text answers (faq mode): our own LLM server starts after READY,
                        # so only the other endpoints are probed now.
                        await warm_up_endpoints(cfg, pool, ctx.stopping, local=llm_first)
                        # While the voice models load: the prompt prefix into llama.cpp's cache.
                        if llm_first:
                            await warm_prefix(ctx)
                    _publish_health(pool, metrics)
                    # The first start's notice is warmed just now (faq mode: it comes after READY).
                    _drain(llm_up)
                    services.start_soon(_rewarm_after_restarts, ctx, llm_up)
                    readiness.models_warm = True
                    metrics.ready.set(1)
                    status = _endpoint_status(pool)
                    elapsed = trio.current_time() - readiness.started_at
                    log.info("ready in %.2f s; %s", elapsed, status)
                    if tune_gc:
                        _settle_gc()
                    notifier.ready(f"ready; {status}")

                    interval = watchdog_interval()
                    if interval is not None:
                        services.start_soon(
                            watchdog_pinger,
                            notifier,
                            interval,
                            lambda: lag.healthy(_WATCHDOG_MAX_LAG_S),
                        )
                    services.start_soon(
                        supervised, "endpoint-health", lambda: _health_loop(pool, metrics), metrics
                    )
                    services.start_soon(
                        supervised,
                        "session-sweeper",
                        lambda: _sweep_sessions(sessions, max(5.0, cfg.dialog.idle_reset_s / 4)),
                        metrics,
                    )
                    _start_local_voice(ctx, turns)
                    _start_prefill(ctx, turns)
                    if not llm_first:
                        llm_go.set()  # our own server: its listening notice warms it
                        if not cfg.llm.spawn_local:  # a separate appliance-llm.service
                            services.start_soon(warm_prefix, ctx)
                    task_status.started(Service(ctx=ctx, urls=urls))

                    await ctx.stopping.wait()
                    log.info("stopping: closing connections")
                    notifier.stopping("stopping")
                    metrics.ready.set(0)
                    for scope in list(ctx.sse_scopes):
                        scope.cancel()
                    with trio.move_on_after(_STOP_GRACE_S):
                        await web_done.wait()
                    turns.cancel_scope.cancel()
                with trio.move_on_after(2.0):
                    await astore.flush()
                services.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)
    finally:
        keepalive.close()
        # Shielded: a hard cancel must still close pooled sockets rather than leak them.
        with trio.CancelScope(shield=True):
            await http.aclose()


def _llm_answers_questions(cfg: Config) -> bool:
    """Whether the LLM phrases answers (answer_mode "llm" or "open"): then it is started first
    and its prompt prefix is warm before READY, so the first such turn is as fast as the tenth.
    With "faq" (the default) staff text answers and only a photo goes to a (vision) model: our
    own llama.cpp server is started at READY and warmed as soon as it listens (~2 s later), since
    loading it beside the voice models took ~0.8 s of READY on 2 cores, and its prefix 4-5 s
    more on a slower box. A photo asked before then gets the fallback reply."""
    return cfg.knowledge.answer_mode != "faq"


async def _local_llm_after(
    go: trio.Event,
    cfg: Config,
    metrics: Metrics,
    notifier: Notifier,
    listening: trio.MemorySendChannel[None],
) -> None:
    """The local LLM server, started once `go` is set (at READY)."""
    await go.wait()
    await _local_llm_task(cfg, metrics, notifier, listening)


def _publish_health(pool: LLMPool, metrics: Metrics) -> None:
    for h in pool.health:
        metrics.endpoint_up.labels(endpoint=h.name).set(1 if h.ok else 0)


def _drain(rx: trio.MemoryReceiveChannel[None]) -> None:
    while True:
        try:
            rx.receive_nowait()
        except trio.WouldBlock:
            return


async def _rewarm_after_restarts(
    ctx: ServiceContext, llm_up: trio.MemoryReceiveChannel[None]
) -> None:
    """A (re)started local LLM server has an empty prompt cache: probe it until it answers
    (which records its health) and warm the prefix again."""
    async for _ in llm_up:
        ctx.warmed_prefix = None
        await warm_up_endpoints(ctx.cfg, ctx.pool, ctx.stopping, others=False)
        _publish_health(ctx.pool, ctx.metrics)
        await warm_prefix(ctx)


async def _web(
    ctx: ServiceContext,
    done: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await serve_web(ctx, task_status=task_status)
    finally:
        done.set()


_VOICE_LOAD_ERRORS = (ModelError, SessionError, OSError, RuntimeError, ValueError)


class _VoiceLoad:
    """The voice models, loading from the first moments of a start (run_service) while the
    knowledge and the web server come up; the warm-up phase waits for the outcome."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._engine: VoiceEngine | None = None
        self._error: Exception | None = None

    async def run(self, cfg: Config, started: Future[VoiceEngine] | None = None) -> None:
        try:
            if started is None:
                self._engine = await load_engine(cfg)
            else:
                self._engine = await trio.to_thread.run_sync(started.result, abandon_on_cancel=True)
        except _VOICE_LOAD_ERRORS as exc:
            self._error = exc
        finally:
            self._done.set()

    async def result(self) -> VoiceEngine:
        """The loaded engine; raises what loading raised."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        if self._engine is None:
            raise RuntimeError("the voice models' load was cancelled")
        return self._engine


async def _load_voice(cfg: Config, ctx: ServiceContext, voice: _VoiceLoad) -> None:
    """VAD/ASR/TTS loaded and run once before READY. A missing or corrupt model file costs the
    voice (said in the log and /readyz notes), never the kiosk: it stays usable by text."""
    if cfg.voice.enabled is False:
        return
    try:
        engine = await voice.result()
        attach_engine(ctx, engine)
    except _VOICE_LOAD_ERRORS as exc:
        log.error("voice unavailable, the kiosk runs text-only: %s", exc)
        ctx.readiness.notes.append(f"voice unavailable: {exc}")
        return
    try:
        # The ASR's FAQ bias now, not in the first visitor's final pass (a ~20 ms rebuild).
        await engine.sync_bias(ctx.runner.knowledge, bias_wake_phrase(cfg))
    except Exception:
        log.exception("ASR bias toward the FAQ not built at start-up (tried again per question)")


def _start_local_voice(ctx: ServiceContext, turns: trio.Nursery) -> None:
    """The kiosk's own mic and speaker. In the turns nursery: it stops with the other turns,
    before the store is flushed. A missing device is Capture's business (log line + retry)."""
    if ctx.cfg.audio.enabled is False:
        return
    engine = engine_of(ctx)
    if engine is None:
        level = logging.WARNING if ctx.cfg.audio.enabled is True else logging.INFO
        log.log(level, "local audio off: the voice models are not loaded (voice.enabled or error)")
        return
    turns.start_soon(supervised, "local-voice", lambda: run_local_voice(ctx, engine), ctx.metrics)


def _start_prefill(ctx: ServiceContext, turns: trio.Nursery) -> None:
    """Speech for the usual replies, made while the box is idle (voice/prefill.py)."""
    engine = engine_of(ctx)
    if engine is None or not ctx.cfg.voice.warm_replies:
        return

    def replies() -> tuple[list[str], float]:
        v = ctx.cfg.voice  # the settings now: an admin edit may have changed them
        return [*ctx.runner.usual_replies(), v.retry_reply], v.length_scale

    def quiet() -> bool:
        return engine.idle_for(_PREFILL_QUIET_S)

    turns.start_soon(
        supervised,
        "speech-prefill",
        lambda: keep_warm(engine.spoken, engine.tts, replies, quiet),
        ctx.metrics,
    )


async def _local_llm_task(
    cfg: Config,
    metrics: Metrics,
    notifier: Notifier,
    listening: trio.MemorySendChannel[None],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    def notice() -> None:
        try:
            listening.send_nowait(None)
        except trio.WouldBlock:
            pass  # one notice already pending

    await run_local_llm(
        cfg.llm,
        on_restart=lambda: metrics.child_restarts.labels(task="local-llm").inc(),
        on_status=notifier.status,
        on_listening=notice,
        task_status=task_status,
    )
