"""Speech for the replies the box gives most, made while nobody is talking to it.

A kiosk says the same few things all day: its FAQ answers, the decline, "say that again". The
first chunk of a reply is what a visitor waits for after speaking (on a slow CPU its synthesis
is a third or more of end of speech -> first audio), and `SpokenCache` keeps it once said.
`keep_warm` fills that cache before the first visitor asks: after READY and again whenever the
replies change (an FAQ save, a settings edit, another voice), one chunk at a time and only
while nobody has talked to the box for a while (`VoiceEngine.idle_for`), so a visitor's turn
waits at most for the one chunk in flight. It never pushes out a reply visitors actually got
(`evict=False`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from ..inference import ModelRunner
from .speech import SpokenCache, first_chunk, synthesize_chunk

if TYPE_CHECKING:
    from .tts import PiperTts

__all__ = ["fill_spoken", "keep_warm", "warm_chunks"]

log = logging.getLogger("appliance.voice.prefill")


def warm_chunks(texts: Sequence[str]) -> list[str]:
    """The first chunk `ReplySpeech` will say for each of `texts`, each once, in order. Pure."""
    chunks = (first_chunk(t) for t in texts)
    return list(dict.fromkeys(c for c in chunks if c))


async def fill_spoken(
    cache: SpokenCache,
    tts: ModelRunner[PiperTts],
    texts: Sequence[str],
    length_scale: float,
    quiet: Callable[[], bool],
    poll_s: float = 0.5,
) -> int:
    """Synthesize the first chunk of each of `texts` that `cache` lacks, in order, each only
    once `quiet()`; stop at the first that does not fit in the room left. Returns how many
    were added. A chunk that fails to synthesize is skipped (the turn will try it again)."""
    added = 0
    for chunk in warm_chunks(texts):
        if cache.holds(tts.model, chunk, length_scale):
            continue
        # Polled: "nobody has used the models for a while" is the absence of events.
        while not quiet():  # noqa: ASYNC110
            await trio.sleep(poll_s)
        model = tts.model  # a voice swapped meanwhile empties the cache: key by what ran
        try:
            audio = await tts.run(synthesize_chunk, model, chunk, length_scale, background=True)
        except Exception:
            log.exception("speech made ahead: a chunk failed (said when needed): %r", chunk)
            continue
        if not cache.put(model, chunk, length_scale, audio, evict=False):
            log.info("speech made ahead: the cache is full after %d more chunks", added)
            break
        added += 1
    return added


async def keep_warm(
    cache: SpokenCache,
    tts: ModelRunner[PiperTts],
    replies: Callable[[], tuple[Sequence[str], float]],
    quiet: Callable[[], bool],
    check_s: float = 5.0,
) -> None:
    """Until cancelled: whenever `replies()` (the texts and the speaking speed) or the voice
    changes, fill `cache` with their first chunks (`fill_spoken`)."""
    done: tuple[tuple[str, ...], float, int] | None = None
    while True:
        texts, speed = replies()
        key = (tuple(texts), speed, id(tts.model))
        if key != done:
            t0 = time.monotonic()
            added = await fill_spoken(cache, tts, texts, speed, quiet)
            kept, size = cache.size
            log.info(
                "speech made ahead for %d usual replies (%d new) in %.1f s; cache %d chunks, "
                "%.1f MiB",
                len(texts),
                added,
                time.monotonic() - t0,
                kept,
                size / 2**20,
            )
            done = key
        await trio.sleep(check_s)
