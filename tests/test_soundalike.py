"""Sound-alike repair of misheard FAQ words (knowledge/soundalike.py): the pure matcher on the
sample museum's and the test hotel's FAQs, and the answer policy with real misrecognitions
(transcripts of the spoken bench on the tuning questions)."""

from __future__ import annotations

from functools import partial

import pytest
from support import HOTEL, SAMPLE

from appliance.bench import understand_text as bench
from appliance.knowledge import FaqEntry, KnowledgeBase
from appliance.knowledge.grounding import ground
from appliance.knowledge.policy import (
    Decision,
    PolicySettings,
    decide,
    faq_topics,
    lookups,
    rank_plan,
)
from appliance.knowledge.soundalike import SoundIndex, edit_distance, sound_index, sound_key

MISHEARD = HOTEL.with_name("misheard-tune.toml")


@pytest.fixture(scope="module")
def museum_words() -> SoundIndex:
    return sound_index(KnowledgeBase.from_file(SAMPLE))


@pytest.fixture(scope="module")
def hotel_words() -> SoundIndex:
    return sound_index(KnowledgeBase.from_file(HOTEL))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("galleries", "calories"),
        ("cloakroom", "clock room"),
        ("wheelchair", "we'll chair"),
        ("photograph", "fotograf"),
        ("knight", "night"),
    ],
)
def test_words_that_sound_alike_share_a_key(a: str, b: str) -> None:
    assert sound_key(a) == sound_key(b)


@pytest.mark.parametrize(
    ("a", "b"), [("kettle", "ticket"), ("parking", "barking"), ("shop", "stop"), ("bar", "car")]
)
def test_keys_keep_apart_what_sounds_different(a: str, b: str) -> None:
    # Vowels are not in the key ("map"/"mop" share one): the spelling score weighs them.
    assert sound_key(a) != sound_key(b)  # parking/barking: one edit apart, see below


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("same", "same") == 0


@pytest.mark.parametrize(
    ("heard", "repaired", "word"),
    [
        ("are bags allowed in the calories", "are bags allowed in the galleries", "galleries"),
        ("where is the clock room", "where is the cloakroom", "cloakroom"),
        ("can I borrow a we'll chair", "can I borrow a wheelchair", "wheelchair"),
        # A voiced/unvoiced swap at the start: repaired, but only ever offered back (policy).
        ("is there barking", "is there parking", "parking"),
    ],
)
def test_misheard_museum_words_are_repaired(
    museum_words: SoundIndex, heard: str, repaired: str, word: str
) -> None:
    r = museum_words.repair(heard)
    assert r.text == repaired
    assert [x.word for x in r.repairs] == [word]
    assert 0.7 <= r.repairs[0].score <= 1.0


def test_names_run_apart_are_joined(hotel_words: SoundIndex) -> None:
    r = hotel_words.repair("when does the night jar open")
    assert r.text == "when does the nightjar open"
    assert r.repairs[0].heard == "night jar" and r.repairs[0].score == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "is there a kettle in the room",  # a word the FAQ lacks that sounds like none of its words
        "where are the toilets",  # every word known
        "where can I leave my car",  # "car": a related word of "parking", understood as it is
        "can I lock up my mic somewhere",  # short words have too many sound-alikes
        "how late is the shop open",  # stopwords are never run together ("how late is")
        "where's the nearest zoo",  # "nearest zoo" is not "nearest"
        "",
    ],
)
def test_what_is_not_repaired(museum_words: SoundIndex, text: str) -> None:
    r = museum_words.repair(text)
    assert r.repairs == () and r.text == text


def test_the_caller_may_exclude_words(museum_words: SoundIndex) -> None:
    # The policy passes its generic words ("long", "wonder"): never worth a guess.
    assert museum_words.repair("are the calories open").repairs
    assert not museum_words.repair("are the calories open", skip=lambda t: t == "calory").repairs
    # A run of words needs one the FAQ lacks and the caller does not exclude.
    assert not museum_words.repair("where is the clock room", skip=lambda t: t == "clock").repairs


def test_a_word_of_the_grammar_is_not_repaired_alone() -> None:
    """ "do you do both trips" had "both" repaired to "booth" (held-out 16, read): a word
    like "both" was surely said. A word that is not one is still repaired."""
    index = SoundIndex.build([FaqEntry("Where is the ticket booth?", "By the main door.")])
    assert index.match("both") is not None  # it does sound like "booth"
    assert index.repair("do you do both trips").repairs == ()
    assert index.repair("where is the bothe").text == "where is the booth"


def test_two_faq_words_as_alike_are_no_repair() -> None:
    index = SoundIndex.build([FaqEntry("Where is the lantern?", "Ask at the lanturn desk.")])
    assert index.match("lantirn") is None  # "lantern" and "lanturn" tie: no basis to pick
    assert index.match("lantern") is not None


def test_two_heard_words_the_faq_writes_as_one_are_joined() -> None:
    """Held-out 28: "those proper guide books" missed the shop's "guidebook". Only where the
    FAQ has the one word and never the two; nothing else moves."""
    index = SoundIndex.build(
        [
            FaqEntry("Where is the shop?", "It sells the official guidebook and a wheelchair."),
            FaqEntry("Where can I park?", "The car park is behind the west door."),
        ]
    )
    said = "where can I get one of those proper guide books, or a wheel chair?"
    assert index.join_compounds(said) == (
        "where can I get one of those proper guidebooks, or a wheelchair?"
    )
    for kept in ("is there a car park?", "any more, some one", "a guide-book", "guide  books"):
        assert index.join_compounds(kept) == kept


def test_the_index_is_cached_per_knowledge_base_and_rebuilt_for_a_new_faq() -> None:
    kb = KnowledgeBase([FaqEntry("Is there a cloakroom?", "Yes, by the door.")])
    assert sound_index(kb) is sound_index(kb)
    edited = KnowledgeBase([FaqEntry("Is there a gallery?", "Yes, upstairs.")])
    assert sound_index(edited).match("clockroom") is None
    assert sound_index(kb).match("clockroom") == ("cloakroom", 1.0 - 1 / 18)


# --------------------------------------------------------------------------- the policy


def turn(kb: KnowledgeBase, question: str, soundalike: bool, **kw: object) -> Decision:
    plan = lookups(question, None, sound_index(kb) if soundalike else None)
    return decide(
        question,
        settings=PolicySettings(topics=faq_topics(tuple(e.question for e in kb.entries)), **kw),  # type: ignore[arg-type]
        **rank_plan(plan, partial(ground, kb, facts=True)),
    )


def test_a_misheard_word_is_offered_back_instead_of_declined(museum: KnowledgeBase) -> None:
    q = "can I borrow a we'll chair"
    assert turn(museum, q, soundalike=False).kind == "decline"
    d = turn(museum, q, soundalike=True)
    assert d.kind == "clarify" and d.reason == "soundalike_confirm"
    assert [c.label for c in d.choices] == ["Is the museum wheelchair accessible?"]
    assert d.text == "Do you mean: Is the museum wheelchair accessible?"


def test_a_sound_alike_answers_only_from_the_settings_score(museum: KnowledgeBase) -> None:
    q = "is the clock room free"  # repaired with score 0.944
    assert turn(museum, q, soundalike=True).kind == "clarify"
    d = turn(museum, q, soundalike=True, soundalike_answer=0.9)
    assert d.kind == "faq" and d.entry is not None
    assert d.entry.question == "Is there a cloakroom or lockers?"


def test_what_was_heard_wins_when_it_answers(museum: KnowledgeBase) -> None:
    # "look long" (for "close"): no repair needed, nothing changes.
    q = "what time do you look long on a saturday"
    assert turn(museum, q, True) == turn(museum, q, False)
    assert turn(museum, q, True).kind == "faq"


def test_a_guess_that_only_asks_back_does_not_replace_a_question_back(
    museum: KnowledgeBase,
) -> None:
    """ "grown-up" sounds like "group": that reading only asks back too, about group
    bookings, where what was heard offered the ticket prices (the right entry). ("one
    grown-up" is an adult before ranking since stop 15: `concepts.plain_words`.)"""
    q = "how much is it for the grown-up to get in"
    heard = turn(museum, q, soundalike=False)
    assert heard.kind == "clarify" and "How much is a ticket?" in [c.label for c in heard.choices]
    assert turn(museum, q, soundalike=True) == heard


def test_an_off_topic_question_stays_declined(museum: KnowledgeBase) -> None:
    for q in ("who won the football last night", "is there a kettle in the room"):
        assert turn(museum, q, True).kind == turn(museum, q, False).kind


def test_in_llm_mode_a_guess_is_asked_back_not_sent_to_the_model(museum: KnowledgeBase) -> None:
    d = turn(museum, "can I borrow a we'll chair", True, answer_mode="llm")
    assert d.kind == "clarify" and d.reason.startswith("soundalike_")
    assert "Is the museum wheelchair accessible?" in [c.label for c in d.choices]


def test_words_run_together_that_spell_a_faq_word_are_answered(hotel: KnowledgeBase) -> None:
    q = "when does the night jar close"  # "Nightjar", the hotel's bar
    # Without the repair, only the closing time links it to the bar's hours (asked back since
    # stop 32, when closing became the opening hours' topic).
    assert turn(hotel, q, False).kind in ("decline", "clarify")
    d = turn(hotel, q, True)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == "When is the bar open?"
    # Joined as the FAQ writes it before any sound-alike is needed (`join_compounds`).
    assert d.reason == "confident"


def test_bench_on_the_misheard_tuning_set(museum: KnowledgeBase, hotel: KnowledgeBase) -> None:
    """tests/data/understand/misheard-tune.toml (the split soundalike_answer was chosen on):
    `python -m appliance.bench.understand_text --set ... [--soundalike]`."""
    cases, _ = bench.load_cases(MISHEARD)
    kbs = {"museum": museum, "hotel": hotel}
    off = bench.summarize(bench.evaluate(cases, kbs))
    on = bench.summarize(bench.evaluate(cases, kbs, soundalike=True))
    assert off["aims"]["wrong"] == on["aims"]["wrong"] == 0
    assert on["aims"]["offtopic_declined"] >= off["aims"]["offtopic_declined"]
    # 11 since stop 29: "is the clock tower open to visitors" is another place, declined;
    # 7 missed since stop 32 ("when does the night jar close" is asked back, see above).
    assert (off["overall"]["correct"], off["overall"]["miss"]) == (11, 7)
    assert on["overall"]["correct"] >= 13 and on["overall"]["miss"] <= 3  # measured 13, 3
