"""Measure the wake-word detector (appliance/voice/wake.py) on synthetic audio.

    PYTHONPATH=$PWD python tools/wake_measure.py [positives|negatives|nearmiss|bargein|all]
        [--model hey_mycroft] [--threshold 0.95] [--minutes 12]

positives: the wake phrase by espeak-ng (8 voices x 4 speeds, alone and followed by a
  question; plus random voice variants) and by Piper (joe), each clean (-60 dBFS noise) and in
  a "room" (RT60 0.35 s reverb + pink noise at 15 dB SNR). A clip counts if it fires once.
negatives: >= 10 minutes without the wake word, streamed through one detector per category:
  espeak sentences (random voice/variant/speed/pitch, half reverberant), Piper sentences,
  babble (3-6 espeak talkers), amplitude-modulated pink noise, synthetic music chords, and
  TV-like speech over music. Reports false wakes and the highest probability reached.
nearmiss: phrases that sound like the wake word, 8 espeak voices + Piper each.
bargein: the phrase spoken while the kiosk talks (echo -6 dB, 40 ms): raw microphone vs the
  front end's output (EC+NS), at speech-to-echo ratios 0 and -5 dB.
All audio is generated (seeded); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from audiosynth import (
    RATE,
    VARIANTS,
    babble,
    chords,
    convolve,
    espeak,
    pink_noise,
    rms_db,
    room_ir,
    set_level,
    trim,
)
from voicefixtures import load_tts

from appliance.audio.frontend import AudioFrontEnd
from appliance.audio.resample import resample
from appliance.voice.wake import WakeSettings, WakeWordDetector

PLAIN = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-gb-x-gbclan")
PLAIN += ("en-gb-x-gbcwmd", "en-us-nyc")
QUESTIONS = (
    "where are the toilets?",
    "what time does the museum close?",
    "I need help with my ticket.",
    "how do I get to platform three?",
)
KIOSK_SENTENCES = (
    "Hello, can you help me please?",
    "Hey, where is the exit?",
    "Okay, now I understand, thank you very much.",
    "My friend is waiting for me at the cafe.",
    "How much does a ticket for two adults and a child cost?",
    "Is the gift shop open on Sundays?",
    "Hey there, I lost my umbrella somewhere on the second floor.",
    "Could you tell me where the nearest cash machine is?",
    "We would like to see the dinosaur exhibition first.",
    "My craft group meets here every Tuesday afternoon.",
    "Is there a lift for wheelchairs near the main entrance?",
    "Thank you, that was very helpful, goodbye.",
    "Excuse me, do you speak French or German?",
    "The microphone does not seem to work very well.",
    "Mike, come here, look at this map of the building.",
    "I think my car is parked in the wrong place.",
)


def _stdlib_sentences(limit: int = 400) -> list[str]:
    """Plain English sentences from the standard library's docstrings (deterministic)."""
    import collections
    import email
    import functools
    import itertools
    import json
    import logging
    import os
    import pathlib
    import string

    out: list[str] = []
    for mod in (collections, email, functools, itertools, json, logging, os, pathlib, string):
        for obj in [mod, *vars(mod).values()]:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            for s in " ".join(doc.split()).split(". "):
                s = s.strip()
                if 30 <= len(s) <= 140 and s.isascii() and not any(c in s for c in "()[]{}=_`>|"):
                    out.append(s + ".")
    return list(dict.fromkeys(out))[:limit]


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = convolve(x, room_ir(rng, rt60_s=0.35, tail_db=-3.0))
    return y + pink_noise(len(y), rng) * np.float32(10 ** ((rms_db(y) - 15) / 20))


def clip(speech: np.ndarray, rng: np.random.Generator, cond: str, level: float = -24.0):
    x = np.concatenate(
        (
            np.zeros(int(rng.uniform(0.3, 1.0) * RATE), np.float32),
            set_level(speech, level),
            np.zeros(RATE, np.float32),
        )
    )
    if cond == "room":
        return room(x, rng)
    return x + pink_noise(len(x), rng) * np.float32(1e-3)


def detections(x: np.ndarray, settings: WakeSettings, block: int = 512) -> tuple[int, float]:
    d = WakeWordDetector(settings)
    peak = 0.0
    for i in range(0, len(x), block):
        d.process(x[i : i + block])
        peak = max(peak, d.peak_probability)
    return d.detections, peak


def piper(text: str, length_scale: float = 1.0) -> np.ndarray:
    tts = load_tts()
    return resample(tts.synthesize(text, length_scale=length_scale), tts.sample_rate, RATE)


def positives(settings: WakeSettings) -> None:
    rng = np.random.default_rng(1)
    groups: dict[str, list[int]] = {}

    def add(group: str, n: int) -> None:
        groups.setdefault(group, []).append(n)

    for voice in PLAIN:
        for speed in (140, 160, 175, 190):
            for q in (None, QUESTIONS[speed % 4]):
                text = "hey my croft" + (f", {q}" if q else "")
                for cond in ("clean", "room"):
                    add(
                        f"espeak plain voices, {cond}",
                        detections(clip(espeak(text, voice, speed), rng, cond), settings)[0],
                    )
            add(
                "espeak plain voices, 'Hey Mycroft' spelling (mick-roft), clean",
                detections(clip(espeak("Hey Mycroft", voice, speed), rng, "clean"), settings)[0],
            )
    for _ in range(40):
        voice = PLAIN[int(rng.integers(len(PLAIN)))] + VARIANTS[int(rng.integers(len(VARIANTS)))]
        speed, pitch = int(rng.integers(130, 200)), int(rng.integers(30, 70))
        for cond in ("clean", "room"):
            add(
                f"espeak voice variants (+m/+f/klatt), {cond}",
                detections(clip(espeak("hey my croft", voice, speed, pitch), rng, cond), settings)[
                    0
                ],
            )
    for ls in (0.8, 0.9, 1.0, 1.15, 1.3, 1.5):
        for text in ("Hey Mycroft.", f"Hey Mycroft, {QUESTIONS[int(ls * 10) % 4]}"):
            audio = piper(text, ls)
            for cond in ("clean", "room"):
                add(f"Piper joe, {cond}", detections(clip(audio, rng, cond), settings)[0])
    print("| group | clips | detected once | missed | fired twice |")
    print("|---|---|---|---|---|")
    for group, ns in groups.items():
        a = np.array(ns)
        print(
            f"| {group} | {len(a)} | {np.sum(a == 1)} ({np.mean(a == 1):.0%}) | "
            f"{np.sum(a == 0)} | {np.sum(a > 1)} |"
        )


def negatives(settings: WakeSettings, minutes: float) -> None:
    rng = np.random.default_rng(2)
    sentences = list(KIOSK_SENTENCES) + _stdlib_sentences()
    share = {
        "espeak speech": 0.36,
        "Piper speech": 0.09,
        "babble": 0.22,
        "pink noise": 0.11,
        "music chords": 0.13,
        "TV (speech over music)": 0.09,
    }
    print("| category | minutes | false wakes | highest probability |")
    print("|---|---|---|---|")
    total_s, total_fw = 0.0, 0
    for cat, frac in share.items():
        target = frac * minutes * 60 * RATE
        parts: list[np.ndarray] = []
        n = 0
        while n < target:
            if cat == "espeak speech":
                s = sentences[int(rng.integers(len(sentences)))]
                voice = PLAIN[int(rng.integers(len(PLAIN)))]
                voice += VARIANTS[int(rng.integers(len(VARIANTS)))]
                x = espeak(s, voice, int(rng.integers(130, 200)), int(rng.integers(30, 70)))
                x = set_level(x, rng.uniform(-35, -20))
                x = room(x, rng) if rng.random() < 0.5 else x
            elif cat == "Piper speech":
                s = sentences[int(rng.integers(len(sentences)))]
                x = set_level(piper(s, float(rng.uniform(0.85, 1.3))), rng.uniform(-35, -20))
            elif cat == "babble":
                x = set_level(
                    babble(sentences, int(rng.integers(3, 7)), rng), rng.uniform(-35, -20)
                )
            elif cat == "pink noise":
                m = int(10 * RATE)
                env = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 4) * np.arange(m) / RATE)
                x = set_level(pink_noise(m, rng) * env.astype(np.float32), rng.uniform(-50, -25))
            elif cat == "music chords":
                x = set_level(chords(15.0, rng), rng.uniform(-35, -20))
            else:
                sp = espeak(
                    sentences[int(rng.integers(len(sentences)))],
                    PLAIN[int(rng.integers(len(PLAIN)))],
                    int(rng.integers(140, 190)),
                )
                mus = chords(len(sp) / RATE + 0.5, rng)[: len(sp)]
                x = set_level(sp, -26) + set_level(mus, -32)
            x = x + pink_noise(len(x), rng) * np.float32(10 ** (-60 / 20))
            parts += [x.astype(np.float32), np.zeros(int(rng.uniform(0.1, 0.8) * RATE), np.float32)]
            n += len(x)
        audio = np.concatenate(parts)
        fw, peak = detections(audio, settings)
        total_s += len(audio) / RATE
        total_fw += fw
        print(f"| {cat} | {len(audio) / RATE / 60:.1f} | {fw} | {peak:.3f} |")
    print(f"| **all** | **{total_s / 60:.1f}** | **{total_fw}** | |")


NEAR_MISSES = (
    "hey my friend",
    "hey Mike",
    "hey micro",
    "my craft",
    "hey my car",
    "Microsoft",
    "hey Mickey",
    "hi, my croissant",
    "they might cross it",
    "hey, my car is outside",
)


def nearmiss(settings: WakeSettings) -> None:
    rng = np.random.default_rng(3)
    print("| phrase | espeak plain voices (of 8) | Piper (of 2) |")
    print("|---|---|---|")
    for phrase in NEAR_MISSES:
        e = sum(
            detections(clip(espeak(phrase, v, 170), rng, "clean"), settings)[0] > 0 for v in PLAIN
        )
        p = sum(
            detections(clip(piper(phrase.capitalize() + ".", ls), rng, "clean"), settings)[0] > 0
            for ls in (0.9, 1.15)
        )
        print(f"| {phrase} | {e} | {p} |")


def bargein(settings: WakeSettings) -> None:
    from test_frontend import far_speech
    from test_frontend import room as echo_room

    far = np.concatenate([far_speech()] * 3)
    echo, noise = echo_room(far, delay_s=0.04, gain_db=-6.0)
    print("| SER dB | input | detected (of 12) | false wakes |")
    print("|---|---|---|---|")
    for ser in (0.0, -5.0):
        user = np.zeros(len(far), np.float32)
        starts = []
        for k in range(12):
            w = trim(espeak("hey my croft", PLAIN[k % 8], 160 + 10 * (k % 3)))
            s = int((8.0 + 6.0 * k) * RATE)
            seg = slice(s, s + len(w))
            user[seg] = set_level(w, rms_db(echo[seg]) + ser)
            starts.append((s, s + len(w)))
        mic = echo + noise + user
        fe = AudioFrontEnd()
        cleaned = np.concatenate(
            [fe.process(mic[i : i + 512], far[i : i + 512]) for i in range(0, len(mic), 512)]
        )
        for name, x in (("raw microphone", mic), ("front end EC+NS", cleaned)):
            d = WakeWordDetector(settings)
            hits = []
            for i in range(0, len(x), 512):
                if d.process(x[i : i + 512]):
                    hits.append(d.last_detection_sample or 0)
            ok = sum(any(a - RATE // 2 <= h <= b + RATE for h in hits) for a, b in starts)
            print(f"| {ser:.0f} | {name} | {ok} | {len(hits) - ok} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["positives", "negatives", "nearmiss", "bargein", "all"])
    p.add_argument("--model", default="hey_mycroft")
    p.add_argument("--threshold", type=float, default=None, help="default: the model's cutoff")
    p.add_argument("--minutes", type=float, default=12.0)
    args = p.parse_args()
    settings = WakeSettings(model=args.model, threshold=args.threshold)
    for name in ("positives", "negatives", "nearmiss", "bargein"):
        if args.what in (name, "all"):
            t0 = time.monotonic()
            th = WakeWordDetector(settings).threshold
            print(f"\n## {name} ({args.model}, threshold {th})\n")
            if name == "negatives":
                negatives(settings, args.minutes)
            else:
                {"positives": positives, "nearmiss": nearmiss, "bargein": bargein}[name](settings)
            print(f"\n({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
