import pytest

from appliance.dialog import (
    Conversation,
    DialogError,
    SessionRegistry,
    next_state,
)
from appliance.dialog import (
    DialogEvent as E,
)
from appliance.dialog import (
    DialogState as S,
)


def test_text_turn_path() -> None:
    s = S.IDLE
    for ev, want in [
        (E.QUESTION, S.THINKING),
        (E.REPLY_STARTED, S.SPEAKING),
        (E.REPLY_DONE, S.IDLE),
    ]:
        s = next_state(s, ev)
        assert s is want


def test_voice_and_barge_in() -> None:
    assert next_state(S.IDLE, E.SPEECH_STARTED) is S.LISTENING
    assert next_state(S.LISTENING, E.QUESTION) is S.THINKING
    assert next_state(S.SPEAKING, E.SPEECH_STARTED) is S.LISTENING
    assert next_state(S.LISTENING, E.SPEECH_ABANDONED) is S.IDLE


@pytest.mark.parametrize("state", list(S))
def test_cancel_and_failure_return_to_idle(state: S) -> None:
    assert next_state(state, E.CANCEL) is S.IDLE
    assert next_state(state, E.FAILED) is S.IDLE


def test_invalid_transition_raises() -> None:
    with pytest.raises(DialogError, match="reply_done"):
        next_state(S.IDLE, E.REPLY_DONE)


def test_history_is_bounded_and_forgotten_after_idle() -> None:
    c = Conversation("s", idle_reset_s=60, history_turns=2, last_active=0.0)
    for i in range(3):
        c.begin_turn(float(i))
        c.record(f"q{i}", f"a{i}")
    assert [e.user for e in c.context(3.0)] == ["q1", "q2"]
    assert c.context(100.0) == []  # idle past the reset: the next visitor starts fresh
    assert c.begin_turn(100.0) == 4 and not c.history


def test_registry_resume_and_sweep() -> None:
    reg = SessionRegistry(idle_reset_s=10, history_turns=4)
    a, resumed = reg.resume_or_create(None, 0.0)
    assert not resumed
    b, resumed = reg.resume_or_create(a.session_id, 5.0)
    assert resumed and b is a
    c, resumed = reg.resume_or_create(a.session_id, 50.0)  # expired: a new session
    assert not resumed and c.session_id != a.session_id
    assert reg.sweep(100.0) == 2 and len(reg) == 0
    d, resumed = reg.resume_or_create("unknown", 0.0)
    assert not resumed and d.session_id != "unknown"


def test_registry_is_bounded() -> None:
    reg = SessionRegistry(idle_reset_s=1000, history_turns=4, max_sessions=3)
    ids = [reg.resume_or_create(None, float(t))[0].session_id for t in range(5)]
    assert len(reg) == 3
    assert reg.get(ids[0]) is None and reg.get(ids[4]) is not None
