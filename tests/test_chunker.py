"""SentenceChunker and Markdown stripping: tables of cases plus split-invariance properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.voice.chunker import MarkdownStripper, SentenceChunker, strip_markdown


def chunk_all(deltas: list[str], **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    out: list[str] = []
    for d in deltas:
        out += chunker.feed(d)
    return out + chunker.flush()


def by_chars(text: str) -> list[str]:
    return list(text)


def test_first_chunk_at_first_clause_once_long_enough() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Yes, ") == []  # too short for a first chunk
    assert chunker.feed("the café is open today") == []
    # the comma is only a boundary once the next char shows it is not "3,000"
    assert chunker.feed(",") == []
    assert chunker.feed(" and") == ["Yes, the café is open today,"]
    # later chunks wait for sentence ends, not clauses
    assert chunker.feed(" the shop too, until six in the evening. More") == [
        "and the shop too, until six in the evening."
    ]
    assert chunker.flush() == ["More"]


def test_first_chunk_on_em_dash_and_colon() -> None:
    assert chunk_all(["Good question — the museum opens at nine."]) == [
        "Good question —",
        "the museum opens at nine.",
    ]
    assert chunk_all(["Opening hours: nine to five. Monday closed."]) == [
        "Opening hours:",
        "nine to five. Monday closed.",
    ]


def test_short_sentences_merge_up_to_min_chars() -> None:
    text = "Hello there, friend. Yes. No. Maybe. We are open. The café too. Bye now, thanks."
    # "friend. ... We are open." is 36 chars < 40: the next sentence is merged in
    assert chunk_all([text]) == [
        "Hello there,",
        "friend. Yes. No. Maybe. We are open. The café too.",
        "Bye now, thanks.",
    ]
    chunks = chunk_all([text])
    assert chunks[0] == "Hello there,"
    assert all(len(c) >= 40 for c in chunks[1:-1])


@pytest.mark.parametrize(
    "text",
    [
        "A ticket costs €12.50 for adults and €9 for children today.",
        "The tour starts at 9.30 sharp and ends at 11.15 in the hall.",
        "We had 3,000 visitors yesterday and 2,500 the day before that.",
        "Ask Mr. Brown or Dr. Green at the desk near St. Paul's entrance.",
        "Bring a jacket, e.g. a light one, i.e. nothing heavy, for the roof.",
        "Visit www.example.org/tickets?day=1 or mail info@example.org for more.",
        "The doors open at 9 a.m. and the café at 10 a.m. every single day.",
        "Pi is roughly 3.14159 and the gallery is No. 5 on the map here.",
        "The painting by J. M. W. Turner is in room twelve of the west wing.",
    ],
)
def test_never_splits_inside_numbers_abbreviations_urls(text: str) -> None:
    assert chunk_all([text], first_chunk_min_chars=200) == [text]
    assert chunk_all(by_chars(text), first_chunk_min_chars=200) == [text]


def test_abbreviation_before_capital_ends_sentence() -> None:
    text = "We sell cards, posters, mugs etc. The shop is by the exit door downstairs."
    chunks = chunk_all([text], first_chunk_min_chars=30, min_chars=10)
    assert chunks == [
        "We sell cards, posters, mugs etc.",
        "The shop is by the exit door downstairs.",
    ]
    assert chunk_all(
        ["We open at 9 a.m. Tickets are sold at the front desk in the hall."],
        first_chunk_min_chars=10,
        min_chars=10,
    ) == ["We open at 9 a.m.", "Tickets are sold at the front desk in the hall."]


def test_question_and_exclamation_end_sentences() -> None:
    text = "Is it open right now? Yes! It is open until six o'clock tonight (sure.) Enjoy."
    chunks = chunk_all([text], min_chars=1)
    assert chunks == [
        "Is it open right now?",
        "Yes!",
        "It is open until six o'clock tonight (sure.)",
        "Enjoy.",
    ]


def test_newline_is_a_hard_boundary() -> None:
    assert chunk_all(["Hours\nMon 9-17\nTue 9-17\n"]) == ["Hours", "Mon 9-17", "Tue 9-17"]


def test_long_chunk_splits_at_last_space() -> None:
    words = " ".join(f"word{i}" for i in range(60))  # ~ 400 chars, no punctuation
    chunks = chunk_all([words], max_chars=50)
    assert all(len(c) <= 50 for c in chunks)
    assert " ".join(chunks) == words
    assert len(chunks[0]) > 40  # cut at the *last* space, not the first


def test_word_longer_than_max_chars_is_not_cut() -> None:
    url = "https://example.org/" + "x" * 80
    chunks = chunk_all([f"See {url} now please."], min_chars=10, max_chars=30)
    assert chunks == ["See", url, "now please."]
    # found by hypothesis: the cut after an over-long word must respect a newline
    long_line = "the—" + "x" * 30
    assert chunk_all([f"{long_line}\nthe "], min_chars=10, max_chars=30) == [long_line, "the"]


def test_long_first_clause_is_cut_before_a_phrase() -> None:
    text = "We are open Tuesday to Friday from 9:30 to 17:00, and Saturday from 10:00."
    expected = ["We are open Tuesday to Friday", "from 9:30 to 17:00, and Saturday from 10:00."]
    assert chunk_all([text]) == expected
    assert chunk_all(by_chars(text)) == expected  # decided the same way while streaming
    # Not after a word that leans forward ("is | on"), nor within the first min chars.
    assert chunk_all(["The Lantern Café is on the ground floor and serves coffee, soup."]) == [
        "The Lantern Café is on the ground floor and serves coffee,",
        "soup.",
    ]
    # No phrase start between min and max chars: the one before min rather than none (one
    # 5 s chunk took up to 1.2 s to synthesize before anything played).
    park = "The museum car park on Quay Street has 80 spaces and costs €2.50 per hour."
    expected = ["The museum car park", "on Quay Street has 80 spaces and costs €2.50 per hour."]
    assert chunk_all([park]) == expected
    assert chunk_all(by_chars(park)) == expected
    # ... decided only once the text up to first_chunk_max_chars is in, whatever max_chars is.
    assert chunk_all(by_chars(park), max_chars=30, min_chars=30) == chunk_all(
        [park], max_chars=30, min_chars=30
    )
    # A short first clause is kept whole; max below min turns the phrase cut off.
    assert chunk_all(["Yes, the café is open today, and the shop."])[0] == (
        "Yes, the café is open today,"
    )
    assert chunk_all([text], first_chunk_max_chars=0) == [
        "We are open Tuesday to Friday from 9:30 to 17:00,",
        "and Saturday from 10:00.",
    ]


def test_phrase_cut_waits_for_the_word_to_end() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Our guided tours start every morning to") == []  # "to" or "today"?
    assert chunker.feed("day at ten and the") == []
    assert chunker.flush() == ["Our guided tours start every morning today at ten and the"]


def test_flush_resets_for_the_next_stream() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("**Hi** there, it is me") == []
    assert chunker.flush() == ["Hi there, it is me"]
    assert chunker.feed("Second answer, now speaking. ") == ["Second answer,"]
    assert chunker.flush() == ["now speaking."]
    assert chunker.flush() == []


def test_bad_settings_rejected() -> None:
    with pytest.raises(ValueError):
        SentenceChunker(first_chunk_min_chars=0)
    with pytest.raises(ValueError):
        SentenceChunker(min_chars=300, max_chars=200)


@pytest.mark.parametrize(
    ("md", "plain"),
    [
        ("**bold** and __strong__ and *em* and _em_", "bold and strong and em and em"),
        ("use `snake_case` names", "use snake_case names"),
        ("~~old~~ new, about ~5 min", "old new, about ~5 min"),
        ("# Title\n## Sub title\n###### six", "Title\nSub title\nsix"),
        ("#1 choice", "#1 choice"),
        ("- one\n* two\n+ three\n  - nested", "one\ntwo\nthree\nnested"),
        ("1. first\n2) second\n10. tenth", "first\nsecond\ntenth"),
        ("1.5 km away\n2024 was good", "1.5 km away\n2024 was good"),
        ("-5 degrees outside", "-5 degrees outside"),
        ("> quoted text", "quoted text"),
        ("above\n---\nbelow\n***\nend", "above\n\nbelow\n\nend"),
        ("Title\n=====\ntext", "Title\n\ntext"),
        ("```python\nprint(1)\n```\nafter", "\nprint(1)\n\nafter"),
        ("see [the map](https://x.org/map_1.png) now", "see the map now"),
        ("![a **floor** plan](plan.png)", "a floor plan"),
        ("[1] and [not a link] (really)", "[1] and [not a link] (really)"),
        ("Wow! Great!", "Wow! Great!"),
        ("line\r\nnext", "line\nnext"),
    ],
)
def test_strip_markdown(md: str, plain: str) -> None:
    assert strip_markdown(md) == plain
    streamed = MarkdownStripper()
    assert "".join(streamed.feed(c) for c in md) + streamed.flush() == plain


def test_markdown_answer_becomes_speakable_chunks() -> None:
    answer = (
        "## Opening hours\n\n"
        "**Monday** to *Friday*: 9-17.\n"
        "- Tickets: `€12`\n"
        "1. Go to [the shop](https://x.org/a_b) first.\n"
        "---\n"
        "Done __now__."
    )
    expected = [
        "Opening hours",
        "Monday to Friday: 9-17.",
        "Tickets: €12",
        "Go to the shop first.",
        "Done now.",
    ]
    assert chunk_all([answer]) == expected
    assert chunk_all(by_chars(answer)) == expected


# -- properties -----------------------------------------------------------------------------

_words = st.sampled_from(
    [
        "the", "café", "opens", "at", "9.30", "€12.50", "3,000", "e.g.", "Mr.", "St.", "etc.",
        "Hello", "Yes", "www.example.org", "9", "a.m.", "No.", "5", "J.", "x" * 30,
        "to", "today", "from", "and", "is", "next",
    ]
)  # fmt: skip
_seps = st.sampled_from([" ", " ", " ", ", ", ". ", "? ", "! ", "; ", ": ", " — ", "—", "\n", "  "])
_md = st.sampled_from(["**", "*", "`", "_", "# ", "- ", "1. ", "[", "](u)", "~~", "---\n", ""])


def words(text: str) -> list[str]:
    return text.replace("—", "— ").split()


@st.composite
def texts(draw: st.DrawFn, markdown: bool) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 40))):
        if markdown and draw(st.booleans()):
            parts.append(draw(_md))
        parts.append(draw(_words))
        parts.append(draw(_seps))
    return "".join(parts)


@st.composite
def splits(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), markdown=st.booleans(), max_chars=st.sampled_from([30, 80, 220]))
def test_chunks_preserve_words_for_any_split(
    data: st.DataObject, markdown: bool, max_chars: int
) -> None:
    text = data.draw(texts(markdown))
    deltas = data.draw(splits(text))
    kwargs = {"max_chars": max_chars, "min_chars": min(40, max_chars)}
    chunks = chunk_all(deltas, **kwargs)
    # same chunks however the stream was split
    assert chunks == chunk_all([text], **kwargs)
    # words survive (markdown aside); "a—b" may be cut after the dash, a word break in speech
    assert words(" ".join(chunks)) == words(strip_markdown(text))
    # (no plain `text.split()` check: "9. " at a line start is a list marker even in prose)
    for c in chunks:
        assert c and c == c.strip() and "\n" not in c
        assert len(c) <= max_chars or " " not in c  # only a single over-long word may exceed


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_markdown_stripper_is_split_invariant(data: st.DataObject) -> None:
    text = data.draw(texts(True))
    deltas = data.draw(splits(text))
    md = MarkdownStripper()
    streamed = "".join(md.feed(d) for d in deltas) + md.flush()
    assert streamed == strip_markdown(text)
    assert not any(ch in streamed for ch in "*`")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), data=st.data())
def test_arbitrary_text_never_breaks_the_chunker(text: str, data: st.DataObject) -> None:
    deltas = data.draw(splits(text))
    chunks = chunk_all(deltas, min_chars=20, max_chars=40)
    assert chunks == chunk_all([text], min_chars=20, max_chars=40)
    assert words(" ".join(chunks)) == words(strip_markdown(text))
