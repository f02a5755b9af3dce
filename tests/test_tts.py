"""Piper TTS with the real voice and espeak-ng; the pure clause splitting and id framing."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing
from voicefixtures import tts  # noqa: F401  (fixture)

from appliance.voice.phonemes import Clause, phoneme_ids, split_clauses
from appliance.voice.speech import (
    Prefetch,
    SpokenCache,
    first_chunk,
    synthesize_chunk,
    trim_lead,
)
from appliance.voice.tts import PiperTts, VoiceConfig

# --- pure ---------------------------------------------------------------------------------


def test_split_sentences_and_clauses() -> None:
    assert split_clauses("Hello, friend. How are you?") == [
        [Clause("Hello", ","), Clause("friend", ".")],
        [Clause("How are you", "?")],
    ]


def test_split_keeps_numbers_and_defaults_to_statement() -> None:
    assert split_clauses("It costs 3.5 euros or 1,000 yen") == [
        [Clause("It costs 3.5 euros or 1,000 yen", ".")]
    ]


def test_split_quotes_dashes_and_stray_punctuation() -> None:
    text = 'She said "wait!" — then left; really?! ... \n ok'
    assert split_clauses(text) == [
        [Clause('She said "wait', "!")],
        [Clause("then left", ";"), Clause("really", "?")],
        [Clause("ok", ".")],
    ]
    assert split_clauses("  ...  ") == []


def test_phoneme_ids_framing() -> None:
    id_map = {"^": [1], "_": [0], "$": [2], "a": [14], ",": [8]}
    unknown: list[str] = []
    assert phoneme_ids("a,ꭓa", id_map, unknown=unknown) == [1, 0, 14, 0, 8, 0, 14, 0, 2]
    assert unknown == ["ꭓ"]


def test_voice_config_rejects_non_piper_json() -> None:
    with pytest.raises(ValueError, match="not a Piper voice config"):
        VoiceConfig.from_json({"audio": {"sample_rate": 22050}})


# --- real voice ---------------------------------------------------------------------------


def test_phonemize_restores_punctuation(tts: PiperTts) -> None:  # noqa: F811
    out = tts.phonemize("Hello, my friend. Is the museum open?")
    assert len(out) == 2
    assert out[0].endswith(".") and "," in out[0]
    assert out[1].endswith("?")
    assert "mjuːzˈiəm" in out[1]
    ids = phoneme_ids(out[1], tts.config.phoneme_id_map)
    assert ids[:2] == [1, 0] and ids[-1] == 2 and 13 in ids  # "?" is id 13 in this voice


def test_synthesize_welcome(tts: PiperTts) -> None:  # noqa: F811
    audio = tts.synthesize("Welcome to the museum.")
    assert tts.sample_rate == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    duration = len(audio) / tts.sample_rate
    assert 0.8 <= duration <= 3.0
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.01  # speech, not silence


def test_sentences_stream_and_speed(tts: PiperTts) -> None:  # noqa: F811
    parts = list(tts.iter_synthesize("Welcome. The museum opens at nine."))
    assert len(parts) == 2 and all(len(p) > 0.2 * tts.sample_rate for p in parts)
    normal = len(tts.synthesize("The museum opens at nine in the morning."))
    slow = len(tts.synthesize("The museum opens at nine in the morning.", length_scale=1.6))
    assert slow > 1.25 * normal
    with pytest.raises(ValueError):
        tts.synthesize("x", length_scale=0.0)


def test_nothing_to_say(tts: PiperTts) -> None:  # noqa: F811
    assert len(tts.synthesize("  ... !! ")) == 0
    tts.warm_up()


def test_trim_lead_drops_the_silent_run_in_only() -> None:
    rate = 22050
    run_in = np.full(rate // 20, 0.002, dtype=np.float32)  # 50 ms of near-silence
    word = np.sin(np.arange(1, rate // 10 + 1) * 0.3).astype(np.float32) * 0.5
    out = trim_lead(np.concatenate([run_in, word]), rate)
    keep = int(0.01 * rate)
    assert len(out) == len(word) + keep  # 10 ms kept before the word
    assert np.array_equal(out[keep:], word)
    quiet = np.zeros(100, dtype=np.float32)
    assert trim_lead(quiet, rate) is quiet  # nothing loud: left alone


def test_synthesized_chunk_starts_within_10_ms_of_its_first_word(tts: PiperTts) -> None:  # noqa: F811
    audio, ref = synthesize_chunk(tts, "Welcome to the museum.", 1.0)
    first_loud = int(np.flatnonzero(np.abs(audio) > 0.01)[0])
    assert first_loud <= int(0.011 * tts.sample_rate)
    assert abs(len(ref) / 16000 - len(audio) / tts.sample_rate) < 0.01  # the echo reference


async def test_prefetch_hands_over_one_chunk_once() -> None:
    pf = Prefetch()
    a = (np.ones(4, np.float32), np.ones(2, np.float32))
    assert await pf.take("Hello there,") is None  # nothing claimed
    assert pf.begin("Hello there,") and not pf.begin("Hello there,")  # claimed once
    async with trio.open_nursery() as n:
        got: list[object] = []

        async def taker() -> None:
            got.append(await pf.take("Hello there,"))  # waits for the synthesis in flight

        n.start_soon(taker)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        pf.finish("Hello there,", a)
    assert got == [a] and pf.hits == 1
    assert await pf.take("Hello there,") is None  # used up
    assert pf.begin("Other text.")
    pf.finish("Other text.", None)  # synthesis failed: the turn synthesizes it itself
    assert await pf.take("Other text.") is None and pf.hits == 1
    assert first_chunk("We are open Tuesday to Friday from 9:30 to 17:00.") == (
        "We are open Tuesday to Friday"
    )


def test_spoken_cache_keeps_recent_first_chunks_within_its_bytes() -> None:
    model, other = object(), object()

    def audio(n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return np.full(n, 0.5, np.float32), np.full(n // 2, 0.5, np.float32)

    cache = SpokenCache(max_bytes=3 * (100 * 4 + 50 * 4))  # three chunks of 100 samples
    assert cache.get(model, "Hello.", 1.0) is None
    for text in ("One.", "Two.", "Three."):
        cache.put(model, text, 1.0, audio(100))
    got = cache.get(model, "One.", 1.0)  # now the most recent
    assert got is not None and cache.hits == 1 and np.all(got[0] == 0.5)
    got[0][:] = 0.0  # the caller's copy: the cache keeps its own
    cache.put(model, "Four.", 1.0, audio(100))  # over the bytes: "Two." (least recent) goes
    assert not cache.holds(model, "Two.", 1.0)
    assert cache.holds(model, "One.", 1.0) and cache.holds(model, "Four.", 1.0)
    again = cache.get(model, "One.", 1.0)
    assert again is not None and np.all(again[0] == 0.5)
    assert cache.get(model, "One.", 1.2) is None  # another speed is another sound
    cache.put(model, "Huge.", 1.0, audio(10_000))  # larger than the whole cache: not kept
    assert not cache.holds(model, "Huge.", 1.0)
    assert cache.get(other, "One.", 1.0) is None  # a new voice model: all forgotten
    assert not cache.holds(model, "One.", 1.0)
