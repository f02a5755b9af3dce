"""The fan-out of the box's own voice conversation (`voice/local.py`, the kiosk's
microphone and speaker) to the pages that are the kiosk's own screen (`web/ws.py` decides who
subscribes). Publishing never blocks and never fails: each subscriber has a bounded buffer in
which superseded messages collapse (deltas of one reply merge, a newer partial transcript or state
replaces an older one); what still does not fit is dropped and counted, per subscriber and in
total. A slow page therefore loses mirrored messages, never the voice pipeline's time.
"""

from __future__ import annotations

import logging
from collections import deque
from types import TracebackType

import trio

from .events import (
    DialogEvent,
    ErrorEvent,
    ReplyDelta,
    ReplyDone,
    StateEvent,
    Transcript,
    merge_deltas,
)

__all__ = ["MIRRORED_TYPES", "LocalMirror", "MirrorSubscription"]

log = logging.getLogger("appliance.mirror")

# The local conversation's dialog events that pages may see (never audio, never a session id).
MIRRORED_TYPES = (StateEvent, Transcript, ReplyDelta, ReplyDone, ErrorEvent)
# Messages one subscriber may have waiting (after merging) before new ones are dropped.
MIRROR_BUFFER = 64
# Merged reply deltas stop growing here; further text queues as another delta.
_MERGE_MAX_CHARS = 16384


def _merge(last: DialogEvent, ev: DialogEvent) -> DialogEvent | None:
    """One event that says what `last` then `ev` say, or None when both must be sent."""
    if type(ev) is not type(last):
        return None
    if isinstance(ev, StateEvent):
        return ev
    if isinstance(ev, Transcript) and isinstance(last, Transcript):
        return ev if not last.final and not ev.final else None  # a newer partial
    if isinstance(ev, ReplyDelta) and isinstance(last, ReplyDelta):
        return merge_deltas(last, ev, _MERGE_MAX_CHARS)
    return None


class MirrorSubscription:
    """One page's view of the mirror: a bounded buffer, read with `async for` until closed."""

    def __init__(self, mirror: LocalMirror, limit: int) -> None:
        self._mirror = mirror
        self.limit = limit
        self._buf: deque[DialogEvent] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False
        self.delivered = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf)

    def offer(self, msg: DialogEvent) -> bool:
        """Queue `msg` without waiting; False (counted) when the buffer is full."""
        if self.closed:
            return False
        if self._buf:
            merged = _merge(self._buf[-1], msg)
            if merged is not None:
                self._buf[-1] = merged
                return True
        if len(self._buf) >= self.limit:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("kiosk page reads the local voice mirror too slowly; dropping")
            return False
        self._buf.append(msg)
        self._lot.unpark_all()
        return True

    async def receive(self) -> DialogEvent:
        while not self._buf:
            if self.closed:
                raise trio.EndOfChannel
            await self._lot.park()
        await trio.lowlevel.checkpoint()
        if not self._buf:  # closed meanwhile
            raise trio.EndOfChannel
        self.delivered += 1
        return self._buf.popleft()

    def __aiter__(self) -> MirrorSubscription:
        return self

    async def __anext__(self) -> DialogEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe; a reader waiting in `receive` ends (what was buffered is discarded)."""
        if not self.closed:
            self.closed = True
            self._buf.clear()
            self._mirror._subs.discard(self)
            self._lot.unpark_all()

    def __enter__(self) -> MirrorSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalMirror:
    """Fan-out of the local voice conversation's dialog messages to subscribed pages."""

    def __init__(self, limit: int = MIRROR_BUFFER) -> None:
        self.limit = limit
        self._subs: set[MirrorSubscription] = set()
        self.last_state: DialogEvent | None = None
        self.published = 0
        self.dropped = 0  # (message, subscriber) pairs that did not fit

    @property
    def subscriptions(self) -> tuple[MirrorSubscription, ...]:
        """The current subscribers (for status and tests)."""
        return tuple(self._subs)

    def publish(self, msg: DialogEvent) -> int:
        """Offer one message to every subscriber; never waits. Returns how many took it."""
        if not isinstance(msg, MIRRORED_TYPES):
            return 0
        self.published += 1
        if isinstance(msg, StateEvent):
            self.last_state = msg
        taken = 0
        for sub in list(self._subs):
            if sub.offer(msg):
                taken += 1
            else:
                self.dropped += 1
        return taken

    def subscribe(self, limit: int | None = None) -> MirrorSubscription:
        """A new subscriber, registered now; its buffer starts with the local conversation's
        current state (idle before it said any), so a page that (re)connects mid-turn, or to a
        restarted service, shows the right indicator at once."""
        sub = MirrorSubscription(self, limit or self.limit)
        sub.offer(self.last_state or StateEvent("idle"))
        self._subs.add(sub)
        return sub
