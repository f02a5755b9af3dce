"""One text turn: question in, grounded streamed reply out, always ending in `reply.done`.

Shared by the WebSocket and SSE transports: they pass an `emit` that queues protocol messages.
The turn deadline (`budgets.turn_s`) is a cancel scope around the LLM stream; whatever happens
inside (refused, 429, garbage, stall, all endpoints down) the visitor gets a reply in time.

A voice turn passes a `VoiceLeg`: the spoken side of the same turn (the reply's first audio and
its playback), so the turn is recorded once, at its real end, with the whole trace: the voice
pipeline's stage durations, the turn's own marks, first reply audio and the end of playback.

One module (~480 lines) on purpose: the stages of a turn share its state (reply parts, marks,
outcome), and the accounting at the end must see every path that leads there.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Literal

import trio

from .budgets import Timings
from .config import ChatConfig, Config, KnowledgeConfig
from .contentfilter import ContentFilter
from .dialog import Conversation, DialogEvent, Exchange
from .events import Choice, Emit, ReplyDelta, ReplyDone, StateEvent
from .images import ImageLimits, PreparedImage, prepare_image_async
from .knowledge import (
    Grounding,
    Hit,
    KnowledgeBase,
    build_facts_prompt,
    build_system_prompt,
    ground,
)
from .knowledge.grounding import prepare
from .knowledge.guard import ClauseGate, FactGuard, Violation, is_echo, is_empty, split_clauses
from .knowledge.policy import (
    Decision,
    PolicyContext,
    PolicySettings,
    decide,
    faq_topics,
    instead_of_generated,
    lookups,
    rank_plan,
    reconcile,
    usual_replies,
)
from .knowledge.soundalike import sound_index
from .llm.pool import AllEndpointsFailed, LLMPool
from .metrics import Metrics
from .store import AsyncStore, TurnRecord

__all__ = ["TurnResult", "TurnRunner", "VoiceLeg", "prompt_faq_budget"]

log = logging.getLogger("appliance.turns")


# Leave a sliver of the turn budget to deliver reply.done itself.
_DONE_MARGIN_S = 0.05
# Small models continue a "Q: ... A: ..." fact list with invented pairs; cut them off there.
_STOP = ("\nQ:", "Q:", "\nA:", "\n\n\n")


@dataclass(frozen=True)
class TurnResult:
    turn: int
    text: str
    outcome: str  # ok | fallback | truncated | blocked | no_vision | cancelled | interrupted
    timings: dict[str, float]  # as stored with the turn (a voice turn's includes playback_end)
    endpoint: str | None = None
    kind: str = ""  # how the answer was made: faq | clarify | decline | chat | llm | say_again


@dataclass
class VoiceLeg:
    """The spoken side of a voice turn, filled in by the voice pipeline (text turns have none).

    `run_text` awaits `first_audio` just before `reply.done` (the pipeline ends the reply speech
    and waits, within its TTS budget, for the first reply sample, so `reply.done.timings` are
    complete), then `playback` right after `reply.done` (until the reply has been heard, or a
    barge-in cancels the turn), and only then records the turn.

    Stored/sent timings of a voice turn = the turn's marks (ms since run_text began) + `events`
    turned into marks on the same axis + `timings` as given (durations `*_ms` and ratios
    `*_rtf` measured by the pipeline, e.g. vad_end_ms, asr_final_ms) + `llm_first_token_ms` +
    the `playback_end` mark (store only: reply.done goes out before playback ends).
    """

    timings: dict[str, float] = field(default_factory=dict)
    # name -> trio time of a spoken-side event (e.g. "tts_first_audio": first reply sample out)
    events: dict[str, float] = field(default_factory=dict)
    # The visitor spoke over the reply (barge-in): set before the turn is cancelled, so a turn
    # cut before its reply.done is recorded as "interrupted", not "cancelled".
    interrupted: bool = False
    first_audio: Callable[[], Awaitable[None]] | None = None
    playback: Callable[[], Awaitable[None]] | None = None


@dataclass
class _Slot:
    scope: trio.CancelScope
    done: trio.Event


class TurnRunner:
    def __init__(
        self,
        cfg: Config,
        pool: LLMPool,
        knowledge: KnowledgeBase,
        cfilter: ContentFilter,
        metrics: Metrics,
        store: AsyncStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        # Replaced wholesale when staff edit the FAQ; a running turn keeps the one it read.
        self.knowledge = knowledge
        self.cfilter = cfilter
        self.metrics = metrics
        self.store = store
        self._slots: dict[str, _Slot] = {}
        self._policy_key: tuple[int, KnowledgeConfig, ChatConfig] | None = None
        self._policy = PolicySettings()
        self._prefix_key: tuple[int, str, int] | None = None
        self._prefix = ""
        # Per session: the decision prepare_reply made during the hangover, for the turn that
        # follows to take instead of ranking the same question again (~20-60 ms of its path).
        self._prepared: dict[str, _Prepared] = {}

    # -- one turn at a time per session -------------------------------------------------------

    @asynccontextmanager
    async def exclusive(self, session_id: str) -> AsyncIterator[trio.CancelScope]:
        """Hold the session's turn slot; a running turn is cancelled and awaited first."""
        prev = self._slots.get(session_id)
        if prev is not None:
            prev.scope.cancel()
            await prev.done.wait()
        slot = _Slot(trio.CancelScope(), trio.Event())
        self._slots[session_id] = slot
        try:
            with slot.scope:
                yield slot.scope
        finally:
            slot.done.set()
            if self._slots.get(session_id) is slot:
                del self._slots[session_id]

    def cancel(self, session_id: str) -> bool:
        slot = self._slots.get(session_id)
        if slot is None:
            return False
        slot.scope.cancel()
        return True

    def busy(self, session_id: str) -> bool:
        return session_id in self._slots

    # -- the turn -------------------------------------------------------------------------------

    async def prepare_reply(
        self, conv: Conversation, question: str, alternatives: Sequence[str] = ()
    ) -> str | None:
        """Get ahead of a voice turn while the pipeline still waits out the visitor's silence.

        Returns the text the turn would speak from staff-written text (an FAQ answer, a
        clarifying question, a decline), so its speech can be synthesized now. When the LLM will
        answer, has the first endpoint evaluate the exact prompt the turn will send
        (`LLMPool.prime`: a local llama.cpp then starts that turn at once) and returns None.
        Nothing is shown, said or recorded here."""
        if self.cfilter.is_blocked(question):
            return None
        d, g = await self._decide(conv, question, alternatives, keep=True)
        if d.kind != "llm":
            return self.cfilter.mask(d.text)
        await self.pool.prime(
            self._messages(conv, question, None, self._facts(d, g)),
            timeout_s=self.cfg.budgets.stall_s,
        )
        return None

    def policy_settings(self) -> PolicySettings:
        """The answer policy's settings for the current FAQ and config (cached per pair)."""
        kb, k = self.knowledge, self.cfg.knowledge
        key = (id(kb), k, self.cfg.chat)
        if self._policy_key != key:
            mode: Literal["faq", "llm"] = "faq" if k.answer_mode == "faq" else "llm"
            topics = faq_topics(tuple(e.question for e in kb.entries))
            chat = {f.name: t for f in fields(ChatConfig) if (t := getattr(self.cfg.chat, f.name))}
            self._policy = PolicySettings(
                answer_mode=mode, topics=topics, staff=k.staff_hint, chat_replies=chat
            )
            self._policy_key = key
        return self._policy

    def usual_replies(self) -> list[str]:
        """The staff-written replies the box gives most (`policy.usual_replies`), as a turn
        would say them: for speech made ahead (voice/prefill.py). Nothing in "open" mode,
        where the LLM answers everything."""
        if self.cfg.knowledge.answer_mode == "open":
            return []
        texts = usual_replies(self.knowledge.entries, self.policy_settings())
        return [self.cfilter.mask(t) for t in texts]

    async def _decide(
        self,
        conv: Conversation,
        question: str,
        alternatives: Sequence[str] = (),
        *,
        keep: bool = False,
    ) -> tuple[Decision, Grounding]:
        """The answer policy's decision (and the main ranking), off the loop: ranking runs the
        embedder. `answer_mode = "open"` skips the policy: the LLM answers every question.
        `alternatives`: ASR's other hypotheses of a spoken question, best first; the decision
        is checked against theirs (`policy.reconcile`). `keep`: remember it for the session's
        next call with the same inputs (prepare_reply, then the turn), which takes it once."""
        kb, top_k = self.knowledge, self.cfg.knowledge.top_k
        settings = self.policy_settings()
        ctx = conv.answer_context if isinstance(conv.answer_context, PolicyContext) else None
        open_mode = self.cfg.knowledge.answer_mode == "open"
        soundalike = self.cfg.knowledge.soundalike
        inputs = _Prepared(question, tuple(alternatives), kb, ctx, settings, self.cfg.knowledge)
        made = self._prepared.pop(conv.session_id, None)
        if made is not None and made.same_inputs(inputs):
            if keep:  # prepared again (the same words heard twice): still there for the turn
                self._prepared[conv.session_id] = made
            await made.done.wait()  # on a slow CPU the turn often starts while it is made
            if made.result is not None:
                log.debug("decision taken from the hangover", extra={"session": conv.session_id})
                return made.result
        if keep:
            self._prepared[conv.session_id] = inputs
            while len(self._prepared) > _PREPARED_KEPT:  # sessions that left before their turn
                del self._prepared[next(iter(self._prepared))]

        def blocking() -> tuple[Decision, Grounding]:
            prepare(kb)
            rank = partial(ground, kb, k=top_k, facts=kb.hybrid)
            if open_mode:
                g = rank(question)
                return Decision("llm", "", "open", hits=tuple(g.hits)), g
            sounds = sound_index(kb) if soundalike else None

            def decide_on(text: str) -> tuple[Decision, Grounding]:
                ranked = rank_plan(lookups(text, ctx, sounds), rank)
                d = decide(text, context=ctx, settings=settings, **ranked)
                return d, ranked["grounding"]

            d, g = decide_on(question)
            d = reconcile(d, question, alternatives, lambda t: decide_on(t)[0], settings)
            return d, g

        try:
            inputs.result = await trio.to_thread.run_sync(blocking)
        finally:
            inputs.done.set()  # a failed or cancelled one: the turn decides for itself
        return inputs.result

    def choice_label(self, conv: Conversation, turn: int, choice: str) -> str | None:
        """The label of option `choice` of the clarifying question turn `turn` asked, while it
        is still the conversation's last turn (a tapped button becomes that question)."""
        ctx = _context(conv)
        if ctx is None or turn != conv.turns:
            return None
        return next((c.label for c in ctx.choices if c.id == choice), None)

    @staticmethod
    def _facts(d: Decision, g: Grounding) -> list[Hit]:
        return list(d.hits) if d.hits else list(g.hits)

    async def prepare_image(self, data_url: str) -> PreparedImage:
        """Validate and downscale off the event loop. Raises ImageError with a visitor message."""
        limits = ImageLimits(
            max_bytes=self.cfg.images.max_bytes,
            max_pixels=self.cfg.images.max_pixels,
            max_side=self.cfg.images.max_side,
        )
        return await prepare_image_async(data_url, limits)

    def prefix_messages(self) -> list[dict[str, Any]]:
        """What every LLM prompt starts with, byte for byte (`build_system_prompt`: persona,
        instruction, the FAQ within `knowledge.prompt_faq_chars`): the service has the local
        endpoint evaluate it before READY and again when it changes (`service.warm_prefix`).
        Cached per knowledge base, persona and budget."""
        kb, persona = self.knowledge, self.cfg.persona.system_prompt
        budget = prompt_faq_budget(self.cfg)
        key = (id(kb), persona, budget)
        if self._prefix_key != key:
            self._prefix = build_system_prompt(persona, kb.entries, budget_chars=budget)
            self._prefix_key = key
        return [{"role": "system", "content": self._prefix}]

    def _messages(
        self, conv: Conversation, question: str, image: PreparedImage | None, hits: Sequence[Hit]
    ) -> list[dict[str, Any]]:
        """The fixed prefix, then what is new this turn: history, the retrieved entries (best
        last, nearest the question) and the question. History before the facts keeps the
        facts next to the question and the previous turn's prompt a prefix of this one."""
        messages = self.prefix_messages()
        for ex in fit_history(conv.context(trio.current_time()), self.cfg.llm.history_chars):
            messages.append({"role": "user", "content": ex.user})
            messages.append({"role": "assistant", "content": ex.assistant})
        messages.append({"role": "system", "content": build_facts_prompt(hits)})
        user: Any = question
        if image is not None:
            user = [
                {"type": "text", "text": question or "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image.data_url}},
            ]
        messages.append({"role": "user", "content": user})
        return messages

    async def run_text(
        self,
        conv: Conversation,
        question: str,
        emit: Emit,
        *,
        image: PreparedImage | None = None,
        source: str = "text",
        leg: VoiceLeg | None = None,
        alternatives: Sequence[str] = (),
    ) -> TurnResult:
        """Run one turn for `conv` (the caller holds `exclusive(conv.session_id)`).

        Cancelled before reply.done: recorded as "cancelled" ("interrupted" when `leg` says the
        visitor barged in). Cancelled during a voice leg's playback (after reply.done): recorded
        as "interrupted" with the whole reply text; the dialog has already moved on to idle."""
        timings = Timings()
        turn = conv.begin_turn(trio.current_time())
        wall_start = time.time()
        parts: list[str] = []
        outcome = "ok"
        kind = ""
        choices: tuple[Any, ...] = ()
        endpoint: str | None = None
        reply = ""
        conv.apply(DialogEvent.QUESTION)
        await emit(StateEvent(conv.state.value))

        async def say_whole(text: str) -> None:
            parts.append(text)
            await emit(ReplyDelta(turn, text))

        replied = False  # reply.done is out and the dialog has moved on (REPLY_DONE applied)
        completed = False
        try:
            if self.cfilter.is_blocked(question):
                outcome, kind = "blocked", "decline"
                await say_whole(self.cfg.filter.refusal)
            elif image is not None and not any(ep.vision for ep in self.cfg.llm.endpoints):
                outcome, kind = "no_vision", "decline"
                await say_whole(self.cfg.images.no_vision_reply)
            elif image is not None:
                # A photo: only a vision model can answer; the guard still checks its words.
                g = await trio.to_thread.run_sync(
                    partial(ground, self.knowledge, question, k=self.cfg.knowledge.top_k)
                )
                timings.mark("grounding")
                d = Decision("llm", "", "image", hits=tuple(g.hits))
                outcome, endpoint, d = await self._stream_reply(
                    conv, question, image, d, g, turn, timings, parts, emit, spoken=leg is not None
                )
                kind, choices = d.kind, d.choices
            else:
                d, g = await self._decide(conv, question, alternatives)
                timings.mark("grounding")
                if d.kind == "llm":
                    outcome, endpoint, d = await self._stream_reply(
                        conv,
                        question,
                        None,
                        d,
                        g,
                        turn,
                        timings,
                        parts,
                        emit,
                        spoken=leg is not None,
                    )
                else:
                    endpoint = "faq" if d.kind == "faq" else "policy"
                    await self._say_faq(conv, d.text, turn, timings, parts, emit)
                kind, choices = d.kind, d.choices
                conv.answer_context = PolicyContext.after(question, d, _context(conv))
                log.debug("answer policy: %s (%s)", d.kind, d.reason)
            reply = "".join(parts).strip()
            if outcome == "truncated":
                reply = reply.rstrip(" ,;:") + " …"
            timings.mark("total")
            if leg is not None and leg.first_audio is not None:
                await leg.first_audio()
            wire_choices = tuple(Choice(c.id, c.label) for c in choices) or None
            await emit(
                ReplyDone(
                    turn,
                    reply,
                    _turn_timings(timings, leg),
                    outcome,
                    kind=kind,
                    choices=wire_choices,
                )
            )
            conv.apply(DialogEvent.REPLY_DONE)
            replied = True
            await emit(StateEvent(conv.state.value))
            if outcome == "ok":
                conv.record(question, reply)
            if leg is not None and leg.playback is not None:
                await leg.playback()
            completed = True
        finally:
            # Not completed = cancelled (visitor pressed stop, asked again, spoke over the reply,
            # or left). A flag, not `except Cancelled`: cancellation can surface from a nursery
            # inside an ExceptionGroup.
            if not completed:
                if leg is not None and (replied or leg.interrupted):
                    outcome = "interrupted"
                else:
                    outcome = "cancelled"
                if not replied:
                    reply = "".join(parts).strip()
                    timings.mark("total")
                    conv.apply(DialogEvent.CANCEL)
                # else: the dialog already went idle at REPLY_DONE and may have moved on since
                # (the barge-in's next utterance): no second transition.
            if leg is not None and "tts_first_audio" in leg.events:
                # Playback ran to its end, or was stopped just now (barge-in or cancel).
                timings.mark("playback_end")
            recorded = _turn_timings(timings, leg)
            self._account(
                conv,
                turn,
                question,
                reply,
                outcome,
                endpoint,
                recorded,
                wall_start,
                image is not None,
                source,
                kind,
            )
        return TurnResult(turn, reply, outcome, recorded, endpoint, kind)

    async def _say_faq(
        self,
        conv: Conversation,
        answer: str,
        turn: int,
        timings: Timings,
        parts: list[str],
        emit: Emit,
    ) -> None:
        """The staff's own answer, streamed sentence by sentence like a model reply."""
        conv.apply(DialogEvent.REPLY_STARTED)
        await emit(StateEvent(conv.state.value))
        timings.mark("first_text")
        for sentence in _sentences(self.cfilter.mask(answer)):
            parts.append(sentence)
            await emit(ReplyDelta(turn, sentence))

    async def _stream_reply(
        self,
        conv: Conversation,
        question: str,
        image: PreparedImage | None,
        d: Decision,
        g: Grounding,
        turn: int,
        timings: Timings,
        parts: list[str],
        emit: Emit,
        *,
        spoken: bool,
    ) -> tuple[str, str | None, Decision]:
        """The LLM's reply, streamed clause by clause through the fact guard: a clause that
        states a number, time, price, date, contact or name the facts, persona and question do
        not is never shown or spoken; the stream stops and the reply is replaced (clarify
        between the retrieved entries, or decline). Returns (outcome, endpoint, the decision
        the reply ended as). A reply that is not `spoken` only shows: its stream may be read
        in bursts from its first token on (no first clause to hurry for the speaker)."""
        t0 = trio.current_time()
        hits = self._facts(d, g)
        messages = self._messages(conv, question, image, hits)
        timings.mark("prompt")
        masker = self.cfilter.stream_masker()
        gate = ClauseGate()
        guard = (
            FactGuard(self._guard_sources(conv, question, hits))
            if self.cfg.knowledge.fact_guard
            else None
        )
        spoke = False
        rejected: Violation | None = None

        # Set when what was shown must be replaced: the next delta carries reset=True.
        replace_shown = False

        async def say(text: str) -> None:
            nonlocal spoke, replace_shown
            if not text:
                return
            timings.mark("first_text")
            if not spoke:
                spoke = True
                conv.apply(DialogEvent.REPLY_STARTED)
                await emit(StateEvent(conv.state.value))
            reset, replace_shown = replace_shown, False
            parts.append(text)
            await emit(ReplyDelta(turn, text, reset=reset))

        def start_over() -> None:
            nonlocal replace_shown
            if parts:
                parts.clear()
                replace_shown = True

        async def checked(text: str) -> None:
            nonlocal rejected
            if guard is not None:
                for clause in split_clauses(text):
                    rejected = rejected or guard.check(clause)
            if rejected is not None:
                stream.cancel()
                return
            await say(text)

        async def on_delta(text: str, reset: bool) -> None:
            nonlocal masker, gate
            if reset:
                # The winning endpoint died mid-reply and another took over: start the text again.
                masker, gate = self.cfilter.stream_masker(), ClauseGate()
                start_over()
            timings.mark("llm_first_token")
            safe = masker.feed(text)
            if guard is None:  # unchecked: straight through, delta by delta
                await say(safe)
            elif safe:
                await checked(gate.feed(safe))

        deadline = timings.started + self.cfg.budgets.turn_s - _DONE_MARGIN_S
        outcome, endpoint = "ok", None
        with trio.move_on_at(deadline) as scope, trio.CancelScope() as stream:
            try:
                completion = await self.pool.complete(
                    messages,
                    on_delta,
                    need_vision=image is not None,
                    max_tokens=self.cfg.llm.max_tokens,
                    temperature=self.cfg.llm.temperature,
                    stop=_STOP,
                    bursts_from_start=not spoken,
                )
                endpoint = completion.endpoint
                self.metrics.observe_stage("llm_first_token", completion.first_token_s)
            except AllEndpointsFailed as exc:
                kinds = ",".join(sorted({e.kind for e in exc.errors})) or "none"
                log.warning(
                    "all LLM endpoints failed (%s); turn %d gets the fallback reply", kinds, turn
                )
                outcome = "fallback"
        if scope.cancelled_caught:
            log.warning("turn %d hit the %.1f s budget", turn, self.cfg.budgets.turn_s)
            outcome = "truncated" if parts else "fallback"
        if rejected is None and outcome != "fallback":
            await checked(gate.flush() + masker.flush())
        whole = "".join(parts)
        if (
            guard is not None
            and rejected is None
            and outcome == "ok"
            and (is_empty(whole) or is_echo(whole, question))
        ):
            rejected = Violation("empty" if is_empty(whole) else "echo", "", whole)
        if rejected is not None:
            # Replaced, not trimmed: what is left of a reply that invented something cannot be
            # trusted either. The visitor gets the honest outcome instead.
            self.metrics.guard_rejections.labels(reason=rejected.kind).inc()
            log.warning(
                "fact guard: turn %d's reply replaced (%s %r not in the facts)",
                turn,
                rejected.kind,
                rejected.token,
            )
            d = instead_of_generated(hits, self.policy_settings())
            outcome = "ok"
            start_over()
            await say(d.text)
        elif outcome == "fallback":
            self.metrics.fallbacks.labels(reason="llm").inc()
            start_over()
            await say(self.cfg.llm.fallback_reply)
        elif not parts:
            # The model said nothing usable (e.g. everything masked): still answer something.
            outcome = "fallback"
            self.metrics.fallbacks.labels(reason="empty").inc()
            await say(self.cfg.llm.fallback_reply)
        self.metrics.observe_stage("llm_total", trio.current_time() - t0)
        return outcome, endpoint, d

    def _guard_sources(self, conv: Conversation, question: str, hits: Sequence[Hit]) -> list[str]:
        """What a generated reply may state: the retrieved entries, the persona, the question
        and the replies already given in this conversation (they passed the guard)."""
        sources = [self.cfg.persona.system_prompt, question]
        for h in hits:
            sources += [h.entry.question, h.entry.answer]
        sources += [ex.assistant for ex in conv.context(trio.current_time())]
        return sources

    def _account(
        self,
        conv: Conversation,
        turn: int,
        question: str,
        reply: str,
        outcome: str,
        endpoint: str | None,
        timings: dict[str, float],
        wall_start: float,
        had_image: bool,
        source: str,
        kind: str,
    ) -> None:
        self.metrics.turns.labels(outcome=outcome, source=source).inc()
        if kind:
            self.metrics.answers.labels(kind=kind).inc()
        total = timings.get("total")
        if total is not None:
            self.metrics.observe_stage("turn_total", total / 1000.0)
        log.info(
            "turn done",
            extra={
                "session": conv.session_id,
                "turn": turn,
                "outcome": outcome,
                "kind": kind,
                "endpoint": endpoint,
                "timings": timings,
            },
        )
        if self.store is not None:
            rec = TurnRecord(
                session=conv.session_id,
                turn=turn,
                started_at=wall_start,
                user_text=question,
                reply_text=reply,
                outcome=outcome,
                endpoint=endpoint,
                timings=timings,
                had_image=had_image,
                source=source,
                kind=kind,
            )
            if not self.store.log_turn(rec):
                self.metrics.store_dropped.inc()


def _turn_timings(timings: Timings, leg: VoiceLeg | None) -> dict[str, float]:
    """What reply.done carries and the store keeps: the turn's marks, and for a voice turn the
    spoken side (see VoiceLeg). Pure apart from reading the leg."""
    out = timings.as_dict()
    if leg is None:
        return out
    for name, at in leg.events.items():
        out[name] = round((at - timings.started) * 1000.0, 2)
    out.update(leg.timings)
    # The LLM stage under its voice-figure name; a FAQ answer has no LLM, so its first text
    # stands in (the stage the visitor waits for either way).
    first = out.get("llm_first_token", out.get("first_text"))
    if first is not None:
        out["llm_first_token_ms"] = first
    return out


# "auto" leaves room in llm.local_ctx for the reply (llm.max_tokens) and the turn's own part:
# top_k entries, history_chars of history and the question, about 300 tokens; 512 reserved.
# SmolLM2's tokenizer averages ~3.5 characters a token on FAQ text; 3 errs on the safe side
# (the sample FAQ, 4,052 characters, is 1,151 tokens).
_TURN_TOKENS = 512
_CHARS_PER_TOKEN = 3


def prompt_faq_budget(cfg: Config) -> int:
    """`knowledge.prompt_faq_chars` in characters, "auto" resolved against llm.local_ctx. Pure."""
    chars = cfg.knowledge.prompt_faq_chars
    if chars != "auto":
        return chars
    tokens = cfg.llm.local_ctx - cfg.llm.max_tokens - _TURN_TOKENS
    return max(0, tokens * _CHARS_PER_TOKEN)


def fit_history(history: Sequence[Exchange], budget_chars: int) -> list[Exchange]:
    """The most recent exchanges that fit in `budget_chars` (0 = all), oldest first. A long
    reply keeps its first sentences (~150 chars, "…" added): a follow-up question needs the
    gist of what was said, and each prompt token delays a small local model's first token.
    Pure."""
    if budget_chars <= 0:
        return list(history)
    out: list[Exchange] = []
    left = budget_chars
    for ex in reversed(history):
        reply = _shorten(ex.assistant, min(_REPLY_CHARS, left - len(ex.user)))
        cost = len(ex.user) + len(reply)
        if cost > left or not reply:
            break
        out.append(Exchange(ex.user, reply))
        left -= cost
    return out[::-1]


_REPLY_CHARS = 150


def _shorten(text: str, limit: int) -> str:
    """`text` if it fits, else its leading whole sentences within `limit` + "…" ("" if none)."""
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _sentences(text):
        if len(kept) + len(sentence) + 1 > limit:
            break
        kept += sentence
    return kept.rstrip() + " …" if kept.strip() else ""


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9€$£\"'(])")


_PREPARED_KEPT = 8  # voice sessions at once: the box's microphone and a few browsers


@dataclass(eq=False)
class _Prepared:
    """A decision (once made: `done`) and everything it was made from (`TurnRunner._decide`)."""

    question: str
    alternatives: tuple[str, ...]
    knowledge: KnowledgeBase
    context: PolicyContext | None
    settings: PolicySettings
    config: KnowledgeConfig
    result: tuple[Decision, Grounding] | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def same_inputs(self, other: _Prepared) -> bool:
        """Made from the same question and the very same FAQ, dialog context and settings
        (objects compared by identity: a new FAQ or a later turn's context is another one)."""
        return (
            (self.question, self.alternatives, self.config)
            == (other.question, other.alternatives, other.config)
            and self.knowledge is other.knowledge
            and self.context is other.context
            and self.settings is other.settings
        )


def _sentences(text: str) -> list[str]:
    """Split at sentence ends, keeping the whitespace so the pieces join back exactly."""
    pieces = _SENTENCE_END.split(text.strip())
    return [p + (" " if i < len(pieces) - 1 else "") for i, p in enumerate(pieces) if p]


def _context(conv: Conversation) -> PolicyContext | None:
    ctx = conv.answer_context
    return ctx if isinstance(ctx, PolicyContext) else None
