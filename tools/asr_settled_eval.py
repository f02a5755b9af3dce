"""WER and time of the final ASR pass: from scratch vs from the words partials settled.

    PYTHONPATH=. python tools/asr_settled_eval.py SET.toml[,SET2.toml...] [--words 1]
        [--one-partial] [--margin 0.15]

The clips are `appliance bench understand`'s own (same plan and seed, read from its clip
cache or made there), cut as the voice pipeline cuts them: from 0.3 s before the onset (its
pre-roll), partial passes every 0.6 s of audio after it (greedy, as the pipeline's), the last
two that end at least `--margin` s before the end of speech (a partial still running at the
first silence is stopped). For each clip:

* from scratch: the final pass over the whole clip (beam and FAQ bias, as the pipeline's);
* settled: the same pass started from `MoonshineTokenizer.settled(agreed(p1, p2), words)`
  (the pipeline's `voice.settled_words`); with `--one-partial`, from the last partial alone.

Reports corpus WER (`bench.understand_score.word_errors`) and the final pass's median and p95
time on this box. `--out PREFIX` also writes PREFIX-<set>-scratch.json and -settled.json in the
spoken bench's row format (a follow-up's previous question transcribed from scratch in both),
for `python -m appliance.bench.understand_text --transcripts …`: what the answers would be.

Measured at stop 17 (2-core box): held-out 14, one partial, 4 words left out: WER 23.2 ->
26.6 % (partials invent endings); two partials, 1 word: 21.7 %; held-out 12 + 13, two
partials, 1 word: 23.4 -> 22.4 %, 300 -> 185 ms median, 449 -> 346 ms p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from appliance.bench.understand_score import load_set, word_errors
from appliance.bench.voices import Synth, default_cache_dir, make_clip, plan_clip, slots
from appliance.inference import InferenceSettings
from appliance.knowledge.faq import parse_faq
from appliance.models_manifest import load_manifest
from appliance.voice.bias import BiasLexicon
from appliance.voice.listening import agreed
from appliance.voice.moonshine import GREEDY, MoonshineAsr

RATE = 16000
PRE_ROLL_S = 0.3
PARTIAL_S = 0.6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", help="question set files, comma-separated")
    p.add_argument("--words", type=int, default=1, help="settled words left out (default 1)")
    p.add_argument("--one-partial", action="store_true", help="the last partial alone")
    p.add_argument("--margin", type=float, default=0.15, help="s before the end of speech")
    p.add_argument("--out", help="write the transcripts as PREFIX-<set>-scratch/settled.json")
    args = p.parse_args()
    asr = MoonshineAsr.load(InferenceSettings(providers="cpu"), load_manifest())
    synth = Synth()
    errors = [0, 0]
    words = 0
    times: tuple[list[float], list[float]] = ([], [])
    for spec in args.sets.split(","):
        qset = load_set(spec, Path("appliance/data/sample_faq.md"))
        slot = slots(len(qset.questions), 0)
        lexicons: dict[str, BiasLexicon | None] = {}
        rows: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])
        for i, q in enumerate(qset.questions):
            if q.site not in lexicons:
                entries, _ = parse_faq(qset.sites[q.site].read_text(encoding="utf-8"))
                lexicons[q.site] = BiasLexicon.for_site(entries, "")
            asr.set_bias(lexicons[q.site])
            clip = plan_clip(q.text, slot[i], 0)
            audio, _ = make_clip(synth, clip, default_cache_dir())
            audio = audio[max(0, round((clip.lead_s - PRE_ROLL_S) * RATE)) :]
            end = len(audio) - round(clip.trail_s * RATE)
            cuts = [round((PRE_ROLL_S + PARTIAL_S * k) * RATE) for k in range(1, 60)]
            cuts = [c for c in cuts if c <= end - round(args.margin * RATE)]
            heard = [asr.transcribe(audio[:c], options=GREEDY).token_ids for c in cuts[-2:]]
            if args.one_partial or len(heard) < 2:
                both = heard[-1] if heard and args.one_partial else ()
            else:
                both = agreed(heard[0], heard[1])
            prefix = asr.tokenizer.settled(both, args.words)
            t0 = time.perf_counter()
            whole = asr.transcribe(audio)
            times[0].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            settled = asr.transcribe(audio, prefix=prefix)
            times[1].append(time.perf_counter() - t0)
            before = None
            if q.before:
                spoken, _ = make_clip(
                    synth, plan_clip(q.before, slot[i], 0, 1), default_cache_dir()
                )
                before = asr.transcribe(spoken).text
            for out, tr in zip(rows, (whole, settled), strict=True):
                out.append(
                    {
                        "id": q.id,
                        "transcript": tr.text,
                        "alternatives": list(tr.alternatives),
                        "before_transcript": before,
                    }
                )
            e0, n = word_errors(q.text, whole.text)
            e1, _ = word_errors(q.text, settled.text)
            errors[0] += e0
            errors[1] += e1
            words += n
        if args.out:
            for name, out in zip(("scratch", "settled"), rows, strict=True):
                path = Path(f"{args.out}-{Path(spec).stem}-{name}.json")
                path.write_text(json.dumps({"rows": out}, indent=1), encoding="utf-8")

    def ms(xs: list[float], q: float) -> int:
        return round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000)

    print(
        f"{len(times[0])} clips; WER from scratch {100 * errors[0] / words:.2f} %, settled "
        f"{100 * errors[1] / words:.2f} %"
    )
    for name, xs in zip(("from scratch", "settled"), times, strict=True):
        print(
            f"final pass {name}: median {statistics.median(xs) * 1000:.0f} ms, "
            f"p95 {ms(xs, 0.95)} ms"
        )


if __name__ == "__main__":
    main()
