"""The fact guard: a reply may only state facts that its sources state.

One module (~800 lines): a table of fact patterns and their normalisations (times, prices,
number words, contacts, names) that change together; every function in it is pure.

An LLM answer (see `policy.py`, kind "llm") is grounded in retrieved FAQ entries, but a model
can still invent a price, a time, a phone number or a name. Before the kiosk speaks a clause it
asks `FactGuard.check(clause)`: every number, time, price, date, weekday and month, phone
number, e-mail address, web address and multi-word proper name in it must occur in the sources
(the retrieved FAQ text, the persona and the visitor's question). Written forms are normalised
before comparing: "twelve" = "12", "€12" = "12 euros" = "EUR 12", "10am" = "10 a.m." =
"10:00" = "ten o'clock in the morning", "5 pm" = "17:00", "March 3" = "3rd of March",
"info at site dot example" = "info@site.example", names ignore case, accents and "'s".

Stateless per clause, so it works while streaming: the caller splits the model's stream into
clauses (`split_clauses` does it for whole texts) and checks each before TTS speaks it.
`check_reply` checks a whole reply, including an empty one and, given the question, an echo
(`is_echo`). Pure: no I/O, a clause takes well under a millisecond.

Deliberately conservative: a correct paraphrase the guard cannot verify ("Christmas Day" for
"25 December") is a violation too; the caller then falls back to the FAQ text or a safe reply.
Single capitalised words ("Rotterdam") are only checked with `single_names=True`: models
capitalise ordinary nouns ("the Reception") too often.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal

__all__ = [
    "EMAIL_RE",
    "NUMBER_WORDS",
    "PHONE_RE",
    "ClauseGate",
    "FactGuard",
    "Violation",
    "ViolationKind",
    "is_echo",
    "is_empty",
    "split_clauses",
    "words_value",
]

ViolationKind = Literal[
    "number", "time", "price", "date", "phone", "email", "url", "name", "empty", "echo"
]


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    token: str  # as written in the clause ("twelve euros", "Captain Morgan")
    clause: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.token!r} not in the sources"


# --------------------------------------------------------------------------- number words

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
# The words a spelled-out number is made of, longest first (an alternation tries them in order).
NUMBER_WORDS: tuple[str, ...] = tuple(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))
_NUMBER_WORD = "|".join(NUMBER_WORDS)
# A spelled-out number: "twelve", "twenty-five", "one hundred and twenty", "a hundred".
_NUMBER_WORDS_RE = re.compile(
    rf"\b(?:a\s+)?(?:{_NUMBER_WORD})(?:(?:\s+and\s+|[\s-]+)(?:{_NUMBER_WORD}))*\b",
    re.IGNORECASE,
)
# "one" alone is too common ("one of the", "the first one") to be a fact in a reply; it is one
# next to a unit.
_UNIT_NOUNS = (
    r"(?:minutes?|hours?|days?|weeks?|months?|years?|euros?|dollars?|pounds?|cents?|tickets?|"
    r"floors?|adults?|child(?:ren)?|kids?|persons?|people|companions?|guests?|nights?|metres?|"
    r"meters?|kilometres?|kilometers?|km|spaces?|rooms?|beds?|pets?|dogs?|times?|stops?|"
    r"levels?|per\s+cent|percent)"
)
_ONE_RE = re.compile(rf"\bone\s+(?:more\s+|extra\s+)?{_UNIT_NOUNS}\b", re.IGNORECASE)


def words_value(text: str) -> int | None:
    """'twenty-five' -> 25, 'one hundred and twenty' -> 120, 'a hundred' -> 100."""
    total = 0
    current = 0
    seen = False
    for word in re.split(r"[\s-]+", text.lower()):
        if word in ("and", "a", ""):
            if word == "a":
                current = max(current, 1)
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES:
            scale = _SCALES[word]
            current = max(current, 1) * scale
            if scale >= 1000:
                total += current
                current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _num(text: str) -> Decimal | None:
    """A written number as a canonical Decimal: '1,000' -> 1000, '2,50' -> 2.5, '2.50' -> 2.5."""
    t = text.strip()
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", t):
        t = t.replace(",", "")
    elif re.fullmatch(r"\d+,\d{1,2}", t):
        t = t.replace(",", ".")
    try:
        return abs(Decimal(t)).normalize()
    except InvalidOperation:
        value = words_value(t)
        return Decimal(value) if value is not None else None


# --------------------------------------------------------------------------- patterns

_MONTHS = {
    name: i
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"  # noqa: E501
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)days?"
_ORDINAL_WORD = "|".join(sorted(_ORDINAL_WORDS, key=len, reverse=True))
_DAY = rf"(?i:\d{{1,2}}(?:st|nd|rd|th)?|(?:twenty[\s-]|thirty[\s-])?(?:{_ORDINAL_WORD}))"

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
# "info at harbourlight dot example": how a model writes an address to be read aloud.
_SPOKEN_EMAIL_RE = re.compile(
    r"\b([a-z0-9][\w.+-]*)\s+at\s+([a-z0-9][\w-]*(?:\s+dot\s+[a-z0-9][\w-]*)+)\b", re.IGNORECASE
)
_URL_RE = re.compile(
    r"(?<![@\w.])(?:https?://)?(?:www\.)?(?:[a-z0-9][a-z0-9-]*\.)+[a-z][a-z0-9-]{1,23}"
    r"(?::\d+)?(?:/[^\s,;!?)\"']*)?",
    re.IGNORECASE,
)
_NOT_HOSTS = frozenset({"a.m", "p.m", "e.g", "i.e", "etc"})
PHONE_RE = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d ()/-]{5,}\d(?!\w)")
_CURRENCY_SYMBOL = {"€": "EUR", "$": "USD", "£": "GBP"}
_CURRENCY_WORD = r"(?:euros?|eur|dollars?|usd|pounds?|gbp|quid|cents?|pence)(?![\w])"
_AMOUNT = rf"(?:\d+(?:[.,]\d{{1,2}})?|(?:{_NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORD}))*)"
_PRICE_RE = re.compile(
    rf"(?P<sym>[€$£])\s?(?P<a1>\d+(?:[.,]\d{{1,2}})?)"
    rf"|(?P<a2>{_AMOUNT})\s?(?P<cur>{_CURRENCY_WORD})"
    rf"(?:\s+(?:and\s+)?(?P<cents>\d{{1,2}}|{_NUMBER_WORD}(?:[\s-]+{_NUMBER_WORD})?)"
    rf"(?:\s+cents?)?(?![\w]))?"
    r"|\b(?P<iso>EUR|USD|GBP)\s?(?P<a3>\d+(?:[.,]\d{1,2})?)",
    re.IGNORECASE,
)
_AMPM = r"(?P<ampm>[ap]\.?\s?m\b\.?)"
_PART_OF_DAY = r"(?:\s+(?P<pod>in\s+the\s+(?:morning|afternoon|evening)|at\s+night|tonight))?"
_HOUR_WORD = "|".join(
    sorted(["twelve", "eleven", "ten", *list(_UNITS)[1:10]], key=len, reverse=True)
)
_TIME_RE = re.compile(
    "(?:"
    + "|".join(
        (
            # 10:30, 17:00, 9:30 pm, 10.30am
            rf"\b(?P<h1>\d{{1,2}}):(?P<m1>\d{{2}})\s?(?:{_AMPM.replace('ampm', 'ap1')})?",
            rf"\b(?P<h2>\d{{1,2}})\.(?P<m2>\d{{2}})\s?{_AMPM.replace('ampm', 'ap2')}",
            # 9.30, 17.00: the European way of writing times (prices are taken before times)
            r"\b(?P<h7>[1-9]|1\d|2[0-4])\.(?P<m7>[0-5]\d)\b(?![.,]?\d)",
            # 10 am, 10am, 10 a.m.
            rf"\b(?P<h3>\d{{1,2}})\s?{_AMPM.replace('ampm', 'ap3')}",
            # ten am, ten thirty pm
            rf"\b(?P<h4>{_HOUR_WORD})(?:[\s-](?P<m4>fifteen|thirty|forty[\s-]five))?\s?"
            rf"{_AMPM.replace('ampm', 'ap4')}",
            # ten o'clock, 9 o'clock
            rf"\b(?P<h5>\d{{1,2}}|{_HOUR_WORD})\s+o['’]?\s?clock",
            # half past nine, quarter to five, quarter past 10
            rf"\b(?P<rel>half\s+past|(?:a\s+)?quarter\s+past|(?:a\s+)?quarter\s+to)\s+"
            rf"(?P<h6>\d{{1,2}}|{_HOUR_WORD})",
            r"\b(?P<named>noon|midday|midnight)\b",
        )
    )
    + ")"
    + _PART_OF_DAY,
    re.IGNORECASE,
)
_DATE_RE = re.compile(
    rf"\b(?:(?i:the)\s+)?(?P<d1>{_DAY})\s+(?:of\s+)?(?P<mo1>{_MONTH})(?!\w)"
    rf"|\b(?P<mo2>{_MONTH})\s+(?:the\s+)?(?P<d2>{_DAY})\b(?!:)"
    r"|\b(?P<n1>\d{1,2})/(?P<n2>\d{1,2})(?:/(?:\d{2}|\d{4}))?\b",
)
_MONTH_ALONE_RE = re.compile(rf"\b{_MONTH}(?!\w)")  # capitalised only: "may" is a verb
_WEEKDAY_RE = re.compile(rf"\b{_WEEKDAY}\b", re.IGNORECASE)
_WEEKDAY_RANGE_RE = re.compile(
    rf"\b(?P<a>{_WEEKDAY})\s*(?:to|until|till|through|thru|-|–)\s*(?P<b>{_WEEKDAY})\b",
    re.IGNORECASE,
)
_ALL_DAYS_RE = re.compile(r"\b(?:every\s+day|daily|7\s+days|seven\s+days)\b", re.IGNORECASE)
_WEEKDAYS_RE = re.compile(r"\bweekdays?\b|\bworking\s+days?\b", re.IGNORECASE)
_WEEKEND_RE = re.compile(r"\bweekends?\b", re.IGNORECASE)
_ORDINAL_DIGITS_RE = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_DIGITS_RE = re.compile(r"\d+(?:[.,]\d+)*")
# An ordinal word is a fact after "the" or before a noun it counts ("the sixth floor",
# "second floor"); "wait a second" and "first, ..." are not.
_ORDINAL_WORDS_RE = re.compile(
    rf"\bthe\s+(?P<o1>(?:(?:twenty|thirty)[\s-])?(?:{_ORDINAL_WORD}))\b"
    rf"|\b(?P<o2>(?:(?:twenty|thirty)[\s-])?(?:{_ORDINAL_WORD}))\s+(?=(?:floor|level|day|"
    r"week|month|year|time|sunday|monday|tuesday|wednesday|thursday|friday|saturday|stop|room|"
    r"door|entrance|exit|gallery|hall|of)\b)",
    re.IGNORECASE,
)
# Capitalised words and the small words inside names ("Cape of Good Hope", "De Koperen Pan").
_NAME_WORD_RE = re.compile(r"[^\W\d_][\w'’.-]*", re.UNICODE)
_NAME_JOINERS = frozenset("of de van der den het the and la le du von y da di".split())
# Capitalised anyway: not names.
_NOT_NAMES = frozenset(
    """i i'm i'll i've i'd ok okay mr mrs ms dr st wifi wi-fi tv atm id qr usb faq pm am""".split()
)


def _weekday_index(word: str) -> int:
    w = word.lower()
    for i, name in enumerate(_WEEKDAYS):
        if w.startswith(name[:3]):
            return i
    return -1


def _hour_value(text: str) -> int | None:
    t = text.lower()
    if t.isdigit():
        return int(t)
    return _UNITS.get(t) if t in _UNITS else None


def _fold(text: str) -> str:
    """Lowercase, no accents, "'s" and punctuation gone, single spaces: for comparing names."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = re.sub(r"['’]s\b", "", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


# --------------------------------------------------------------------------- extraction


@dataclass
class _Found:
    kind: ViolationKind
    token: str
    value: object


@dataclass
class _Facts:
    """Everything the sources state, normalised."""

    numbers: set[Decimal] = field(default_factory=set)
    times: set[int] = field(default_factory=set)  # minutes after midnight
    hours: set[Decimal] = field(default_factory=set)  # times' hours, 24- and 12-hour
    prices: set[tuple[str | None, Decimal]] = field(default_factory=set)
    dates: set[tuple[int, int]] = field(default_factory=set)  # (month, day)
    months: set[int] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)  # digits only
    emails: set[str] = field(default_factory=set)
    urls: set[str] = field(default_factory=set)  # host/path, lowercase, no scheme or www.
    text: str = ""  # folded, for names


def _extract(text: str, *, source: bool) -> tuple[list[_Found], str]:
    """The facts in `text`, in kinds of decreasing specificity; each consumes its span so that
    "€12" is a price, not also the number 12. `source`: read liberally (a source's "one" is 1,
    its "9:30" may be morning or evening unless it writes 24-hour times)."""
    found: list[_Found] = []
    work = text

    def take(m: re.Match[str], kind: ViolationKind, value: object) -> None:
        nonlocal work
        found.append(_Found(kind, m.group(0).strip().rstrip(".,;:"), value))
        work = _blank(work, m.start(), m.end())

    for m in EMAIL_RE.finditer(work):
        take(m, "email", m.group(0).lower().rstrip("."))
    for m in _SPOKEN_EMAIL_RE.finditer(work):
        local = m.group(1).lower()
        domain = ".".join(p.strip().lower() for p in re.split(r"\s+dot\s+", m.group(2)))
        take(m, "email", f"{local}@{domain}")
    for m in _URL_RE.finditer(work):
        url = m.group(0).rstrip(".").lower()
        url = re.sub(r"^https?://", "", url)
        url = re.sub(r"^www\.", "", url).rstrip("/")
        host = url.split("/", 1)[0]
        if host in _NOT_HOSTS or not re.search(r"[a-z]{2,}\.[a-z]", host + "."):
            continue
        take(m, "url", url)
    for m in _PRICE_RE.finditer(work):
        price = _price_value(m)
        if price is not None:
            take(m, "price", price)
    for m in _TIME_RE.finditer(work):
        minutes = _time_value(m)
        if minutes is not None:
            take(m, "time", minutes)
    for m in PHONE_RE.finditer(work):
        digits = re.sub(r"\D", "", m.group(0))
        grouped = m.group(0).lstrip().startswith(("+", "0")) or " " in m.group(0).strip()
        if len(digits) >= 7 and grouped and ":" not in m.group(0):
            take(m, "phone", digits)
    for m in _DATE_RE.finditer(work):
        date = _date_value(m)
        if date is not None:
            take(m, "date", date)
    for m in _MONTH_ALONE_RE.finditer(work):
        month = _MONTHS.get(m.group(0).rstrip(".").lower())
        if month is not None and (m.group(0) != "May" or source or _looks_like_month(work, m)):
            take(m, "date", ("month", month))
    for m in _WEEKDAY_RE.finditer(work):
        take(m, "date", ("weekday", _weekday_index(m.group(0))))
    for m in _ORDINAL_DIGITS_RE.finditer(work):
        take(m, "number", Decimal(int(m.group(1))))
    for m in _DIGITS_RE.finditer(work):
        number = _num(m.group(0))
        if number is not None:
            take(m, "number", number)
    for m in _ORDINAL_WORDS_RE.finditer(work):
        words = (m.group("o1") or m.group("o2")).lower().replace("-", " ").split()
        ordinal = sum(_TENS.get(w, 0) for w in words[:-1]) + _ORDINAL_WORDS[words[-1]]
        if ordinal != 1 or source:  # "first" is discourse ("first, ...") as often as a fact
            take(m, "number", Decimal(ordinal))
            found[-1].token = m.group("o1") or m.group("o2")
    if not source:
        for m in _ONE_RE.finditer(work):
            found.append(_Found("number", m.group(0), Decimal(1)))
            work = _blank(work, m.start(), m.start() + 3)
    for m in _NUMBER_WORDS_RE.finditer(work):
        token = m.group(0)
        if not source and token.lower() in ("one", "a one"):
            continue
        if token.lower().startswith("a ") and not source:
            token = token[2:]
        spelled = words_value(token)
        if spelled is not None:
            take(m, "number", Decimal(spelled))
    return found, work


def _looks_like_month(text: str, m: re.Match[str]) -> bool:
    """'May' is a month next to a day number ("in May", "May 3")."""
    before = text[max(0, m.start() - 4) : m.start()].lower()
    return before.endswith("in ") or bool(re.match(r"\s+\d", text[m.end() : m.end() + 3]))


def _currency(sym: str | None, word: str | None, iso: str | None) -> str | None:
    if sym:
        return _CURRENCY_SYMBOL[sym]
    if iso:
        return iso.upper()
    w = (word or "").lower()
    if w.startswith("eur"):
        return "EUR"
    if w.startswith(("dollar", "usd")):
        return "USD"
    if w.startswith(("pound", "gbp", "quid")):
        return "GBP"
    return None  # cents, pence: the amount is what counts


def _price_value(m: re.Match[str]) -> tuple[str | None, Decimal] | None:
    amount_text = m.group("a1") or m.group("a2") or m.group("a3")
    if amount_text is None:
        return None
    amount = _num(amount_text)
    if amount is None:
        return None
    word = m.group("cur")
    if word and word.lower().startswith(("cent", "pence")):
        return (None, (amount / 100).normalize())
    cents_text = m.group("cents")
    if cents_text:
        cents = _num(cents_text)
        if cents is not None and cents < 100:
            amount = (amount + cents / 100).normalize()
    return (_currency(m.group("sym"), word, m.group("iso")), amount)


def _time_value(m: re.Match[str]) -> int | None:
    """Minutes after midnight; negative when the hour may be morning or evening (-(minutes+1)
    of the morning reading), so that the check tries both."""
    g = m.groupdict()
    named = g.get("named")
    if named:
        return 0 if named.lower() == "midnight" else 12 * 60
    ampm = next((g[k] for k in ("ap1", "ap2", "ap3", "ap4") if g.get(k)), None)
    hour: int | None
    minute = 0
    if g.get("h1") is not None:
        hour, minute = int(g["h1"]), int(g["m1"])
    elif g.get("h2") is not None:
        hour, minute = int(g["h2"]), int(g["m2"])
    elif g.get("h3") is not None:
        hour = int(g["h3"])
    elif g.get("h4") is not None:
        hour = _hour_value(g["h4"])
        if g.get("m4"):
            minute = {"fifteen": 15, "thirty": 30}.get(g["m4"].lower(), 45)
    elif g.get("h7") is not None:
        hour, minute = int(g["h7"]), int(g["m7"])
    elif g.get("h5") is not None:
        hour = _hour_value(g["h5"])
    elif g.get("h6") is not None:
        hour = _hour_value(g["h6"])
        rel = g["rel"].lower()
        if hour is not None and rel.endswith("to"):
            hour, minute = (hour - 1) % 24, 45
        else:
            minute = 30 if rel.startswith("half") else 15
    else:
        return None
    if hour is None or hour > 24 or minute > 59:
        return None
    pod = (g.get("pod") or "").lower()
    if ampm:
        pm = ampm.lower().startswith("p")
    elif pod:
        pm = not pod.endswith("morning")
    else:
        return -(hour % 24 * 60 + minute + 1) if hour <= 12 else hour % 24 * 60 + minute
    if hour > 12:
        return hour * 60 + minute  # "17:00 pm": the 24-hour figure wins
    hour = hour % 12 + (12 if pm else 0)
    return hour * 60 + minute


def _date_value(m: re.Match[str]) -> object:
    g = m.groupdict()
    if g.get("n1"):
        a, b = int(g["n1"]), int(g["n2"])
        if not (1 <= a <= 31 and 1 <= b <= 31) or (a > 12 and b > 12):
            return None
        return ("either", (a, b))
    day_text = g.get("d1") or g.get("d2") or ""
    month_text = (g.get("mo1") or g.get("mo2") or "").rstrip(".").lower()
    month = _MONTHS.get(month_text)
    day = _day_value(day_text)
    if month is None or day is None or not 1 <= day <= 31:
        return None
    return (month, day)


def _day_value(text: str) -> int | None:
    t = text.lower().strip()
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", t)
    if m:
        return int(m.group(1))
    words = t.replace("-", " ").split()
    if words and words[-1] in _ORDINAL_WORDS:
        return sum(_TENS.get(w, 0) for w in words[:-1]) + _ORDINAL_WORDS[words[-1]]
    return None


# --------------------------------------------------------------------------- names


def _name_runs(text: str) -> list[str]:
    """Runs of two or more capitalised words that do not start a sentence (the first word of
    each sentence and of the clause is skipped, as is "I")."""
    runs: list[str] = []
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n+", text):
        words = list(_NAME_WORD_RE.finditer(sentence))
        current: list[str] = []
        pending: list[str] = []
        for i, m in enumerate(words):
            word = m.group(0).rstrip(".")
            capital = word[:1].isupper() and word.lower() not in _NOT_NAMES
            if i == 0:
                capital = False  # the sentence's first word is capitalised anyway
            if capital:
                current.extend(pending)
                pending = []
                current.append(word)
            elif current and word.lower() in _NAME_JOINERS:
                pending.append(word)
            else:
                if len(current) >= 2:
                    runs.append(" ".join(current))
                current, pending = [], []
        if len(current) >= 2:
            runs.append(" ".join(current))
    return runs


def _single_names(text: str) -> list[str]:
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n+", text):
        words = [m.group(0).rstrip(".") for m in _NAME_WORD_RE.finditer(sentence)]
        for i, word in enumerate(words):
            if i and word[:1].isupper() and word.lower() not in _NOT_NAMES:
                out.append(word)
    return out


# --------------------------------------------------------------------------- the guard


class FactGuard:
    """Checks clauses of a reply against what `sources` state (see the module docstring)."""

    def __init__(self, sources: Sequence[str], *, single_names: bool = False) -> None:
        self.single_names = single_names
        facts = _Facts()
        for source in sources:
            _collect(facts, source)
        facts.text = " " + " ".join(_fold(s) for s in sources) + " "
        self._facts = facts

    def check(self, clause: str) -> Violation | None:
        """The first fact in `clause` the sources do not state, or None."""
        facts = self._facts
        found, rest = _extract(clause, source=False)
        for f in found:
            if not _supported(f, facts, clause):
                return Violation(f.kind, f.token, clause)
        # Names: in what is left once numbers, addresses and dates are out.
        names = _name_runs(rest)
        if self.single_names:
            names += _single_names(rest)
        for name in names:
            if f" {_fold(name)} " not in facts.text:
                return Violation("name", name, clause)
        return None

    def check_reply(self, text: str, question: str | None = None) -> Violation | None:
        """A whole reply: empty, an echo of `question` (when given), or a clause's fact."""
        if is_empty(text):
            return Violation("empty", "", text)
        if question is not None and is_echo(text, question):
            return Violation("echo", text.strip(), text)
        for clause in split_clauses(text):
            v = self.check(clause)
            if v is not None:
                return v
        return None


def _collect(facts: _Facts, source: str) -> None:
    found, _ = _extract(source, source=True)
    # A source that writes 24-hour times ("17:00") means "9:30" as the morning.
    twenty_four = any(
        f.kind == "time" and isinstance(f.value, int) and f.value >= 13 * 60 for f in found
    )
    for f in found:
        v = f.value
        if f.kind == "number":
            assert isinstance(v, Decimal)
            facts.numbers.add(v)
        elif f.kind == "time":
            assert isinstance(v, int)
            readings = [v] if v >= 0 else [-v - 1]
            if v < 0 and not twenty_four:
                readings.append((-v - 1 + 12 * 60) % (24 * 60))
            facts.times.update(readings)
            written = readings[0]
            facts.numbers.add(Decimal(written // 60))
            if written % 60:
                facts.numbers.add(Decimal(written % 60))
            for minutes in readings:
                facts.hours.update({Decimal(minutes // 60), Decimal(minutes // 60 % 12 or 12)})
        elif f.kind == "price":
            assert isinstance(v, tuple)
            facts.prices.add(v)
            facts.numbers.add(v[1])
        elif f.kind == "date":
            assert isinstance(v, tuple)
            _collect_date(facts, v)
        elif f.kind == "phone":
            assert isinstance(v, str)
            facts.phones.add(v)
        elif f.kind == "email":
            assert isinstance(v, str)
            facts.emails.add(v)
        elif f.kind == "url":
            assert isinstance(v, str)
            facts.urls.add(v)
    for m in _WEEKDAY_RANGE_RE.finditer(source):
        a, b = _weekday_index(m.group("a")), _weekday_index(m.group("b"))
        i = a
        while True:
            facts.weekdays.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    if _ALL_DAYS_RE.search(source):
        facts.weekdays.update(range(7))
    if _WEEKDAYS_RE.search(source):
        facts.weekdays.update(range(5))
    if _WEEKEND_RE.search(source):
        facts.weekdays.update((5, 6))


def _collect_date(facts: _Facts, v: tuple[object, ...]) -> None:
    tag = v[0]
    if tag == "month":
        assert isinstance(v[1], int)
        facts.months.add(v[1])
    elif tag == "weekday":
        assert isinstance(v[1], int)
        facts.weekdays.add(v[1])
    elif tag == "either":
        pair = v[1]
        assert isinstance(pair, tuple)
        a, b = pair
        facts.dates.update({(a, b), (b, a)})
        facts.numbers.update({Decimal(a), Decimal(b)})
    else:
        month, day = v
        assert isinstance(month, int) and isinstance(day, int)
        facts.dates.add((month, day))
        facts.months.add(month)
        facts.numbers.add(Decimal(day))


# A bare number may name an hour of a source's time ("open until 5" for "17:00") next to these.
_TIME_CUE_RE = re.compile(
    r"\b(?:until|till|til|from|at|to|by|before|after|open|opens|close|closes|closed|closing|"
    r"starts?|ends?|between|around|about)\b",
    re.IGNORECASE,
)


def _supported(f: _Found, facts: _Facts, clause: str) -> bool:
    v = f.value
    if f.kind == "number":
        return v in facts.numbers or (v in facts.hours and bool(_TIME_CUE_RE.search(clause)))
    if f.kind == "time":
        assert isinstance(v, int)
        if v < 0:
            morning = -v - 1
            return morning in facts.times or (morning + 12 * 60) % (24 * 60) in facts.times
        return v in facts.times or (v == 0 and 24 * 60 in facts.times)
    if f.kind == "price":
        assert isinstance(v, tuple)
        currency, amount = v
        if currency is None:
            return any(a == amount for _, a in facts.prices)
        return (currency, amount) in facts.prices or (None, amount) in facts.prices
    if f.kind == "date":
        assert isinstance(v, tuple)
        tag = v[0]
        if tag == "month":
            return v[1] in facts.months
        if tag == "weekday":
            return v[1] in facts.weekdays
        if tag == "either":
            pair = v[1]
            assert isinstance(pair, tuple)
            return pair in facts.dates or pair[::-1] in facts.dates
        return v in facts.dates
    if f.kind == "phone":
        assert isinstance(v, str)
        return any(_same_phone(v, p) for p in facts.phones)
    if f.kind == "email":
        return v in facts.emails
    if f.kind == "url":
        assert isinstance(v, str)
        return any(_url_covered(v, u) for u in facts.urls)
    return True


def _same_phone(a: str, b: str) -> bool:
    """Equal, or the same number with and without the country code / trunk zero."""
    if a == b:
        return True
    a0, b0 = a.lstrip("0"), b.lstrip("0")
    shorter, longer = sorted((a0, b0), key=len)
    return len(shorter) >= 7 and longer.endswith(shorter)


def _url_covered(reply: str, source: str) -> bool:
    """The reply's address is a source address, or its host or a leading part of its path."""
    return source == reply or source.startswith(reply + "/")


# --------------------------------------------------------------------------- reply helpers

_CLAUSE_END_RE = re.compile(r"(?<=[.!?;])\s+|(?<=,)\s+(?=\D)|(?<=:)\s+(?=\D)|\n+")


def split_clauses(text: str) -> list[str]:
    """Sentences and comma/semicolon clauses, without breaking "9:30", "€2.50", "1,000" or an
    address. For checking a whole text; a streaming caller does the same on its buffer."""
    return [c.strip() for c in _CLAUSE_END_RE.split(text) if c and c.strip()]


class ClauseGate:
    """Streamed text in, whole clauses out: a clause is held until its end is seen, so the
    guard checks it before anyone sees or hears it. Text comes back exactly as it went in.
    A clause that runs past `max_chars` without punctuation is let out at its last space (a
    model that never punctuates must not hold the whole reply back)."""

    def __init__(self, max_chars: int = 96) -> None:
        self._buf = ""
        self.max_chars = max_chars

    def feed(self, text: str) -> str:
        """The completed clauses so far (with their separators); "" while none is complete."""
        self._buf += text
        end = 0
        for m in _CLAUSE_END_RE.finditer(self._buf):
            end = m.end()
        if end == 0 and len(self._buf) > self.max_chars:
            end = self._buf.rfind(" ") + 1
        done, self._buf = self._buf[:end], self._buf[end:]
        return done

    def flush(self) -> str:
        """What is left at the end of the stream."""
        rest, self._buf = self._buf, ""
        return rest


def is_empty(reply: str) -> bool:
    """Nothing to say: no letter or digit at all."""
    return not any(c.isalnum() for c in reply)


_ECHO_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _echo_words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _ECHO_WORD_RE.findall(text.casefold())]


def is_echo(reply: str, question: str, *, overlap: float = 0.8) -> bool:
    """The reply only repeats the question: at least `overlap` of the longer one's distinct words
    shared and a similar length (a reply that restates the question and then answers it is
    longer, so it is no echo)."""
    r, q = _echo_words(reply), _echo_words(question)
    if not r or not q:
        return False
    if not 0.6 <= len(r) / len(q) <= 1.6:
        return False
    rs, qs = set(r), set(q)
    return len(rs & qs) / max(len(rs), len(qs)) >= overlap
