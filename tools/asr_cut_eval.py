"""Moonshine's WER on a spoken bench's cached clips, offline: the whole clip against the clip
trimmed to where its frame energy rises above the noise floor.

    PYTHONPATH=$PWD python tools/asr_cut_eval.py noisy docs/bench/understand-heldout20-stop22.json
        [more bench JSON ...] [--k 0.5] [--margin 0.1]

Why: under babble Silero calls nearly every frame speech, so the voice pipeline's cut starts
with the babble before the visitor speaks; Moonshine then returns nothing or invents a
sentence (held-out 20, stop 22). The whole clip stands in for such a cut (lead and trail are
noise only); the trim keeps the frames from the first to the last one whose energy is above
floor + k x (peak - floor) in dB (floor: 15th percentile, peak: 95th), plus `margin` seconds.
A proxy for the pipeline, not its figure: clean clips decoded whole do worse than the
pipeline's tight VAD cuts. Reads the clips from the bench's cache (`appliance bench
understand` made them); clips not in the cache are skipped. Blocking; no network.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from voicefixtures import load_asr

from appliance.bench.understand_score import word_errors
from appliance.bench.voices import ClipSpec, Synth, default_cache_dir

F32 = npt.NDArray[np.float32]
FRAME = 320  # 20 ms at 16 kHz
_SPEC_KEYS = ("text", "voice", "speed", "lead_s", "trail_s", "noise", "snr_db", "noise_seed")


def energy_trim(x: F32, k: float, margin_s: float) -> F32:
    """`x` cut to its frames above the floor by k of the floor-to-peak range (in dB)."""
    n = len(x) // FRAME
    if n < 10:
        return x
    db = 10 * np.log10(np.mean(x[: n * FRAME].reshape(n, FRAME) ** 2, axis=1) + 1e-10)
    floor, peak = np.percentile(db, 15), np.percentile(db, 95)
    if peak - floor < 6:
        return x  # no floor to speak of
    above = np.nonzero(db > floor + k * (peak - floor))[0]
    pad = int(margin_s * 16000)
    return x[max(0, above[0] * FRAME - pad) : min(len(x), (above[-1] + 1) * FRAME + pad)]


def load_clips(paths: list[str], noisy: bool) -> list[tuple[str, str, F32]]:
    synth, out = Synth(), []
    for path in paths:
        for row in json.loads(Path(path).read_text())["rows"]:
            clip = row["clip"]
            if bool(clip.get("noise")) != noisy:
                continue
            wav = (
                default_cache_dir()
                / f"{synth.key(ClipSpec(**{k: clip[k] for k in _SPEC_KEYS}))}.wav"
            )
            if not wav.exists():
                continue
            with wave.open(str(wav)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            out.append((clip["text"], clip.get("noise") or "clean", pcm.astype(np.float32) / 32768))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", choices=("noisy", "clean"))
    ap.add_argument("bench_json", nargs="+")
    ap.add_argument("--k", type=float, default=0.5)
    ap.add_argument("--margin", type=float, default=0.1)
    args = ap.parse_args()
    clips = load_clips(args.bench_json, args.which == "noisy")
    asr = load_asr()
    result: dict[str, dict[str, float]] = {}
    for name, cut in (
        ("whole", lambda x: x),
        ("trimmed", lambda x: energy_trim(x, args.k, args.margin)),
    ):
        errors: dict[str, list[int]] = {}
        for text, noise, x in clips:
            e, n = word_errors(text, asr.transcribe(cut(x)).text)
            for key in (noise, "all"):
                acc = errors.setdefault(key, [0, 0])
                acc[0] += e
                acc[1] += n
        result[name] = {k: round(100 * e / n, 1) for k, (e, n) in errors.items()}
    print(json.dumps({"clips": len(clips), "wer_percent": result}, indent=1))


if __name__ == "__main__":
    main()
