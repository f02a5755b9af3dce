"""CPU per frame of the echo gate (appliance/voice/echo.py) on Piper speech with reflections.

    PYTHONPATH=$PWD python tools/echo_gate_cost.py

Our voice through a direct path (40 ms, -6 dB) and three reflections (+7/+17/+29 ms at
-13/-17/-21 dB), frame by frame as the pipeline runs it: our voice alone, then a visitor
talking over it (double talk: the search runs every frame). Prints mean / p99 / max ms per
32 ms frame. Single-threaded; figures are for the machine it runs on.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from voicefixtures import speech_16k

from appliance.voice.echo import EchoGate

FRAME = 512
TAPS = [(640, 0.5), (752, 0.5 * 10 ** (-13 / 20)), (912, 0.5 * 10 ** (-17 / 20))]
TAPS += [(1104, 0.5 * 10 ** (-21 / 20))]


def main() -> None:
    own = speech_16k(
        "Our cafe is open until five. The galleries close at six, and the shop stays open a "
        "little later."
    )
    visitor = speech_16k("Where are the toilets? And is there a cloakroom? And the tours?")
    out = np.zeros(len(own) + 2000)
    for delay, gain in TAPS:
        out[delay : delay + len(own)] += gain * own
    mic = out[: len(own)].astype(np.float32)
    n = min(len(own), len(visitor)) // FRAME * FRAME
    for name, audio in (("our voice", mic[:n]), ("double talk", mic[:n] + visitor[:n])):
        gate = EchoGate()
        gate.add(own, mic_now_sample=0)
        ms = []
        for i in range(FRAME, n, FRAME):
            t = time.perf_counter()
            gate.judge(audio[i - FRAME : i].astype(np.float32), i)
            ms.append((time.perf_counter() - t) * 1e3)
        a = np.array(ms)
        print(
            f"{name}: mean {a.mean():.2f} ms, p99 {np.percentile(a, 99):.2f} ms, "
            f"max {a.max():.2f} ms per 32 ms frame ({a.mean() / 32 * 100:.1f} % of a core)"
        )


if __name__ == "__main__":
    main()
