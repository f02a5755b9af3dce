"""The pure half of `appliance bench understand`: the question sets, text normalisation, word
error rate, the verdict on one reply, the summaries and the Markdown page. No I/O apart from
reading a set file (`load_set`).

A set is TOML: `[[q]]` tables with id, site, kind (faq | followup | offtopic | chat | bad),
text, category, and per kind: expect (the FAQ `## ` heading that answers it) and facts
(substrings a correct reply must contain) for faq/followup, before (the previous question) for
followup, accept (acceptable reply kinds) for bad. Sites name FAQ files: "museum" is the
shipped sample FAQ, "hotel" is `hotel_faq.md` beside the set; a set may add or override sites
with a top-level `[sites]` table (name = FAQ path, relative to the set file).

Verdicts (one per question):

- faq/followup: **correct** when the reply is an FAQ or LLM answer containing every fact;
  **wrong** when it answered (faq, llm, chat) without them; **clarify** when it asked which
  entry was meant; **decline** when it declined; **missed** when nothing usable came back
  (say_again, no turn, a turn cut short).
- offtopic: **correct** only when declined; clarify is clarify; answering is **wrong**;
  say_again / nothing is **missed**.
- chat: **correct** only for a chat reply; decline and clarify as named; any other answer is
  **wrong**; nothing is **missed**.
- bad: **correct** when the reply kind is in `accept` (an faq/llm answer must still contain the
  facts when the question lists some); otherwise as for offtopic, clarify/decline named.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..voice.textnorm import normalize_for_speech
from .stats import percentile

__all__ = [
    "KINDS",
    "VERDICTS",
    "Question",
    "QuestionSet",
    "breakdown",
    "derive_kind",
    "fact_present",
    "facts_found",
    "load_set",
    "markdown_report",
    "normalize_words",
    "select",
    "summarize",
    "verdict",
    "word_errors",
]

KINDS = ("faq", "followup", "offtopic", "chat", "bad")
VERDICTS = ("correct", "clarify", "decline", "wrong", "missed")
# Reply kinds (reply.done `kind`, or derived when absent) that answer something.
ANSWERING = frozenset({"faq", "llm", "chat"})
# ... that give the visitor nothing: asked to repeat, no turn at all, a turn cut before its end.
NOTHING = frozenset({"say_again", "none", "interrupted"})

_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "understand"
NAMED_SETS = {"tune": _DATA / "tune.toml", "heldout": _DATA / "heldout.toml"}


# -- the set -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    site: str
    kind: str
    text: str
    category: str = ""
    expect: str | None = None
    facts: tuple[str, ...] = ()
    before: str | None = None
    accept: tuple[str, ...] = ()

    @classmethod
    def from_toml(cls, d: Mapping[str, Any], where: str) -> Question:
        def req(key: str) -> str:
            v = d.get(key)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{where}: `{key}` must be a non-empty string")
            return v

        q = cls(
            id=req("id"),
            site=req("site"),
            kind=req("kind"),
            text=req("text"),
            category=str(d.get("category", "")),
            expect=d.get("expect"),
            facts=tuple(str(f) for f in d.get("facts", ())),
            before=d.get("before"),
            accept=tuple(str(a) for a in d.get("accept", ())),
        )
        if q.kind not in KINDS:
            raise ValueError(f"{where} ({q.id}): kind {q.kind!r} is not one of {KINDS}")
        if q.kind in ("faq", "followup") and not q.facts:
            raise ValueError(f"{where} ({q.id}): a {q.kind} question needs `facts`")
        if q.kind == "followup" and not q.before:
            raise ValueError(f"{where} ({q.id}): a followup needs `before`")
        if q.kind == "bad" and not q.accept:
            raise ValueError(f"{where} ({q.id}): a bad question needs `accept`")
        return q


@dataclass(frozen=True)
class QuestionSet:
    name: str
    path: Path
    questions: tuple[Question, ...]
    sites: Mapping[str, Path] = field(default_factory=dict)


def load_set(spec: str, museum_faq: Path) -> QuestionSet:
    """`tune`, `heldout` (the sets in tests/data/understand) or a path to a set file."""
    path = NAMED_SETS.get(spec, Path(spec))
    name = spec if spec in NAMED_SETS else path.stem
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = " (the named sets live in the source tree's tests/)" if spec in NAMED_SETS else ""
        raise ValueError(f"question set not found: {path}{hint}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    raw = data.get("q")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: no [[q]] tables")
    questions = tuple(Question.from_toml(d, f"{path.name} q #{i + 1}") for i, d in enumerate(raw))
    ids = [q.id for q in questions]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{path}: duplicate ids {dup}")
    sites: dict[str, Path] = {"museum": museum_faq, "hotel": path.parent / "hotel_faq.md"}
    for site, faq in dict(data.get("sites", {})).items():
        sites[str(site)] = path.parent / str(faq)
    unknown = sorted({q.site for q in questions} - set(sites))
    if unknown:
        raise ValueError(f"{path}: sites without an FAQ: {unknown} (add a [sites] table)")
    return QuestionSet(name, path, questions, sites)


def select(
    questions: Sequence[Question], *, site: str | None = None, limit: int | None = None
) -> list[tuple[int, Question]]:
    """(index in the set, question) for the site (all when None); `limit` takes that many spread
    evenly over them (every len/limit-th), so a short run still sees every part of the set."""
    chosen = [(i, q) for i, q in enumerate(questions) if site is None or q.site == site]
    if limit is None or limit >= len(chosen):
        return chosen
    if limit <= 0:
        return []
    return [chosen[(j * len(chosen)) // limit] for j in range(limit)]


# -- text --------------------------------------------------------------------------------------

_CONTRACTIONS = (
    (r"\bcan't\b", "can not"),
    (r"\bcannot\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"\bshan't\b", "shall not"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'d\b", " would"),
    (r"\blet's\b", "let us"),
    (r"\b(what|where|when|who|how|that|there|here|it|he|she)'s\b", r"\1 is"),
    (r"\bokay\b", "ok"),
)


def _fold(text: str) -> str:
    """NFKD without accents, lower case, typographic quotes and dashes made plain."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c))
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return re.sub("[\u2010-\u2015]", "-", t).lower()


def normalize_words(text: str) -> list[str]:
    """Words for WER: numbers as spoken words ("9:30" -> "nine thirty", "2" -> "two"), lower
    case, no accents or punctuation, hyphenated words joined ("Wi-Fi" = "wifi"), common
    contractions expanded ("what's" -> "what is")."""
    t = _fold(normalize_for_speech(text))
    for pat, rep in _CONTRACTIONS:
        t = re.sub(pat, rep, t)
    t = re.sub(r"(?<=[a-z0-9])-(?=[a-z0-9])", "", t)  # wi-fi = wifi, grown-up = grownup
    t = re.sub(r"[^a-z0-9']+", " ", t).replace("'", "")
    return t.split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word substitutions + deletions + insertions turning `ref` into `hyp` (Levenshtein)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after `normalize_words`."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def _canon(text: str) -> str:
    t = _fold(text)
    t = re.sub(r"(\d)[.:h](\d\d)\b", r"\1:\2", t)  # 9.30 / 9h30 -> 9:30
    t = re.sub(r"(\d),(\d{3})\b", r"\1\2", t)  # 1,000 -> 1000
    t = re.sub(r"\b(\d{1,2}):00\s*(am|pm|a\.m\.|p\.m\.)", r"\1 \2", t)
    t = t.replace("a.m.", "am").replace("p.m.", "pm")
    return re.sub(r"\s+", " ", t).strip()


def _contains(needle: str, hay: str) -> bool:
    if not needle:
        return True
    pat = re.escape(needle)
    if needle[0].isalnum():
        pat = r"(?<![a-z0-9])" + pat if needle[0].isdigit() else r"(?<![a-z])" + pat
    if needle[-1].isalnum():
        pat += r"(?![0-9])" if needle[-1].isdigit() else ""
    return re.search(pat, hay) is not None


def fact_present(fact: str, reply: str) -> bool:
    """`fact` is in `reply`: case-insensitive, whitespace and quotes/dashes normalised, a number
    not inside a longer one ("6" is not in "16:00"), "9.30" = "9:30"; or the same after both are
    written out as spoken words ("18:00" = "six PM", "6" = "six")."""
    if _contains(_canon(fact), _canon(reply)):
        return True
    return _contains(_canon(normalize_for_speech(fact)), _canon(normalize_for_speech(reply)))


def facts_found(facts: Iterable[str], reply: str) -> list[bool]:
    return [fact_present(f, reply) for f in facts]


# -- verdicts --------------------------------------------------------------------------------------


def derive_kind(endpoint: str | None, outcome: str | None, turn_outcome: str | None) -> str:
    """The reply kind when reply.done carries none (before the answer policy): the FAQ endpoint
    is "faq", any other endpoint "llm", the fallback reply (and a refusal) "decline"; a voice
    turn without a reply: "say_again" (no usable words, ASR over budget), "interrupted" (cut
    before its reply.done), "none" (nothing heard)."""
    if turn_outcome in ("no_words", "asr_timeout"):
        return "say_again"
    if outcome in ("fallback", "blocked", "no_vision"):
        return "decline"
    if outcome in ("cancelled", "interrupted") and endpoint is None:
        return "interrupted"
    if endpoint == "faq":
        return "faq"
    if endpoint:
        return "llm"
    if turn_outcome in ("cancelled", "interrupted"):
        return "interrupted"
    return "none"


def verdict(kind: str, reply_kind: str, facts_ok: bool | None, accept: Sequence[str] = ()) -> str:
    """One of VERDICTS for a question of `kind` answered with `reply_kind` (see the module
    doc). `facts_ok`: every fact in the reply (None when the question lists none)."""
    answered = reply_kind not in NOTHING and reply_kind not in ("clarify", "decline")
    if kind in ("faq", "followup"):
        if reply_kind in ("faq", "llm"):
            return "correct" if facts_ok else "wrong"
    elif kind == "offtopic":
        if reply_kind == "decline":
            return "correct"
    elif kind == "chat":
        if reply_kind == "chat":
            return "correct"
    elif kind == "bad":
        if reply_kind in accept:
            if reply_kind in ("faq", "llm") and facts_ok is False:
                return "wrong"
            return "correct"
    else:
        raise ValueError(f"unknown question kind {kind!r}")
    if reply_kind in ("clarify", "decline"):
        return reply_kind
    return "wrong" if answered else "missed"


# -- summaries -----------------------------------------------------------------------------------


def _wer(rows: Sequence[Mapping[str, Any]]) -> tuple[float | None, int]:
    words = sum(int(r["wer_words"]) for r in rows)
    errs = sum(int(r["wer_errors"]) for r in rows)
    return (round(100.0 * errs / words, 1) if words else None), words


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per verdict, their percentages, corpus WER (clean and noisy clips apart) and end of
    speech -> first reply audio (`voice_to_voice_ms`) p50/p95. Rows without a verdict (the
    harness failed on them) are left out and counted as `not_run`."""
    scored = [r for r in rows if r.get("verdict") in VERDICTS]
    n = len(scored)
    out: dict[str, Any] = {"n": n}
    for v in VERDICTS:
        c = sum(1 for r in scored if r["verdict"] == v)
        out[v] = c
    for v in VERDICTS:
        out[f"{v}_percent"] = round(100.0 * out[v] / n, 1) if n else None
    clean = [r for r in scored if not r.get("noisy") and r.get("wer_words")]
    noisy = [r for r in scored if r.get("noisy") and r.get("wer_words")]
    out["wer_clean_percent"], out["wer_clean_words"] = _wer(clean)
    out["wer_noisy_percent"], out["wer_noisy_words"] = _wer(noisy)
    v2v = [float(r["voice_to_voice_ms"]) for r in scored if r.get("voice_to_voice_ms") is not None]
    out["voice_to_voice_p50_ms"] = round(percentile(v2v, 50), 1) if v2v else None
    out["voice_to_voice_p95_ms"] = round(percentile(v2v, 95), 1) if v2v else None
    out["voice_to_voice_n"] = len(v2v)
    if len(rows) > n:
        out["not_run"] = len(rows) - n
    return out


def breakdown(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """`summarize` per value of `key` (sorted)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get(key)), []).append(r)
    return {k: summarize(groups[k]) for k in sorted(groups)}


# -- Markdown --------------------------------------------------------------------------------------

_COLS = (
    ("n", "n"),
    ("correct", "correct"),
    ("clarify", "clarify"),
    ("decline", "decline"),
    ("wrong", "wrong"),
    ("missed", "missed"),
    ("correct %", "correct_percent"),
    ("WER clean %", "wer_clean_percent"),
    ("WER noisy %", "wer_noisy_percent"),
    ("v2v p50 ms", "voice_to_voice_p50_ms"),
    ("v2v p95 ms", "voice_to_voice_p95_ms"),
)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(title: str, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = [f"| {title} | " + " | ".join(h for h, _ in _COLS) + " |"]
    out.append("|---|" + "---:|" * len(_COLS))
    for name, s in groups.items():
        out.append(f"| {_cell(name)} | " + " | ".join(_cell(s.get(k)) for _, k in _COLS) + " |")
    return out


def _clip(text: Any, n: int = 90) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The page written beside the JSON: what ran, then tables overall / by kind / by noise /
    by category, then the questions that went wrong or were missed."""
    m = report.get("machine") or {}
    rows = report.get("rows") or []
    lines = [
        f"# Understanding bench: set `{report.get('set')}` ({report.get('questions_asked')} of "
        f"{report.get('questions_in_set')} questions)",
        "",
        f"- Date: {report.get('date')}; commit {m.get('git_commit') or 'unknown'}; "
        f"machine {m.get('short_name')} ({m.get('cpu_model')}, {m.get('cores')} cores)",
        f"- Command: `{report.get('command')}`",
        f"- LLM: {report.get('llm')}; reply kinds: {report.get('kind_source')}; microphone "
        f"front end: {report.get('frontend', 'off')}",
        f"- Clips: {report.get('clips')}",
        f"- Took {report.get('bench_wall_s')} s, {report.get('seconds_per_question')} s per "
        f"question; load average {report.get('loadavg_1m_before_after')}; harness errors "
        f"{report.get('errors')}",
        "",
        "v2v = end of speech -> first reply audio (the voice pipeline's `voice_to_voice_ms`). "
        "WER is over the question clips (corpus WER: all word errors / all reference words).",
        "",
    ]
    if "failed" in report:
        return "\n".join([*lines, f"Failed: `{report['failed']}`", ""])
    lines += [*_table("overall", {"all": report.get("overall", {})}), ""]
    for title, key in (
        ("kind", "by_kind"),
        ("site", "by_site"),
        ("noise", "by_noise"),
        ("voice", "by_voice"),
        ("category", "by_category"),
    ):
        groups = report.get(key)
        if isinstance(groups, dict) and groups:
            lines += [*_table(title, groups), ""]
    bad = [r for r in rows if r.get("verdict") in ("wrong", "missed") or r.get("errors")]
    if bad:
        lines += [
            "## Wrong, missed or failed",
            "",
            "| id | kind | said | heard | reply kind | verdict | reply |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in bad:
            lines.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        r.get("id"),
                        r.get("kind"),
                        _clip(r.get("text"), 60),
                        _clip(r.get("transcript"), 60),
                        r.get("reply_kind"),
                        r.get("verdict") or "; ".join(r.get("errors") or []),
                        _clip(r.get("reply")),
                    )
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)
