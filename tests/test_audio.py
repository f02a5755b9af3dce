"""Audio I/O: the streaming resampler and device logic (plain numbers), then capture and
playback on real PulseAudio virtual devices (tests/pulse.py).

Device tests use real time, bounded by trio.fail_after, and wait for conditions (blocks seen,
states reached, samples recorded), never for fixed delays. Measured latencies are printed
(`pytest -s`); only generous bounds are asserted.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from functools import partial

import numpy as np
import numpy.typing as npt
import pytest
import trio
from pulse import PulseDaemon, Recording, pulse  # noqa: F401  (fixture)
from trio.testing import MockClock

from appliance.audio import AudioSettings, Capture, Playback, StreamResampler, devices
from appliance.audio.devices import (
    Device,
    keep_device_open,
    match_name,
    parse_pulse_devices,
    pulse_arrival,
)
from appliance.audio.farend import MicBlock
from appliance.audio.resample import resample

F32 = npt.NDArray[np.float32]


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5, phase: float = 0.0) -> F32:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def dominant_hz(x: F32, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def band_energy(x: F32, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].sum())


def rms(x: F32) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


# --- pure logic --------------------------------------------------------------------------


def test_pulse_arrival_is_a_new_device_of_our_kind_or_new_defaults() -> None:
    assert pulse_arrival("input", b"Event 'new' on source #12\n")
    assert pulse_arrival("input", b"Event 'change' on server")
    assert not pulse_arrival("input", b"Event 'new' on source-output #3")  # a stream, no device
    assert not pulse_arrival("input", b"Event 'remove' on source #12")
    assert not pulse_arrival("input", b"Event 'new' on sink #4")
    assert pulse_arrival("output", b"Event 'new' on sink #4")
    assert not pulse_arrival("output", b"Event 'new' on sink-input #9")


async def test_a_device_that_comes_back_is_reopened_at_once_not_at_the_next_retry(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unplugged for 5 s (retries 1 s, doubling: at +1 s, +3 s, then +7 s): PulseAudio's event
    for the returning source must reopen it then, not 2 s later at the next retry."""
    present = [True]
    listeners: set[Callable[[], None]] = set()  # the arrival watchers running now
    opened: list[float] = []
    lost: list[trio.Event] = []

    async def find(kind: str, wanted: str) -> Device | str:
        if present[0]:
            return Device("input", 0, "vmic (PulseAudio)", 48000, pulse="vmic")
        return "no input device matching 'vmic'"

    async def watch(kind: str, arrived: Callable[[], None]) -> None:
        listeners.add(arrived)
        try:
            await trio.sleep_forever()
        finally:
            listeners.discard(arrived)

    async def serve(dev: Device, ready: Callable[[], None]) -> None:
        opened.append(trio.current_time())
        lost.append(trio.Event())
        ready()
        await lost[-1].wait()

    monkeypatch.setattr(devices, "find_device", find)
    monkeypatch.setattr(devices, "watch_pulse_arrivals", watch, raising=False)
    states: list[str] = []
    settings = AudioSettings(retry_initial_s=1.0, retry_max_s=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(keep_device_open, "input", "vmic", settings, serve, states.append)
        )
        present[0] = False
        lost[0].set()  # unplugged
        await trio.sleep(5.0)
        present[0] = True  # plugged back; PulseAudio says so
        plugged = trio.current_time()
        for arrived in list(listeners):
            arrived()
        while len(opened) < 2:
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert states == ["ok", "lost", "ok"]
    assert opened[1] - plugged < 0.01
    assert not listeners  # the watcher stops once the device is back


def test_match_name_prefers_exact_then_first_substring_any_case() -> None:
    names = ["micfeed.monitor", "vmic", "USB Audio Device: Mic (hw:1,0)"]
    assert match_name(names, "vmic") == 1
    assert match_name(names, "VMIC") == 1
    assert match_name(names, "mic") == 0  # first substring match
    assert match_name(names, "usb audio") == 2
    assert match_name(names, "headset") is None
    assert match_name(names, "") is None


def test_parse_pulse_devices_marks_monitors_and_reads_rate() -> None:
    text = json.dumps(
        [
            {"name": "spk.monitor", "description": "Monitor of Null Output",
             "sample_specification": "s16le 1ch 48000Hz", "monitor_source": "spk",
             "properties": {"device.class": "monitor"}},
            {"name": "vmic", "description": "Remapped",
             "sample_specification": "float32le 2ch 44100Hz", "monitor_source": "",
             "properties": {"device.class": "filter"}},
        ]
    )  # fmt: skip
    spk, vmic = parse_pulse_devices(text)
    assert (spk.name, spk.monitor, spk.rate) == ("spk.monitor", True, 48000)
    assert (vmic.name, vmic.monitor, vmic.rate) == ("vmic", False, 44100)
    with pytest.raises(ValueError):
        parse_pulse_devices("not json")


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (22050, 48000), (44100, 16000)])
def test_stream_resampler_in_random_blocks_equals_whole_clip(src: int, dst: int) -> None:
    rng = np.random.default_rng(src + dst)
    x = (0.3 * rng.standard_normal(12_000)).astype(np.float32)
    r = StreamResampler(src, dst)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2500))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    y = np.concatenate(parts)
    ref = resample(x, src, dst)
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_stream_resampler_keeps_speech_band_and_rejects_aliases() -> None:
    r = StreamResampler(48000, 16000)
    speech = np.concatenate([r.process(b) for b in np.split(tone(1000, 1.0, 48000), 25)])
    r.reset()
    # 12 kHz cannot exist at 16 kHz; without a low-pass it would fold down to 4 kHz.
    alias = np.concatenate([r.process(b) for b in np.split(tone(12000, 1.0, 48000), 25)])
    assert rms(speech[200:]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert rms(alias[200:]) < 1e-3 * rms(speech[200:])
    assert dominant_hz(speech[200:], 16000) == pytest.approx(1000, abs=5)


def test_stream_resampler_same_rate_passes_through() -> None:
    r = StreamResampler(16000, 16000)
    x = tone(440, 0.1, 16000)
    np.testing.assert_array_equal(r.process(x), x)
    assert len(r.flush()) == 0 and r.delay_s == 0.0


# --- real devices (PulseAudio) -----------------------------------------------------------

SETTINGS = AudioSettings(retry_initial_s=0.1, retry_max_s=0.4)


class States:
    """on_state recorder with an event per state name."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.events: dict[str, trio.Event] = {}

    def __call__(self, state: str) -> None:
        self.seen.append(state)
        self.event(state).set()

    def event(self, state: str) -> trio.Event:
        return self.events.setdefault(state, trio.Event())


class Sink:
    """Consumes a capture channel, keeping the blocks and their trio arrival times."""

    def __init__(self) -> None:
        self.blocks: list[F32] = []
        self.stamps: list[float | None] = []  # capture (ADC) time of each block's first sample
        self.times: list[float] = []
        self.changed = trio.Event()

    async def consume(self, recv: trio.MemoryReceiveChannel[MicBlock]) -> None:
        async for block in recv:
            self.blocks.append(block.samples)
            self.stamps.append(block.t)
            self.times.append(trio.current_time())
            self.changed.set()
            self.changed = trio.Event()

    async def until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            await self.changed.wait()

    @property
    def audio(self) -> F32:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


async def start_capture(
    nursery: trio.Nursery, settings: AudioSettings = SETTINGS, states: States | None = None
) -> tuple[Capture, Sink]:
    capture = Capture(settings, on_state=states)
    send, recv = trio.open_memory_channel[MicBlock](settings.queue_blocks)
    sink = Sink()
    nursery.start_soon(sink.consume, recv)
    await nursery.start(capture.run, send)
    return capture, sink


async def until_recorded(rec: Recording, cond: Callable[[], bool]) -> None:
    while not cond():
        await rec.changed.wait()


async def test_capture_delivers_16k_blocks_with_right_content_and_no_drops(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(20):
        capture, sink = await start_capture(nursery)
        assert capture.available and capture.device_name is not None
        assert "vmic" in capture.device_name
        # 1 kHz (speech band) then 12 kHz (must not fold down to 4 kHz), at 48 kHz.
        signal = np.concatenate(
            [np.zeros(9600, np.float32), tone(1000, 0.5, 48000), tone(12000, 0.5, 48000),
             np.zeros(9600, np.float32)]
        )  # fmt: skip
        start = len(sink.blocks)
        await pulse.feed_mic(signal, 48000)
        # pacat returns once played; the capture path is ~tens of ms behind it.
        await sink.until(lambda: len(sink.blocks) >= start + 10 + len(signal) // 1536)
    blocks = sink.blocks[start:]
    assert all(b.dtype == np.float32 and b.shape == (512,) for b in blocks)
    assert capture.dropped == 0
    audio = np.concatenate(blocks)
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert dominant_hz(audio[loud[0] : loud[-1]], 16000) == pytest.approx(1000, abs=20)
    # 0.5 s of 1 kHz at amplitude 0.5 (energy 0.5 * 16000 * 0.5**2 / 2 = 1000); the 12 kHz
    # half-second must have vanished. Energy, not a count of loud blocks: on a loaded box the
    # test's own feeder (pacat) may underrun mid-tone, which splits the tone over more blocks
    # but neither adds nor loses any of it; a dropped capture block loses 3% of it.
    levels = [rms(b) for b in blocks]
    assert sum(lv > 0.1 for lv in levels) >= 13, levels
    assert float(np.sum(audio.astype(np.float64) ** 2)) == pytest.approx(1000.0, rel=0.025)
    assert np.max(levels) == pytest.approx(0.354, rel=0.1)
    assert band_energy(audio, 16000, 3800, 4200) < 1e-3 * band_energy(audio, 16000, 900, 1100)
    assert capture.latency_s is not None
    print(f"capture: {capture.blocks} blocks, {capture.dropped} dropped, "
          f"PortAudio+resampler latency {capture.latency_s * 1000:.1f} ms")  # fmt: skip


async def test_full_channel_drops_blocks_and_counts_them(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    capture = Capture(AudioSettings(queue_blocks=2))
    send, recv = trio.open_memory_channel[MicBlock](2)
    with trio.fail_after(20):
        await nursery.start(capture.run, send)  # nobody reads `recv`
        while capture.dropped < 5:
            await trio.sleep(0.05)  # polling the counter, not timing
    assert capture.blocks == 2  # the two that fit
    assert recv.receive_nowait().samples.shape == (512,)


async def test_playback_plays_a_tone_and_stop_silences_it(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    playback = Playback(SETTINGS)
    with trio.fail_after(20):
        await nursery.start(playback.run)
        assert playback.available and playback.rate == 48000
        assert playback.device_name is not None and "spk" in playback.device_name
        async with pulse.record("spk.monitor") as rec:
            playback.mark_utterance()
            await playback.play(tone(440, 3.0, 22050), 22050)
            assert playback.playing
            # Let 0.5 s of the tone reach the speaker, then barge in.
            await until_recorded(rec, lambda: int(np.sum(np.abs(rec.samples) > 0.1)) > 24000)
            t_stop = playback.stop()
            assert not playback.playing
            await until_recorded(rec, lambda: rec.arrivals[-1][1] > t_stop + 0.6)
            after_stop = len(rec.samples)
            first_at = playback.first_sample_at
            # The stream was flushed and restarted: the next utterance plays.
            playback.mark_utterance()
            await playback.play(tone(880, 0.3, 22050), 22050)
            await playback.drained()
            t_done = trio.current_time()
            await until_recorded(rec, lambda: rec.arrivals[-1][1] > t_done + 0.3)
    x = rec.samples[:after_stop]
    loud = np.flatnonzero(np.abs(x) > 0.01)
    first, last = int(loud[0]), int(loud[-1])
    assert dominant_hz(x[first:last], 48000) == pytest.approx(440, abs=5)
    assert (last - first) / 48000 < 1.5  # cut short: the tone was 3 s long
    assert np.max(np.abs(x[last + 1 :])) < 0.01  # and silent after the stop took effect
    stop_latency = rec.arrival_time(last) - t_stop
    assert first_at is not None
    start_latency = rec.arrival_time(first) - first_at
    print(f"playback: stop() -> last tone sample on spk.monitor {stop_latency * 1000:.0f} ms; "
          f"first sample's DAC time -> on the monitor {start_latency * 1000:.0f} ms "
          f"(both include parec's own latency); underruns {playback.underruns}")  # fmt: skip
    assert stop_latency < 0.5
    y = rec.samples[after_stop:]
    loud = np.flatnonzero(np.abs(y) > 0.01)
    assert (loud[-1] - loud[0]) / 48000 == pytest.approx(0.3, abs=0.01)
    assert dominant_hz(y[loud[0] : loud[-1]], 48000) == pytest.approx(880, abs=5)
    assert playback.first_sample_at is not None and playback.first_sample_at > t_stop
    assert playback.underruns == 0


async def test_playback_is_gapless_across_play_calls_and_drains(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    playback = Playback(SETTINGS)
    signal = tone(440, 1.0, 22050)
    # Uneven chunks, one of a single sample, after a first one that keeps the producer ahead
    # of the device (a producer that falls behind is an underrun, counted, not a join).
    cuts = [0, 11025, 11026, 13000, 17000, 19000, 22050]
    with trio.fail_after(20):
        await nursery.start(playback.run)
        async with pulse.record("spk.monitor") as rec:
            playback.mark_utterance()
            for a, b in itertools.pairwise(cuts):
                await playback.play(signal[a:b], 22050)
            await playback.drained()
            assert not playback.playing
            t_done = trio.current_time()
            await until_recorded(rec, lambda: rec.arrivals[-1][1] > t_done + 0.3)
    x = rec.samples
    loud = np.flatnonzero(np.abs(x) > 0.01)
    seg = x[int(loud[0]) : int(loud[-1]) + 1]
    # No gap: every 10 ms window holds the full tone; no click: all energy is at 440 Hz.
    windows = seg[: len(seg) // 480 * 480].reshape(-1, 480)
    levels = [round(rms(w), 2) for w in windows]
    assert min(levels) > 0.3, (playback.underruns, levels)
    assert len(seg) / 48000 == pytest.approx(1.0, abs=0.01)
    assert band_energy(seg, 48000, 420, 460) > 0.999 * band_energy(seg, 48000, 0, 24000)
    assert playback.underruns == 0


async def test_loopback_speaker_to_microphone(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    """Playback into `micfeed` (chosen by name), Capture from `vmic`: the burst comes back."""
    with trio.fail_after(20):
        playback = Playback(AudioSettings(output_device="micfeed"))
        await nursery.start(playback.run)
        assert playback.device_name is not None and "micfeed" in playback.device_name
        capture, sink = await start_capture(nursery)
        start = len(sink.blocks)
        playback.mark_utterance()
        await playback.play(tone(1000, 0.2, 22050), 22050)
        await playback.drained()
        await sink.until(lambda: any(rms(b) > 0.1 for b in sink.blocks[start:]))
    i = next(i for i in range(start, len(sink.blocks)) if rms(sink.blocks[i]) > 0.1)
    onset = int(np.flatnonzero(np.abs(sink.blocks[i]) > 0.05)[0])
    assert playback.first_sample_at is not None
    # The onset sample was captured (512 - onset) / 16000 s before its block was delivered;
    # first_sample_at is when it reached the speaker (its DAC time).
    latency = sink.times[i] - (512 - onset) / 16000 - playback.first_sample_at
    print(f"loopback: speaker (DAC time) -> capture channel {latency * 1000:.0f} ms")
    assert 0 < latency < 1.0
    assert capture.dropped == 0
    # The device clocks: the tone's first sample reached the speaker (the far-end tap's DAC
    # time) and came back into the microphone (the capture block's ADC time) a few ms apart,
    # however long the playback queue, buffers and our own processing took.
    played = [(t, b, r) for t, b, r in playback.tap.drain() if np.abs(b).max() > 0.05]
    t_dac, block, rate = played[0]
    t_dac += int(np.flatnonzero(np.abs(block) > 0.05)[0]) / rate
    stamp = sink.stamps[i]
    assert stamp is not None
    path_s = stamp + onset / 16000 - t_dac
    print(f"loopback: DAC -> ADC by the device clocks {path_s * 1000:.1f} ms")
    assert -0.005 < path_s < 0.05, path_s


async def test_microphone_unplugged_and_plugged_back(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = States()
    try:
        with trio.fail_after(30):
            capture, sink = await start_capture(nursery, states=states)
            assert states.seen == ["ok"]
            n = len(sink.blocks)
            await sink.until(lambda: len(sink.blocks) > n + 3)
            pulse.unplug_mic()
            await states.event("lost").wait()
            assert not capture.available and capture.device_name is None
            assert any(
                "audio input lost" in r.getMessage() and r.levelno == logging.WARNING
                for r in caplog.records
            )
            states.events.pop("ok")
            pulse.plug_mic()
            await states.event("ok").wait()
            assert capture.available and "vmic" in (capture.device_name or "")
            n = len(sink.blocks)
            await sink.until(lambda: len(sink.blocks) > n + 5)  # flowing again
    finally:
        pulse.plug_mic()
    assert states.seen == ["ok", "lost", "ok"]
    assert capture.attempts >= 2 and capture.dropped == 0


async def test_no_device_at_start_then_it_appears(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance.audio")
    states = States()
    pulse.unplug_mic()
    try:
        with trio.fail_after(30):
            capture, sink = await start_capture(
                nursery, AudioSettings(input_device="vmic", retry_initial_s=0.1), states
            )
            # started() returned although there is no device: the kiosk runs text-only.
            assert not capture.available and states.seen == ["unavailable"]
            assert any("audio input unavailable" in r.getMessage() for r in caplog.records)
            while sum("next try in" in r.getMessage() for r in caplog.records) < 2:
                await trio.sleep(0.05)  # polling the log for the retries, not timing
            pulse.plug_mic()
            await states.event("ok").wait()
            await sink.until(lambda: len(sink.blocks) > 3)
    finally:
        pulse.plug_mic()
    assert states.seen == ["unavailable", "ok"]


async def test_no_such_device_keeps_retrying_and_playback_discards(
    pulse: PulseDaemon,  # noqa: F811
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance.audio")
    states = States()
    with trio.fail_after(20):
        capture, _ = await start_capture(
            nursery, AudioSettings(input_device="no-such-mic", retry_initial_s=0.05), states
        )
        assert not capture.available and capture.device_name is None
        assert states.seen == ["unavailable"]
        messages = [r.getMessage() for r in caplog.records]
        assert any("no input device matching 'no-such-mic'" in m for m in messages), messages
        while sum("next try in" in r.getMessage() for r in caplog.records) < 3:
            await trio.sleep(0.05)  # polling the log for the retries, not timing
        playback = Playback(AudioSettings(output_device="no-such-speaker"))
        await nursery.start(playback.run)
        assert not playback.available
        await playback.play(tone(440, 0.5, 22050), 22050)
        await playback.drained()  # returns at once: nothing can play
        assert playback.discarded_s == pytest.approx(0.5)
        assert playback.first_sample_at is None
    assert states.seen == ["unavailable"]
