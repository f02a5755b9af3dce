"""Ordered LLM endpoints with hedging and failover, plus per-endpoint health.

One `complete` call races endpoints as little as possible: the first candidate starts alone, the
next one joins only when the first fails or has not produced a token within first_token_s, and
the first endpoint to deliver a token wins while all others are cancelled (streams closed). The
decisions live in `HedgePlan`, a pure state machine; `LLMPool.complete` is the trio plumbing
(a nursery of attempt tasks reporting over one memory channel).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import trio

from appliance.llm.client import Endpoint, LLMError, ReadPace, StallWatch, probe, stream_chat
from appliance.llm.conn import KeepAlive, on_loopback

__all__ = [
    "DELTA_COALESCE_S",
    "SHOWN_COALESCE_S",
    "AllEndpointsFailed",
    "Completion",
    "EndpointHealth",
    "HedgePlan",
    "LLMPool",
]

# The service's `coalesce_s`: ~25 text updates a second at most, a few tokens each, instead of
# one per token (a local model streams ~70/s); the first token and clause ends are not held.
DELTA_COALESCE_S = 0.04
# ... and for a reply that is only shown (typed questions, SSE chats): ten updates a second,
# a few words each, read the same on a screen, and each update costs the whole way out (the
# stream's read, the event, a WebSocket frame). Measured with `appliance bench load`: ~18 %
# less CPU per turn than at DELTA_COALESCE_S. A spoken reply keeps the shorter interval: its
# clause ends feed the speech synthesiser.
SHOWN_COALESCE_S = 0.1


@dataclass
class EndpointHealth:
    name: str
    ok: bool | None = None  # None until the endpoint has been tried
    last_error: str | None = None  # "kind: detail"
    last_error_at: float | None = None  # trio.current_time()
    consecutive_failures: int = 0
    last_latency_s: float | None = None  # time to first token (or probe round trip)


@dataclass(frozen=True)
class Completion:
    text: str  # the winner's full reply (after a failover: only the last endpoint's text)
    endpoint: str
    first_token_s: float  # from the call to the first delta handed to on_delta
    errors: list[LLMError]  # failures seen on the way (hedged losers cancelled are not errors)


class AllEndpointsFailed(Exception):
    def __init__(self, errors: list[LLMError]) -> None:
        self.errors = errors
        super().__init__("all LLM endpoints failed: " + "; ".join(str(e) for e in errors))


@dataclass
class HedgePlan:
    """Pure hedging/failover policy over candidate indices 0..n-1 (already in try order).

    Every method returns the candidates to launch now; the caller launches them and feeds the
    events back. A candidate is "live" from launch until it fails or is cancelled as a loser.
    """

    n: int
    first_token_s: float
    next_untried: int = 0
    live: list[int] = field(default_factory=list)
    winner: int | None = None
    reset_pending: bool = False  # a delta was forwarded from an endpoint that then failed
    forwarded: bool = False
    last_launch_at: float = 0.0

    def _launch(self, now: float) -> list[int]:
        if self.next_untried >= self.n:
            return []
        i = self.next_untried
        self.next_untried += 1
        self.live.append(i)
        self.last_launch_at = now
        return [i]

    def start(self, now: float) -> list[int]:
        return self._launch(now)

    def hedge_deadline(self) -> float | None:
        """When to start the next candidate if no token has arrived by then."""
        if self.winner is None and self.live and self.next_untried < self.n:
            return self.last_launch_at + self.first_token_s
        return None

    def on_hedge_timer(self, now: float) -> list[int]:
        deadline = self.hedge_deadline()
        if deadline is None or now < deadline:
            return []
        return self._launch(now)

    def on_failure(self, i: int, now: float) -> list[int]:
        if i not in self.live:
            return []  # a loser already cancelled
        self.live.remove(i)
        if i == self.winner:
            self.winner = None
            self.reset_pending = self.forwarded
        if self.winner is None:
            return self._launch(now)
        return []

    def on_token(self, i: int) -> tuple[bool, bool, list[int]]:
        """Return (forward it, with reset, candidates to cancel)."""
        if i not in self.live:
            return False, False, []
        cancel: list[int] = []
        reset = False
        if self.winner is None:
            self.winner = i
            cancel = [j for j in self.live if j != i]
            self.live = [i]
            reset, self.reset_pending = self.reset_pending, False
        elif i != self.winner:
            return False, False, []
        self.forwarded = True
        return True, reset, cancel

    @property
    def exhausted(self) -> bool:
        return not self.live and self.next_untried >= self.n


@dataclass(frozen=True)
class _Token:
    i: int
    text: str


@dataclass(frozen=True)
class _Failed:
    i: int
    error: LLMError


@dataclass(frozen=True)
class _Done:
    i: int


_Event = _Token | _Failed | _Done

_CLAUSE_ENDS = frozenset(".,;:!?\n")


def _ends_clause(text: str) -> bool:
    """Whether a token carries punctuation that may end a clause (held text goes out then)."""
    return not _CLAUSE_ENDS.isdisjoint(text)


class LLMPool:
    """Endpoints in config order; `complete` hedges and fails over between them."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        client: httpx.AsyncClient,
        *,
        first_token_s: float,
        stall_s: float,
        on_error: Callable[[str, str], None] | None = None,
        penalty_failures: int = 3,
        penalty_window_s: float = 30.0,
        coalesce_s: float = 0.0,
        shown_coalesce_s: float | None = None,
        keepalive: KeepAlive | None = None,
    ) -> None:
        self._endpoints = list(endpoints)
        self._client = client
        # Loopback endpoints over kept-alive connections (conn.py); the rest over `client`.
        self._keepalive = keepalive
        self.first_token_s = first_token_s
        self.stall_s = stall_s
        # > 0: after a delta, the winner's next tokens are gathered for up to this long and
        # handed to on_delta as one (see `complete`); 0 forwards every token on its own.
        self.coalesce_s = coalesce_s
        # ... for a reply that is only shown (`complete(bursts_from_start=True)`); None: the same.
        self.shown_coalesce_s = coalesce_s if shown_coalesce_s is None else shown_coalesce_s
        self._on_error = on_error
        self._penalty_failures = penalty_failures
        self._penalty_window_s = penalty_window_s
        self._health = {ep.name: EndpointHealth(ep.name) for ep in self._endpoints}

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    @property
    def health(self) -> list[EndpointHealth]:
        """A snapshot per endpoint, in config order."""
        return [replace(self._health[ep.name]) for ep in self._endpoints]

    def _record_ok(self, name: str, latency_s: float) -> None:
        h = self._health[name]
        h.ok = True
        h.consecutive_failures = 0
        h.last_latency_s = latency_s

    def _record_failure(self, err: LLMError) -> None:
        h = self._health[err.endpoint]
        h.ok = False
        h.last_error = f"{err.kind}: {err.detail}" if err.detail else err.kind
        h.last_error_at = trio.current_time()
        h.consecutive_failures += 1
        if self._on_error is not None:
            self._on_error(err.endpoint, err.kind)

    def _penalised(self, name: str, now: float) -> bool:
        h = self._health[name]
        return (
            h.consecutive_failures >= self._penalty_failures
            and h.last_error_at is not None
            and now - h.last_error_at <= self._penalty_window_s
        )

    def candidates(self, need_vision: bool = False) -> list[Endpoint]:
        """Config order (vision-capable only if needed); recently failing ones moved last."""
        eps = [ep for ep in self._endpoints if ep.vision or not need_vision]
        now = trio.current_time()
        return sorted(eps, key=lambda ep: self._penalised(ep.name, now))  # stable

    async def prime(self, messages: list[dict[str, Any]], timeout_s: float) -> bool:
        """Have the endpoint a turn would try first evaluate `messages` now (one token, the
        reply ignored), if that endpoint is on this machine: a llama.cpp server keeps the
        prompt's KV cache, so the turn's identical prompt then costs it one token instead of
        the whole prompt. Remote endpoints are never primed (a second paid request). Returns
        whether a priming request was answered; never raises."""
        candidates = self.candidates()
        if not candidates or not on_loopback(candidates[0].url):
            return False
        try:
            await probe(self._client, candidates[0], timeout_s, messages, self._keepalive)
        except LLMError:
            return False
        return True

    async def warm(self, messages: list[dict[str, Any]], timeout_s: float) -> dict[str, str | None]:
        """Have every endpoint on this machine evaluate `messages` (the prompt prefix every turn
        starts with), concurrently, one token each: llama.cpp then reuses that KV cache for
        every turn's prompt. Remote endpoints are left alone (a paid request each). Returns
        endpoint name -> None (warmed) or the error ("kind: detail"); never raises."""
        out: dict[str, str | None] = {}

        async def one(ep: Endpoint) -> None:
            try:
                await probe(self._client, ep, timeout_s, messages, self._keepalive)
            except LLMError as e:
                out[ep.name] = f"{e.kind}: {e.detail}" if e.detail else e.kind
            else:
                out[ep.name] = None

        async with trio.open_nursery() as nursery:
            for ep in self._endpoints:
                if on_loopback(ep.url):
                    nursery.start_soon(one, ep)
        return out

    async def probe_all(self, timeout_s: float, skip: Collection[str] = ()) -> list[EndpointHealth]:
        """Warm every endpoint (but those named in `skip`) up concurrently and record the
        outcome; never raises. Returns the health of all of them."""

        async def one(ep: Endpoint) -> None:
            try:
                latency = await probe(self._client, ep, timeout_s, keepalive=self._keepalive)
            except LLMError as e:
                self._record_failure(e)
            else:
                self._record_ok(ep.name, latency)

        async with trio.open_nursery() as nursery:
            for ep in self._endpoints:
                if ep.name not in skip:
                    nursery.start_soon(one, ep)
        return self.health

    async def _attempt(
        self,
        i: int,
        ep: Endpoint,
        scope: trio.CancelScope,
        send: trio.MemorySendChannel[_Event],
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
        errors: list[LLMError],
        poke: Callable[[], None],
        pace: ReadPace | None,
        bursts_from_start: bool,
    ) -> None:
        with scope:
            started = trio.current_time()
            first = True
            # A first token slower than stall_s but within first_token_s is on time: a restarted
            # local server's first prompt (cold cache) is one. Given up at stall_s, its
            # evaluation went on in the server, and the next turn queued behind it and was
            # given up too.
            watch = StallWatch(self.stall_s, first_s=max(self.stall_s, self.first_token_s))
            try:
                with watch.scope:
                    stream = stream_chat(
                        self._client,
                        ep,
                        messages,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stall_s=self.stall_s,
                        stop=stop,
                        watch=watch,
                        keepalive=self._keepalive,
                        pace=pace,
                    )
                    async with aclosing(stream) as tokens:
                        async for text in tokens:
                            send.send_nowait(_Token(i, text))
                            if first:
                                first = False
                                self._record_ok(ep.name, trio.current_time() - started)
                                if pace is not None and bursts_from_start:
                                    pace.on = True  # shown only: nothing waits for a clause
                            if _ends_clause(text):
                                poke()
                                if pace is not None:
                                    pace.on = True  # the first clause is out: read in bursts
                if watch.scope.cancelled_caught:
                    raise watch.error(ep.name)
            except LLMError as e:
                errors.append(e)
                self._record_failure(e)
                send.send_nowait(_Failed(i, e))
                poke()
            else:
                send.send_nowait(_Done(i))
                poke()

    async def complete(
        self,
        messages: list[dict[str, Any]],
        on_delta: Callable[[str, bool], Awaitable[None]],
        *,
        need_vision: bool = False,
        max_tokens: int = 160,
        temperature: float = 0.3,
        stop: Sequence[str] = (),
        bursts_from_start: bool = False,
    ) -> Completion:
        """Stream one reply, forwarding only the winning endpoint's deltas to on_delta(text, reset).

        reset=True marks the first delta after a mid-stream failover: the caller replaces the
        partial text it has shown. Raises AllEndpointsFailed when no candidate is left. Prompt to
        cancel: the caller's deadline scope closes every HTTP stream on its way out.

        With `coalesce_s` > 0, on_delta runs at most once per `coalesce_s` with all tokens that
        arrived since, except that the first token, a token after a quiet spell, a token that
        ends a clause (the voice pipeline speaks clause by clause) and the end or failure of
        the stream deliver at once: each delta costs the whole way out (masking, one event,
        one frame per screen), a token costs little, and ~40 ms batches of text look the same.
        After the first clause the attempts also read their streams once per `coalesce_s`
        (ReadPace), each read's tokens going out together: the reads, not the deltas, were
        most of a turn's CPU. With `bursts_from_start` (a reply that is shown, not spoken) they
        do so after the first token, and every `shown_coalesce_s`: a clause end then waits for
        the next read (at most that long), which a reader cannot see.
        """
        interval = self.shown_coalesce_s if bursts_from_start else self.coalesce_s
        cands = self.candidates(need_vision)
        if not cands:
            raise AllEndpointsFailed([LLMError("pool", "no_vision", "no endpoint has vision=True")])
        errors: list[LLMError] = []
        t0 = trio.current_time()
        plan = HedgePlan(len(cands), self.first_token_s)
        # Unbounded: attempts never block on the coordinator (replies are max_tokens long).
        send, recv = trio.open_memory_channel[_Event](math.inf)
        scopes: dict[int, trio.CancelScope] = {}
        parts: list[str] = []
        first_token_s: float | None = None
        result: Completion | None = None
        callback_error: Exception | None = None
        held: list[str] = []  # the winner's tokens not yet handed to on_delta
        delivered_at: float | None = None  # when on_delta last ran
        hold: trio.CancelScope | None = None  # the wait for the next flush, while coalescing
        paces: dict[int, ReadPace] = {}

        def poke() -> None:
            """An attempt has something that should go out now (clause end, end, failure)."""
            if hold is not None:
                hold.cancel()

        async def deliver(reset: bool = False) -> bool:
            nonlocal callback_error, delivered_at
            text = "".join(held)
            held.clear()
            delivered_at = trio.current_time()
            try:
                await on_delta(text, reset)
            except Exception as e:  # re-raised below, not wrapped in a group
                callback_error = e
                return False
            return True

        async def handle(event: _Event, *, batched: bool) -> bool:
            """Apply one attempt event; False once the call is over (result or callback error).
            Batched tokens are only held: the caller delivers them together afterwards."""
            nonlocal first_token_s, result
            if held and not isinstance(event, _Token) and not await deliver():
                return False  # what was held goes out before the end or a failover
            if isinstance(event, _Failed):
                launch(plan.on_failure(event.i, trio.current_time()))
            elif isinstance(event, _Token):
                forward, reset, cancel = plan.on_token(event.i)
                for j in cancel:
                    scopes[j].cancel()
                if forward:
                    if reset:
                        parts.clear()
                    if first_token_s is None:
                        first_token_s = trio.current_time() - t0
                    parts.append(event.text)
                    held.append(event.text)
                    if (reset or not batched) and not await deliver(reset):
                        return False
            elif event.i == plan.winner:  # _Done
                result = Completion(
                    text="".join(parts),
                    endpoint=cands[event.i].name,
                    first_token_s=first_token_s if first_token_s is not None else 0.0,
                    errors=list(errors),
                )
                return False
            return True

        async with trio.open_nursery() as nursery:

            def launch(indices: list[int]) -> None:
                for i in indices:
                    scopes[i] = trio.CancelScope()
                    if interval > 0:
                        paces[i] = ReadPace(interval, poke)
                    nursery.start_soon(
                        self._attempt,
                        i,
                        cands[i],
                        scopes[i],
                        send,
                        messages,
                        max_tokens,
                        temperature,
                        stop,
                        errors,
                        poke,
                        paces.get(i),
                        bursts_from_start,
                    )

            launch(plan.start(trio.current_time()))
            going = True
            while going and not plan.exhausted:
                if interval > 0 and delivered_at is not None and plan.winner is not None:
                    # Coalescing: the winner's tokens gather in the channel without waking us,
                    # until the flush time or a poke; then they go out as one delta. A paced
                    # reader pokes after each read: the window is only a backstop then, late
                    # enough not to flush just before a read's tokens come in.
                    pace = paces.get(plan.winner)
                    window = interval * (1.5 if pace is not None and pace.on else 1.0)
                    with trio.move_on_at(delivered_at + window) as hold:
                        await trio.sleep_forever()
                    hold = None
                    batch: list[_Event] = []
                    while True:
                        try:
                            batch.append(recv.receive_nowait())
                        except trio.WouldBlock:
                            break
                    if batch:
                        for event in batch:
                            going = await handle(event, batched=True)
                            if not going:
                                break
                        if going and held:
                            going = await deliver()
                        continue
                    # Nothing came in a whole window: the next token goes out when it arrives.
                deadline = plan.hedge_deadline()
                got: _Event | None = None
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    got = await recv.receive()
                if got is None:
                    launch(plan.on_hedge_timer(trio.current_time()))
                else:
                    going = await handle(got, batched=False)
            nursery.cancel_scope.cancel()
        if callback_error is not None:
            raise callback_error
        if result is None:
            raise AllEndpointsFailed(list(errors))
        return result
