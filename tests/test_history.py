"""How much past conversation goes into an LLM prompt (turns.fit_history): pure."""

from __future__ import annotations

from appliance.dialog import Exchange
from appliance.turns import fit_history

HOURS = (
    "We are open Tuesday to Friday from 9:30 to 17:00, and Saturday and Sunday from 10:00 to "
    "18:00. Last entry is 45 minutes before closing. We are closed on Mondays, except in "
    "July and August, and on 25 December and 1 January."
)


def test_newest_exchanges_within_the_budget_oldest_first() -> None:
    history = [Exchange(f"question {i}?", f"Answer {i}.") for i in range(5)]
    assert fit_history(history, 0) == history  # no cap
    kept = fit_history(history, 59)
    assert kept == history[-2:]  # 2 x 20 chars fit, a third would not
    assert fit_history(history, 60) == history[-3:]
    assert fit_history(history, 5) == []


def test_long_replies_keep_their_first_sentences() -> None:
    (ex,) = fit_history([Exchange("When are you open?", HOURS)], 600)
    assert ex.user == "When are you open?"
    assert ex.assistant == (
        "We are open Tuesday to Friday from 9:30 to 17:00, and Saturday and Sunday from "
        "10:00 to 18:00. Last entry is 45 minutes before closing. …"
    )
    assert len(ex.assistant) <= 152
    # A reply whose first sentence alone is too long for what is left is not sent at all.
    assert fit_history([Exchange("q", "x" * 300)], 600) == []
    assert fit_history([Exchange("a", "Short."), Exchange("q", "x" * 300)], 600) == []
