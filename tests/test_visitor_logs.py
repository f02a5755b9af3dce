"""What visitors said and were told never reaches the journal at the production log level.

The real service on loopback; the local voice conversation's events enter through
`LocalVoice.emit`, the path its microphone pipeline uses (no devices needed for that).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from support import StartService

from appliance.events import ReplyDone, StateEvent, Transcript
from appliance.voice.local import LocalVoice, audio_settings

HEARD = "Is my neighbour Mrs Example at the museum today?"
TOLD = "I cannot tell you who is visiting, but the front desk can page someone."


async def test_local_voice_logs_visitor_text_at_debug_only(
    start_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    svc = await start_service()
    voice = LocalVoice(svc.ctx, cast(Any, None), audio_settings(svc.ctx.cfg))
    caplog.set_level(logging.DEBUG, logger="appliance.voice.local")
    await voice.emit(StateEvent("listening"))
    await voice.emit(Transcript(HEARD, final=True))
    await voice.emit(ReplyDone(1, TOLD, {"voice_to_voice_ms": 900.0}, "ok"))
    records = [r for r in caplog.records if r.name == "appliance.voice.local"]
    info = [r for r in records if r.levelno >= logging.INFO]
    debug = [r for r in records if r.levelno < logging.INFO]
    # At info (what the journal keeps): the turn's outcome and timings, no visitor text.
    replied = [r for r in info if r.getMessage().startswith("local voice replied")]
    assert len(replied) == 1
    assert getattr(replied[0], "outcome", None) == "ok"
    assert getattr(replied[0], "timings", None) == {"voice_to_voice_ms": 900.0}
    for r in info:
        text = r.getMessage() + repr(vars(r))
        assert HEARD not in text and TOLD not in text, r.getMessage()
    # At debug (a developer's own box): both texts, for diagnosis.
    joined = " ".join(r.getMessage() for r in debug)
    assert HEARD in joined and TOLD in joined
