"""Finding audio devices by name, noticing when they vanish, and reopening them when they are back.

Two layers, because on a PulseAudio (or PipeWire-pulse) box PortAudio only sees the virtual
ALSA devices `pulse`/`default`:
- PulseAudio (`pactl`): sources/sinks matched by name or description; the stream is opened on
  PortAudio's `pulse` device with PULSE_SOURCE/PULSE_SINK naming the target. PulseAudio moves a
  stream whose device is unloaded to a fallback (for a mic: a monitor, i.e. our own speaker),
  so loss is noticed by watching `pactl subscribe`, not by a stream error; so is a return:
  while a device is missing, a new source/sink cuts the retry's backoff short.
- Plain PortAudio devices (bare ALSA, other OSes): matched by name; loss shows as a stream that
  stops calling back.
`sounddevice` is imported lazily: PortAudio enumerates devices at import and the service must
start without a sound card. Both layers live here (~470 lines) because capture and playback
share all of it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import trio

from ..backoff import Backoff

log = logging.getLogger("appliance.audio")

Kind = Literal["input", "output"]

__all__ = [
    "AudioSettings",
    "Device",
    "DeviceError",
    "Kind",
    "PulseDevice",
    "find_device",
    "keep_device_open",
    "load_sounddevice",
    "match_name",
    "open_started",
    "parse_pulse_devices",
    "pulse_arrival",
    "pulse_env",
    "serve_stream",
    "watch_pulse",
    "watch_pulse_arrivals",
]


@dataclass(frozen=True)
class AudioSettings:
    input_device: str = ""  # name substring; "" = the system default microphone
    output_device: str = ""
    block_ms: int = 32  # 512 samples at 16 kHz: one VAD frame
    # PortAudio's capture callback period. Shorter than a VAD frame: a frame's last sample
    # then reaches us ~10 ms after it was spoken instead of up to 32 ms (end-of-speech and
    # barge-in decisions come that much sooner); frames are assembled in the callback.
    device_block_ms: int = 10
    queue_blocks: int = 64  # capture channel bound (~2 s); beyond it blocks are dropped
    retry_initial_s: float = 1.0
    retry_max_s: float = 10.0
    # Output buffering: headroom against GIL/GC stalls of the callback (40 ms underran with two
    # busy Python threads, 80 ms did not). It delays the first reply sample by about this much;
    # barge-in is not affected (stop() drops the buffered audio).
    output_latency_ms: int = 80


class DeviceError(Exception):
    """A device could not be opened or failed while open (message says which and why)."""


@dataclass(frozen=True)
class Device:
    kind: Kind
    portaudio: int  # PortAudio device index to open
    label: str  # for log lines
    rate: int  # native sample rate: open at this rate, resample ourselves
    pulse: str | None = None  # PulseAudio source/sink name routed through `portaudio`


@dataclass(frozen=True)
class PulseDevice:
    name: str
    description: str
    rate: int
    monitor: bool  # a sink's monitor: what we play, never a microphone


def match_name(names: Sequence[str], wanted: str) -> int | None:
    """Index of the device `wanted` names: exact (any case) first, else the first substring."""
    w = wanted.strip().lower()
    if not w:
        return None
    for i, n in enumerate(names):
        if n.lower() == w:
            return i
    for i, n in enumerate(names):
        if w in n.lower():
            return i
    return None


def _rate_of(spec: str) -> int:
    # "s16le 1ch 48000Hz"
    for part in spec.split():
        if part.endswith("Hz") and part[:-2].isdigit():
            return int(part[:-2])
    return 48000


def parse_pulse_devices(text: str) -> list[PulseDevice]:
    """`pactl -f json list sources|sinks` -> devices (bad JSON -> ValueError)."""
    out: list[PulseDevice] = []
    for d in json.loads(text):
        props = d.get("properties") or {}
        monitor = bool(d.get("monitor_source")) or props.get("device.class") == "monitor"
        out.append(
            PulseDevice(
                name=str(d["name"]),
                description=str(d.get("description", "")),
                rate=_rate_of(str(d.get("sample_specification", ""))),
                monitor=monitor,
            )
        )
    return out


def pulse_arrival(kind: Kind, line: bytes) -> bool:
    """Whether a `pactl subscribe` line may announce the device we miss: a new source (input) or
    sink (output), or a change of the server's defaults. Pure."""
    text = line.decode("utf-8", "replace").strip()
    noun = "source" if kind == "input" else "sink"
    return text == "Event 'change' on server" or text.startswith(f"Event 'new' on {noun} #")


# --- PulseAudio via pactl ------------------------------------------------------------------


async def _pactl(*args: str) -> str | None:
    """stdout of a pactl command, or None when there is no pactl or no server."""
    exe = shutil.which("pactl")
    if exe is None:
        return None
    try:
        with trio.fail_after(5):
            done = await trio.run_process(
                [exe, *args], capture_stdout=True, capture_stderr=True, check=False
            )
    except (OSError, trio.TooSlowError):
        return None
    if done.returncode != 0:
        return None
    return bytes(done.stdout).decode("utf-8", "replace")


async def pulse_devices(kind: Kind) -> tuple[list[PulseDevice], str] | None:
    """(devices, default name) from PulseAudio, or None when no PulseAudio answers."""
    noun = "sources" if kind == "input" else "sinks"
    text = await _pactl("-f", "json", "list", noun)
    if text is None:
        return None
    try:
        devices = parse_pulse_devices(text)
    except (ValueError, KeyError, TypeError):
        return None
    default = await _pactl("get-default-source" if kind == "input" else "get-default-sink")
    return devices, (default or "").strip()


@asynccontextmanager
async def _pactl_subscribe() -> AsyncIterator[trio.abc.ReceiveStream | None]:
    """`pactl subscribe`'s output while the block runs; None when there is no pactl (or it
    cannot be started: the callers fall back to what they do without PulseAudio)."""
    exe = shutil.which("pactl")
    proc = None
    if exe is not None:
        try:
            proc = await trio.lowlevel.open_process(
                [exe, "subscribe"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError as exc:
            log.debug("pactl subscribe not started: %s", exc)
    if proc is None:
        yield None
        return
    try:
        assert proc.stdout is not None
        yield proc.stdout
    finally:
        with trio.CancelScope(shield=True):
            proc.kill()
            await proc.wait()


async def _event_lines(events: trio.abc.ReceiveStream, pending: bytearray) -> list[bytes] | None:
    """The next complete event lines (a partial one stays in `pending`); None once pactl (or
    the server) went away."""
    chunk = await events.receive_some(4096)
    if not chunk:
        return None
    pending += chunk
    *lines, rest = bytes(pending).split(b"\n")
    pending[:] = rest
    return lines


async def watch_pulse(kind: Kind, name: str, gone: trio.Event) -> None:
    """Set `gone` once PulseAudio no longer has source/sink `name` (event-driven)."""
    noun = "source" if kind == "input" else "sink"

    async def present() -> bool:
        listed = await pulse_devices(kind)
        return listed is None or any(d.name == name for d in listed[0])

    async with _pactl_subscribe() as events:
        if events is None:
            return
        # Subscribed first, then checked: a removal in between is not missed.
        if not await present():
            gone.set()
            return
        pending = bytearray()
        while (lines := await _event_lines(events, pending)) is not None:
            if any(f"'remove' on {noun} #".encode() in ln for ln in lines):
                if not await present():
                    gone.set()
                    return
        gone.set()  # pactl (or the server) went away


async def watch_pulse_arrivals(kind: Kind, arrived: Callable[[], None]) -> None:
    """Call `arrived()` for each PulseAudio event that may bring a missing device back
    (`pulse_arrival`), until cancelled; returns at once without pactl, or when it ends."""
    async with _pactl_subscribe() as events:
        if events is None:
            return
        pending = bytearray()
        while (lines := await _event_lines(events, pending)) is not None:
            if any(pulse_arrival(kind, ln) for ln in lines):
                arrived()


# --- PortAudio -----------------------------------------------------------------------------

_lock = threading.Lock()
_open_streams = 0


def load_sounddevice() -> ModuleType:
    """The sounddevice module, imported on first use (PortAudio enumerates devices then)."""
    import sounddevice

    module: ModuleType = sounddevice
    return module


def _count_streams(delta: int) -> None:
    global _open_streams
    with _lock:
        _open_streams += delta


def _portaudio_devices(rescan: bool) -> list[dict[str, Any]]:
    """PortAudio's device list; `rescan` re-enumerates (only while no stream of ours is open,
    since re-initialising PortAudio would kill it)."""
    sd = load_sounddevice()
    with _lock:
        if rescan and _open_streams == 0:
            sd._terminate()
            sd._initialize()
    return [dict(d) for d in sd.query_devices()]


def _portaudio_default(kind: Kind) -> int:
    dev = load_sounddevice().default.device
    return int(dev[0] if kind == "input" else dev[1])


_env_lock = threading.Lock()


@contextmanager
def pulse_env(device: Device) -> Iterator[None]:
    """While opening a stream: point libpulse (inside ALSA's `pulse` PCM) at our device."""
    if device.pulse is None:
        yield
        return
    var = "PULSE_SOURCE" if device.kind == "input" else "PULSE_SINK"
    with _env_lock:
        old = os.environ.get(var)
        os.environ[var] = device.pulse
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old


def _channels_key(kind: Kind) -> str:
    return "max_input_channels" if kind == "input" else "max_output_channels"


def _pick_portaudio(devs: list[dict[str, Any]], kind: Kind, wanted: str) -> Device | str:
    usable = [d for d in devs if int(d[_channels_key(kind)]) > 0]
    if wanted:
        i = match_name([str(d["name"]) for d in usable], wanted)
        if i is None:
            names = ", ".join(repr(str(d["name"])) for d in usable) or "none"
            return f"no {kind} device matching {wanted!r} (devices: {names})"
        d = usable[i]
    else:
        idx = _portaudio_default(kind)
        found = [d for d in usable if int(d["index"]) == idx]
        if not found:
            return f"no default {kind} device"
        d = found[0]
    return Device(kind, int(d["index"]), str(d["name"]), int(d["default_samplerate"]))


def _pick_pulse(
    devs: list[dict[str, Any]], kind: Kind, wanted: str, pulse: tuple[list[PulseDevice], str]
) -> Device | str | None:
    """A PulseAudio device routed through PortAudio's `pulse`; a reason string when there is
    definitely none; None to fall back to plain PortAudio matching."""
    via = [d for d in devs if str(d["name"]) in ("pulse", "default")]
    if not via or int(via[0][_channels_key(kind)]) == 0:
        return None
    listed, default = pulse
    if kind == "input":
        # A monitor is no microphone (it hears our own speaker): never the default, and named
        # ones only when nothing else matches.
        listed = [d for d in listed if not d.monitor] + (
            [d for d in listed if d.monitor] if wanted else []
        )
    if wanted:
        i = match_name([d.name for d in listed], wanted)
        if i is None:
            i = match_name([d.description for d in listed], wanted)
        if i is None:
            return None  # maybe a non-PulseAudio device name
    else:
        names = [d.name for d in listed]
        if default not in names:
            noun = "microphone" if kind == "input" else "speaker"
            return f"no {noun}: PulseAudio's default {kind} is {default or 'unset'!r}"
        i = names.index(default)
    p = listed[i]
    return Device(kind, int(via[0]["index"]), f"{p.name} (PulseAudio)", p.rate, pulse=p.name)


async def find_device(kind: Kind, wanted: str) -> Device | str:
    """The device to open for `wanted` ("" = default), or a reason why there is none."""
    pulse = await pulse_devices(kind)
    reason = ""
    for rescan in (False, True):
        try:
            devs = await trio.to_thread.run_sync(_portaudio_devices, rescan)
        except (OSError, ImportError) as exc:  # no PortAudio library at all
            return f"no audio backend: {exc}"
        picked: Device | str | None = None
        if pulse is not None:
            picked = _pick_pulse(devs, kind, wanted, pulse)
        if picked is None:
            picked = _pick_portaudio(devs, kind, wanted)
        if isinstance(picked, Device):
            return picked
        # Devices are enumerated once; one plugged in (or a sound server started) since then
        # needs a rescan before we say there is none.
        reason = picked
    return reason


# --- the open / lost / retry loop shared by capture and playback ---------------------------

Serve = Callable[[Device, Callable[[], None]], Any]


async def keep_device_open(
    kind: Kind,
    wanted: str,
    settings: AudioSettings,
    serve: Serve,
    on_state: Callable[[str], None],
    task_status: trio.TaskStatus[None],
) -> None:
    """Open the device, serve it until lost, retry with backoff; forever (until cancelled).

    `serve(device, ready)` opens and runs a stream, calls `ready()` once audio flows, and returns
    when the device is lost (or raises DeviceError). `task_status.started()` fires at the first
    `ready()` or at the first failure (the kiosk then runs text-only while this keeps trying).
    `on_state` gets "ok", "lost" (was ok) or "unavailable" (never was, or still not back).
    """
    started = False
    state = ""
    backoff = Backoff(initial_s=settings.retry_initial_s, max_s=settings.retry_max_s)

    def set_state(new: str) -> None:
        nonlocal state
        if new != state:
            state = new
            on_state(new)

    def ready() -> None:
        nonlocal started
        backoff.reset()
        set_state("ok")
        if not started:
            started = True
            task_status.started()

    def failed(reason: str) -> float:
        """Say so (a warning per outage, then debug lines); the wait before the next try."""
        nonlocal started
        delay = backoff.delay(0.0)
        if state == "ok":
            log.warning("%s; retrying (text and touch keep working)", reason)
            set_state("lost")
        elif state == "":
            log.warning(
                "%s; running without it, retrying every %.1f-%.1f s",
                reason,
                settings.retry_initial_s,
                settings.retry_max_s,
            )
            set_state("unavailable")
        else:
            log.debug("%s; next try in %.1f s", reason, delay)
        if not started:
            started = True
            task_status.started()
        return delay

    found = await find_device(kind, wanted)
    while True:
        # Served outside any nursery: what serve raises reaches our caller as it is.
        if isinstance(found, Device):
            try:
                await serve(found, ready)
                reason = f"audio {kind} lost: {found.label}"
            except DeviceError as exc:
                reason = f"audio {kind} {found.label}: {exc}"
        else:
            reason = f"audio {kind} unavailable: {found}"
        found = await _until_found(kind, wanted, failed(reason), failed)


async def _until_found(
    kind: Kind, wanted: str, delay: float, failed: Callable[[str], float]
) -> Device:
    """Wait `delay`, look again, and so on (`failed` gives the next wait) until the device is
    found. PulseAudio is watched for the whole outage, so a device that comes back ends the wait
    at once, even when it appeared during a lookup that missed it: the next wait is then none."""
    woke = trio.Event()

    def arrived() -> None:
        woke.set()  # the current wait's event

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_pulse_arrivals, kind, arrived)
        while True:
            with trio.move_on_after(delay):
                await woke.wait()
            woke = trio.Event()
            found = await find_device(kind, wanted)
            if isinstance(found, Device):
                nursery.cancel_scope.cancel()
                return found
            delay = failed(f"audio {kind} unavailable: {found}")


FIRST_CALLBACK_S = 5.0  # PulseAudio's first stream in a process took up to ~2 s to call back
# No callback for this long while open: the device is gone. Above 2 s because a PulseAudio
# null sink can sleep up to its 2 s maximum latency before serving a new stream.
STALL_S = 3.0
_POLL_S = 0.25


def open_started(dev: Device, stream_type: Callable[..., Any], **kwargs: Any) -> Any:
    """A started mono float32 PortAudio stream on `dev` (`sd.InputStream`/`OutputStream` with
    `kwargs`), opened with `pulse_env`; closed again if it will not start. Blocking."""
    with pulse_env(dev):
        stream = stream_type(
            device=dev.portaudio, samplerate=dev.rate, channels=1, dtype="float32", **kwargs
        )
    try:
        stream.start()
    except BaseException:
        stream.close()
        raise
    return stream


async def serve_stream(
    dev: Device,
    open_stream: Callable[[], Any],
    first: trio.Event,
    gone: trio.Event,
    last_callback: Callable[[], float],
    on_ready: Callable[[Any, trio.Nursery], None],
) -> None:
    """Open a PortAudio stream (in a thread), hold it until the device is gone, close it.

    The stream's callback sets `first` (via the trio token) once audio flows and records
    `time.monotonic()` for `last_callback()`; `gone` is set by the finished callback or the
    PulseAudio watcher. `on_ready(stream, nursery)` runs once, after the first callback; tasks
    it starts in `nursery` end with the stream.
    """
    sd = load_sounddevice()
    try:
        stream = await trio.to_thread.run_sync(open_stream)
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot open: {exc}") from exc
    _count_streams(1)
    try:
        async with trio.open_nursery() as nursery:
            if dev.pulse is not None:
                nursery.start_soon(watch_pulse, dev.kind, dev.pulse, gone)
            with trio.move_on_after(FIRST_CALLBACK_S):
                await first.wait()
            if not first.is_set():
                raise DeviceError(f"opened, but no audio within {FIRST_CALLBACK_S:.0f} s")
            on_ready(stream, nursery)
            while not gone.is_set():
                with trio.move_on_after(_POLL_S):
                    await gone.wait()
                if time.monotonic() - last_callback() > STALL_S:
                    log.warning("audio %s %s: no callback for %.1f s", dev.kind, dev.label, STALL_S)
                    break
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stream.close)
        _count_streams(-1)
