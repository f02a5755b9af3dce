"""Microphone front end: WebRTC echo cancellation (AEC3), noise suppression, high-pass, AGC.

`AudioFrontEnd.process(near, far)` takes 16 kHz float32 microphone audio in blocks of any size
and, for exactly the same samples, what our own speaker played (`far`, zeros when silent), and
returns as many cleaned samples. pywebrtc-audio works on 10 ms frames (160 samples) and
zero-pads a partial frame, which corrupts its state in streaming use, so we re-frame: complete
frames go to the processor, the rest waits for the next call. To give back exactly as many
samples as came in, whatever the block size, the output runs a constant `DELAY_SAMPLES` (159,
9.9 ms) behind the input; WebRTC adds its own algorithmic delay on top (measured with a click:
8 ms with echo cancellation, 14 ms with echo cancellation + noise suppression).

The far-end reference must never arrive *after* its echo. Measured on the synthetic room
(`tools/frontend_measure.py lead`): with the reference 0-100 ms ahead of the echo, ERLE after
5 s is 46 dB whatever the lead (200-300 ms ahead only slows the first seconds); 1 ms behind it
gives 20 dB, 2 ms behind 10-11 dB, 20 ms behind 4 dB. The cliff is at zero, and
`EchoReference` places the played audio at its DAC time, i.e. ahead of the echo by only the
acoustic path (~1 ms for a speaker 30 cm from the microphone) give or take the clock
placement. `FarAligner` therefore reads the reference `reference_lead_ms` (20 ms) ahead of
the microphone samples (`reference_span`): a margin for placement error that costs nothing.

One `AudioFrontEnd` per microphone, created at start-up and kept for the life of the stream
(no reset per conversation): AEC3 needs ~4 s of our own speech to converge fully.
Not thread-safe (the WebRTC processor is not); `process` releases the GIL inside WebRTC and
costs ~60 µs per 10 ms with echo cancellation, so the trio thread can call it inline.
Keep AGC off before the wake word: it lifts residual echo and noise in our own pauses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pywebrtc_audio import AudioProcessor

from appliance.audio.farend import RATE, EchoReference, FarEndTap, MicBlock

__all__ = [
    "DELAY_SAMPLES",
    "FRAME",
    "AudioFrontEnd",
    "FarAligner",
    "FrontEndSettings",
    "FrontEndStats",
    "lead_samples",
    "reference_span",
]

F32 = npt.NDArray[np.float32]
FRAME = RATE // 100  # 10 ms: the unit WebRTC's audio processing works in
DELAY_SAMPLES = FRAME - 1  # the re-framing delay: enough for any block size, < 10 ms
_ERLE_BLOCK = 20  # far-active frames (200 ms) per ERLE block
_ERLE_BLOCKS = 10  # blocks behind the median: the last 2 s of our own audio
_ERLE_WINDOW = _ERLE_BLOCK * _ERLE_BLOCKS


@dataclass(frozen=True)
class FrontEndSettings:
    """What the WebRTC processor does to the microphone signal, and how we measure it.

    `ns_level` 0..3 suppresses 6/12/18/21 dB of noise. With echo cancellation on, WebRTC
    always runs its high-pass filter. `stream_delay_ms` is a hint to AEC3; leave it at 0 (a
    hint larger than the true delay slows convergence). `reference_lead_ms`: how far ahead of
    the microphone samples `FarAligner` reads the far end. `far_active_dbfs`: a 10 ms far-end
    frame louder than this is our own audio playing; `near_floor_dbfs`: microphone frames
    quieter than this are left out of the ERLE estimate (the echo is lost in the room's noise).
    `echo_tail_s`: how long after the last loud far frame its echo may still be in the room.
    """

    echo_cancellation: bool = True
    noise_suppression: bool = True
    ns_level: int = 1
    high_pass: bool = True
    agc: bool = False
    agc_gain_db: float = 0.0
    agc_max_gain_db: float = 50.0
    stream_delay_ms: int = 0
    reference_lead_ms: float = 20.0
    far_active_dbfs: float = -55.0
    near_floor_dbfs: float = -60.0
    echo_tail_s: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.ns_level <= 3:
            raise ValueError(f"ns_level must be 0..3, got {self.ns_level}")
        if self.stream_delay_ms < 0:
            raise ValueError(f"stream_delay_ms must be >= 0, got {self.stream_delay_ms}")
        if not 0.0 <= self.reference_lead_ms <= 250.0:
            raise ValueError(f"reference_lead_ms must be in [0, 250], got {self.reference_lead_ms}")
        if self.echo_tail_s < 0:
            raise ValueError(f"echo_tail_s must be >= 0, got {self.echo_tail_s}")


@dataclass(frozen=True)
class FrontEndStats:
    """A snapshot of `AudioFrontEnd`'s counters.

    `erle_db`: echo return loss enhancement, ours (WebRTC exposes none). The last 2 s of
    10 ms frames in which our own audio plays (far end active, microphone above the noise
    floor) are cut into ten 200 ms blocks; each block's ERLE is 10·log10(microphone energy /
    output energy) summed over its frames, and the figure is the median block. None until a
    block's worth was seen. Energy sums keep it honest when loud passages leak; the median
    over blocks keeps a visitor who talks over us for up to ~1 s of the 2 s out of it (there
    is no other double-talk detector: one who talks through longer pulls the figure down).
    `cpu_us_per_10ms`: thread CPU time inside WebRTC per 10 ms frame, mean over the stream.
    """

    frames: int
    far_frames: int
    erle_db: float | None
    cpu_us_per_10ms: float
    echo_active: bool


def lead_samples(lead_ms: float) -> int:
    """`lead_ms` as 16 kHz samples."""
    return round(lead_ms * RATE / 1000)


def reference_span(s0: int, s1: int, lead: int) -> tuple[int, int]:
    """The far-end reference samples to pair with microphone samples [s0, s1).

    The reference is read `lead` samples later on its own timeline, so each played sample
    reaches the echo canceller `lead` samples before its echo does. Pure; no state.
    """
    if lead < 0:
        raise ValueError(f"a lagging reference (lead {lead} < 0) breaks echo cancellation")
    return s0 + lead, s1 + lead


class FarAligner:
    """The far end for each raw microphone block: what our speaker played, on the microphone's
    sample axis (`EchoReference`, placed by the devices' clocks), `lead` samples ahead.

    Owns its reference, anchored on the blocks it is given (the raw capture, before the front
    end). `far_for(block, tap)` drains the playback tap; blocks taken are also pushed into
    `forward` (when given), so a second consumer such as the pipeline's echo gate still sees
    them. Blocks of any size; call once per block, in order.
    """

    def __init__(
        self,
        lead_ms: float = FrontEndSettings.reference_lead_ms,
        *,
        max_lag_s: float = 0.3,
        forward: FarEndTap | None = None,
    ) -> None:
        self.lead = lead_samples(lead_ms)
        self.reference = EchoReference(max_lag_s)
        self.forward = forward
        self._mine = FarEndTap()
        self._samples = 0  # raw microphone samples seen

    def far_for(self, block: MicBlock, tap: FarEndTap | None) -> F32:
        if block.t is not None:
            self.reference.anchor(self._samples, block.t)
        if tap is not None:
            for t_dac, audio, rate in tap.drain():
                self._mine.push(t_dac, audio, rate)
                if self.forward is not None:
                    self.forward.push(t_dac, audio, rate)
            self.reference.sync(self._mine)
        s0 = self._samples
        self._samples += len(block.samples)
        return self.reference.window(*reference_span(s0, self._samples, self.lead))


def _frame_energy(x: F32) -> npt.NDArray[np.float64]:
    frames = x.reshape(-1, FRAME).astype(np.float64)
    energy: npt.NDArray[np.float64] = np.einsum("ij,ij->i", frames, frames)
    return energy


class AudioFrontEnd:
    """16 kHz float32 microphone audio + the far end for the same samples -> cleaned audio.

    `process` returns exactly `len(near)` samples, `DELAY_SAMPLES` behind the input (plus
    WebRTC's own 8-14 ms); `delay_s` is the sum of the two, for re-stamping `MicBlock.t`.
    The same samples in blocks of any size give the same output.
    """

    def __init__(self, settings: FrontEndSettings | None = None) -> None:
        s = settings if settings is not None else FrontEndSettings()
        self.settings = s
        self._ap = AudioProcessor(
            sample_rate=RATE,
            num_channels=1,
            echo_cancellation=s.echo_cancellation,
            noise_suppression=s.noise_suppression,
            high_pass_filter=s.high_pass,
            auto_gain_control=s.agc,
            ns_level=s.ns_level,
            agc_gain_db=s.agc_gain_db,
            agc_max_gain_db=s.agc_max_gain_db,
            stream_delay_ms=s.stream_delay_ms,
        )
        self._near = np.zeros(0, dtype=np.float32)  # carry-over: < one frame
        self._far = np.zeros(0, dtype=np.float32)
        self._out = np.zeros(DELAY_SAMPLES, dtype=np.float32)  # processed, not yet returned
        self._far_floor = FRAME * 10 ** (s.far_active_dbfs / 10)  # frame energy thresholds
        self._near_floor = FRAME * 10 ** (s.near_floor_dbfs / 10)
        self._tail_frames = round(s.echo_tail_s * 100)
        # Microphone and output energy of the last far-active frames (ring buffers).
        self._erle_near = np.zeros(_ERLE_WINDOW, dtype=np.float64)
        self._erle_out = np.zeros(_ERLE_WINDOW, dtype=np.float64)
        self._erle_n = 0  # frames written to the rings
        self._frames = 0
        self._far_frames = 0
        self._since_far = 1 << 30  # frames since the last active far frame
        self._cpu_ns = 0

    # -- the signal ---------------------------------------------------------------------------

    @property
    def delay_s(self) -> float:
        """How far the output runs behind the input: our re-framing plus WebRTC's own
        algorithmic delay (measured with a click on pywebrtc-audio 0.2.0)."""
        s = self.settings
        webrtc_ms = (8.0 if s.echo_cancellation else 0.0) + (6.0 if s.noise_suppression else 0.0)
        return DELAY_SAMPLES / RATE + webrtc_ms / 1000

    def process(self, near: npt.ArrayLike, far: npt.ArrayLike | None = None) -> F32:
        """Clean `near` (any length, float32 in [-1, 1]; louder is clipped). `far`: what was
        played for the same samples, the same length; None means silence. Ignored when echo
        cancellation is off."""
        a = np.asarray(near, dtype=np.float32).reshape(-1)
        if far is None:
            f = np.zeros(len(a), dtype=np.float32)
        else:
            f = np.asarray(far, dtype=np.float32).reshape(-1)
            if len(f) != len(a):
                raise ValueError(f"far has {len(f)} samples for {len(a)} microphone samples")
        n = len(a)
        nb = np.concatenate((self._near, a)) if len(self._near) else a
        fb = np.concatenate((self._far, f)) if len(self._far) else f
        k = len(nb) // FRAME * FRAME
        if k:
            nk = np.ascontiguousarray(nb[:k])
            fk = np.ascontiguousarray(fb[:k])
            t0 = time.thread_time_ns()
            if self.settings.echo_cancellation:
                y = self._ap.process(nk, fk)
            else:
                y = self._ap.process(nk)
            self._cpu_ns += time.thread_time_ns() - t0
            y = np.asarray(y, dtype=np.float32)
            self._account(nk, fk, y)
            self._out = np.concatenate((self._out, y))
        self._near = nb[k:].copy()
        self._far = fb[k:].copy()
        out, self._out = self._out[:n], self._out[n:]
        return out

    # -- the numbers ----------------------------------------------------------------------------

    def _account(self, near: F32, far: F32, out: F32) -> None:
        m = len(near) // FRAME
        e_far, e_near, e_out = _frame_energy(far), _frame_energy(near), _frame_energy(out)
        active = e_far > self._far_floor
        self._frames += m
        n_active = int(np.count_nonzero(active))
        self._far_frames += n_active
        if n_active:
            self._since_far = m - 1 - int(np.flatnonzero(active)[-1])
        else:
            self._since_far += m
        use = active & (e_near > self._near_floor)
        if self.settings.echo_cancellation and np.any(use):
            en, eo = e_near[use][-_ERLE_WINDOW:], e_out[use][-_ERLE_WINDOW:]
            at = (self._erle_n + np.arange(len(en))) % _ERLE_WINDOW
            self._erle_near[at] = en
            self._erle_out[at] = eo
            self._erle_n += len(en)

    @property
    def echo_active(self) -> bool:
        """Our own audio played within the last `echo_tail_s` (its echo may be in the mic)."""
        return self._since_far < self._tail_frames

    @property
    def erle_db(self) -> float | None:
        """See `FrontEndStats.erle_db`."""
        blocks = min(self._erle_n, _ERLE_WINDOW) // _ERLE_BLOCK
        if blocks == 0:
            return None
        # Blocks of consecutive frames, oldest first (once full, the ring starts at n % size).
        start = self._erle_n % _ERLE_WINDOW if self._erle_n >= _ERLE_WINDOW else 0
        idx = (start + np.arange(blocks * _ERLE_BLOCK)) % _ERLE_WINDOW
        near = self._erle_near[idx].reshape(blocks, _ERLE_BLOCK).sum(axis=1)
        out = self._erle_out[idx].reshape(blocks, _ERLE_BLOCK).sum(axis=1)
        return float(np.median(10 * np.log10(near / np.maximum(out, 1e-12))))

    def stats(self) -> FrontEndStats:
        return FrontEndStats(
            frames=self._frames,
            far_frames=self._far_frames,
            erle_db=self.erle_db,
            cpu_us_per_10ms=self._cpu_ns / 1000 / self._frames if self._frames else 0.0,
            echo_active=self.echo_active,
        )
