"""Synthetic test audio for the front end and wake-word tests (and tools/frontend_measure.py).

Everything is generated here, nothing is downloaded: espeak-ng speech (the Debian binary,
resampled to 16 kHz), pink noise, a room impulse response (direct path + exponentially
decaying noise tail), an echo path built from it, babble (several espeak voices mixed) and
synthetic music (harmonic chords). Pure numpy; seeded generators only.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import numpy.typing as npt

from appliance.audio.resample import resample

F32 = npt.NDArray[np.float32]
RATE = 16000

HAVE_ESPEAK = shutil.which("espeak-ng") is not None


@functools.cache
def espeak(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> F32:
    """`text` spoken by espeak-ng at 16 kHz, float32 (cached, read-only; espeak is
    deterministic)."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    wav = subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout
    # --stdout writes a streaming header (length fields may be bogus): find the data chunk.
    rate = int.from_bytes(wav[24:28], "little")
    pcm = wav[wav.find(b"data") + 8 :]
    pcm = pcm[: len(pcm) // 2 * 2]
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    out = resample(x, rate, RATE)
    out.setflags(write=False)
    return out


def rms_db(x: npt.ArrayLike) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(a * a) + 1e-20))


def set_level(x: npt.ArrayLike, dbfs: float) -> F32:
    """Scale `x` to an RMS of `dbfs` (over the whole clip)."""
    a = np.asarray(x, dtype=np.float32)
    return (a * np.float32(10 ** ((dbfs - rms_db(a)) / 20))).astype(np.float32)


def trim(x: F32, rel: float = 0.02) -> F32:
    """Drop leading/trailing near-silence (keeps 5 ms either side)."""
    nz = np.nonzero(np.abs(x) > rel * float(np.abs(x).max()))[0]
    return x[max(0, int(nz[0]) - 80) : int(nz[-1]) + 80]


def pink_noise(n: int, rng: np.random.Generator) -> F32:
    """1/f noise of unit RMS (spectral shaping of white noise)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    y -= y.mean()
    return (y / (np.sqrt(np.mean(y * y)) + 1e-12)).astype(np.float32)


def room_ir(
    rng: np.random.Generator,
    *,
    delay_s: float = 0.0,
    gain_db: float = 0.0,
    rt60_s: float = 0.25,
    tail_db: float = -6.0,
) -> F32:
    """A room impulse response: a direct path of `gain_db` after `delay_s`, then a decaying
    noise tail (60 dB over `rt60_s`) whose energy is `tail_db` relative to the direct path."""
    d = round(delay_s * RATE)
    n = int(rt60_s * 1.2 * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)
    tail[: int(0.003 * RATE)] = 0.0  # a short gap before the first reflections
    tail *= 10 ** (tail_db / 20) / np.sqrt(np.sum(tail * tail))
    h = np.zeros(d + n, dtype=np.float64)
    h[d] = 1.0
    h[d:] += tail
    return (h * 10 ** (gain_db / 20)).astype(np.float32)


def convolve(x: F32, h: F32) -> F32:
    """x * h, cut to len(x) (FFT convolution)."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]
    return y.astype(np.float32)


def chords(seconds: float, rng: np.random.Generator) -> F32:
    """Synthetic music: harmonic triads with a bass note, one chord per beat-bar, unit peak."""
    n = int(seconds * RATE)
    out = np.zeros(n, dtype=np.float64)
    bar = rng.uniform(1.2, 2.4)
    base = rng.uniform(110, 220)
    pos = 0
    while pos < n:
        length = min(int(bar * RATE), n - pos)
        t = np.arange(length) / RATE
        env = np.exp(-t * rng.uniform(0.5, 3.0)) * np.minimum(1.0, t / 0.01)
        root = base * 2 ** (int(rng.choice([0, 5, 7, 9, 12])) / 12)
        for interval, amp in ((0, 1.0), (4, 0.7), (7, 0.7), (-12, 0.8)):
            f = root * 2 ** (interval / 12)
            for k in range(1, 8):
                if f * k < 7500:
                    out[pos : pos + length] += (
                        amp / k**1.5 * env * np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6.3))
                    )
        pos += length
    return (out / (np.abs(out).max() + 1e-12)).astype(np.float32)


VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
VARIANTS = ("", "+m3", "+f2", "+m7", "+f4", "+klatt", "+m1", "+f1")


def babble(sentences: list[str], talkers: int, rng: np.random.Generator) -> F32:
    """`talkers` espeak voices saying different sentences at once (equal levels)."""
    parts = []
    for i in range(talkers):
        voice = VOICES[int(rng.integers(len(VOICES)))] + VARIANTS[int(rng.integers(len(VARIANTS)))]
        text = sentences[(i * 7 + int(rng.integers(len(sentences)))) % len(sentences)]
        speed = int(rng.integers(140, 190))
        parts.append(set_level(espeak(text, voice, speed, int(rng.integers(30, 70))), -26))
    n = max(len(p) for p in parts)
    out = np.zeros(n, dtype=np.float32)
    for p in parts:
        start = int(rng.integers(0, n - len(p) + 1))
        out[start : start + len(p)] += p
    return out
