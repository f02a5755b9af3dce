"""Spoken questions for `appliance bench understand`: one 16 kHz clip per question, made here.

Deterministic by seed. A question's clip is planned from its slot and the seed (`plan_clip`;
the bench gives each question of a set a slot by a seeded shuffle, `slots`, so any subset of
the set still gets a mix of everything). Slots go round-robin over the voices: Piper (the
kiosk's own TTS voice, its sampling noise off so a sentence is the same audio every run) and
several espeak-ng accents. Every voice is clean on one round and noisy on the next (so half of
the clips are noisy); the noise is made in code (nothing is downloaded), the noisy clips
cycling over its kind (babble, ventilation hum, music) and then over the SNR (20/10/5 dB). The
speaking rate (0.85-1.2 x), leading and trailing silence come from a generator seeded with
(seed, slot, part, text). A follow-up's previous question (`part` 1) is the same visitor: same
voice and noise.

SNR is the speech power over the speech itself (the padding excluded) against the noise power
over the same span; the noise runs over the whole clip, silences included, as in a room.

Clips are cached as PCM16 WAV under `~/.cache/kiosk-appliance/understand/<key>.wav` (key: a
hash of the plan, the generator version, the espeak-ng version and the Piper model's hash), and
a fresh clip is returned as read back from its file, so a cached and a fresh run get the same
samples. Blocking (espeak-ng processes, Piper): call from a worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import wave
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..audio.resample import resample

__all__ = [
    "GENERATOR_VERSION",
    "NOISES",
    "RATE",
    "SNRS_DB",
    "VOICES",
    "ClipSpec",
    "Mix",
    "Synth",
    "babble_noise",
    "default_cache_dir",
    "espeak_version",
    "hum_noise",
    "make_clip",
    "make_clips",
    "make_noise",
    "mix_at_snr",
    "music_noise",
    "plan_clip",
    "slots",
    "snr_db",
]

F32 = npt.NDArray[np.float32]
RATE = 16000
GENERATOR_VERSION = 1
# "piper" is the kiosk's own voice; the rest are espeak-ng voices (`espeak-ng --voices=en`;
# the MBROLA ones need voice files the box does not have, and there is no Indian English).
# Clean, at normal speed, Moonshine's WER on 20 tune questions was: piper 2.5 %, en-us 15,
# en-gb 14, en-gb-scotland 27, en-gb-x-rp 11, en-029 18, en-us+f3 12 (espeak-ng is robotic:
# these figures are its floor, not the kiosk's on human speech).
VOICES = ("piper", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3")
NOISES = ("babble", "hum", "music")
SNRS_DB = (20.0, 10.0, 5.0)
SPEED = (0.85, 1.2)  # speaking rate, x normal
LEAD_S = (0.3, 0.8)  # silence before the question
TRAIL_S = (0.8, 1.2)  # after it (over the 0.5 s hangover that ends an utterance)
PEAK = 0.5  # every voice at the same peak level before mixing
_ESPEAK_WPM = 175  # espeak-ng's default rate

# Other people talking nearby: neutral sentences, none of them a question the kiosk knows.
BABBLE = (
    "I think we should meet the others at the entrance after lunch.",
    "She said the train was late again this morning, so they took the bus.",
    "Look at that one over there, it is much bigger than I expected.",
    "We could come back tomorrow if the weather is better.",
    "My brother lives about an hour away from here, near the coast.",
    "Did you remember to bring the charger for the camera?",
    "The children loved the big painting with all the horses in it.",
    "Let us sit down for a minute, my feet are really tired.",
    "He was talking about the football match all the way here.",
    "I have never seen so many people in one place on a weekday.",
    "Can you hold this for me while I find my glasses?",
    "We saw something like this on holiday two years ago.",
)
_BABBLE_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+f4", "en-029", "en-gb-x-rp", "en-us+m3")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides a clip's samples (with the versions in `Synth.key`)."""

    text: str
    voice: str
    speed: float
    lead_s: float
    trail_s: float
    noise: str | None = None  # None: clean
    snr_db: float | None = None
    noise_seed: int = 0

    @property
    def label(self) -> str:
        where = "clean" if self.noise is None else f"{self.noise}@{self.snr_db:g}dB"
        return f"{self.voice} x{self.speed:.2f} {where}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _text_seed(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def slots(n: int, seed: int = 0) -> list[int]:
    """Slot of each of `n` questions: a shuffle of 0..n-1 by `seed`. Pure."""
    return [int(k) for k in np.random.default_rng([seed, n]).permutation(n)]


def plan_clip(text: str, slot: int, seed: int = 0, part: int = 0) -> ClipSpec:
    """The clip for the question in `slot` (part 0; a follow-up's previous question is part 1
    of the same slot). Pure: same arguments, same plan."""
    rng = np.random.default_rng([seed, slot, part, _text_seed(text)])
    nv = len(VOICES)
    noisy = (slot // nv) % 2 == 1
    nth = (slot // (2 * nv)) * nv + slot % nv  # how many noisy slots come before this one
    noise = NOISES[nth % len(NOISES)] if noisy else None
    snr = SNRS_DB[(nth // len(NOISES)) % len(SNRS_DB)] if noisy else None
    return ClipSpec(
        text=text,
        voice=VOICES[slot % nv],
        speed=round(float(rng.uniform(*SPEED)), 3),
        lead_s=round(float(rng.uniform(*LEAD_S)), 3),
        trail_s=round(float(rng.uniform(*TRAIL_S)), 3),
        noise=noise,
        snr_db=snr,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


# -- noise (pure numpy apart from babble, which speaks) --------------------------------------------


def _normalize_rms(x: npt.NDArray[np.float64], rms: float = 0.1) -> F32:
    p = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return (x * (rms / p if p > 0 else 0.0)).astype(np.float32)


def _shaped_noise(rng: np.random.Generator, n: int, slope: float, low_hz: float) -> F32:
    """White noise shaped to amplitude ~ 1/f**slope above `low_hz` (slope 1: brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / RATE)
    gain = np.where(f >= low_hz, 1.0 / np.maximum(f, low_hz) ** slope, 0.0)
    return _normalize_rms(np.fft.irfft(spec * gain, n))


def hum_noise(n: int, rng: np.random.Generator) -> F32:
    """Ventilation: mains hum with harmonics, a fan's blade tone, and brown-noise rumble."""
    t = np.arange(n) / RATE
    mains = float(rng.choice([50.0, 60.0]))
    tones = np.zeros(n)
    for h, amp in ((1, 1.0), (2, 0.6), (3, 0.35), (4, 0.15)):
        tones += amp * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi))
    blade = float(rng.uniform(90.0, 160.0))
    wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t)
    tones += 0.4 * wobble * np.sin(2 * np.pi * blade * t)
    rumble = _shaped_noise(rng, n, slope=1.0, low_hz=20.0).astype(np.float64)
    return _normalize_rms(_normalize_rms(tones).astype(np.float64) + 1.2 * rumble)


_CHORDS = ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12))  # I V vi IV, semitones


def music_noise(n: int, rng: np.random.Generator) -> F32:
    """Background music: I-V-vi-IV triads with a bass note, a kick on beats 1 and 3 and a
    hi-hat on the off-beats, at a random key and tempo."""
    bpm = float(rng.uniform(90.0, 130.0))
    beat = int(RATE * 60.0 / bpm)
    root = 220.0 * 2 ** (int(rng.integers(-5, 5)) / 12)
    out = np.zeros(n + beat)
    tb = np.arange(beat) / RATE
    decay = np.exp(-tb * 3.0)
    attack = np.minimum(1.0, tb / 0.01)
    for b in range(n // beat + 1):
        chord = _CHORDS[(b // 4) % len(_CHORDS)]
        s = b * beat
        note = np.zeros(beat)
        for semis in chord:
            f = root * 2 ** (semis / 12)
            note += np.sin(2 * np.pi * f * tb) + 0.3 * np.sin(4 * np.pi * f * tb)
        bass = root / 2 * 2 ** (chord[0] / 12)
        note += 1.5 * np.sin(2 * np.pi * bass * tb)
        out[s : s + beat] += 0.25 * note * decay * attack
        if b % 2 == 0:  # kick: a falling sine thump
            f_kick = 40.0 + 60.0 * np.exp(-tb * 30.0)
            phase = 2 * np.pi * np.cumsum(f_kick) / RATE
            out[s : s + beat] += 1.5 * np.sin(phase) * np.exp(-tb * 12.0)
        hat_len = int(0.03 * RATE)
        h0 = s + beat // 2
        hat = np.diff(rng.standard_normal(hat_len + 1)) * np.exp(-np.arange(hat_len) / 60.0)
        out[h0 : h0 + hat_len] += 0.3 * hat[: len(out[h0 : h0 + hat_len])]
    return _normalize_rms(out[:n])


def babble_noise(n: int, rng: np.random.Generator, speak: Callable[[str, str, float], F32]) -> F32:
    """3-5 other people talking at once: espeak-ng sentences, each looped from a random offset
    over the clip, summed. `speak(text, voice, speed)` gives 16 kHz audio."""
    talkers = int(rng.integers(3, 6))
    out = np.zeros(n)
    for _ in range(talkers):
        text = str(rng.choice(BABBLE))
        voice = str(rng.choice(_BABBLE_VOICES))
        a = speak(text, voice, round(float(rng.uniform(0.9, 1.15)), 3)).astype(np.float64)
        a = np.concatenate([a, np.zeros(int(rng.uniform(0.1, 0.6) * RATE))])
        reps = n // max(1, len(a)) + 2
        loop = np.tile(a, reps)
        start = int(rng.integers(0, len(a)))
        gain = float(rng.uniform(0.6, 1.0))
        out += gain * _normalize_rms(loop[start : start + n]).astype(np.float64)
    return _normalize_rms(out)


def make_noise(
    kind: str, n: int, seed: int, speak: Callable[[str, str, float], F32] | None = None
) -> F32:
    rng = np.random.default_rng(seed)
    if kind == "hum":
        return hum_noise(n, rng)
    if kind == "music":
        return music_noise(n, rng)
    if kind == "babble":
        if speak is None:
            raise ValueError("babble needs a speech synthesizer")
        return babble_noise(n, rng, speak)
    raise ValueError(f"unknown noise kind {kind!r} (one of {', '.join(NOISES)})")


@dataclass(frozen=True)
class Mix:
    audio: F32  # speech + noise
    speech: F32  # the speech part of `audio` (after any common rescaling)
    noise: F32  # the noise part


def snr_db(speech: F32, noise: F32, span: slice) -> float:
    ps = float(np.mean(np.asarray(speech[span], np.float64) ** 2))
    pn = float(np.mean(np.asarray(noise[span], np.float64) ** 2))
    return 10.0 * float(np.log10(ps / pn)) if pn > 0 else float("inf")


def mix_at_snr(speech: F32, noise: F32, target_db: float, span: slice) -> Mix:
    """`speech` plus `noise` scaled so that their power ratio over `span` (the speech itself) is
    `target_db`; both scaled down together when the sum would clip. Pure."""
    if len(noise) != len(speech):
        raise ValueError("speech and noise differ in length")
    s = np.asarray(speech, np.float64)
    nz = np.asarray(noise, np.float64)
    ps = float(np.mean(s[span] ** 2))
    pn = float(np.mean(nz[span] ** 2))
    if ps <= 0 or pn <= 0:
        raise ValueError("no speech or no noise in the span")
    nz = nz * np.sqrt(ps / (pn * 10.0 ** (target_db / 10.0)))
    total = s + nz
    peak = float(np.max(np.abs(total)))
    k = 0.95 / peak if peak > 0.95 else 1.0
    return Mix(
        (total * k).astype(np.float32), (s * k).astype(np.float32), (nz * k).astype(np.float32)
    )


# -- synthesis -----------------------------------------------------------------------------------


def _wav_to_f32(data: bytes) -> tuple[F32, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, width = w.getframerate(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit audio, expected 16-bit")
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, rate


def espeak_version() -> str:
    try:
        r = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"espeak-ng is needed for the bench's voices: {exc}") from exc
    return r.stdout.strip()


class Synth:
    """Speech for the clips: espeak-ng (a process per sentence) and Piper (loaded on first use,
    sampling noise off). Blocking."""

    def __init__(self) -> None:
        self._piper: Any = None
        self._piper_hash: str | None = None
        self._espeak: str | None = None
        self._memo: dict[tuple[str, str, float], F32] = {}

    def key(self, spec: ClipSpec) -> str:
        """The cache key: the plan and whatever else decides the samples."""
        if self._espeak is None:
            self._espeak = espeak_version()
        parts: dict[str, Any] = {
            "v": GENERATOR_VERSION,
            "spec": spec.as_dict(),
            "espeak": self._espeak,
        }
        if spec.voice == "piper":
            parts["piper"] = self.piper_hash()
        blob = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def piper_hash(self) -> str:
        if self._piper_hash is None:
            from ..models_manifest import load_manifest

            self._piper_hash = load_manifest()["tts_voice"].sha256
        return self._piper_hash

    def _load_piper(self) -> Any:
        if self._piper is None:
            from ..inference import InferenceSettings
            from ..models_manifest import load_manifest
            from ..voice.tts import PiperTts

            tts = PiperTts.load(InferenceSettings(providers="cpu"), load_manifest())
            # Piper draws random noise inside its graph; with both scales at 0 a sentence is the
            # same audio every run (the voice's mean rendition).
            tts.config = dataclasses.replace(tts.config, noise_scale=0.0, noise_w=0.0)
            self._piper = tts
        return self._piper

    def speak(self, text: str, voice: str, speed: float) -> F32:
        """`text` in `voice` at `speed` x, 16 kHz, peak `PEAK`; memoized."""
        key = (text, voice, speed)
        got = self._memo.get(key)
        if got is not None:
            return got
        if voice == "piper":
            tts = self._load_piper()
            audio, rate = tts.synthesize(text, length_scale=1.0 / speed), tts.sample_rate
        else:
            wpm = str(round(_ESPEAK_WPM * speed))
            try:
                r = subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", wpm, "--stdout", text],
                    capture_output=True,
                    check=True,
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                raise RuntimeError(f"espeak-ng -v {voice} failed: {exc}") from exc
            audio, rate = _wav_to_f32(r.stdout)
        a = resample(np.asarray(audio, np.float32), rate, RATE)
        peak = float(np.max(np.abs(a))) if len(a) else 0.0
        if peak <= 0:
            raise RuntimeError(f"{voice} said nothing for {text!r}")
        out = (a * (PEAK / peak)).astype(np.float32)
        if len(self._memo) > 256:
            self._memo.clear()
        self._memo[key] = out
        return out

    def render(self, spec: ClipSpec) -> F32:
        """The clip's samples (not cached, not quantized)."""
        speech = self.speak(spec.text, spec.voice, spec.speed)
        lead, trail = int(spec.lead_s * RATE), int(spec.trail_s * RATE)
        padded = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
        if spec.noise is None or spec.snr_db is None:
            return padded
        noise = make_noise(spec.noise, len(padded), spec.noise_seed, self.speak)
        return mix_at_snr(padded, noise, spec.snr_db, slice(lead, lead + len(speech))).audio


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kiosk-appliance" / "understand"


def make_clip(synth: Synth, spec: ClipSpec, cache_dir: Path | None) -> tuple[F32, bool]:
    """(16 kHz clip as stored in PCM16, whether it came from the cache). Blocking."""
    from ..demo import DemoInputError, read_wav, write_wav

    cache = cache_dir if cache_dir is not None else default_cache_dir()
    path = cache / f"{synth.key(spec)}.wav"
    if path.is_file():
        try:
            return read_wav(path), True
        except DemoInputError:
            pass  # a torn file from an interrupted run: make it again
    audio = synth.render(spec)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write_wav(tmp, audio, RATE)
    os.replace(tmp, path)
    return read_wav(path), False


def make_clips(
    synth: Synth,
    specs: Sequence[tuple[str, ClipSpec]],
    cache_dir: Path | None,
    on_clip: Callable[[int, str, ClipSpec, F32, bool], None] | None = None,
) -> list[F32]:
    """Every clip of `specs` ((name, spec) pairs), in order; `on_clip(i, name, spec, audio,
    cached)` after each (progress)."""
    out: list[F32] = []
    for i, (name, spec) in enumerate(specs):
        audio, cached = make_clip(synth, spec, cache_dir)
        out.append(audio)
        if on_clip is not None:
            on_clip(i, name, spec, audio, cached)
    return out
