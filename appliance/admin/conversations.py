"""Conversation export (CSV, JSON) for staff: pure functions over TurnRecords."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..store import TurnRecord

__all__ = ["CSV_COLUMNS", "to_csv", "to_json", "turn_dict"]

CSV_COLUMNS = (
    "started_at",
    "session",
    "turn",
    "source",
    "outcome",
    "endpoint",
    "had_image",
    "user_text",
    "reply_text",
    "timings_ms",
    "kind",  # last: existing spreadsheets keep their columns
)
# A visitor's text opened in a spreadsheet must not run as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def turn_dict(rec: TurnRecord) -> dict[str, Any]:
    return {
        "started_at": _iso(rec.started_at),
        "started_ts": rec.started_at,
        "session": rec.session,
        "turn": rec.turn,
        "source": rec.source,
        "kind": rec.kind,
        "outcome": rec.outcome,
        "endpoint": rec.endpoint,
        "had_image": rec.had_image,
        "user_text": rec.user_text,
        "reply_text": rec.reply_text,
        "timings_ms": dict(rec.timings),
    }


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(records: Iterable[TurnRecord]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for rec in records:
        d = turn_dict(rec)
        d["timings_ms"] = json.dumps(d["timings_ms"], sort_keys=True)
        d["had_image"] = int(rec.had_image)
        w.writerow([_cell(d[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def to_json(records: Iterable[TurnRecord]) -> str:
    return json.dumps([turn_dict(r) for r in records], ensure_ascii=False, indent=1)
