"""Reply text -> speakable chunks -> normalised text -> TTS audio -> an audio sink.

One `ReplySpeech` per turn. LLM deltas go in with `feed` (never blocks the turn); the first
clause is synthesized while the LLM is still writing, and chunk N+1 is synthesized while the
sink plays chunk N (sinks queue what `play` hands them), so playback is gapless whenever TTS
runs faster than real time (RTF ~0.04 here). A chunk that fails to synthesize is skipped with
a log line: the text is on screen anyway.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt
import trio

from ..audio.resample import StreamResampler
from ..inference import ModelRunner
from .chunker import SentenceChunker
from .textnorm import normalize_for_speech
from .tts import PiperTts

__all__ = [
    "AudioSink",
    "Prefetch",
    "ReplySpeech",
    "SpokenCache",
    "first_chunk",
    "synthesize_chunk",
    "trim_lead",
]

log = logging.getLogger("appliance.voice.speech")

F32 = npt.NDArray[np.float32]
REF_RATE = 16000  # the echo gate compares at the microphone's rate


class AudioSink(Protocol):
    """Where reply audio goes: a sound card, a /ws client, a WAV file, a test list.

    `play` queues audio and returns once it is accepted (it may wait for room, or for the
    device to take an utterance's first sample, never for the audio to be heard); `drain`
    waits until everything queued has been heard; `stop` drops whatever is queued at once
    (barge-in). `first_sample_at` is the trio time the first sample since the last
    stop()/drain() reaches the listener: a sound card's DAC time, else when the sink took it
    (None before that).
    """

    first_sample_at: float | None

    async def play(self, audio: F32, rate: int) -> None: ...

    async def drain(self) -> None: ...

    def stop(self) -> None: ...


_LEAD_LEVEL = 0.01  # |x| below this before the first word is Piper's near-silent run-in
_LEAD_KEEP_S = 0.01


def trim_lead(audio: F32, rate: int) -> F32:
    """Drop the near-silent run-in Piper puts before the first word (20-80 ms here), keeping
    10 ms: every millisecond of it is waited for before the visitor hears anything. Pure."""
    loud = np.flatnonzero(np.abs(audio) > _LEAD_LEVEL)
    if len(loud) == 0:
        return audio
    return audio[max(0, int(loud[0]) - int(_LEAD_KEEP_S * rate)) :]


def synthesize_chunk(tts: PiperTts, text: str, length_scale: float) -> tuple[F32, F32]:
    """Blocking (worker thread): normalised text -> (audio at the voice rate, 16 kHz copy).

    The 16 kHz copy is the echo gate's reference; resampling here keeps it off the loop. The
    polyphase resampler takes ~12 ms for 3 s of speech (the direct sinc one took ~150 ms, all of
    it before the first reply sample could play)."""
    audio = trim_lead(
        tts.synthesize(normalize_for_speech(text), length_scale=length_scale), tts.sample_rate
    )
    if tts.sample_rate == REF_RATE:
        return audio, audio
    r = StreamResampler(tts.sample_rate, REF_RATE)
    return audio, np.concatenate([r.process(audio), r.flush()])


def first_chunk(text: str) -> str | None:
    """The first chunk `ReplySpeech` will synthesize for a reply of `text`. Pure."""
    chunker = SentenceChunker()
    chunks = chunker.feed(text) + chunker.flush()
    return chunks[0] if chunks else None


class Prefetch:
    """One chunk synthesized ahead of its turn: the predicted start of the next reply.

    The voice pipeline predicts the reply while the visitor's silence is still being waited
    out (a confident FAQ match, whose text is known) and synthesizes its first chunk then;
    `ReplySpeech` takes it instead of synthesizing the same text again. One entry: a newer
    prediction replaces the older one.
    """

    def __init__(self) -> None:
        self._text: str | None = None
        self._done = trio.Event()
        self._audio: tuple[F32, F32] | None = None
        self.hits = 0

    def begin(self, text: str) -> bool:
        """Claim `text`; False when it is already prefetched (or being prefetched)."""
        if text == self._text:
            return False
        self._text, self._done, self._audio = text, trio.Event(), None
        return True

    def finish(self, text: str, audio: tuple[F32, F32] | None) -> None:
        if text == self._text:
            self._audio = audio
            self._done.set()

    async def take(self, text: str) -> tuple[F32, F32] | None:
        """The audio for `text` (waiting for a synthesis in flight), or None."""
        if text != self._text:
            return None
        done = self._done
        await done.wait()
        audio = self._audio if text == self._text else None
        if audio is not None:
            self.hits += 1
            self._text, self._audio = None, None
        return audio


class SpokenCache:
    """The first chunks of replies already synthesized, by text, least recently used out first.

    A kiosk gives the same few FAQ answers all day, and a reply's first chunk is what the
    visitor waits for: its synthesis is a third or more of end of speech -> first audio on a
    slow CPU. Bounded by bytes; emptied when the voice model changes.
    """

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self._items: OrderedDict[tuple[str, float], tuple[F32, F32]] = OrderedDict()
        self._bytes = 0
        self._model: object | None = None

    def _for(self, model: object) -> None:
        if model is not self._model:
            self._items.clear()
            self._bytes, self._model = 0, model

    def get(self, model: object, text: str, length_scale: float) -> tuple[F32, F32] | None:
        self._for(model)
        got = self._items.get((text, length_scale))
        if got is None:
            return None
        self._items.move_to_end((text, length_scale))
        self.hits += 1
        return got[0].copy(), got[1].copy()  # the sink and the echo gate get their own

    def put(
        self,
        model: object,
        text: str,
        length_scale: float,
        audio: tuple[F32, F32],
        *,
        evict: bool = True,
    ) -> bool:
        """Keep `audio` for `text`; False when it does not fit (without `evict`: in the room
        left, so speech warmed ahead never pushes out replies visitors actually got)."""
        self._for(model)
        key = (text, length_scale)
        size = audio[0].nbytes + audio[1].nbytes
        if key in self._items:
            return True
        if size > (self.max_bytes if evict else self.max_bytes - self._bytes):
            return False
        self._items[key] = (audio[0].copy(), audio[1].copy())
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (a, r) = self._items.popitem(last=False)
            self._bytes -= a.nbytes + r.nbytes
        return True

    @property
    def size(self) -> tuple[int, int]:
        """(chunks kept, their bytes)."""
        return len(self._items), self._bytes

    def holds(self, model: object, text: str, length_scale: float) -> bool:
        """`text` at `length_scale` is kept for `model` (a lookup that is not a hit)."""
        return model is self._model and (text, length_scale) in self._items


class ReplySpeech:
    """Speaks one reply as its text streams in."""

    def __init__(
        self,
        tts: ModelRunner[PiperTts],
        sink: AudioSink,
        *,
        length_scale: float = 1.0,
        on_audio: Callable[[F32], None] | None = None,
        prefetch: Prefetch | None = None,
        cache: SpokenCache | None = None,
    ) -> None:
        self._tts = tts
        self._cache = cache
        self._sink = sink
        self._length_scale = length_scale
        self._on_audio = on_audio  # gets each chunk at 16 kHz just before it is played
        self._prefetch = prefetch
        self._chunker = SentenceChunker()
        self._send, self._recv = trio.open_memory_channel[str](math.inf)
        self.chunks: list[str] = []
        self.first_audio_at: float | None = None
        self.first_audio = trio.Event()
        self.finished = trio.Event()  # every chunk synthesized and handed to the sink
        self.played_s = 0.0
        self.failures = 0
        # Where the first chunk came from: "cache", "prefetch" or "synthesized" (None: nothing
        # to say yet).
        self.first_source: str | None = None

    def feed(self, delta: str) -> None:
        for chunk in self._chunker.feed(delta):
            self._queue(chunk)

    def restart(self) -> None:
        """The reply text starts again (endpoint failover, fallback reply): drop what is not
        yet synthesized. Audio already played cannot be unsaid."""
        self._chunker = SentenceChunker()
        while True:
            try:
                self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return

    def close(self) -> None:
        """No more text: speak the rest."""
        for chunk in self._chunker.flush():
            self._queue(chunk)
        self._send.close()

    def _queue(self, chunk: str) -> None:
        try:
            self._send.send_nowait(chunk)
        except trio.ClosedResourceError:
            log.debug("chunk after close dropped: %r", chunk)

    async def wait_first_audio(self) -> None:
        """Until the first sample went out, or speech finished without any audio."""
        async with trio.open_nursery() as n:

            async def watch(ev: trio.Event) -> None:
                await ev.wait()
                n.cancel_scope.cancel()

            n.start_soon(watch, self.first_audio)
            n.start_soon(watch, self.finished)

    async def _made_before(self, model: PiperTts, chunk: str) -> tuple[tuple[F32, F32] | None, str]:
        """The first chunk's audio if it is ready (from the cache, else the prefetch), and
        where it came from ("synthesized": not ready, the visitor waits for it)."""
        if self._cache is not None:
            got = self._cache.get(model, chunk, self._length_scale)
            if got is not None:
                return got, "cache"
        if self._prefetch is not None:
            got = await self._prefetch.take(chunk)
            if got is not None:
                return got, "prefetch"
        return None, "synthesized"

    async def run(self) -> None:
        model = self._tts.model
        try:
            async for chunk in self._recv:
                self.chunks.append(chunk)
                first = len(self.chunks) == 1
                ready = None
                if first:
                    ready, self.first_source = await self._made_before(model, chunk)
                try:
                    if ready is None:
                        ready = await self._tts.run(
                            synthesize_chunk, model, chunk, self._length_scale
                        )
                    if first and self._cache is not None:
                        self._cache.put(model, chunk, self._length_scale, ready)
                    audio, ref = ready
                except Exception:
                    self.failures += 1
                    log.exception("tts failed for a chunk; the text is still shown")
                    continue
                if len(audio) == 0:
                    continue
                if self._on_audio is not None:
                    self._on_audio(ref)
                await self._sink.play(audio, model.sample_rate)
                self.played_s += len(audio) / model.sample_rate
                if self.first_audio_at is None:
                    at = self._sink.first_sample_at
                    self.first_audio_at = at if at is not None else trio.current_time()
                    self.first_audio.set()
        finally:
            self.finished.set()
