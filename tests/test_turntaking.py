"""looks_complete: table-driven cases for the end-of-turn heuristic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.voice.turntaking import looks_complete

COMPLETE = [
    "Where is the café?",
    "What?",
    "where is the café",  # no punctuation (ASR partial), question word, 4 words
    "Where are the toilets",
    "How much is a ticket",
    "How much is it.",  # ASR sometimes ends questions with a full stop
    "Is there a café",
    "Do you have a cloakroom",
    "Can I take photos inside",
    "Could you show me the map",
    "Are dogs allowed",
    "Which way to the exit",
    "When does the museum close today",
    "Hi, where is the gift shop",
    "Um, so where can I buy tickets",
    "Excuse me, is the café open",
    "My son is ten. Does he have to pay?",
    "My son is ten. Does he have to pay",
    "Tell me about the café",
    "Show me the map.",
    "Show me the map please",
    "Please tell me the opening hours",
    "Recommend a good exhibition for kids",
    "I'm looking for the toilets",
    "I’d like two tickets for the tour",
    "I would like to know the opening hours",
    "Yes",
    "No thanks",
    "Thank you.",
    "Thank you very much!",
    "Goodbye.",
    "Is there a café? I'm hungry.",
    "How far is it in 3.5 km",
    "And on a Sunday",  # a follow-up fragment (held-out 9: it waited for the long hangover)
    "and for my ten-year-old",
]

INCOMPLETE = [
    "",
    "   ",
    "My son is ten.",  # a statement: the question is probably coming
    "My son is ten",
    "My son is ten. Does he have to",
    "My son is ten. Does he",
    "The café",
    "I think",
    "Where is the",
    "Where is the café and",
    "Can I take photos or",
    "Is it open because",
    "How much is a ticket for",
    "How much is a ticket for a",
    "How much is a ticket with my",
    "Where is the café, um",
    "Where is uh",
    "Can you tell me",
    "Can you tell me where",
    "Could you show me",
    "Is there",
    "Where can I",
    "Tell me",
    "Tell me about",
    "Tell me about the",
    "Where is the café,",
    "Where is the café -",
    "Where is the café...",
    "Where is the café? And",
    "Where is the café? And the",
    "Hello.",
    "The exhibition was great.",
    "I want to",
    "I'm looking for",
    "We need the",
    "Do you know where the café is",  # ends on "is": conservative, normal hangover
    "And on a Sunday,",  # the comma says more is coming
    "and for my son who",
    "My son is ten. And for him",  # only a fragment that stands alone
]


@pytest.mark.parametrize("text", COMPLETE)
def test_complete(text: str) -> None:
    assert looks_complete(text) is True


@pytest.mark.parametrize("text", INCOMPLETE)
def test_incomplete(text: str) -> None:
    assert looks_complete(text) is False


_dangling = st.sampled_from(["and", "or", "but", "the", "a", "to", "of", "for", "with", "um"])
_opening = st.sampled_from(["where is the café", "tell me about the shop", "is there a lift"])


@given(opening=_opening, tail=_dangling)
def test_a_dangling_last_word_is_never_complete(opening: str, tail: str) -> None:
    assert looks_complete(opening)
    assert not looks_complete(f"{opening} {tail}")


@given(statement=st.sampled_from(["My son is ten.", "We came by bus.", "It is raining."]))
def test_a_statement_alone_never_completes_but_a_question_after_it_does(statement: str) -> None:
    assert not looks_complete(statement)
    assert looks_complete(f"{statement} Does he have to pay?")
    assert not looks_complete(f"{statement} Does he have to")


@given(st.text(max_size=120))
def test_arbitrary_text_gives_a_verdict(text: str) -> None:
    verdict = looks_complete(text)
    assert isinstance(verdict, bool)
    if not text.strip():
        assert verdict is False
