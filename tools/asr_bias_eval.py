"""WER and decode cost of the Moonshine decoder: greedy vs beam vs beam + FAQ biasing.

    PYTHONPATH=. python tools/asr_bias_eval.py [--split tune] [--beams 4] [--weights 1.5]

The questions of tests/data/understand/<split>.toml (museum -> appliance/data/sample_faq.md,
hotel -> tests/data/understand/hotel_faq.md) are spoken twice: by the Piper voice (noise scales
0, the length scale varied) and by an espeak-ng voice (accents and speeds cycled), resampled to
16 kHz. Half the clips get noise at 10 dB SNR: pink noise or babble (four other questions by
other espeak voices, summed). Clips are cached under --cache (synthesis is the slow part).

Each clip is encoded once; every configuration decodes the same encoder output, so the decode
times compare like with like (encoder time is reported once). Metrics, per site and for clean
and noisy clips:

* WER over all words, after normalising both sides the same way: numbers as words (the TTS
  normaliser turns "72" into "seventy-two"), lower case, no punctuation, hyphens as spaces,
  apostrophes dropped.
* content WER: the same over words that are not retrieval stopwords (knowledge.text).
* keyword recall: of the reference words that are FAQ lexicon words, the share the hypothesis
  contains; keyword false alarms: lexicon words in the hypothesis that the reference lacks
  (what over-biasing would cause).
* n-best oracle: keyword recall if any of the n-best texts counts (what retrieval could gain).
* retrieval: for the `faq` questions, how often BM25 over the site's FAQ (lexical only, as
  knowledge.KnowledgeBase without an embedder) ranks the expected entry first, for the
  reference text, the best hypothesis, and the best hypothesis plus the words only its
  alternatives have (`nbest_query`).
* decode ms per clip, p50 and p95; decoder calls per clip (steps).

Tune on the tuning split only; heldout.toml is for an unbiased final report (--split heldout).

Tuning split, 386 clips, 2-core dev box shared with other work (times are indicative):

    config (lp 0.5)   WER clean/noisy   content WER   FAQ-word recall/false   BM25@1   ms p50/p95
    greedy            21.5 (12.8/30.3)  32.1          78.3% / 36              55.5%    97 / 169
    beam 4            19.8 (11.6/28.0)  27.7          80.4% / 31              58.0%   136 / 305
    beam 4 + bias 1.5 19.0 (11.4/26.6)  26.5          84.3% / 56              60.9%   141 / 289
    (BM25@1 on the reference text: 70.6%; best + n-best words: 61.8%)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from appliance.audio.resample import resample
from appliance.bench.understand_score import edit_distance
from appliance.inference import InferenceSettings
from appliance.knowledge import KnowledgeBase
from appliance.knowledge.text import STOPWORDS
from appliance.models_manifest import load_manifest
from appliance.voice.bias import SINGLE_TOKEN_SCALE, BiasLexicon, BiasTrie
from appliance.voice.moonshine import GREEDY, DecodeOptions, MoonshineAsr, max_tokens_for
from appliance.voice.textnorm import normalize_for_speech
from appliance.voice.tts import PiperTts

ROOT = Path(__file__).resolve().parents[1]
FAQS = {
    "museum": ROOT / "appliance/data/sample_faq.md",
    "hotel": ROOT / "tests/data/understand/hotel_faq.md",
}
ESPEAK_VOICES = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
]
ESPEAK_VARIANTS = ["", "+f2", "+m3", "+f4"]
ESPEAK_SPEEDS = [145, 160, 175, 190]
PIPER_LENGTHS = [0.9, 1.0, 1.1]
SNR_DB = 10.0
F32 = npt.NDArray[np.float32]


@dataclasses.dataclass
class Clip:
    id: str
    site: str
    text: str
    voice: str  # "piper" or the espeak voice
    noise: str  # "clean", "pink" or "babble"
    audio: F32
    expect: str | None  # the FAQ heading that answers it (kind faq only)


# --- speech ----------------------------------------------------------------------------------


def espeak(text: str, voice: str, speed: int) -> F32:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return resample(pcm.astype(np.float32) / 32768.0, rate, 16000)


def pink_noise(n: int, rng: np.random.Generator) -> F32:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.asarray(np.fft.irfft(spectrum / np.sqrt(f), n), dtype=np.float32)


def babble(n: int, others: Sequence[str], rng: np.random.Generator) -> F32:
    out = np.zeros(n, dtype=np.float32)
    for i, text in enumerate(others):
        voice = ESPEAK_VOICES[int(rng.integers(len(ESPEAK_VOICES)))] + ESPEAK_VARIANTS[i % 4]
        talk = espeak(text, voice, int(rng.choice(ESPEAK_SPEEDS)))
        talk = talk / (np.sqrt(np.mean(talk**2)) + 1e-9)
        reps = int(np.ceil(n / len(talk))) + 1
        talk = np.tile(talk, reps)
        start = int(rng.integers(len(talk) - n))
        out += talk[start : start + n]
    return out


def mix(speech: F32, noise: F32, snr_db: float) -> F32:
    active = speech[np.abs(speech) > 0.02 * np.max(np.abs(speech))]
    p_speech = float(np.mean(active**2))
    p_noise = float(np.mean(noise**2)) + 1e-12
    scaled = noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    out = speech + scaled
    peak = float(np.max(np.abs(out)))
    return (out / peak * 0.9 if peak > 0.99 else out).astype(np.float32)


def make_clips(questions: list[dict[str, str]], cache: Path) -> list[Clip]:
    cache.mkdir(parents=True, exist_ok=True)
    tts: PiperTts | None = None
    clips: list[Clip] = []
    texts = [q["text"] for q in questions]
    for i, q in enumerate(questions):
        for j, kind in enumerate(("piper", "espeak")):
            k = 2 * i + j
            noise = "clean" if (i + j) % 2 == 0 else ("pink" if (i // 2) % 2 == 0 else "babble")
            if kind == "piper":
                voice = f"piper@{PIPER_LENGTHS[i % len(PIPER_LENGTHS)]}"
            else:
                voice = (
                    ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
                    + ESPEAK_VARIANTS[(i // len(ESPEAK_VOICES)) % len(ESPEAK_VARIANTS)]
                    + f"@{ESPEAK_SPEEDS[i % len(ESPEAK_SPEEDS)]}"
                )
            key = re.sub(r"[^\w@.+-]", "_", f"{q['id']}-{voice}-{noise}")
            path = cache / f"{key}.npy"
            if path.is_file():
                audio = np.load(path)
            else:
                if kind == "piper":
                    if tts is None:
                        tts = PiperTts.load(InferenceSettings(providers="cpu"), load_manifest())
                        tts.config = dataclasses.replace(tts.config, noise_scale=0.0, noise_w=0.0)
                    scale = PIPER_LENGTHS[i % len(PIPER_LENGTHS)]
                    raw = tts.synthesize(q["text"], length_scale=scale)
                    speech = resample(raw, tts.sample_rate, 16000)
                else:
                    name, speed = voice.split("@")
                    speech = espeak(q["text"], name, int(speed))
                speech = np.pad(speech, (3200, 3200))  # 0.2 s margins, as a VAD cut leaves
                rng = np.random.default_rng(k)
                if noise == "pink":
                    speech = mix(speech, pink_noise(len(speech), rng), SNR_DB)
                elif noise == "babble":
                    others = [texts[int(x)] for x in rng.choice(len(texts), 4) if int(x) != i]
                    speech = mix(speech, babble(len(speech), others, rng), SNR_DB)
                audio = speech.astype(np.float32)
                np.save(path, audio)
            expect = q.get("expect") if q.get("kind") == "faq" else None
            clips.append(Clip(q["id"], q["site"], q["text"], voice, noise, audio, expect))
    return clips


# --- scoring ---------------------------------------------------------------------------------


def norm_words(text: str) -> list[str]:
    text = normalize_for_speech(text).casefold()
    text = re.sub(r"['’]", "", text)
    return re.findall(r"[^\W_]+", text)


edits = edit_distance


def content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in STOPWORDS]


def lexicon_words(lex: BiasLexicon) -> set[str]:
    return {w for term, _ in lex.terms for w in norm_words(term)}


def top1(kb: KnowledgeBase, query: str) -> str | None:
    hits = kb.search(query, k=1)
    return hits[0].entry.question if hits else None


def nbest_query(best: str, alternatives: Sequence[str]) -> str:
    """The best text plus the words only the alternatives have (each once): a word the best
    hypothesis missed can still reach the index, and no word counts twice."""
    seen = set(norm_words(best))
    extra: list[str] = []
    for alt in alternatives:
        for w in norm_words(alt):
            if w not in seen:
                seen.add(w)
                extra.append(w)
    return " ".join([best, *extra])


@dataclasses.dataclass
class Score:
    errors: int = 0
    words: int = 0
    c_errors: int = 0
    c_words: int = 0
    kw_ref: int = 0
    kw_hit: int = 0
    kw_oracle: int = 0
    kw_false: int = 0
    exact: int = 0
    clips: int = 0
    ret_n: int = 0
    ret_ref: int = 0
    ret_best: int = 0
    ret_nbest: int = 0
    ms: list[float] = dataclasses.field(default_factory=list)
    steps: list[int] = dataclasses.field(default_factory=list)

    def add(
        self,
        ref: str,
        hyp: str,
        nbest: Sequence[str],
        keywords: set[str],
        expect: str | None,
        kb: KnowledgeBase,
    ) -> None:
        r, h = norm_words(ref), norm_words(hyp)
        if expect is not None:
            self.ret_n += 1
            self.ret_ref += top1(kb, ref) == expect
            self.ret_best += top1(kb, hyp) == expect
            self.ret_nbest += top1(kb, nbest_query(hyp, nbest)) == expect
        self.errors += edits(r, h)
        self.words += len(r)
        self.c_errors += edits(content(r), content(h))
        self.c_words += len(content(r))
        self.exact += r == h
        self.clips += 1
        hyp_words = Counter(h)
        any_words = set(h).union(*(norm_words(t) for t in nbest))
        for w in r:
            if w in keywords:
                self.kw_ref += 1
                self.kw_hit += hyp_words[w] > 0
                self.kw_oracle += w in any_words
        self.kw_false += sum(n for w, n in hyp_words.items() if w in keywords and w not in r)

    def row(self) -> dict[str, float]:
        ms = sorted(self.ms)
        return {
            "clips": self.clips,
            "wer": 100 * self.errors / max(self.words, 1),
            "content_wer": 100 * self.c_errors / max(self.c_words, 1),
            "kw_recall": 100 * self.kw_hit / max(self.kw_ref, 1),
            "kw_oracle": 100 * self.kw_oracle / max(self.kw_ref, 1),
            "kw_false": self.kw_false,
            "exact": 100 * self.exact / max(self.clips, 1),
            "ret_ref": 100 * self.ret_ref / max(self.ret_n, 1),
            "ret_best": 100 * self.ret_best / max(self.ret_n, 1),
            "ret_nbest": 100 * self.ret_nbest / max(self.ret_n, 1),
            "ms_p50": statistics.median(ms) if ms else 0.0,
            "ms_p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else 0.0,
            "steps": statistics.mean(self.steps) if self.steps else 0.0,
        }


# --- decoding --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    options: DecodeOptions
    biased: bool


class StepCounter:
    """A should_stop flag that never stops: the decoder polls it once per decoder call."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> bool:
        self.n += 1
        return False


def step_bench(asr: MoonshineAsr, hidden: F32, reps: int = 30) -> dict[str, float]:
    """ms per decoder step at batch B (one call) vs B calls at batch 1, 10 tokens into a clip."""
    out: dict[str, float] = {}
    feeds = asr._first_step(hidden)
    names = ["logits"] + [p for p, _ in asr._self_kv + asr._cross_kv]
    feeds["input_ids"] = np.array([[1]], dtype=np.int64)
    outs = asr._decoder.run(names, feeds)
    n_self = len(asr._self_kv)
    cross = outs[1 + n_self :]
    self_kv = [np.repeat(v, 10, axis=2) for v in outs[1 : 1 + n_self]]  # a 10-token past
    feeds["use_cache_branch"] = np.array([True])
    step_names = ["logits"] + [p for p, _ in asr._self_kv]
    for batch in (1, 2, 3, 4, 6, 8):
        f = dict(feeds)
        f["input_ids"] = np.full((batch, 1), 500, dtype=np.int64)
        for (_, past), v in zip(asr._self_kv, self_kv, strict=True):
            f[past] = np.repeat(v, batch, axis=0)
        for (_, past), v in zip(asr._cross_kv, cross, strict=True):
            f[past] = np.repeat(v, batch, axis=0)
        asr._decoder.run(step_names, f)
        t0 = time.perf_counter()
        for _ in range(reps):
            asr._decoder.run(step_names, f)
        out[f"batch{batch}"] = (time.perf_counter() - t0) / reps * 1000
    out["per_beam4"] = out["batch1"] * 4
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="tune", help="tests/data/understand/<split>.toml")
    ap.add_argument("--beams", default="4", help="comma-separated beam widths")
    ap.add_argument("--weights", default="1.5", help="comma-separated bias weights (nats)")
    ap.add_argument("--length-penalty", default="0.5", help="comma-separated")
    ap.add_argument("--single-token-scale", type=float, default=SINGLE_TOKEN_SCALE)
    ap.add_argument("--greedy-bias", action="store_true", help="also greedy (beam 1) + bias")
    ap.add_argument("--limit", type=int, default=0, help="first N questions only")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/kiosk-asr-bias-eval")
    ap.add_argument("--json", type=Path, help="write the full results here")
    ap.add_argument("--show", action="store_true", help="print clips whose text changes")
    args = ap.parse_args(argv)

    data = tomllib.loads((ROOT / f"tests/data/understand/{args.split}.toml").read_text())
    questions = [q for q in data["q"] if q["site"] in FAQS and q["text"].strip()]
    if args.limit:
        questions = questions[: args.limit]
    t0 = time.perf_counter()
    clips = make_clips(questions, args.cache)
    print(f"{len(clips)} clips ({time.perf_counter() - t0:.0f} s to make or load)", flush=True)

    asr = MoonshineAsr.load(InferenceSettings(providers="cpu"), load_manifest())
    asr.warm_up()
    lexicons = {site: BiasLexicon.from_faq_text(p.read_text()) for site, p in FAQS.items()}
    keywords = {site: lexicon_words(lex) for site, lex in lexicons.items()}
    kbs = {site: KnowledgeBase.from_file(p) for site, p in FAQS.items()}  # BM25 only
    configs = [Config("greedy", GREEDY, False)]
    for lp in [float(x) for x in args.length_penalty.split(",")]:
        for w in [int(x) for x in args.beams.split(",")]:
            configs.append(Config(f"beam{w} lp{lp:g}", DecodeOptions(w, 0.0, lp), False))
            for bw in [float(x) for x in args.weights.split(",")]:
                name = f"beam{w} lp{lp:g} bias{bw:g}"
                configs.append(Config(name, DecodeOptions(w, bw, lp), True))
    if args.greedy_bias:
        for bw in [float(x) for x in args.weights.split(",")]:
            configs.append(Config(f"greedy bias{bw:g}", DecodeOptions(1, bw, 1.0), True))
    tries: dict[tuple[str, float], BiasTrie] = {}
    for site, lex in lexicons.items():
        for c in configs:
            if c.biased:
                key = (site, c.options.bias_weight)
                if key not in tries:
                    tries[key] = BiasTrie.build(
                        lex,
                        asr.tokenizer,
                        c.options.bias_weight,
                        single_token_scale=args.single_token_scale,
                    )

    groups: Callable[[Clip], list[str]] = lambda c: [  # noqa: E731
        "all",
        c.site,
        "clean" if c.noise == "clean" else "noisy",
        f"{c.site}/{'clean' if c.noise == 'clean' else 'noisy'}",
        "piper" if c.voice.startswith("piper") else "espeak",
    ]
    scores: dict[str, dict[str, Score]] = {c.name: {} for c in configs}
    enc_ms: list[float] = []
    texts: dict[str, list[str]] = {c.name: [] for c in configs}
    for n, clip in enumerate(clips):
        t = time.perf_counter()
        hidden = asr.encode(clip.audio)
        enc_ms.append((time.perf_counter() - t) * 1000)
        max_tokens = max_tokens_for(len(clip.audio) / 16000)
        for c in configs:
            trie = tries[(clip.site, c.options.bias_weight)] if c.biased else None
            calls = StepCounter()
            t = time.perf_counter()
            hyps = asr.search(hidden, max_tokens, calls, options=c.options, trie=trie)
            ms = (time.perf_counter() - t) * 1000
            nbest = [asr.tokenizer.decode(h) for h in hyps]
            texts[c.name].append(nbest[0])
            for g in groups(clip):
                s = scores[c.name].setdefault(g, Score())
                site = clip.site
                s.add(clip.text, nbest[0], nbest[1:], keywords[site], clip.expect, kbs[site])
                s.ms.append(ms)
                s.steps.append(calls.n)
        if args.show:
            outs = [texts[c.name][-1] for c in configs]
            if len(set(outs)) > 1:
                print(f"[{clip.id} {clip.voice} {clip.noise}] REF {clip.text}")
                for c, o in zip(configs, outs, strict=True):
                    print(f"    {c.name:24} {o}")
        if (n + 1) % 50 == 0:
            print(f"  {n + 1}/{len(clips)} clips", file=sys.stderr, flush=True)

    bench = step_bench(asr, asr.encode(clips[0].audio))
    cols = ["wer", "content_wer", "kw_recall", "kw_oracle", "kw_false", "exact"]
    cols += ["ret_ref", "ret_best", "ret_nbest", "ms_p50", "ms_p95", "steps"]
    head = f"{'config':24} {'group':14} " + " ".join(f"{c:>11}" for c in cols)
    head = head.replace("       ret_", "  retrieval_")
    print(f"\nencoder ms/clip: p50 {statistics.median(enc_ms):.0f}")
    print("decoder ms/step by batch: " + ", ".join(f"{k} {v:.1f}" for k, v in bench.items()))
    print(head)
    for group in ["all", "clean", "noisy", "museum", "hotel", "piper", "espeak"] + [
        f"{s}/{n}" for s in FAQS for n in ("clean", "noisy")
    ]:
        for c in configs:
            if group not in scores[c.name]:
                continue
            row = scores[c.name][group].row()
            print(
                f"{c.name:24} {group:14} "
                + " ".join(
                    f"{row[k]:11.0f}" if k == "kw_false" else f"{row[k]:11.1f}" for k in cols
                )
            )
        print()
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "clips": len(clips),
                    "encoder_ms_p50": statistics.median(enc_ms),
                    "decoder_step_ms": bench,
                    "results": {
                        c.name: {g: s.row() for g, s in scores[c.name].items()} for c in configs
                    },
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
