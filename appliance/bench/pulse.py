"""A private PulseAudio daemon with virtual devices: the bench's and the tests' sound card.

Devices: null sink `spk` (the appliance's speaker; record its
`spk.monitor`), null sink `micfeed` and remap source `vmic` on its monitor (the appliance's
microphone: what is played into `micfeed` is heard on `vmic`). Silence feeders keep both sinks
running, since an idle sink made the first capture start seconds late; they ask for 20 ms
latency because a null sink sleeps for its current latency (up to 2 s with a default-latency
feeder) before it serves a newly connected stream. The daemon lives in its own runtime dir and
is reached through PULSE_SERVER (`PulseDaemon.env`); a process that should use it (the appliance,
PortAudio via libpulse) needs PULSE_SERVER and XDG_RUNTIME_DIR from there.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import trio

__all__ = [
    "MIC_ARGS",
    "MIC_MODULE",
    "RATE",
    "TOOLS",
    "PulseDaemon",
    "PulseStartError",
    "Recording",
    "missing_tools",
    "pulse_for_children",
]

RATE = 48000
_NEAR_CHUNKS = 200  # about 2 s of 10 ms reads either side
MIC_MODULE = "module-remap-source"
MIC_ARGS = ("source_name=vmic", "master=micfeed.monitor")
TOOLS = ("pulseaudio", "pactl", "pacat", "parec")


class Recording:
    """Float32 samples read from a source as they arrive, each chunk stamped with trio time."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.chunks: list[npt.NDArray[np.float32]] = []
        self.arrivals: list[tuple[int, float]] = []  # (samples so far, trio time)
        self.changed = trio.Event()
        self._n = 0

    def add(self, data: npt.NDArray[np.float32], at: float | None = None) -> None:
        """Append a chunk read at trio time `at` (default: now)."""
        self.chunks.append(data)
        self._n += len(data)
        self.arrivals.append((self._n, trio.current_time() if at is None else at))
        self.changed.set()
        self.changed = trio.Event()

    def __len__(self) -> int:
        return self._n

    def since(self, index: int) -> npt.NDArray[np.float32]:
        """Samples from `index` on, without joining the whole (possibly long) recording."""
        parts: list[npt.NDArray[np.float32]] = []
        start = 0
        for chunk in self.chunks:
            end = start + len(chunk)
            if end > index:
                parts.append(chunk[max(0, index - start) :])
            start = end
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    @property
    def samples(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    def _origin(self, k: int) -> float:
        """Trio time of sample 0 on this recording's clock, from the chunks near chunk `k`.

        A chunk's stamp is late by however long its read waited (a busy loop, a backlog read
        in one go), never early, so the earliest back-dated stamp is the best estimate. Two
        recordings timed this way agree to well under a millisecond, where raw stamps were
        off by a few ms either way (which made echo delays measure short of the set ones).
        Only nearby chunks count, so a long recording follows any slow drift.
        """
        lo, hi = max(0, k - _NEAR_CHUNKS), min(len(self.arrivals), k + _NEAR_CHUNKS + 1)
        return min(t - (end - 1) / self.rate for end, t in self.arrivals[lo:hi])

    def arrival_time(self, index: int) -> float:
        """Trio time at which sample `index` reached us, on the recording's own clock (see
        `_origin`). Includes the recorder's own latency."""
        for k, (end, _) in enumerate(self.arrivals):
            if index < end:
                return self._origin(k) + index / self.rate
        raise IndexError(index)

    def index_at(self, t: float) -> int | None:
        """The first sample whose `arrival_time` is at or after trio time `t` (None: not
        recorded yet). Maps a moment onto another recording that shares the clock."""
        if not self.arrivals:
            return None
        k = next((k for k, (_, ta) in enumerate(self.arrivals) if ta >= t), len(self.arrivals) - 1)
        i = max(0, math.ceil((t - self._origin(k)) * self.rate - 1e-6))  # float noise
        return i if i < self._n else None


class PulseStartError(RuntimeError):
    """The private daemon did not come up (its log tail is in the message)."""


def missing_tools() -> list[str]:
    """The PulseAudio command-line tools this module needs that are not on PATH."""
    return [t for t in TOOLS if shutil.which(t) is None]


class PulseDaemon:
    """A private `pulseaudio` (own runtime dir, reached through `env["PULSE_SERVER"]`) with the
    virtual devices above. `start()`/`stop()` are blocking (call them from a thread or before
    trio starts); `feed_mic` and `record` are async."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "rt"
        self.socket = self.runtime / "native"
        self.env = {
            **os.environ,
            "HOME": str(root / "home"),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(root / "config"),
            "PULSE_SERVER": f"unix:{self.socket}",
        }
        self._procs: list[subprocess.Popen[bytes]] = []
        self._log = open(root / "pulseaudio.log", "wb")  # closed in stop()

    # --- lifecycle ---

    def start(self) -> None:
        for d in (self.runtime, self.root / "home", self.root / "config"):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        daemon = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "--daemonize=no",
                "--use-pid-file=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--log-target=stderr",
                "-L",
                f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
                "-L",
                f"module-null-sink sink_name=spk rate={RATE} channels=1",
                "-L",
                f"module-null-sink sink_name=micfeed rate={RATE} channels=1",
                "-L",
                f"{MIC_MODULE} {' '.join(MIC_ARGS)}",
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self._procs.append(daemon)
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.root / "pulseaudio.log").read_text(errors="replace")[-2000:]
                raise PulseStartError(f"pulseaudio did not start:\n{log}")
            time.sleep(0.05)  # waiting for the daemon's socket, not for audio timing
        self.pactl("set-default-sink", "spk")
        self.pactl("set-default-source", "vmic")
        for sink in ("spk", "micfeed"):
            with open("/dev/zero", "rb") as zero:
                self._procs.append(
                    subprocess.Popen(
                        ["pacat", "-p", "-d", sink, "--raw", "--format=s16le",
                         f"--rate={RATE}", "--channels=1", "--latency-msec=20"],
                        env=self.env, stdin=zero, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
        # Warm-up read: the first capture from a fresh source started late without it.
        self._warm_up()

    def _warm_up(self) -> None:
        with subprocess.Popen(
            ["parec", "-d", "vmic", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=1"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as proc:
            assert proc.stdout is not None
            got = proc.stdout.read(RATE // 10 * 2)  # 100 ms
            proc.kill()
        if not got:
            raise PulseStartError("no audio from the virtual microphone during warm-up")

    def stop(self) -> None:
        for p in reversed(self._procs):  # feeders first, the daemon last
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs.clear()
        self._log.close()

    # --- helpers ---

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pactl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def module_index(self, name: str, arg: str) -> int | None:
        for line in self.pactl("list", "short", "modules").splitlines():
            cols = line.split("\t")
            if len(cols) >= 3 and cols[1] == name and arg in cols[2]:
                return int(cols[0])
        return None

    def unplug_mic(self) -> None:
        """The USB microphone goes away: unload the `vmic` source."""
        idx = self.module_index(MIC_MODULE, MIC_ARGS[0])
        assert idx is not None, "vmic is not loaded"
        self.pactl("unload-module", str(idx))

    def plug_mic(self) -> None:
        """...and comes back (a no-op when it is there)."""
        if self.module_index(MIC_MODULE, MIC_ARGS[0]) is None:
            self.pactl("load-module", MIC_MODULE, *MIC_ARGS)
        self.pactl("set-default-source", "vmic")

    async def feed_mic(
        self, audio: npt.NDArray[np.float32] | npt.NDArray[np.int16], rate: int
    ) -> None:
        """Play mono audio into the virtual microphone; returns when it has been played.

        pacat reads the audio from a file and keeps 200 ms queued in the server: fed through
        a pipe from this process 20 ms ahead, a busy event loop or a starved pacat let the
        stream run dry on a loaded 2-core box, and the silence it played split a spoken
        question in two ("Hey Mycroft, can I take photos?" heard as "can I?")."""
        fmt = "s16le" if audio.dtype == np.int16 else "float32le"
        data = audio.astype("<i2" if fmt == "s16le" else "<f4").tobytes()
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.seek(0)
            await trio.run_process(
                ["pacat", "-p", "-d", "micfeed", "--raw", f"--format={fmt}", f"--rate={rate}",
                 "--channels=1", "--latency-msec=200"],
                stdin=f, env=self.env, capture_stderr=True,
            )  # fmt: skip

    @asynccontextmanager
    async def record(self, source: str = "spk.monitor") -> AsyncIterator[Recording]:
        """Record `source` (float32 at 48 kHz) with `parec` while the block runs."""
        rec = Recording(RATE)
        proc = await trio.lowlevel.open_process(
            ["parec", "-d", source, "--raw", "--format=float32le", f"--rate={RATE}",
             "--channels=1", "--latency-msec=10"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env,
        )  # fmt: skip
        assert proc.stdout is not None
        stdout = proc.stdout

        async def reader() -> None:
            rest = b""
            while chunk := await stdout.receive_some(65536):
                rest += chunk
                n = len(rest) // 4 * 4
                rec.add(np.frombuffer(rest[:n], "<f4").astype(np.float32))
                rest = rest[n:]

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                yield rec
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def pulse_for_children(root: Path) -> AsyncIterator[PulseDaemon]:
    """A started PulseDaemon under `root` whose server this process's children (the appliance
    under test) reach through PULSE_SERVER / XDG_RUNTIME_DIR; both are put back and the daemon
    stopped on exit."""

    def started() -> PulseDaemon:
        root.mkdir(parents=True, exist_ok=True)
        daemon = PulseDaemon(root)
        daemon.start()
        return daemon

    pulse = await trio.to_thread.run_sync(started)
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "XDG_RUNTIME_DIR")}
    try:
        os.environ.update({k: pulse.env[k] for k in saved})
        yield pulse
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        await trio.to_thread.run_sync(pulse.stop)
