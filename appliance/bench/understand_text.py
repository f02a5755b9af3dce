"""Understanding bench on text: each question of an evaluation set through `ground` and the
answer policy (`policy.decide`), scored against what the set expects. No LLM, no audio.

    python -m appliance.bench.understand_text --set tests/data/understand/tune.toml
    ... --transcripts docs/bench/understand-tune40-before.json   # what ASR heard, not the text
    ... --soundalike                                          # repair misheard FAQ words

The set is TOML, `[[q]]` entries with `id`, `site` (museum: appliance/data/sample_faq.md;
hotel: hotel_faq.md next to the set; or a path under `[sites]`), `kind` (faq, followup, offtopic,
chat, bad), `text`, `expect` (the FAQ heading that answers it), `facts`, `before` (followup: the
previous question, run first to build the context) and `accept` (bad: acceptable kinds).

Per question the outcome is one of:
- correct: faq/followup answered with the expected entry (kind faq, or llm with it among the
  facts it gets); offtopic declined; chat answered as chat; bad answered with an accepted kind
  (an answer must then be the expected entry, when the set names one);
- clarify: asked back (noted whether the expected entry was among the choices);
- miss: not answered though answerable (declined, "say again", small talk), or an off-topic
  question met with small talk or "say again";
- wrong: answered with another entry, or an off-topic question answered.
Prints JSON: per kind and overall counts and rates, the figures the policy aims at, decide()'s
own time, and (with --details) every question that was not correct.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ..knowledge import KnowledgeBase
from ..knowledge.grounding import ground, prepare
from ..knowledge.policy import (
    Decision,
    PolicyContext,
    PolicySettings,
    decide,
    faq_topics,
    lookups,
    rank_plan,
    reconcile,
)
from ..knowledge.soundalike import sound_index

__all__ = ["Case", "Outcome", "evaluate", "heard", "load_cases", "main", "score"]

SAMPLE_FAQ = Path(__file__).resolve().parent.parent / "data" / "sample_faq.md"
KINDS = ("faq", "followup", "offtopic", "chat", "bad")


@dataclass(frozen=True)
class Case:
    id: str
    site: str
    kind: str
    text: str
    expect: str | None = None
    facts: tuple[str, ...] = ()
    before: str | None = None
    accept: tuple[str, ...] = ()
    category: str = ""
    alternatives: tuple[str, ...] = ()  # ASR's other hypotheses of `text` (--transcripts)


@dataclass(frozen=True)
class Outcome:
    case: Case
    decision: Decision
    result: str  # correct | clarify | miss | wrong
    decide_s: float  # decide()'s own time (both turns of a follow-up)
    repairs: tuple[str, ...] = ()  # sound-alike repairs: "heard -> word (score)"
    lookups_s: float = 0.0  # lookups()'s own time (with --soundalike: the repairs)


def load_cases(path: Path) -> tuple[list[Case], dict[str, Path]]:
    """The cases of a set and the FAQ file of each site it names."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sites = {"museum": SAMPLE_FAQ, "hotel": path.parent / "hotel_faq.md"}
    for name, file in data.get("sites", {}).items():
        sites[name] = (path.parent / file).resolve()
    cases = [
        Case(
            id=str(q["id"]),
            site=str(q["site"]),
            kind=str(q["kind"]),
            text=str(q["text"]),
            expect=q.get("expect"),
            facts=tuple(q.get("facts", ())),
            before=q.get("before"),
            accept=tuple(q.get("accept", ())),
            category=str(q.get("category", "")),
        )
        for q in data["q"]
    ]
    unknown = {c.site for c in cases} - sites.keys()
    if unknown:
        raise ValueError(f"{path}: unknown sites {sorted(unknown)}")
    return cases, sites


def score(case: Case, d: Decision) -> str:
    """correct | clarify | miss | wrong for one decision (see the module docstring)."""
    answered = d.kind in ("faq", "llm")
    right_entry = d.entry is not None and d.entry.question == case.expect
    if d.kind == "llm":  # the model gets every entry in `hits` as facts
        right_entry = any(h.entry.question == case.expect for h in d.hits)
    if case.kind in ("faq", "followup"):
        if answered:
            facts_ok = d.kind == "llm" or all(f in d.text for f in case.facts)
            return "correct" if right_entry and facts_ok else "wrong"
        return "clarify" if d.kind == "clarify" else "miss"
    if case.kind == "offtopic":
        if d.kind == "decline":
            return "correct"
        if answered:
            return "wrong"
        return "clarify" if d.kind == "clarify" else "miss"
    if case.kind == "chat":
        if d.kind == "chat":
            return "correct"
        if answered:
            return "wrong"
        return "clarify" if d.kind == "clarify" else "miss"
    # bad
    if answered and case.expect is not None and not right_entry:
        return "wrong"
    if d.kind in case.accept:
        return "correct"
    if answered:
        return "wrong"
    return "clarify" if d.kind == "clarify" else "miss"


def heard(cases: Sequence[Case], bench: Mapping[str, Any]) -> list[Case]:
    """The cases a spoken bench asked, with what ASR heard as their text (and `before`); a
    question heard as nothing becomes "" (the policy asks to say it again)."""
    rows = {str(r["id"]): r for r in bench.get("rows", ())}
    out: list[Case] = []
    for case in cases:
        row = rows.get(case.id)
        if row is None:
            continue
        before = case.before and (row.get("before_transcript") or "")
        alternatives = tuple(str(a) for a in row.get("alternatives") or ())
        out.append(
            replace(
                case,
                text=row.get("transcript") or "",
                before=before or None,
                alternatives=alternatives,
            )
        )
    return out


def _run_turn(
    kb: KnowledgeBase,
    text: str,
    ctx: PolicyContext | None,
    settings: PolicySettings,
    soundalike: bool = False,
) -> tuple[Decision, float, float, tuple[str, ...]]:
    """(decision, decide()'s time, lookups()'s time, the repairs made)."""
    t0 = time.perf_counter()
    plan = lookups(text, ctx, sound_index(kb) if soundalike else None)
    looked = time.perf_counter() - t0
    ranked = rank_plan(plan, partial(ground, kb, facts=True))
    t0 = time.perf_counter()
    d = decide(text, context=ctx, settings=settings, **ranked)
    spent = time.perf_counter() - t0
    return d, spent, looked, tuple(f"{r.heard} -> {r.word} ({r.score})" for r in plan.repairs)


def _other_reading(
    kb: KnowledgeBase,
    text: str,
    *,
    ctx: PolicyContext | None,
    settings: PolicySettings,
    soundalike: bool,
) -> Decision:
    return _run_turn(kb, text, ctx, settings, soundalike)[0]


def evaluate(
    cases: Sequence[Case],
    kbs: dict[str, KnowledgeBase],
    *,
    answer_mode: str = "faq",
    tuning: Mapping[str, Any] | None = None,
    soundalike: bool = False,
    nbest: bool = True,
) -> list[Outcome]:
    """Run every case; `tuning` overrides PolicySettings' calibration fields (for sweeps);
    `soundalike`: repair misheard FAQ words (knowledge.soundalike); `nbest`: check each
    decision against ASR's other hypotheses (`Case.alternatives`, as the service does)."""
    settings_by_site = {
        site: replace(
            PolicySettings(
                answer_mode="llm" if answer_mode == "llm" else "faq",
                topics=faq_topics(tuple(e.question for e in kb.entries)),
            ),
            **dict(tuning or {}),
        )
        for site, kb in kbs.items()
    }
    out: list[Outcome] = []
    for case in cases:
        kb = kbs[case.site]
        settings = settings_by_site[case.site]
        ctx: PolicyContext | None = None
        spent = looked = 0.0
        if case.before:
            first, spent, looked, _ = _run_turn(kb, case.before, None, settings, soundalike)
            ctx = PolicyContext.after(case.before, first, None)
        d, took, look, repairs = _run_turn(kb, case.text, ctx, settings, soundalike)
        if nbest:
            other = partial(_other_reading, kb, ctx=ctx, settings=settings, soundalike=soundalike)
            d = reconcile(d, case.text, case.alternatives, other, settings)
        out.append(Outcome(case, d, score(case, d), spent + took, repairs, looked + look))
    return out


def _counts(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    counts: dict[str, Any] = {"n": n}
    for result in ("correct", "clarify", "miss", "wrong"):
        counts[result] = sum(o.result == result for o in outcomes)
    counts["correct_rate"] = round(counts["correct"] / n, 3) if n else None
    kinds: dict[str, int] = {}
    for o in outcomes:
        kinds[o.decision.kind] = kinds.get(o.decision.kind, 0) + 1
    counts["decisions"] = dict(sorted(kinds.items()))
    return counts


def outcome_row(o: Outcome) -> dict[str, Any]:
    """One question's outcome as a JSON row: what was asked and expected, what was decided."""
    return {
        "id": o.case.id,
        "kind": o.case.kind,
        "result": o.result,
        "text": o.case.text,
        "expect": o.case.expect,
        "decision": o.decision.kind,
        "reason": o.decision.reason,
        "entry": o.decision.entry.question if o.decision.entry else None,
        "choices": [c.label for c in o.decision.choices],
        "repairs": list(o.repairs),
    }


def summarize(outcomes: Sequence[Outcome], *, details: bool = False) -> dict[str, Any]:
    by_kind = {k: [o for o in outcomes if o.case.kind == k] for k in KINDS}
    answerable = by_kind["faq"] + by_kind["followup"]
    offtopic = by_kind["offtopic"]
    times_us = sorted(o.decide_s * 1e6 for o in outcomes)
    lookups_us = sorted(o.lookups_s * 1e6 for o in outcomes)
    clarify_with_expected = sum(
        o.result == "clarify" and any(c.label == o.case.expect for c in o.decision.choices)
        for o in answerable
    )
    report: dict[str, Any] = {
        "overall": _counts(outcomes),
        "per_kind": {k: _counts(v) for k, v in by_kind.items() if v},
        "aims": {
            "wrong": sum(o.result == "wrong" for o in outcomes),
            "offtopic_declined": (
                round(sum(o.result == "correct" for o in offtopic) / len(offtopic), 3)
                if offtopic
                else None
            ),
            "answerable_correct": (
                round(sum(o.result == "correct" for o in answerable) / len(answerable), 3)
                if answerable
                else None
            ),
            "clarify_rate": round(
                sum(o.decision.kind == "clarify" for o in outcomes) / len(outcomes), 3
            )
            if outcomes
            else None,
            "answerable_clarify_with_expected": clarify_with_expected,
        },
        "decide_us": {
            "mean": round(statistics.fmean(times_us), 1) if times_us else None,
            "max": round(times_us[-1], 1) if times_us else None,
        },
        "lookups_us": {
            "mean": round(statistics.fmean(lookups_us), 1) if lookups_us else None,
            "max": round(lookups_us[-1], 1) if lookups_us else None,
        },
    }
    if details:
        report["not_correct"] = [outcome_row(o) for o in outcomes if o.result != "correct"]
    repaired = [o for o in outcomes if o.repairs]
    report["repaired"] = {
        "questions": len(repaired),
        "results": {
            r: sum(o.result == r for o in repaired) for r in ("correct", "clarify", "miss", "wrong")
        },
    }
    if details:
        report["repairs"] = [
            {"id": o.case.id, "text": o.case.text, "repairs": list(o.repairs), "result": o.result}
            for o in repaired
        ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m appliance.bench.understand_text",
        description="Score ground() + policy.decide() on a text evaluation set (JSON out).",
    )
    p.add_argument("--set", type=Path, required=True, help="the evaluation set (TOML)")
    p.add_argument("--answer-mode", choices=("faq", "llm"), default="faq")
    p.add_argument("--lexical", action="store_true", help="BM25 only, no embedder")
    p.add_argument("--details", action="store_true", help="list every question not correct")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.add_argument(
        "--no-nbest",
        action="store_true",
        help="with --transcripts: ignore ASR's other hypotheses (rows[].alternatives)",
    )
    p.add_argument(
        "--transcripts",
        type=Path,
        help="a spoken bench's JSON (appliance bench understand): score what ASR heard "
        "(rows[].transcript) for the set's questions it asked, instead of their text",
    )
    p.add_argument(
        "--soundalike", action="store_true", help="repair misheard FAQ words (soundalike.py)"
    )
    args = p.parse_args(argv)

    cases, sites = load_cases(args.set)
    if args.transcripts is not None:
        cases = heard(cases, json.loads(args.transcripts.read_text(encoding="utf-8")))
    embedder = None
    if not args.lexical:
        from ..knowledge.embeddings import Embedder

        embedder = Embedder.load()
    needed = sorted({c.site for c in cases})
    kbs = {site: KnowledgeBase.from_file(sites[site], embedder=embedder) for site in needed}
    for kb in kbs.values():
        prepare(kb)
    outcomes = evaluate(
        cases,
        kbs,
        answer_mode=args.answer_mode,
        soundalike=args.soundalike,
        nbest=not args.no_nbest,
    )
    report: dict[str, Any] = {
        "set": str(args.set),
        "answer_mode": args.answer_mode,
        "transcripts": str(args.transcripts) if args.transcripts else None,
        "soundalike": args.soundalike,
        "nbest": bool(args.transcripts) and not args.no_nbest,
    }
    report.update(summarize(outcomes, details=args.details))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
