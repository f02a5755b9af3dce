"""Prometheus metrics for one service instance (own registry, so tests can run many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds; dense below one second where the voice targets live.
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.45,
    0.6,
    0.8,
    1.0,
    1.5,
    2,
    3,
    5,
    10,
    20,
)
_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.turns = Counter(
            "appliance_turns", "Turns by outcome", ["outcome", "source"], registry=r
        )
        self.stage_latency = Histogram(
            "appliance_stage_latency_seconds",
            "Per-stage latency within a turn",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "appliance_fallbacks", "Fallback replies by reason", ["reason"], registry=r
        )
        self.llm_errors = Counter(
            "appliance_llm_errors", "LLM endpoint failures", ["endpoint", "kind"], registry=r
        )
        self.ws_connections = Gauge(
            "appliance_ws_connections", "Open WebSocket connections", registry=r
        )
        self.ws_connects = Counter(
            "appliance_ws_connects", "WebSocket connections accepted", registry=r
        )
        self.ws_closed = Counter(
            "appliance_ws_closed", "WebSocket closes by reason", ["reason"], registry=r
        )
        self.sse_streams = Gauge("appliance_sse_streams", "Open SSE chat streams", registry=r)
        self.bad_input = Counter(
            "appliance_bad_input", "Rejected client input by code", ["code"], registry=r
        )
        self.loop_lag = Histogram(
            "appliance_event_loop_lag_seconds",
            "Event-loop scheduling delay",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(
            "appliance_event_loop_lag_last_seconds", "Latest loop lag sample", registry=r
        )
        self.endpoint_up = Gauge(
            "appliance_llm_endpoint_up",
            "Endpoint answered its last probe",
            ["endpoint"],
            registry=r,
        )
        self.child_restarts = Counter(
            "appliance_child_restarts", "Supervised task restarts", ["task"], registry=r
        )
        self.store_dropped = Counter(
            "appliance_store_dropped", "Conversation log records dropped", registry=r
        )
        self.store_retrying = Gauge(
            "appliance_store_retrying",
            "Conversation log records kept in memory after a failed write (disk full), to retry",
            registry=r,
        )
        self.ready = Gauge("appliance_ready", "1 when the service is ready", registry=r)
        self.audio_dropped = Counter(
            "appliance_audio_dropped_blocks", "Microphone blocks dropped (queue full)", registry=r
        )
        self.playback_underruns = Counter(
            "appliance_playback_underruns", "Speaker ran dry mid-utterance", registry=r
        )
        # The WebRTC front end's own ERLE (last 2 s of our audio; NaN until measured or when
        # echo cancellation is off): `appliance bench echo` reads it after each reply.
        self.frontend_erle = Gauge(
            "appliance_frontend_erle_db", "Front end echo return loss enhancement", registry=r
        )
        self.frontend_erle.set(float("nan"))
        self.barge_ins = Counter(
            "appliance_barge_ins", "Replies the visitor interrupted by speaking", registry=r
        )
        self.answers = Counter(
            "appliance_answers",
            "Answers by how they were made (faq, clarify, decline, chat, llm, say_again)",
            ["kind"],
            registry=r,
        )
        # How each spoken reply's first chunk was ready: "cache" (said before or made ahead),
        # "prefetch" (made while the visitor's silence was waited out), "synthesized" (in the
        # turn, the visitor waiting).
        self.reply_first_chunk = Counter(
            "appliance_reply_first_chunk",
            "Spoken replies by where their first chunk's audio came from",
            ["source"],
            registry=r,
        )
        self.guard_rejections = Counter(
            "appliance_guard_rejections",
            "Generated replies the fact guard replaced (an invented fact, an echo, nothing said)",
            ["reason"],
            registry=r,
        )

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_latency.labels(stage=stage).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
