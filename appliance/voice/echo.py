"""The echo gate: is a microphone frame just the box's own voice coming back? Pure numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..audio.farend import EchoReference

__all__ = ["EchoGate"]

F32 = npt.NDArray[np.float32]


class EchoGate:
    """Self-interruption guard: is a mic frame just our own voice coming back? Pure numpy.

    The reference (`EchoReference`) is what we play on the microphone's sample axis: placed by
    the devices' clocks for the box's own speaker, or when handed to the sink otherwise. For
    each mic frame while we play, the reference window of `max_lag_s` before the frame is
    searched for the single delay and gain that best explain the frame (least squares: a
    one-tap echo model). What that model cannot explain is the residual. The frame counts as
    the visitor's only if the residual is louder than `margin * leak * |echo|`, where `leak` is
    the part of our own voice a one-tap model leaves in a real room (reverb, speaker
    distortion); otherwise its VAD probability is zeroed.

    A heuristic, not echo cancellation: strong reverb or a distorting speaker can still leak
    through (then the segmenter's raised thresholds while speaking are the second guard).
    """

    def __init__(self, *, leak: float = 0.1, margin: float = 2.0, max_lag_s: float = 0.3) -> None:
        self.leak = leak
        self.margin = margin
        self.reference = EchoReference(max_lag_s)

    @property
    def max_lag(self) -> int:
        return self.reference.max_lag

    def add(self, ref: F32, mic_now_sample: int) -> None:
        """`ref` (16 kHz) starts playing now, or right after what is already queued."""
        self.reference.add(ref, mic_now_sample)

    def clear(self) -> None:
        self.reference.clear()

    def active(self, sample: int) -> bool:
        """Reference audio may still be reaching the mic at this sample."""
        return self.reference.active(sample)

    def is_echo(self, frame: F32, end_sample: int) -> bool:
        n = len(frame)
        ref = self.reference.window(end_sample - n - self.max_lag, end_sample)
        e_mic = float(np.dot(frame, frame))
        if e_mic <= 1e-9:
            return False
        corr = np.correlate(ref.astype(np.float64), frame.astype(np.float64), mode="valid")
        sq = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        e_ref = sq[n:] - sq[:-n]  # energy of each lagged reference window
        ok = e_ref > 1e-9
        if not np.any(ok):
            return False  # a pause in our own speech: nothing to explain
        explained = np.where(ok, corr**2 / np.where(ok, e_ref, 1.0), 0.0)
        k = int(np.argmax(explained))
        residual = max(e_mic - float(explained[k]), 0.0)
        echo = float(explained[k])  # energy of the fitted echo g * ref
        # In quiet stretches of our own speech the room's noise floor alone exceeds a fraction of
        # a faint echo: what is left must also be louder than a whisper to count as a visitor.
        floor = n * _RESIDUAL_FLOOR_RMS**2
        return residual <= max((self.margin * self.leak) ** 2 * echo, floor)


_RESIDUAL_FLOOR_RMS = 0.003  # ~ -50 dBFS
