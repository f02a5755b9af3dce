"""The /ws protocol (docs/protocol.md): parse client frames, encode server events. Pure.

Every bad frame becomes a `ProtocolError` with a stable `code` and a human message; the
connection handler answers it with `error {code, message}` and keeps the connection up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..events import ReplyDelta, ServerEvent, merge_deltas, to_wire

__all__ = [
    "AudioEnd",
    "AudioStart",
    "Cancel",
    "Choose",
    "ClientMessage",
    "Hello",
    "Listen",
    "Ping",
    "Pong",
    "ProtocolError",
    "TextQuestion",
    "coalesce",
    "encode",
    "error",
    "parse_client_frame",
    "parse_client_message",
]

_SESSION_MAX = 64
_SUPPORTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Hello:
    session: str | None
    local: bool | None = None  # mirror the box's own voice conversation (None: keep as is)


@dataclass(frozen=True)
class TextQuestion:
    text: str
    image: str | None


@dataclass(frozen=True)
class Choose:
    """A button of a clarifying reply: the turn that asked and the chosen entry's id."""

    turn: int
    id: str


@dataclass(frozen=True)
class AudioStart:
    rate: int


@dataclass(frozen=True)
class AudioEnd:
    pass


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Listen:
    """Touch to talk: the box's own microphone listens for one question (kiosk screen only)."""


@dataclass(frozen=True)
class Ping:
    t: Any


@dataclass(frozen=True)
class Pong:
    t: Any


ClientMessage = (
    Hello | TextQuestion | Choose | AudioStart | AudioEnd | Cancel | Listen | Ping | Pong
)


def _unicode(value: str, key: str) -> str:
    """JSON may carry lone surrogates ("\\ud800"); no later stage can encode them (the LLM
    request, the store, the log), so they are refused here."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("bad_field", f"'{key}' is not valid Unicode text") from None
    return value


def _opt_str(msg: dict[str, Any], key: str) -> str | None:
    v = msg.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ProtocolError("bad_field", f"'{key}' must be a string")
    return _unicode(v, key)


def parse_client_frame(raw: str, *, max_text_chars: int, max_frame_bytes: int) -> ClientMessage:
    """Parse one JSON text frame from a client."""
    if len(raw) > max_frame_bytes or len(raw.encode("utf-8", "surrogatepass")) > max_frame_bytes:
        raise ProtocolError(
            "frame_too_large", f"Message too large: the limit is {max_frame_bytes // 1024} KiB."
        )
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "Message is not valid JSON.") from None
    return parse_client_message(msg, max_text_chars=max_text_chars)


def parse_client_message(msg: Any, *, max_text_chars: int) -> ClientMessage:
    """Validate one decoded message (also used for the SSE endpoint's JSON body)."""
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "Message must be a JSON object with a 'type'.")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "Message has no 'type'.")
    if kind == "text":
        text = msg.get("text")
        if text is None:
            raise ProtocolError("missing_field", "'text' message needs a 'text' field.")
        if not isinstance(text, str):
            raise ProtocolError("bad_field", "'text' must be a string")
        text = _unicode(text, "text")
        image = _opt_str(msg, "image")
        text = text.strip()
        if not text and image is None:
            raise ProtocolError("bad_field", "The question is empty.")
        if len(text) > max_text_chars:
            raise ProtocolError(
                "too_long",
                f"Question too long: {len(text)} characters, the limit is {max_text_chars}.",
            )
        return TextQuestion(text=text, image=image)
    if kind == "hello":
        session = _opt_str(msg, "session")
        if session is not None and not (0 < len(session) <= _SESSION_MAX):
            raise ProtocolError("bad_field", "'session' has an invalid length")
        local = msg.get("local")
        if local is not None and not isinstance(local, bool):
            raise ProtocolError("bad_field", "'local' must be true or false")
        return Hello(session=session or None, local=local)
    if kind == "choose":
        turn, choice = msg.get("turn"), msg.get("id")
        if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
            raise ProtocolError("bad_field", "'choose' needs the integer 'turn' it answers.")
        if not isinstance(choice, str) or not 0 < len(choice) <= 64:
            raise ProtocolError("bad_field", "'choose' needs the 'id' of one of the choices.")
        return Choose(turn=turn, id=choice)
    if kind == "ping":
        return Ping(t=msg.get("t"))
    if kind == "pong":
        return Pong(t=msg.get("t"))
    if kind == "cancel":
        return Cancel()
    if kind == "listen":
        return Listen()
    if kind == "audio.start":
        rate = msg.get("rate")
        if rate is None:
            raise ProtocolError("missing_field", "'audio.start' needs a 'rate' field.")
        if not isinstance(rate, int) or isinstance(rate, bool) or rate not in _SUPPORTED_RATES:
            raise ProtocolError("bad_field", f"Unsupported audio rate {rate!r}.")
        return AudioStart(rate=rate)
    if kind == "audio.end":
        return AudioEnd()
    raise ProtocolError("unknown_type", f"Unknown message type {kind[:40]!r}.")


def coalesce(queue: list[ServerEvent | bytes]) -> list[ServerEvent | bytes]:
    """Merge runs of `reply.delta` for the same turn into one message, in order.

    A delta with `reset` starts a new run (the client must see the reset); anything else,
    binary audio included, ends the run. The concatenated text is what the client would have
    built from the separate deltas, so the merge is invisible apart from fewer frames."""
    out: list[ServerEvent | bytes] = []
    for item in queue:
        prev = out[-1] if out else None
        if isinstance(item, ReplyDelta) and isinstance(prev, ReplyDelta):
            merged = merge_deltas(prev, item, max_chars=1 << 30)
            if merged is not None:
                out[-1] = merged
                continue
        out.append(item)
    return out


def encode(event: ServerEvent) -> str:
    """One server event as the JSON text of a /ws frame."""
    return json.dumps(to_wire(event), ensure_ascii=False, separators=(",", ":"))


def error(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an HTTP error (the /api and /admin endpoints)."""
    return {"type": "error", "code": code, "message": message}
