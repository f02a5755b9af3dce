import json

import pytest

from appliance.events import (
    AudioEnd,
    Choice,
    HelloEvent,
    ReplyDelta,
    ReplyDone,
    ServerEvent,
    StateEvent,
    Transcript,
    VoiceLocal,
    to_wire,
)
from appliance.web import protocol as P
from appliance.web.ratelimit import TokenBucket

LIM = {"max_text_chars": 50, "max_frame_bytes": 1024}


def parse(obj: object) -> P.ClientMessage:
    return P.parse_client_frame(json.dumps(obj), **LIM)


def test_valid_messages() -> None:
    assert parse({"type": "hello"}) == P.Hello(None)
    assert parse({"type": "hello", "session": "abc"}) == P.Hello("abc")
    assert parse({"type": "text", "text": "  hi  "}) == P.TextQuestion("hi", None)
    assert parse({"type": "text", "text": "", "image": "data:x"}) == P.TextQuestion("", "data:x")
    assert parse({"type": "audio.start", "rate": 16000}) == P.AudioStart(16000)
    assert parse({"type": "audio.end"}) == P.AudioEnd()
    assert parse({"type": "cancel"}) == P.Cancel()
    assert parse({"type": "ping", "t": 5}) == P.Ping(5)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("[1,2]", "bad_message"),
        ('{"text": "x"}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "text"}', "missing_field"),
        ('{"type": "text", "text": 5}', "bad_field"),
        ('{"type": "text", "text": "   "}', "bad_field"),
        ('{"type": "text", "text": "' + "x" * 51 + '"}', "too_long"),
        ('{"type": "text", "text": "hi", "image": 7}', "bad_field"),
        ('{"type": "audio.start"}', "missing_field"),
        ('{"type": "audio.start", "rate": 12345}', "bad_field"),
        ('{"type": "audio.start", "rate": true}', "bad_field"),
        ('{"type": "hello", "session": "' + "s" * 65 + '"}', "bad_field"),
        ('{"type": "text", "text": "' + "x" * 2000 + '"}', "frame_too_large"),
        ("[" * 100000, "frame_too_large"),
    ],
)
def test_bad_frames(raw: str, code: str) -> None:
    with pytest.raises(P.ProtocolError) as err:
        P.parse_client_frame(raw, **LIM)
    assert err.value.code == code
    assert err.value.message


def test_deep_nesting_is_bad_json_not_a_crash() -> None:
    with pytest.raises(P.ProtocolError) as err:
        P.parse_client_frame("[" * 5000, max_text_chars=10, max_frame_bytes=1 << 20)
    assert err.value.code in {"bad_json", "bad_message"}


def test_encode_roundtrip() -> None:
    ev = ReplyDelta(1, "Ünïcode ✓")
    assert json.loads(P.encode(ev)) == {"type": "reply.delta", "turn": 1, "text": "Ünïcode ✓"}
    assert json.loads(P.encode(ReplyDelta(1, "x", reset=True)))["reset"] is True
    assert P.error("x", "y") == {"type": "error", "code": "x", "message": "y"}


def test_every_event_encodes_to_its_contract_shape() -> None:
    """Optional fields are left out at their default; nested events and choices become JSON."""
    done = ReplyDone(
        2, "Hi.", {"total_ms": 5.0}, "ok", kind="clarify", choices=(Choice("a", "A?"),)
    )
    assert to_wire(done) == {
        "type": "reply.done",
        "turn": 2,
        "text": "Hi.",
        "timings": {"total_ms": 5.0},
        "outcome": "ok",
        "kind": "clarify",
        "choices": [{"id": "a", "label": "A?"}],
    }
    assert to_wire(AudioEnd(3)) == {"type": "audio.end", "turn": 3}
    assert to_wire(AudioEnd(3, interrupted=True))["interrupted"] is True
    assert to_wire(Transcript("x", final=False)) == {
        "type": "transcript",
        "text": "x",
        "final": False,
    }
    assert to_wire(VoiceLocal(StateEvent("idle"))) == {
        "type": "voice.local",
        "msg": {"type": "state", "state": "idle"},
    }
    assert to_wire(HelloEvent("s", False)) == {"type": "hello", "session": "s", "resumed": False}


def test_hello_parses_local_once() -> None:
    parse = lambda raw: P.parse_client_frame(raw, max_text_chars=10, max_frame_bytes=1024)  # noqa: E731
    assert parse('{"type":"hello","local":true}') == P.Hello(session=None, local=True)
    assert parse('{"type":"hello"}') == P.Hello(session=None, local=None)
    with pytest.raises(P.ProtocolError) as err:
        parse('{"type":"hello","local":"yes"}')
    assert err.value.code == "bad_field"


def test_token_bucket() -> None:
    b = TokenBucket(rate_per_s=2, burst=3)
    assert [b.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow(0.5)  # one token back after 0.5 s at 2/s
    assert not b.allow(0.5)
    assert [b.allow(10.0) for _ in range(4)] == [True, True, True, False]  # refills to burst only


def test_coalesce_merges_runs_of_deltas_only() -> None:
    d = ReplyDelta
    state = StateEvent("speaking")
    queue: list[ServerEvent | bytes] = [
        state,
        d(1, "Hel"),
        d(1, "lo "),
        d(1, "there"),
        b"\x00\x01",
        d(1, "!"),
        d(1, "Again", reset=True),
        d(1, "."),
        d(2, "New"),
    ]
    assert P.coalesce(queue) == [
        state,
        d(1, "Hello there"),
        b"\x00\x01",
        d(1, "!"),
        d(1, "Again.", reset=True),
        d(2, "New"),
    ]
    assert P.coalesce([]) == []


def test_coalesce_preserves_the_text_a_client_builds() -> None:
    deltas: list[ServerEvent | bytes] = [ReplyDelta(3, w) for w in "one two three four".split()]
    merged = P.coalesce(deltas)
    assert merged == [ReplyDelta(3, "onetwothreefour")]
