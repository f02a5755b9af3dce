"""The fact guard: invented facts of each kind are caught, the same facts written another way
pass, echoes and empty replies are recognised."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from appliance.knowledge import parse_faq
from appliance.knowledge.guard import FactGuard, Violation, is_echo, is_empty, split_clauses

SAMPLE = Path(str(importlib.resources.files("appliance") / "data" / "sample_faq.md"))
HOTEL = Path(__file__).parent / "data" / "understand" / "hotel_faq.md"
PERSONA = "You are the friendly information kiosk of this venue. Answer visitors briefly."


def _sources(path: Path, question: str) -> list[str]:
    entries, _ = parse_faq(path.read_text(encoding="utf-8"))
    return [f"{e.question} {e.answer}" for e in entries] + [PERSONA, question]


@pytest.fixture(scope="module")
def museum() -> FactGuard:
    return FactGuard(_sources(SAMPLE, "How much is it for my son, he's 8?"))


@pytest.fixture(scope="module")
def hotel() -> FactGuard:
    return FactGuard(_sources(HOTEL, "when is breakfast?"))


# --------------------------------------------------------------------------- inventions


@pytest.mark.parametrize(
    ("clause", "kind", "token"),
    [
        ("An adult ticket costs €15.", "price", "€15"),
        ("Children pay 7 euros.", "price", "7 euros"),
        ("Parking is three dollars an hour.", "price", "three dollars"),
        ("We open at 8 am on Saturdays.", "time", "8 am"),
        ("The café opens at noon.", "time", "noon"),
        ("We close at half past five.", "time", "half past five"),
        ("Last entry is at 16:30.", "time", "16:30"),
        ("Last entry is at 16.15.", "time", "16.15"),
        ("Call us on +31 20 555 0199.", "phone", "+31 20 555 0199"),
        ("Call 0800 123 4567 for bookings.", "phone", "0800 123 4567"),
        ("Write to tickets@harbourlight.example.", "email", "tickets@harbourlight.example"),
        ("Write to info at harbourlight dot com.", "email", "info at harbourlight dot com"),
        ("Book at harbourlight.example/booking.", "url", "harbourlight.example/booking"),
        ("See www.museum-tickets.com for details.", "url", "www.museum-tickets.com"),
        ("The lens was made by Augustin Fresnel in Paris.", "name", "Augustin Fresnel"),
        ("Ask for our guide Captain Jack Morgan.", "name", "Captain Jack Morgan"),
        ("Tours take ninety minutes.", "number", "ninety"),
        ("The lens is seven metres tall.", "number", "seven"),
        ("The tugboat is on the fifth floor.", "number", "fifth"),
        ("It was built in 1902.", "number", "1902"),
        ("We are closed on March 3.", "date", "March 3"),
        ("We are closed on the 4th of July.", "date", "the 4th of July"),
        ("We close early in May.", "date", "May"),
        ("Entry is free on 2/5.", "date", "2/5"),
    ],
)
def test_each_kind_of_invention_is_caught(
    museum: FactGuard, clause: str, kind: str, token: str
) -> None:
    v = museum.check(clause)
    assert v is not None, clause
    assert (v.kind, v.token) == (kind, token)
    assert v.clause == clause
    assert token in str(v)


def test_a_weekday_the_sources_never_cover(hotel: FactGuard) -> None:
    # The hotel FAQ names Monday to Saturday (flower market), Friday, Saturday and Sunday.
    assert hotel.check("The flower market is open on Sundays.") is None  # named elsewhere
    guard = FactGuard(["We are open Tuesday to Friday from 9:30 to 17:00."])
    assert guard.check("We are open on Wednesdays.") is None  # inside the range
    v = guard.check("We are open on Sundays.")
    assert v is not None and (v.kind, v.token) == ("date", "Sundays")


# --------------------------------------------------------------------------- paraphrases


@pytest.mark.parametrize(
    "clause",
    [
        "An adult ticket costs twelve euros.",
        "An adult ticket costs 12 EUR.",
        "Adults pay €12, seniors and students €9.",
        "Parking costs 2 euros 50 an hour.",
        "Parking costs €2.50 per hour.",
        "Children under six get in free.",
        "Children aged six to seventeen pay six euros.",
        "Your son, who is 8, pays €6.",  # the 8 comes from the visitor's question
        "We open at 10 am on Saturdays.",
        "We open at 10 a.m. on Sundays.",
        "At the weekend we open at ten o'clock in the morning.",
        "On weekdays we close at 5 pm.",
        "We are open until 5 on Fridays.",  # an hour of 17:00, next to "until"
        "Closing time is 17:00.",
        "We are open from 9.30 to 17.00 on weekdays.",
        "Tours start at eleven and at two in the afternoon.",
        "Call +31 20 555 0187.",
        "Call 020 555 0187.",
        "Email info@harbourlight.example.",
        "Email info at harbourlight dot example.",
        "Buy tickets at harbourlight.example/tickets.",
        "Visit harbourlight.example for tickets.",
        "Our star exhibit comes from Cape Meridian.",
        "Have a coffee at the Lantern Cafe.",  # no accent
        "The Lantern Café's soup is on the ground floor.",
        "Climb aboard the tugboat Little Wren.",
        "We are closed on December 25th and on the 1st of January.",
        "We are closed on Mondays.",
        "We are open from Tuesday to Friday, and on Wednesday too.",
        "Most visitors spend about two hours.",
        "One hour is not enough.",
        "First, buy a ticket.",
        "Just a second, please.",
        "The lens is 4 metres tall.",
        "It's on the third floor.",
        "I can help with that.",
        "May I help you?",
        "Cape Meridian is where the lens comes from.",  # a sentence's first word: skipped
        "Groups of 10 or more pay €9 per person.",
    ],
)
def test_the_same_facts_written_differently_pass(museum: FactGuard, clause: str) -> None:
    assert museum.check(clause) is None, museum.check(clause)


def test_hotel_facts(hotel: FactGuard) -> None:
    for clause in [
        "Breakfast is served from 7 to half past ten on weekdays.",
        "Breakfast is served in De Koperen Pan.",
        "Charging costs 45 cents per kWh.",
        "Dial 9 from your room phone.",
        'The wifi password is "linden2024".',
        "Reception is open 24 hours a day.",
        "Write to reception@wilgenhof.example or see wilgenhof.example/dinner.",
        "The bar is open until 1 at night, and until 2 on Fridays.",
    ]:
        assert hotel.check(clause) is None, (clause, hotel.check(clause))
    for clause, kind in [
        ('The wifi password is "oak2023".', "number"),
        ("Breakfast is served until 11:30 on weekdays.", "time"),
        ("Breakfast is served in the Golden Lion.", "name"),
        ("Late check-out until 13:00 costs €35.", "price"),
        ("The sauna is on the 14th floor.", "number"),
    ]:
        v = hotel.check(clause)
        assert v is not None and v.kind == kind, (clause, v)


def test_bare_hours_need_a_time_word() -> None:
    guard = FactGuard(["We are open from 9:30 to 17:00."])
    assert guard.check("We are open until 5.") is None
    v = guard.check("The lens is 5 metres tall.")
    assert v is not None and v.kind == "number"


def test_24_hour_sources_mean_the_morning() -> None:
    guard = FactGuard(["We are open from 9:30 to 17:00."])
    assert guard.check("We open at 9:30 am.") is None
    assert guard.check("We open at 9:30.") is None
    v = guard.check("We open at 9:30 pm.")
    assert v is not None and v.kind == "time"
    twelve_hour = FactGuard(["The bar opens at 5:00."])  # no 24-hour time: either
    assert twelve_hour.check("The bar opens at 5 pm.") is None


def test_names_are_checked_after_the_first_word(museum: FactGuard) -> None:
    v = museum.check("Captain Jack Morgan found the lens.")
    assert v is not None and (v.kind, v.token) == ("name", "Jack Morgan")
    # Conservative: a true paraphrase the sources do not spell out is flagged too.
    v = museum.check("We are closed on New Year's Day.")
    assert v is not None and v.kind == "name"


def test_single_names_are_optional() -> None:
    guard = FactGuard(["The museum is in Harbour Square."], single_names=True)
    v = guard.check("It is in the centre of Rotterdam.")
    assert v is not None and (v.kind, v.token) == ("name", "Rotterdam")
    assert FactGuard(["The museum is in Harbour Square."]).check("It is in Rotterdam.") is None
    assert guard.check("Yes, I think so.") is None  # "I" and the first word are no names


# --------------------------------------------------------------------------- whole replies


def test_check_reply_finds_the_first_bad_clause(museum: FactGuard) -> None:
    reply = "Yes! Adults pay €12, children €6, and families €35. Call +31 20 555 0187."
    v = museum.check_reply(reply)
    assert v == Violation("price", "€35", "and families €35.")
    assert museum.check_reply("Adults pay €12, and children under 6 get in free.") is None


def test_empty_and_echo_replies(museum: FactGuard) -> None:
    assert museum.check_reply("") == Violation("empty", "", "")
    assert museum.check_reply("  … ") is not None and is_empty("  … ")
    assert not is_empty("No.")
    question = "What are the opening hours?"
    v = museum.check_reply("What are your opening hours?", question=question)
    assert v is not None and v.kind == "echo"
    assert museum.check_reply("We open at 10:00 on Saturdays.", question=question) is None


@pytest.mark.parametrize(
    ("reply", "question", "echo"),
    [
        ("What are the opening hours?", "what are the opening hours", True),
        ("Where are the toilets?", "um where are the toilets", True),
        ("You want to know where the toilets are.", "where are the toilets", False),
        ("The toilets are on the ground floor.", "Where are the toilets?", False),
        (
            "What are the opening hours? We are open from 9:30 to 17:00, Tuesday to Friday.",
            "What are the opening hours?",
            False,  # restates, then answers
        ),
        ("Hours.", "What are the opening hours?", False),
        ("", "What are the opening hours?", False),
    ],
)
def test_is_echo(reply: str, question: str, echo: bool) -> None:
    assert is_echo(reply, question) is echo


def test_split_clauses_keeps_figures_whole() -> None:
    text = (
        "Yes, we open at 9:30, and tickets cost €2.50. Over 1,000 visitors came; "
        "email info@x.example: we answer fast!"
    )
    assert split_clauses(text) == [
        "Yes,",
        "we open at 9:30,",
        "and tickets cost €2.50.",
        "Over 1,000 visitors came;",
        "email info@x.example:",
        "we answer fast!",
    ]


def test_stateless_per_clause(museum: FactGuard) -> None:
    clauses = ["Adults pay €15.", "We open at 10:00.", "Call +31 20 555 0187.", "Ask Captain Nemo."]
    forward = [museum.check(c) for c in clauses]
    backward = [museum.check(c) for c in reversed(clauses)][::-1]
    assert forward == backward
    assert [v.kind if v else None for v in forward] == ["price", None, None, "name"]
