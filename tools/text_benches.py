"""Every text bench at once: each evaluation set typed, and again as a spoken bench's ASR heard
it, through `ground` and the answer policy (`appliance.bench.understand_text`) in one process.

    PYTHONPATH=$PWD python tools/text_benches.py TAG     # ~2 min on 2 cores
    PYTHONPATH=$PWD python tools/text_benches.py --compare BEFORE AFTER

Why: a policy change is judged by what it does to every set, question by question, not by
one set's total; loading the embedder once makes the whole run about two minutes. Writes one
JSON per pair (`<set>.json`, `<set>sp.json` for the spoken transcripts) with every question's
result under `/tmp/text-benches/TAG/` and prints a line per pair and the totals; `--compare`
lists the questions whose result, decision or entry differs between two tags. The spoken
transcripts are each set's one recorded run (`SPOKEN` below: the run before the set was
read); a set without one is scored typed only. Blocking; no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.bench.understand_text import (  # noqa: E402
    evaluate,
    heard,
    load_cases,
    outcome_row,
    summarize,
)
from appliance.knowledge import KnowledgeBase  # noqa: E402
from appliance.knowledge.embeddings import Embedder  # noqa: E402
from appliance.knowledge.grounding import prepare  # noqa: E402

SETS = ROOT / "tests" / "data" / "understand"
BENCH = ROOT / "docs" / "bench"
OUT = Path("/tmp/text-benches")
# Each held-out set's spoken run before anyone read it (tune: its own spoken run).
SPOKEN = {
    "tune": "understand-tune-stop7-spoken.json",
    "heldout": "understand-heldout-stop5-final.json",
    "heldout3": "understand-heldout3-stop7-final.json",
    "heldout4": "understand-heldout4-stop9-before.json",
    "heldout5": "understand-heldout5-stop9.json",
    "heldout6": "understand-heldout6-stop9.json",
    "heldout7": "understand-heldout7-stop10.json",
    "heldout8": "understand-heldout8-stop11.json",
    "heldout9": "understand-heldout9-stop12.json",
    "heldout10": "understand-heldout10-stop13.json",
    "heldout11": "understand-heldout11-stop14.json",
    "heldout12": "understand-heldout12-stop16.json",
    "heldout13": "understand-heldout13-stop16.json",
    "heldout14": "understand-heldout14-stop17.json",
    "heldout15": "understand-heldout15-stop18.json",
    "heldout16": "understand-heldout16-stop18.json",
    "heldout17": "understand-heldout17-stop19.json",
    "heldout18": "understand-heldout18-stop20.json",
    "heldout19": "understand-heldout19-stop21.json",
    "heldout20": "understand-heldout20-stop22.json",
    "heldout21": "understand-heldout21-stop23.json",
    "heldout22": "understand-heldout22-stop24.json",
    "heldout23": "understand-heldout23-stop25.json",
    "heldout24": "understand-heldout24-stop26.json",
    "heldout25": "understand-heldout25-stop27.json",
    "heldout26": "understand-heldout26-stop28.json",
    "heldout27": "understand-heldout27-stop29.json",
    "heldout28": "understand-heldout28-stop30.json",
    "heldout29": "understand-heldout29-stop31.json",
    "heldout30": "understand-heldout30-stop32.json",
}
TOTALS = ("n", "correct", "wrong", "clarify", "miss")


def _sets() -> list[str]:
    numbered = sorted(
        (p.stem for p in SETS.glob("heldout*.toml") if p.stem != "heldout"),
        key=lambda s: int(s.removeprefix("heldout")),
    )
    return ["tune", "tune2", "misheard-tune", "heldout", *numbered]


def run(tag: str) -> dict[str, int]:
    out = OUT / tag
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder.load()
    kbs: dict[Path, KnowledgeBase] = {}
    totals = dict.fromkeys(TOTALS, 0)
    for name in _sets():
        cases, sites = load_cases(SETS / f"{name}.toml")
        pairs = [("", cases)]
        if name in SPOKEN:
            pairs.append(("sp", heard(cases, json.loads((BENCH / SPOKEN[name]).read_text()))))
        for suffix, asked in pairs:
            for path in {sites[c.site] for c in asked} - kbs.keys():
                kbs[path] = KnowledgeBase.from_file(path, embedder=embedder)
                prepare(kbs[path])
            outcomes = evaluate(asked, {c.site: kbs[sites[c.site]] for c in asked}, soundalike=True)
            report: dict[str, Any] = summarize(outcomes)
            report["rows"] = [outcome_row(o) for o in outcomes]
            (out / f"{name}{suffix}.json").write_text(json.dumps(report, ensure_ascii=False))
            overall = report["overall"]
            for key in TOTALS:
                totals[key] += overall[key]
            print(
                f"{name + suffix:15s} n={overall['n']:4d} right={overall['correct']:4d} "
                f"wrong={overall['wrong']:3d} asked back={overall['clarify']:4d}",
                flush=True,
            )
    print("total", json.dumps(totals))
    return totals


def compare(before: str, after: str) -> None:
    for path in sorted((OUT / before).glob("*.json")):
        other = OUT / after / path.name
        if not other.exists():
            continue
        rows = {r["id"]: r for r in json.loads(other.read_text())["rows"]}
        for old in json.loads(path.read_text())["rows"]:
            new = rows.get(old["id"])
            keys = ("result", "decision", "entry")
            if new is None or all(old[k] == new[k] for k in keys):
                continue
            print(
                f"{path.stem:13s} {old['id']:9s} {old['result']}->{new['result']} "
                f"[{old['decision']}/{old['reason']} -> {new['decision']}/{new['reason']}] "
                f"{new['entry']} | {new['text'][:90]!r} (expected {new['expect']})"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tag", nargs="?", help="a name for this run's results")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.tag:
        run(args.tag)
    else:
        p.error("give a TAG or --compare BEFORE AFTER")


if __name__ == "__main__":
    main()
