"""normalize_for_speech: table of cases, plus round-trip and idempotence properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.voice.textnorm import (
    int_to_words,
    normalize_for_speech,
    ordinal_to_words,
    time_to_words,
    year_to_words,
)

CASES = [
    # times
    ("9:30", "nine thirty"),
    ("10:00", "ten o'clock"),
    ("9:05", "nine oh five"),
    ("12:15", "twelve fifteen"),
    ("9am", "nine AM"),
    ("9 a.m. and later", "nine AM and later"),
    ("5 PM", "five PM"),
    ("9:30 pm", "nine thirty PM"),
    ("9.30am", "nine thirty AM"),
    ("17:00", "five PM"),
    ("17:45", "five forty-five PM"),
    ("0:30", "twelve thirty AM"),
    ("We open at 9 a.m. Tickets are sold inside.", "We open at nine AM. Tickets are sold inside."),
    ("25:00", "twenty-five:zero zero"),  # not a time: digits read as numbers
    # prices
    ("€12", "twelve euros"),
    ("€12.50", "twelve euros fifty"),
    ("€12.5", "twelve euros fifty"),
    ("€1", "one euro"),
    ("$5", "five dollars"),
    ("$1,250", "one thousand two hundred fifty dollars"),
    ("£3.20", "three pounds twenty"),
    ("$0.50", "fifty cents"),
    ("€0.01", "one cent"),
    ("£0.50", "fifty pence"),
    ("12 €", "twelve euros"),
    ("12,50 EUR", "twelve euros fifty"),
    ("$5 million", "five million dollars"),
    ("$1.5 million", "one point five million dollars"),
    ("€5-10", "five euros to ten euros"),
    ("Adults €12, children €6.", "Adults twelve euros, children six euros."),
    # numbers
    ("1,250", "one thousand two hundred fifty"),
    ("3,000 visitors", "three thousand visitors"),
    ("12,000,000", "twelve million"),
    ("1000000000", "one billion"),
    ("42", "forty-two"),
    ("0", "zero"),
    ("007", "zero zero seven"),
    ("3.14", "three point one four"),
    ("-5", "minus five"),
    ("room B12", "room B12"),
    ("COVID-19", "COVID-nineteen"),
    # years
    ("1892", "eighteen ninety-two"),
    ("In 1892, the museum opened.", "In eighteen ninety-two, the museum opened."),
    ("1905", "nineteen oh five"),
    ("1900", "nineteen hundred"),
    ("2000", "two thousand"),
    ("2005", "two thousand five"),
    ("2024", "twenty twenty-four"),
    ("1099", "one thousand ninety-nine"),  # outside 1100-2099: a number
    ("1990s", "nineteen nineties"),
    ("the 80s", "the eighties"),
    ("2024-05-01", "May first, twenty twenty-four"),
    # ordinals, percentages
    ("1st", "first"),
    ("2nd floor", "second floor"),
    ("3rd", "third"),
    ("11th", "eleventh"),
    ("21st", "twenty-first"),
    ("100th", "one hundredth"),
    ("50%", "fifty percent"),
    ("12.5 %", "twelve point five percent"),
    # ranges
    ("9-17", "nine to seventeen"),
    ("9–17", "nine to seventeen"),
    ("9 - 17", "nine to seventeen"),
    ("9:00-17:00", "nine o'clock to five PM"),
    ("9am-5pm", "nine AM to five PM"),
    ("9.30-17.00", "nine thirty to five PM"),
    ("1914-1918", "nineteen fourteen to nineteen eighteen"),
    ("2020-21", "twenty twenty to twenty-one"),
    ("Mon-Fri 9-17", "Monday to Friday nine to seventeen"),
    ("Tue–Sun", "Tuesday to Sunday"),
    # phone numbers
    ("+49 30 1234567", "plus four nine, three zero, one two three four five six seven"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("555-1234", "five five five, one two three four"),
    ("2024 100 people", "twenty twenty-four one hundred people"),  # two numbers, not a phone
    # abbreviations and units
    ("approx. 5 min", "approximately five minutes"),
    ("approx 20 mins", "approximately twenty minutes"),
    ("1 min", "one minute"),
    ("e.g. a coffee", "for example a coffee"),
    ("i.e. today", "that is today"),
    ("pens, pads etc.", "pens, pads et cetera."),
    ("pens etc. and more", "pens et cetera and more"),
    ("Mr. Smith and Mrs. Jones", "Mister Smith and Missus Jones"),
    ("Dr. Green", "Doctor Green"),
    ("St. Mary's church", "Saint Mary's church"),
    ("Visit St. Paul's", "Visit Saint Paul's"),
    ("It is on Main St.", "It is on Main Street."),
    ("Go to Main St. Then turn left.", "Go to Main Street. Then turn left."),
    ("No. 5", "number five"),
    ("#3", "number three"),
    ("2.5 km", "two point five kilometers"),
    ("1 km", "one kilometer"),
    ("50 km/h", "fifty kilometers per hour"),
    ("-5°C", "minus five degrees Celsius"),
    ("~5 min", "about five minutes"),
    ("open 24/7", "open twenty-four seven"),
    # symbols, addresses
    ("A & B", "A and B"),
    ("tea + cake", "tea plus cake"),
    ("yes/no", "yes or no"),
    ("and/or", "and or"),
    ("www.example.org", "www dot example dot org"),
    ("See www.my-museum.org.", "See www dot my dash museum dot org."),
    ("https://example.org/tickets?day=1", "example dot org slash tickets"),
    ("Mail info@museum.org today.", "Mail info at museum dot org today."),
    ("It opens soon.It is", "It opens soon.It is"),  # not a URL (capitalised "It")
    # untouched prose
    ("Where is the café?", "Where is the café?"),
    ("Line one\nLine two", "Line one\nLine two"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize_for_speech(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


@pytest.mark.parametrize(("_text", "spoken"), CASES)
def test_normalized_text_is_stable(_text: str, spoken: str) -> None:
    # the output has nothing left to rewrite
    assert normalize_for_speech(spoken) == spoken


def test_helpers() -> None:
    assert time_to_words(9, 30, "pm") == "nine thirty PM"
    assert time_to_words(13, 0, "pm") is None  # 13 with pm is not a time
    assert time_to_words(9, 60) is None
    assert year_to_words(1100) == "eleven hundred"
    assert ordinal_to_words(12) == "twelfth"
    assert ordinal_to_words(1_000_001) == "one million first"
    assert int_to_words(-3) == "minus three"


# -- properties -----------------------------------------------------------------------------

_VALUES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split()
)}  # fmt: skip
_VALUES |= {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy "
                                             "eighty ninety".split()) if w != "_"}  # fmt: skip
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


def words_to_int(words: str) -> int:
    """Independent reader for US cardinals ("one thousand two hundred fifty")."""
    total = current = 0
    for word in words.replace("-", " ").split():
        if word == "hundred":
            current *= 100
        elif word in _SCALES:
            total += current * _SCALES[word]
            current = 0
        else:
            current += _VALUES[word]
    return total + current


@given(st.integers(0, 10**15 - 1))
def test_cardinals_round_trip(n: int) -> None:
    assert words_to_int(int_to_words(n)) == n


@given(st.integers(0, 10**12))
def test_plain_and_grouped_numbers_become_words(n: int) -> None:
    for text in (str(n), f"{n:,}"):
        spoken = normalize_for_speech(f"about {text} visitors")
        assert not re.search(r"\d", spoken)
        assert spoken.startswith("about ") and spoken.endswith(" visitors")
        middle = spoken.removeprefix("about ").removesuffix(" visitors")
        if not (1100 <= n <= 2099 and text == str(n)):  # years read differently
            assert words_to_int(middle) == n


@given(st.integers(0, 23), st.integers(0, 59))
def test_clock_times_lose_their_digits(hour: int, minute: int) -> None:
    spoken = normalize_for_speech(f"at {hour}:{minute:02d} today")
    assert not re.search(r"\d", spoken)
    assert ("PM" in spoken) == (hour >= 13)
    assert ("AM" in spoken) == (hour == 0)


@given(st.sampled_from(["€", "$", "£"]), st.integers(0, 100_000), st.integers(0, 99))
def test_prices_lose_digits_and_name_currency(symbol: str, whole: int, cents: int) -> None:
    spoken = normalize_for_speech(f"It costs {symbol}{whole}.{cents:02d} here")
    assert not re.search(r"\d|[€$£]", spoken)
    names = {"€": ("euro", "cent"), "$": ("dollar", "cent"), "£": ("pound", "penn", "pence")}[
        symbol
    ]
    assert any(name in spoken for name in names)


@given(st.text(max_size=200))
def test_arbitrary_text_is_handled(text: str) -> None:
    spoken = normalize_for_speech(text)
    assert isinstance(spoken, str)
    assert "  " not in spoken
