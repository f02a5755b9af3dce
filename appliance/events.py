"""Server events: what a turn, the voice pipeline and a connection tell a kiosk page.

Frozen dataclasses, one per message type of the /ws contract (docs/protocol.md). Producers
(turns, voice) emit these objects; only the transports (/ws, SSE, the local mirror) turn them
into wire dicts with `to_wire`, so a field is named once and a typo is a type error, not a
silently missing key on a page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "AudioEnd",
    "AudioStart",
    "Choice",
    "Emit",
    "ErrorEvent",
    "HelloEvent",
    "PingEvent",
    "PongEvent",
    "ReplyDelta",
    "ReplyDone",
    "ServerEvent",
    "StateEvent",
    "Transcript",
    "VoiceLocal",
    "merge_deltas",
    "to_wire",
]


@dataclass(frozen=True)
class StateEvent:
    type: ClassVar[str] = "state"
    state: str


@dataclass(frozen=True)
class Transcript:
    type: ClassVar[str] = "transcript"
    text: str
    final: bool


@dataclass(frozen=True)
class ReplyDelta:
    type: ClassVar[str] = "reply.delta"
    turn: int
    text: str
    reset: bool = False  # replace the partial text shown so far (omitted when False)


@dataclass(frozen=True)
class Choice:
    """One button of a clarifying question: an FAQ entry's id and its own question as label."""

    id: str
    label: str


@dataclass(frozen=True)
class ReplyDone:
    type: ClassVar[str] = "reply.done"
    turn: int
    text: str
    timings: dict[str, float]
    outcome: str
    kind: str | None = None
    choices: tuple[Choice, ...] | None = None


@dataclass(frozen=True)
class AudioStart:
    type: ClassVar[str] = "audio.start"
    turn: int
    rate: int


@dataclass(frozen=True)
class AudioEnd:
    type: ClassVar[str] = "audio.end"
    turn: int
    interrupted: bool = False


@dataclass(frozen=True)
class ErrorEvent:
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True)
class PingEvent:
    type: ClassVar[str] = "ping"
    t: Any


@dataclass(frozen=True)
class PongEvent:
    type: ClassVar[str] = "pong"
    t: Any


@dataclass(frozen=True)
class HelloEvent:
    type: ClassVar[str] = "hello"
    session: str
    resumed: bool
    config: dict[str, Any] | None = None
    local: bool | None = None


@dataclass(frozen=True)
class VoiceLocal:
    """A message of the box's own voice conversation, mirrored to a kiosk screen."""

    type: ClassVar[str] = "voice.local"
    msg: DialogEvent


# What a conversation says (turns, voice); the mirror forwards only these.
DialogEvent = StateEvent | Transcript | ReplyDelta | ReplyDone | ErrorEvent
ServerEvent = DialogEvent | AudioStart | AudioEnd | PingEvent | PongEvent | HelloEvent | VoiceLocal
Emit = Callable[[ServerEvent], Awaitable[None]]


def to_wire(event: ServerEvent) -> dict[str, Any]:
    """The JSON object of `event`: `type` first, optional fields left out at their default."""
    out: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if value is None or (value is False and f.default is False):
            continue
        if isinstance(value, tuple):  # choices
            value = [dataclasses.asdict(v) for v in value]
        elif f.name == "msg":  # a mirrored event
            value = to_wire(value)
        out[f.name] = value
    return out


def merge_deltas(last: ReplyDelta, new: ReplyDelta, max_chars: int) -> ReplyDelta | None:
    """One delta saying what `last` then `new` say, or None when both must be sent (another
    turn, a reset, or the merged text would pass `max_chars`)."""
    if new.turn != last.turn or new.reset or len(last.text) + len(new.text) > max_chars:
        return None
    return dataclasses.replace(last, text=last.text + new.text)
