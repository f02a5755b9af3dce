"""The dialog: turn states and per-visitor conversation context. Pure: no I/O, time passed in.

States follow what the kiosk shows: `idle` (waiting), `listening` (the visitor is speaking),
`thinking` (a question is in, no reply yet), `speaking` (the reply is streaming / playing).
One turn at a time per session: a new question or a cancel ends the running turn first.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Conversation",
    "DialogError",
    "DialogEvent",
    "DialogState",
    "Exchange",
    "SessionRegistry",
    "next_state",
]


class DialogState(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


class DialogEvent(StrEnum):
    SPEECH_STARTED = "speech_started"  # VAD onset (also barge-in while speaking)
    SPEECH_ABANDONED = "speech_abandoned"  # onset that produced no words
    QUESTION = "question"  # a complete question: typed, or the final transcript
    REPLY_STARTED = "reply_started"  # first reply text / audio
    REPLY_DONE = "reply_done"
    CANCEL = "cancel"  # the visitor pressed stop / a new question replaced the turn
    FAILED = "failed"


class DialogError(Exception):
    """An event that makes no sense in the current state (a bug in the caller, not the visitor)."""


_S, _E = DialogState, DialogEvent
_TRANSITIONS: dict[tuple[DialogState, DialogEvent], DialogState] = {
    (_S.IDLE, _E.SPEECH_STARTED): _S.LISTENING,
    (_S.IDLE, _E.QUESTION): _S.THINKING,
    (_S.LISTENING, _E.QUESTION): _S.THINKING,
    (_S.LISTENING, _E.SPEECH_ABANDONED): _S.IDLE,
    (_S.THINKING, _E.REPLY_STARTED): _S.SPEAKING,
    (_S.THINKING, _E.REPLY_DONE): _S.IDLE,  # e.g. a refusal or fallback delivered in one piece
    (_S.SPEAKING, _E.REPLY_DONE): _S.IDLE,
    # Barge-in: speech over the reply (or while thinking) ends the turn and starts listening.
    (_S.THINKING, _E.SPEECH_STARTED): _S.LISTENING,
    (_S.SPEAKING, _E.SPEECH_STARTED): _S.LISTENING,
    # A typed question replaces whatever is running.
    (_S.THINKING, _E.QUESTION): _S.THINKING,
    (_S.SPEAKING, _E.QUESTION): _S.THINKING,
    (_S.SPEAKING, _E.REPLY_STARTED): _S.SPEAKING,
}


def next_state(state: DialogState, event: DialogEvent) -> DialogState:
    """The state after `event`. CANCEL and FAILED return to idle from anywhere."""
    if event in (DialogEvent.CANCEL, DialogEvent.FAILED):
        return DialogState.IDLE
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise DialogError(f"event {event.value!r} is not valid in state {state.value!r}") from None


@dataclass(frozen=True)
class Exchange:
    user: str
    assistant: str


@dataclass
class Conversation:
    """One visitor's context. `touch` on every activity; context older than idle_reset_s is
    forgotten, so the next visitor at the kiosk does not inherit the last one's questions."""

    session_id: str
    idle_reset_s: float
    history_turns: int
    last_active: float
    state: DialogState = DialogState.IDLE
    turns: int = 0
    history: deque[Exchange] = field(default_factory=deque)
    # The answer policy's memory of the previous turn (a pending clarification, the entry last
    # answered); opaque here: the dialog stays pure. Forgotten with the history.
    answer_context: object | None = None

    def apply(self, event: DialogEvent) -> DialogState:
        self.state = next_state(self.state, event)
        return self.state

    def expired(self, now: float) -> bool:
        return now - self.last_active > self.idle_reset_s

    def touch(self, now: float) -> None:
        if self.expired(now):
            self.history.clear()
            self.answer_context = None
        self.last_active = now

    def begin_turn(self, now: float) -> int:
        self.touch(now)
        self.turns += 1
        return self.turns

    def record(self, user: str, assistant: str) -> None:
        if self.history_turns <= 0:
            return
        self.history.append(Exchange(user, assistant))
        while len(self.history) > self.history_turns:
            self.history.popleft()

    def context(self, now: float) -> list[Exchange]:
        return [] if self.expired(now) else list(self.history)


class SessionRegistry:
    """Sessions by id, so a reconnecting client (`hello {session}`) continues its conversation."""

    def __init__(self, *, idle_reset_s: float, history_turns: int, max_sessions: int = 10_000):
        self.idle_reset_s = idle_reset_s
        self.history_turns = history_turns
        self.max_sessions = max_sessions
        self._sessions: dict[str, Conversation] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Conversation | None:
        return self._sessions.get(session_id)

    def resume_or_create(self, session_id: str | None, now: float) -> tuple[Conversation, bool]:
        """The session to use and whether it was resumed (an unknown id gets a fresh session)."""
        if session_id is not None:
            conv = self._sessions.get(session_id)
            if conv is not None and not conv.expired(now):
                conv.touch(now)
                return conv, True
        if len(self._sessions) >= self.max_sessions:
            self.sweep(now)
            if len(self._sessions) >= self.max_sessions:
                # Evict the least recently active: bounded memory beats keeping stale context.
                oldest = min(self._sessions.values(), key=lambda c: c.last_active)
                del self._sessions[oldest.session_id]
        conv = Conversation(
            session_id=secrets.token_urlsafe(12),
            idle_reset_s=self.idle_reset_s,
            history_turns=self.history_turns,
            last_active=now,
        )
        self._sessions[conv.session_id] = conv
        return conv, False

    def sweep(self, now: float) -> int:
        """Drop sessions idle longer than idle_reset_s; returns how many were dropped."""
        stale = [sid for sid, c in self._sessions.items() if c.expired(now)]
        for sid in stale:
            del self._sessions[sid]
        return len(stale)
