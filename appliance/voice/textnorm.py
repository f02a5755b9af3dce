"""Text as it should be spoken by the en-US voice (espeak-ng phonemes -> Piper).

espeak-ng guesses at digits, symbols and abbreviations ("€12.50", "9:05", "St.", URLs), and
guesses badly; this module rewrites them into plain words first. English (US) only.

Choices (documented so the tests can pin them):

* times: "9:30" -> "nine thirty", "10:00" -> "ten o'clock", "9:05" -> "nine oh five";
  am/pm and 24-hour times -> "AM"/"PM": "9am" -> "nine AM", "17:00" -> "five PM",
  "0:30" -> "twelve thirty AM". Upper case because espeak-ng reads "AM" as letters but
  "a m" as "uh em". "9.30" is a time only with am/pm or in a range ("9.30-17.00").
* prices: "€12" -> "twelve euros", "€12.50" -> "twelve euros fifty", "$0.50" -> "fifty cents",
  "£3.20" -> "three pounds twenty", "$5 million" -> "five million dollars".
* numbers: cardinals without "and" ("one thousand two hundred fifty"); 4-digit numbers
  1100-2099 standing alone are read as years ("eighteen ninety-two"); decimals digit by digit
  after "point"; ordinals; percentages; ranges ("9-17" -> "nine to seventeen").
* phone numbers (6+ digits in groups with spaces/dashes): digit by digit, groups split by commas.
* URLs and e-mail addresses: "www dot example dot org", "info at museum dot org".
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def int_to_words(n: int) -> str:
    """Cardinal in words, US style: 1250 -> "one thousand two hundred fifty"."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n >= 10**15:
        return digits_to_words(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {int_to_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            q, rest = divmod(n, scale)
            return f"{int_to_words(q)} {name}" + (f" {int_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """21 -> "twenty-first", 100 -> "one hundredth"."""
    words = int_to_words(n)
    head, sep, last = max(
        (words.rpartition(" "), words.rpartition("-")), key=lambda parts: len(parts[0])
    )
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_to_words(n: int) -> str:
    """1892 -> "eighteen ninety-two", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    hi, lo = divmod(n, 100)
    if n % 1000 == 0 or (hi == 20 and lo < 10) or not 1000 <= n <= 9999:
        return int_to_words(n)
    if lo == 0:
        return f"{int_to_words(hi)} hundred"
    if lo < 10:
        return f"{int_to_words(hi)} oh {_ONES[lo]}"
    return f"{int_to_words(hi)} {int_to_words(lo)}"


def digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def number_to_words(text: str) -> str:
    """A numeral as written ("1,250", "3.5", "007") -> words."""
    whole, _, frac = text.replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        spoken = digits_to_words(whole)
    else:
        spoken = int_to_words(int(whole or "0"))
    return f"{spoken} point {digits_to_words(frac)}" if frac else spoken


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


# -- times ------------------------------------------------------------------------------------


def time_to_words(hour: int, minute: int, meridiem: str | None = None) -> str | None:
    """Spoken clock time, or None if it is not a valid time."""
    if meridiem is not None:
        if not 1 <= hour <= 12:
            return None
    elif hour > 24:
        return None
    if minute > 59:
        return None
    if meridiem is None and (hour == 0 or 13 <= hour <= 23):
        meridiem = "pm" if hour >= 12 else "am"
        hour = hour - 12 if hour > 12 else 12
    spoken_hour = int_to_words(hour)
    if minute == 0:
        spoken = spoken_hour if meridiem else f"{spoken_hour} o'clock"
    elif minute < 10:
        spoken = f"{spoken_hour} oh {_ONES[minute]}"
    else:
        spoken = f"{spoken_hour} {int_to_words(minute)}"
    return f"{spoken} {meridiem.upper()}" if meridiem else spoken


# -- the rewrite passes ------------------------------------------------------------------------

_Sub = Callable[[re.Match[str]], str]


def _keep_period(m: re.Match[str], spoken: str) -> str:
    """An abbreviation's dot that also ends the sentence must survive the rewrite."""
    if not m.group(0).endswith("."):
        return spoken
    rest = m.string[m.end() :]
    if re.match(r"\s*$|\s+[A-Z]", rest):
        return spoken + "."
    return spoken


_TLDS = "com|org|net|edu|gov|io|info|eu|de|uk|fr|it|es|nl|be|ch|at|us|ca|au|app|dev|museum"
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    rf"\bhttps?://[^\s]+|\b(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?-i:{_TLDS})\b(?:/[^\s]*)?",
    re.IGNORECASE,
)


def _spell_address(address: str) -> str:
    address = re.sub(r"^https?://", "", address, flags=re.IGNORECASE)
    address = re.split(r"[?#]", address, maxsplit=1)[0].rstrip("/")
    for sym, word in ((".", " dot "), ("/", " slash "), ("@", " at "), ("_", " underscore ")):
        address = address.replace(sym, word)
    address = re.sub(r"(?<=\w)-(?=\w)", " dash ", address)
    return " ".join(address.split())


def _address(m: re.Match[str]) -> str:
    text = m.group(0)
    trail = re.search(r"[.,;:!?)\]'\"]+$", text)
    tail = trail.group(0) if trail else ""
    return _spell_address(text[: len(text) - len(tail)]) + tail


def _saint_or_street(m: re.Match[str]) -> str:
    """ "Main St." is a street, "St. Mary's" a saint."""
    before = m.string[: m.start()]
    prev = re.search(r"(?:^|(?<=\s))(\S+)\s+$", before)
    if prev is not None:
        head = before[: prev.start(1)].rstrip()
        sentence_initial = not head or head[-1] in ".!?:"
        if prev.group(1)[0].isupper() and not sentence_initial:
            return _keep_period(m, "Street")
    if re.match(r"\s+[A-Z]", m.string[m.end() :]):
        return "Saint"
    return _keep_period(m, "Street")


def _abbrev(spoken: str, keep_period: bool = False) -> _Sub:
    def sub(m: re.Match[str]) -> str:
        return _keep_period(m, spoken) if keep_period else spoken

    return sub


_ABBREVIATIONS: list[tuple[re.Pattern[str], _Sub]] = [
    (re.compile(r"\be\.g\.", re.I), _abbrev("for example")),
    (re.compile(r"\bi\.e\.", re.I), _abbrev("that is")),
    (re.compile(r"\betc\.", re.I), _abbrev("et cetera", keep_period=True)),
    (re.compile(r"\bapprox\.?(?=\s|$)", re.I), _abbrev("approximately")),
    (re.compile(r"\bca\.(?=\s*\d)"), _abbrev("about")),
    (re.compile(r"\bvs\.?(?=\s)"), _abbrev("versus")),
    (re.compile(r"\bMr\.(?=\s)"), _abbrev("Mister")),
    (re.compile(r"\bMrs\.(?=\s)"), _abbrev("Missus")),
    (re.compile(r"\bMs\.(?=\s)"), _abbrev("Miz")),
    (re.compile(r"\bDr\.(?=\s+[A-Z])"), _abbrev("Doctor")),
    (re.compile(r"\bProf\.(?=\s+[A-Z])"), _abbrev("Professor")),
    (re.compile(r"\bSt\."), _saint_or_street),
    (re.compile(r"\bAve\."), _abbrev("Avenue", keep_period=True)),
    (re.compile(r"\bRd\."), _abbrev("Road", keep_period=True)),
    (re.compile(r"\bNo\.(?=\s*\d)"), _abbrev("number")),
    (re.compile(r"#(?=\d)"), _abbrev("number ")),
    (re.compile(r"\b24/7\b"), _abbrev("twenty-four seven")),
    (re.compile(r"\band/or\b"), _abbrev("and or")),
]


def _iso_date(m: re.Match[str]) -> str:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{_MONTHS[month - 1]} {ordinal_to_words(day)}, {year_to_words(year)}"


def _is_year(digits: str) -> bool:
    return len(digits) == 4 and 1100 <= int(digits) <= 2099


_ISO_DATE = re.compile(r"(?<![\w.-])(\d{4})-(\d{2})-(\d{2})(?![\w-])")
# digit groups joined by spaces/dashes, optional +country and (area) code
_PHONE = re.compile(
    r"(?<![\w+.,])\+?(?:\(\d+\)\s?)?\d+(?:[ -]\d+|\s?\(\d+\)\s?\d+)+(?![\w]|[.,]\d)"
)


def _phone(m: re.Match[str]) -> str:
    text = m.group(0)
    groups = re.findall(r"\d+", text)
    plus = text.startswith("+")
    if sum(len(g) for g in groups) < 6:
        return text
    if len(groups) == 2 and not plus and "(" not in text:
        a, b = groups
        if "-" not in text or len(b) < 4 or (_is_year(a) and _is_year(b)):
            return text  # "2024 100", "9-17", "2020-21", "1914-1918": not phone numbers
    spoken = ", ".join(digits_to_words(g) for g in groups)
    return ("plus " if plus else "") + spoken


_DAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "tues": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "thur": "Thursday",
    "thurs": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_DAY = r"(Mon(?:day)?|Tue(?:s(?:day)?)?|Wed(?:nesday)?|Thu(?:r(?:s(?:day)?)?)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)\.?"  # noqa: E501
_DAY_RANGE = re.compile(rf"\b{_DAY}\s?[-–]\s?{_DAY}(?!\w)")


def _day_name(token: str) -> str:
    token = token.rstrip(".").lower()
    return _DAYS.get(token, token.capitalize())


def _day_range(m: re.Match[str]) -> str:
    return f"{_day_name(m.group(1))} to {_day_name(m.group(2))}"


_MERIDIEM = r"[AaPp]\.?\s?[Mm]\.?(?!\w)"
_NUM_TOKEN = rf"\d{{1,2}}[:.]\d{{2}}(?:\s?{_MERIDIEM})?|\d[\d,]*(?:\.\d+)?(?:\s?{_MERIDIEM})?"
_RANGE = re.compile(
    rf"(?<![\w.,:/-])([€$£]\s?)?({_NUM_TOKEN})\s?[-–]\s?([€$£]\s?)?({_NUM_TOKEN})(?![\w]|[.,]\d)"
)
_DOTTED_TIME = re.compile(r"(\d{1,2})\.(\d{2})(?=\s?[AaPp]|$)")


def _range(m: re.Match[str]) -> str:
    cur_a, a, cur_b, b = m.group(1) or "", m.group(2), m.group(3) or "", m.group(4)
    currency = (cur_a or cur_b).strip()
    if not currency and _DOTTED_TIME.match(a) and _DOTTED_TIME.match(b):
        a, b = _DOTTED_TIME.sub(r"\1:\2", a), _DOTTED_TIME.sub(r"\1:\2", b)
    return f"{currency}{a} to {currency}{b}"


_TIME_COLON = re.compile(rf"(?<![\w:.])(\d{{1,2}}):(\d{{2}})(?:\s?({_MERIDIEM}))?(?![\w:]|[.,]\d)")
_TIME_DOTTED = re.compile(rf"(?<![\w:.])(\d{{1,2}})\.(\d{{2}})\s?({_MERIDIEM})")
_TIME_HOUR = re.compile(rf"(?<![\w:.,])(\d{{1,2}})\s?({_MERIDIEM})")


def _meridiem(text: str | None) -> str | None:
    return None if text is None else ("am" if text[0] in "Aa" else "pm")


def _time(m: re.Match[str]) -> str:
    groups = m.groups()
    hour = int(groups[0])
    minute = int(groups[1]) if len(groups) == 3 else 0
    spoken = time_to_words(hour, minute, _meridiem(groups[-1]))
    if spoken is None:
        return m.group(0)
    return _keep_period(m, spoken)


_CURRENCIES = {
    "€": ("euro", "euros", "cent", "cents"),
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_CURRENCY_CODES = {"EUR": "€", "USD": "$", "GBP": "£"}
_SCALE_WORDS = {"k": "thousand", "m": "million", "bn": "billion"}
_AMOUNT = r"(\d{1,3}(?:,\d{3})+|\d+)(?:[.,](\d{1,2}))?(?!\d)"
_PRICE_PREFIX = re.compile(
    rf"([€$£])\s?{_AMOUNT}(?:\s?(million|billion|thousand|bn|[mMkK])(?!\w))?"
)
_PRICE_SUFFIX = re.compile(rf"(?<![\w.,]){_AMOUNT}\s?(€|EUR|USD|GBP)(?!\w)")


def price_to_words(symbol: str, whole: str, cents: str | None, scale: str | None = None) -> str:
    one, many, cent, cents_name = _CURRENCIES[symbol]
    n = int(whole.replace(",", ""))
    if scale:
        scale_word = _SCALE_WORDS.get(scale.lower(), scale.lower())
        amount = number_to_words(f"{n}.{cents}" if cents else str(n))
        return f"{amount} {scale_word} {many}"
    c = int(cents.ljust(2, "0")) if cents else 0
    if n == 0 and c:
        return f"{int_to_words(c)} {cent if c == 1 else cents_name}"
    spoken = f"{int_to_words(n)} {one if n == 1 else many}"
    return f"{spoken} {int_to_words(c)}" if c else spoken


def _price_prefix(m: re.Match[str]) -> str:
    return price_to_words(m.group(1), m.group(2), m.group(3), m.group(4))


def _price_suffix(m: re.Match[str]) -> str:
    symbol = _CURRENCY_CODES.get(m.group(3), m.group(3))
    return price_to_words(symbol, m.group(1), m.group(2))


_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_PERCENT = re.compile(rf"(?<![\w.,])({_NUMBER})\s?%")
_ORDINAL = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)\b", re.I)
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
_UNIT = re.compile(
    rf"(?<![\w.,])(-?{_NUMBER})\s?(km/h|mph|mins?|hrs?|h|secs?|km|cm|mm|m|kg|g|°C|°F|°)(?!\w)"
)


def _unit(m: re.Match[str]) -> str:
    value, unit = m.group(1), m.group(2)
    one, many = _UNITS[unit]
    negative = value.startswith("-")
    spoken = number_to_words(value.lstrip("-"))
    return ("minus " if negative else "") + f"{spoken} {one if value == '1' else many}"


_DECADE = re.compile(r"(?<![\w.,'])(1[1-9]\d0|20\d0|[2-9]0)s\b")
_YEAR = re.compile(r"(?<![\w.,])(1[1-9]\d\d|20\d\d)(?![\w]|[.,]\d)")
_NEGATIVE = re.compile(r"(?<![\w.,)])[-−](?=\d)")
_PLUS = re.compile(r"(?<![\w.,)])\+(?=\d)")
_DECIMAL = re.compile(r"(?<![\w.,])\d+\.\d+(?![\w]|\.\d)")
_INTEGER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?!\d)|(?<![\w.,])\d+(?![\w]|,\d{3})")


def _decade(m: re.Match[str]) -> str:
    digits = m.group(1)
    spoken = year_to_words(int(digits)) if len(digits) == 4 else int_to_words(int(digits))
    return _plural(spoken)


_SYMBOLS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"\s*%"), " percent"),
    (re.compile(r"\s+\+\s+"), " plus "),
    (re.compile(r"\s*=\s*"), " equals "),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"~\s*(?=\w)"), "about "),
    (re.compile(r"\s*×\s*"), " times "),
    (re.compile(r"€"), " euros "),
    (re.compile(r"\$"), " dollars "),
    (re.compile(r"£"), " pounds "),
    (re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])"), " or "),
]

_PASSES: list[tuple[re.Pattern[str], _Sub]] = [
    (_EMAIL, _address),
    (_URL, _address),
    *_ABBREVIATIONS,
    (_ISO_DATE, _iso_date),
    (_PHONE, _phone),
    (_DAY_RANGE, _day_range),
    (_RANGE, _range),
    (_TIME_COLON, _time),
    (_TIME_DOTTED, _time),
    (_TIME_HOUR, _time),
    (_PRICE_PREFIX, _price_prefix),
    (_PRICE_SUFFIX, _price_suffix),
    (_PERCENT, lambda m: f"{number_to_words(m.group(1))} percent"),
    (_ORDINAL, lambda m: ordinal_to_words(int(m.group(1).replace(",", "")))),
    (_UNIT, _unit),
    (_DECADE, _decade),
    (_YEAR, lambda m: year_to_words(int(m.group(1)))),
    (_NEGATIVE, lambda m: "minus "),
    (_PLUS, lambda m: "plus "),
    (_DECIMAL, lambda m: number_to_words(m.group(0))),
    (_INTEGER, lambda m: number_to_words(m.group(0))),
]


def normalize_for_speech(text: str) -> str:
    """Rewrite digits, symbols, abbreviations and addresses into words for the TTS voice."""
    for pattern, sub in _PASSES:
        text = pattern.sub(sub, text)
    for pattern, word in _SYMBOLS:
        text = pattern.sub(word, text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([.,;:!?)])", r"\1", text)
    return "\n".join(line.strip() for line in text.split("\n"))
