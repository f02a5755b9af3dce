"""Speech made ahead for the usual replies (voice/prefill.py), with the real Piper voice."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing
from voicefixtures import tts  # noqa: F401  (fixture)

from appliance.inference import ModelRunner
from appliance.voice.prefill import fill_spoken, keep_warm, warm_chunks
from appliance.voice.speech import SpokenCache, first_chunk
from appliance.voice.tts import PiperTts

HELLO = "Hello! Ask me anything about your visit."
HOURS = "We are open from 10 am to 6 pm, every day but Monday. Last entry is at 5 pm."
PARKING = "There is a car park behind the museum."


def test_warm_chunks_are_each_replys_first_chunk_once() -> None:
    texts = [HELLO, HOURS, HELLO, "", "   "]
    assert warm_chunks(texts) == [first_chunk(HELLO), first_chunk(HOURS)]
    assert first_chunk(HOURS) != HOURS  # a long reply: only its start is made ahead


async def test_speech_is_made_only_once_nobody_talks(
    tts: PiperTts,  # noqa: F811
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said: list[str] = []
    real = tts.synthesize

    def counted(text: str, **kw: float) -> npt.NDArray[np.float32]:
        said.append(text)
        return real(text, **kw)

    monkeypatch.setattr(tts, "synthesize", counted)
    runner = ModelRunner(tts, name="tts")
    cache = SpokenCache()
    quiet = False
    async with trio.open_nursery() as n:
        done = trio.Event()
        added: list[int] = []

        async def fill() -> None:
            added.append(await fill_spoken(cache, runner, [HELLO, HOURS], 1.0, lambda: quiet))
            done.set()

        n.start_soon(fill)
        await trio.sleep(60)  # a minute of visitors (mock time): nothing made meanwhile
        assert cache.size == (0, 0) and said == []
        quiet = True
        await done.wait()
    assert added == [2] and len(said) == 2
    # Background work: the model still counts as unused, so the next chunk need not wait.
    assert runner.last_used == float("-inf")
    for text in (HELLO, HOURS):
        got = cache.get(tts, first_chunk(text) or "", 1.0)
        assert got is not None and len(got[0]) > 0.3 * tts.sample_rate  # speech, not a stub
        assert float(np.sqrt(np.mean(got[0] ** 2))) > 0.01
    # Made already: nothing synthesized again.
    assert await fill_spoken(cache, runner, [HOURS, HELLO], 1.0, lambda: True) == 0
    assert len(said) == 2


async def test_speech_made_ahead_stops_when_the_cache_is_full(
    tts: PiperTts,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Room for one chunk: the second is not kept, and nothing said to a visitor is evicted."""
    runner = ModelRunner(tts, name="tts")
    said = np.zeros(1000, np.float32), np.zeros(500, np.float32)
    probe = SpokenCache()
    await fill_spoken(probe, runner, [HELLO], 1.0, lambda: True)
    one = probe.size[1]
    cache = SpokenCache(max_bytes=one + said[0].nbytes + said[1].nbytes + 100)
    cache.put(tts, "Said to a visitor.", 1.0, said)
    with caplog.at_level(logging.INFO, "appliance.voice.prefill"):
        added = await fill_spoken(cache, runner, [HELLO, PARKING, HOURS], 1.0, lambda: True)
    assert added == 1 and cache.size[0] == 2
    assert cache.holds(tts, "Said to a visitor.", 1.0)
    assert cache.holds(tts, first_chunk(HELLO) or "", 1.0)
    assert "cache is full" in caplog.text


async def test_keep_warm_makes_the_new_replies_when_they_change(
    tts: PiperTts,  # noqa: F811
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An FAQ save changes the replies: keep_warm notices at its next check and makes them."""
    runner = ModelRunner(tts, name="tts")
    cache = SpokenCache()
    replies = [HELLO]

    async def until_made(text: str) -> None:
        while not cache.holds(tts, first_chunk(text) or "", 1.0):
            await trio.sleep(0.5)  # mock time: waits for the worker thread, asserts no timing

    async with trio.open_nursery() as n:
        n.start_soon(keep_warm, cache, runner, lambda: (replies, 1.0), lambda: True, 5.0)
        await until_made(HELLO)
        assert cache.size[0] == 1
        replies = [HELLO, PARKING]
        await until_made(PARKING)
        assert cache.size[0] == 2
        n.cancel_scope.cancel()
