"""Measure the microphone front end (appliance/audio/frontend.py) on a synthetic room.

    PYTHONPATH=$PWD python tools/frontend_measure.py [cpu|erle|doubletalk|lead|delay|all]

Far end: the kiosk's Piper voice (~28 s, -20 dBFS). Echo: far end through `room_ir` (direct
path after the given delay and gain, decaying noise tail RT60 0.25 s at -6 dB) plus pink noise
at -65 dBFS. Visitor: espeak-ng en-gb-x-rp+f3. ERLE = 10·log10(mic energy / output energy)
over the frames from 5 s on in which the far end plays (the output re-aligned by the
front end's re-framing delay). Single-threaded; figures are for the machine it runs on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from audiosynth import RATE, espeak, pink_noise, rms_db, set_level
from test_frontend import (
    erle_db,
    far_speech,
    room,
    run,
    shifted,
    visitor,
    visitor_voice,
)

from appliance.audio.frontend import (
    DELAY_SAMPLES,
    AudioFrontEnd,
    FrontEndSettings,
)
from appliance.voice.wake import WakeWordDetector

CONFIGS = {
    "EC": FrontEndSettings(noise_suppression=False),
    "EC+NS": FrontEndSettings(),
    "NS only": FrontEndSettings(echo_cancellation=False),
    "EC+NS+AGC": FrontEndSettings(agc=True),
}


def cpu() -> None:
    far = np.concatenate([far_speech()] * 2)  # ~56 s
    echo, noise = room(far, delay_s=0.04, gain_db=-10.0)
    mic = echo + noise
    frames = len(mic) // 160
    print("| config | block | WebRTC thread CPU µs/10 ms | whole process() CPU µs/10 ms |")
    print("|---|---|---|---|")
    for name, settings in CONFIGS.items():
        for block in (160, 512):
            best_inner, best_all = 1e9, 1e9
            for _ in range(3):
                fe = AudioFrontEnd(settings)
                t0 = time.thread_time()
                for i in range(0, len(mic), block):
                    fe.process(mic[i : i + block], far[i : i + block])
                best_all = min(best_all, (time.thread_time() - t0) / frames * 1e6)
                best_inner = min(best_inner, fe.stats().cpu_us_per_10ms)
            print(f"| {name} | {block} | {best_inner:.1f} | {best_all:.1f} |")
    x = set_level(np.concatenate([espeak("hey my croft, where are the toilets?")] * 20), -24)
    x = np.concatenate([x, pink_noise(30 * RATE, np.random.default_rng(0)) * 0.01])
    for block in (160, 512):
        best = 1e9
        for _ in range(3):
            d = WakeWordDetector()
            t0 = time.thread_time()
            for i in range(0, len(x), block):
                d.process(x[i : i + block])
            best = min(best, (time.thread_time() - t0) / (len(x) // 160) * 1e6)
        print(f"| wake word hey_mycroft | {block} | - | {best:.1f} |")


def erle() -> None:
    far = far_speech()
    print("| delay ms | gain dB | config | ERLE measured (dB) | our estimate erle_db |")
    print("|---|---|---|---|---|")
    for delay in (0.02, 0.05, 0.08):
        for gain in (-6.0, -12.0, -20.0):
            echo, noise = room(far, delay_s=delay, gain_db=gain)
            mic = echo + noise
            for name in ("EC", "EC+NS"):
                out, fe = run(mic, far, CONFIGS[name])
                est = fe.stats().erle_db
                print(
                    f"| {delay * 1000:.0f} | {gain:.0f} | {name} | "
                    f"{erle_db(mic, out, far, 5.0):.1f} | {est:.1f} |"
                )


def doubletalk() -> None:
    far = far_speech()
    print("| echo gain dB | visitor starts s | config | visitor kept dB | echo left / voice dB |")
    print("|---|---|---|---|---|")
    for gain in (-6.0, -10.0, -20.0):
        echo, noise = room(far, delay_s=0.04, gain_db=gain)
        for at_s in (2.0, 9.0, 15.0):
            at = int(at_s * RATE)
            span = slice(at, at + len(visitor_voice()))
            v = visitor(at_s, len(far), rms_db(echo[span]))  # SER 0 dB
            for name in ("EC", "EC+NS"):
                settings = CONFIGS[name]
                out_dt, _ = run(echo + noise + v, far, settings)
                out_e, _ = run(echo + noise, far, settings)
                d = DELAY_SAMPLES + (14 if settings.noise_suppression else 8) * RATE // 1000

                def energy(o: np.ndarray, d: int = d, span: slice = span) -> float:
                    return float(np.sum(o[span.start + d : span.stop + d].astype(np.float64) ** 2))

                ev = float(np.sum(v[span].astype(np.float64) ** 2))
                kept = 10 * np.log10(max(energy(out_dt) - energy(out_e), 1e-12) / ev)
                left = 10 * np.log10(energy(out_e) / ev)
                print(f"| {gain:.0f} | {at_s:.0f} | {name} | {kept:.1f} | {left:.1f} |")


def lead() -> None:
    far = far_speech()
    print(
        "| echo delay ms | reference lead ms (negative = lags the echo) | ERLE 0-5 s | ERLE 5 s- |"
    )
    print("|---|---|---|---|")
    for delay in (0.005, 0.03):
        echo, noise = room(far, delay_s=delay, gain_db=-6.0)
        mic = echo + noise
        for lead_ms in (-20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50, 100, 200, 300):
            ref = shifted(far, round((delay * 1000 - lead_ms) * RATE / 1000))
            out, _ = run(mic, ref, CONFIGS["EC"])
            cut = out[: 5 * RATE + DELAY_SAMPLES]
            early = erle_db(mic[: 5 * RATE], cut, far[: 5 * RATE], 0.0)
            late = erle_db(mic, out, far, 5.0)
            print(f"| {delay * 1000:.0f} | {lead_ms} | {early:.1f} | {late:.1f} |")


def delay() -> None:
    print("| config | click delay ms (ours + WebRTC) | delay_s ms |")
    print("|---|---|---|")
    for name, settings in CONFIGS.items():
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(3 * RATE) * 0.01).astype(np.float32)
        at = 2 * RATE + 37
        x[at] += 0.8
        out, fe = run(x, None, settings, block=480)
        peak = int(np.argmax(np.abs(out[at - 100 : at + 1000]))) + at - 100
        print(f"| {name} | {(peak - at) / RATE * 1000:.2f} | {fe.delay_s * 1000:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["cpu", "erle", "doubletalk", "lead", "delay", "all"])
    what = p.parse_args().what
    for name, fn in (
        ("cpu", cpu),
        ("erle", erle),
        ("doubletalk", doubletalk),
        ("lead", lead),
        ("delay", delay),
    ):
        if what in (name, "all"):
            print(f"\n## {name}\n")
            fn()


if __name__ == "__main__":
    main()
