"""The echo gate: is a microphone frame just the box's own voice coming back? Pure numpy."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..audio.farend import EchoReference

__all__ = ["EchoFit", "EchoGate", "Verdict", "fit_echo"]

F32 = npt.NDArray[np.float32]
Verdict = Literal["echo", "mixed", "clear"]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EchoFit:
    """How much of a mic frame a few delayed, scaled copies of the reference explain."""

    echo: float  # energy of the fitted echo
    residual: float  # energy left over: the visitor, noise, what the model cannot explain
    delays: tuple[int, ...]  # the taps found, in samples before the frame, strongest first


def fit_echo(
    frame: F64,
    ref: F64,
    *,
    taps: int,
    good_enough: float = 0.0,
    known: Sequence[int] = (),
) -> EchoFit:
    """Fit `frame` as a sum of up to `taps` delayed, scaled copies of `ref` (a sparse room).

    `ref` is the reference from `len(ref) - len(frame)` samples before the frame to its end;
    copy k is `ref[k : k + n]` (delay `len(ref) - n - k`). Greedy orthogonal matching pursuit:
    the lag that best explains what is left joins, then all gains are refit together by least
    squares. The direct sound comes first; a room's early reflections (walls, the kiosk's own
    case: a few ms to ~100 ms later, 6-20 dB weaker) are the next taps. It stops as soon as the
    residual energy is at most `good_enough`, so a plain echo costs one pass. Correlations go
    through one FFT of the reference per frame.

    `known`: the delays of the previous frame's fit. A room does not change between two frames,
    so they are tried first, by least squares alone; the search runs only if they fall short.

    The direct path (the first found) is fitted with its neighbouring lags (`_SPREAD`): a real
    echo arrives between two samples and drifts when the speaker's and the microphone's clocks
    differ. On a sibilant a sample at 16 kHz is most of a cycle: fitted on whole samples, the
    "s" of our own "central" was left 5 to 9 times the echo unexplained (an echo path drifting
    500-1000 ppm), judged plainly a visitor, and the box interrupted itself. The reflections
    are 13 dB or more weaker, and neighbours for every path also fitted away part of a visitor
    who talks over the reply (one of their frames was taken for our echo).
    """
    n = len(frame)
    e_mic = float(np.dot(frame, frame))
    lags = len(ref) - n + 1
    if e_mic <= 1e-12 or lags <= 0:
        return EchoFit(0.0, e_mic, ())
    warm = fit_paths(frame, ref, known)
    if warm is not None and warm.residual <= good_enough:
        return warm
    size = 1 << int(np.ceil(np.log2(len(ref) + n)))
    spectrum = np.fft.rfft(ref, size)
    sq = np.concatenate([[0.0], np.cumsum(ref**2)])
    e_ref = sq[n:] - sq[:-n]  # energy of each lagged reference window
    usable = e_ref > 1e-9 * n
    if not np.any(usable):
        return EchoFit(0.0, e_mic, ())  # a pause in our own speech: nothing to explain
    chosen: list[int] = []
    residual_vec = frame
    before = e_mic
    fitted = np.zeros(n)
    while len(chosen) < taps:
        corr = np.fft.irfft(spectrum * np.conj(np.fft.rfft(residual_vec, size)), size)[:lags]
        explained = np.where(usable, corr**2 / np.where(usable, e_ref, 1.0), 0.0)
        explained[chosen] = 0.0
        if chosen:  # the direct path's neighbours are fitted with it already
            explained[max(0, chosen[0] - _SPREAD) : chosen[0] + _SPREAD + 1] = 0.0
        k = int(np.argmax(explained))
        if explained[k] <= 1e-12:
            break
        chosen.append(k)
        fitted, residual_vec = _project(frame, _columns(ref, n, chosen, lags))
        left = float(np.dot(residual_vec, residual_vec))
        if left <= good_enough or left > (1 - _MIN_GAIN) * before:
            break  # echo, or what is left is not ours (a visitor): more taps explain noise
        before = left
    echo = float(np.dot(fitted, fitted))
    residual = float(np.dot(residual_vec, residual_vec))
    return EchoFit(echo, residual, tuple(lags - 1 - k for k in chosen))


def _project(frame: F64, cols: F64) -> tuple[F64, F64]:
    """`frame` split into its least-squares fit on the columns (delayed copies of what we
    played, each with its own gain) and what is left."""
    gains, *_ = np.linalg.lstsq(cols, frame, rcond=None)
    fitted: F64 = cols @ gains
    return fitted, frame - fitted


def _columns(ref: F64, n: int, ks: Sequence[int], lags: int) -> F64:
    """The reference copies for lag indices `ks` (the direct path first, with its `_SPREAD`
    neighbours), each once."""
    first = range(ks[0] - _SPREAD, ks[0] + _SPREAD + 1)
    cols = dict.fromkeys(j for j in (*first, *ks[1:]) if 0 <= j < lags)
    return np.stack([ref[j : j + n] for j in cols], axis=1)


def fit_paths(frame: F64, ref: F64, delays: Sequence[int]) -> EchoFit | None:
    """The least-squares fit of `frame` on the given echo paths alone (delays as `fit_echo`
    reports them, the direct one with its neighbours); None when they fall outside `ref` or
    carry nothing of ours."""
    n = len(frame)
    lags = len(ref) - n + 1
    if not delays or not all(0 <= d < lags for d in delays):
        return None
    cols = _columns(ref, n, [lags - 1 - d for d in delays], lags)
    if float(np.sum(cols**2)) <= 1e-9 * n:
        return None
    fitted, rest = _project(frame, cols)
    return EchoFit(float(np.dot(fitted, fitted)), float(np.dot(rest, rest)), tuple(delays))


class EchoGate:
    """Self-interruption guard: is a mic frame just our own voice coming back? Pure numpy.

    The reference (`EchoReference`) is what we play on the microphone's sample axis: placed by
    the devices' clocks for the box's own speaker, or when handed to the sink otherwise. For
    each mic frame while we play, the reference window of `max_lag_s` before the frame is
    searched for the few delays and gains that best explain the frame (`fit_echo`: the direct
    sound and up to `taps - 1` reflections). What that model cannot explain is the residual.
    The frame counts as the visitor's only if the residual is louder than
    `margin * leak * |echo|`, where `leak` is the part of our own voice the model leaves in a
    real room (late reverberation, speaker distortion); otherwise its VAD probability is zeroed.

    A heuristic, not echo cancellation: a long reverberant tail or a distorting speaker can
    still leak through (then the segmenter's raised thresholds while speaking are the second
    guard). One tap was not enough: with three reflections 13-21 dB under the direct sound,
    91 of 100 replies interrupted themselves in `appliance bench echo --reverb on`.
    """

    def __init__(
        self, *, leak: float = 0.1, margin: float = 2.0, max_lag_s: float = 0.3, taps: int = 8
    ) -> None:
        self.leak = leak
        self.margin = margin
        self.taps = max(1, taps)
        self.reference = EchoReference(max_lag_s)
        self._delays: tuple[int, ...] = ()  # the last frame's echo paths: tried first
        self.last: EchoFit | None = None  # the last frame judged (for logs)
        _warm_up(self.max_lag)

    @property
    def max_lag(self) -> int:
        return self.reference.max_lag

    @property
    def paths(self) -> tuple[int, ...]:
        """The room as last learned on our voice alone: echo delays in samples, strongest first."""
        return self._delays

    def add(self, ref: F32, mic_now_sample: int) -> None:
        """`ref` (16 kHz) starts playing now, or right after what is already queued."""
        self.reference.add(ref, mic_now_sample)

    def clear(self) -> None:
        self.reference.clear()
        self._delays = ()

    def active(self, sample: int) -> bool:
        """Reference audio may still be reaching the mic at this sample."""
        return self.reference.active(sample)

    def is_echo(self, frame: F32, end_sample: int) -> bool:
        return self.judge(frame, end_sample) == "echo"

    def judge(self, frame: F32, end_sample: int) -> Verdict:
        """ "echo": our own voice, as far as the model can tell; "clear": plainly not ours; "mixed":
        not explained, but not plainly someone else either (a visitor under the echo, or leak).

        "clear" is judged on the room as last learned from frames of our voice alone (their
        paths, gains refit): the search itself, given a visitor, spends its taps explaining
        part of them too (same-sounding voices correlate), which would hide how loud they are.
        """
        n = len(frame)
        ref = self.reference.window(end_sample - n - self.max_lag, end_sample).astype(np.float64)
        mic = frame.astype(np.float64)
        e_mic = float(np.dot(mic, mic))
        # A least-squares fit splits the frame's energy: echo + residual = e_mic. So the echo
        # test (residual <= c * echo) holds once residual <= c / (1 + c) * e_mic: stop there.
        # In quiet stretches of our own speech the room's noise floor alone exceeds a fraction
        # of a faint echo: what is left must also be louder than a whisper to be a visitor.
        c = (self.margin * self.leak) ** 2
        floor = n * _RESIDUAL_FLOOR_RMS**2
        enough = max(c / (1 + c) * e_mic, floor)
        fit = fit_echo(mic, ref, taps=self.taps, good_enough=enough, known=self._delays)
        self.last = fit
        if not fit.delays:
            return "clear"  # nothing of ours to explain it
        if fit.residual <= max(c * fit.echo, floor):
            self._delays = fit.delays  # learned on our voice alone: a visitor's frame never is
            return "echo"
        room = fit_paths(mic, ref, self._delays) or fit
        self.last = room
        return "clear" if room.residual >= _CLEAR_SHARE * room.echo else "mixed"


@functools.cache
def _warm_up(max_lag: int) -> None:
    """numpy's first FFT of a size and first least-squares solve set up their tables (~25 ms
    here): pay that when the gate is made, not in the event loop when a visitor first talks."""
    rng = np.random.default_rng(0)
    frame_ref = rng.normal(0, 0.1, 512 + max_lag)
    fit_echo(frame_ref[-512:], frame_ref, taps=2)


_RESIDUAL_FLOOR_RMS = 0.003  # ~ -50 dBFS
# Lags either side of the direct path fitted with it: enough to place it between two samples.
_SPREAD = 1
# A tap that removes less than this share of what is left is not a path of the room.
_MIN_GAIN = 0.05
# Residual over echo energy above which a frame is plainly someone else's voice (-6 dB): a
# visitor at the echo's speech level is above it in most frames, what leaks of our own voice
# through the model is typically under 0.1.
_CLEAR_SHARE = 0.25
