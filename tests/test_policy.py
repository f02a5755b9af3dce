"""The answer policy on the real knowledge base and embedding model (museum and hotel FAQs),
its pure helpers on hand-made inputs, and the understanding bench on the tuning set."""

from __future__ import annotations

from functools import partial

import pytest
from support import SAMPLE, UNDERSTAND

from appliance.bench import understand_text as bench
from appliance.knowledge import FaqEntry, Hit, KnowledgeBase
from appliance.knowledge.concepts import plain_words, related
from appliance.knowledge.embeddings import Embedder
from appliance.knowledge.grounding import RANKED, Grounding, ground, prepare
from appliance.knowledge.policy import (
    DEFAULT_CHAT_REPLIES,
    Choice,
    Decision,
    PolicyContext,
    PolicySettings,
    contextual_query,
    decide,
    decline,
    distinct_readings,
    faq_topics,
    lookup_query,
    lookups,
    question_parts,
    rank_plan,
    reconcile,
    resolve_choice,
    usual_replies,
)
from appliance.knowledge.soundalike import sound_index

TUNE = UNDERSTAND / "tune.toml"

HOURS = "What are the opening hours?"
HOLIDAYS = "Are you open on public holidays?"
TICKET = "How much is a ticket?"
CHILD_TICKET = "How much is a ticket for children?"
TOILETS = "Where are the toilets?"
CAFE = "Is there a café?"


def settings_for(kb: KnowledgeBase, **kw: object) -> PolicySettings:
    return PolicySettings(topics=faq_topics(tuple(e.question for e in kb.entries)), **kw)  # type: ignore[arg-type]


def turn(
    kb: KnowledgeBase,
    question: str,
    context: PolicyContext | None = None,
    settings: PolicySettings | None = None,
) -> Decision:
    """One turn as the caller wires it: the lookups grounded, then decided."""
    ranked = rank_plan(lookups(question, context), partial(ground, kb, facts=True))
    return decide(question, context=context, settings=settings or settings_for(kb), **ranked)


def entry(kb: KnowledgeBase, question: str) -> FaqEntry:
    return next(e for e in kb.entries if e.question == question)


def offered(d: Decision) -> list[str]:
    """The heading a decision answers with, or the labels it offers back."""
    return [d.entry.question] if d.entry is not None else [c.label for c in d.choices]


def answered_with(kb: KnowledgeBase, question: str) -> str:
    """The heading of the entry a turn answers `question` with (failing if not answered)."""
    d = turn(kb, question)
    assert d.kind == "faq" and d.entry is not None, d
    return d.entry.question


# --------------------------------------------------------------------------- grounding fields


def test_grounding_carries_what_the_policy_weighs(museum: KnowledgeBase) -> None:
    prepare(museum)
    plain = ground(museum, "um where are the toilets please")
    assert plain.facts == () and plain.direct is not None  # as before: no extra embedding
    g = ground(museum, "um where are the toilets please", facts=True)
    assert (g.direct, g.hits, g.ranked) == (plain.direct, plain.hits, plain.ranked)
    assert g.query == "where are the toilets please"
    assert len(g.ranked) == RANKED and g.ranked[0].entry.question == TOILETS
    assert len(g.facts) == len(g.ranked) == len(g.entry_terms)
    assert g.facts[0] > 0.5  # "Toilets are on the ground floor ..." is one sentence of it
    assert dict(g.term_df)["toilet"] == 1 and "toilet" in g.entry_terms[0]
    assert g.entries == len(museum)
    assert 0.0 < g.chit_chat < 1.0
    # Nothing looked up: still equal to the three-field form older callers build.
    assert ground(museum, "um") == Grounding(hits=[], direct=None, confidence=0.0)


# --------------------------------------------------------------------------- faq


@pytest.mark.parametrize(
    ("question", "expect"),
    [
        ("sorry, where's the bathroom?", TOILETS),
        ("hi, so what time do you close on a saturday?", HOURS),
        ("what do kids pay?", CHILD_TICKET),
        ("how much are tickets for students", TICKET),  # one sentence of a longer answer
        ("is there a place to eat", CAFE),
        ("can my dog come in with me", "Can I bring my dog?"),
        ("is there a bicycle rack", "Is there parking?"),
    ],
)
def test_confident_questions_get_the_staff_answer_verbatim(
    museum: KnowledgeBase, question: str, expect: str
) -> None:
    d = turn(museum, question)
    assert d.kind == "faq", d
    assert d.entry is not None and d.entry.question == expect
    assert d.text == d.entry.answer and d.reason == "confident"


def test_hotel_questions(hotel: KnowledgeBase) -> None:
    for question, expect in [
        ("how much is the sauna?", "Is there a swimming pool or sauna?"),
        ("can I smoke on my balcony", "Can I smoke in the hotel?"),
        ("where can I exchange money", "Where can I get cash?"),
        ("when does the bar close on friday", "When is the bar open?"),
    ]:
        d = turn(hotel, question)
        assert d.kind == "faq" and d.entry is not None, (question, d)
        assert d.entry.question == expect, question


@pytest.mark.parametrize(
    ("question", "expect"),
    [
        ("where can I go for a cigarette", "Can I smoke in the hotel?"),
        ("do you have a fitness room", "When is the gym open?"),
        ("how much is the garage per night", "Is there parking?"),
    ],
)
def test_a_visitors_word_for_what_the_faq_calls_otherwise(
    hotel: KnowledgeBase, question: str, expect: str
) -> None:
    """ "cigarette" anchors the smoking entry, "fitness" the gym (knowledge/concepts.py): these
    were declined (or offered back) when only the FAQ's own words counted."""
    d = turn(hotel, question)
    assert d.kind == "faq" and d.entry is not None, (question, d)
    assert d.entry.question == expect


@pytest.mark.parametrize(
    "question",
    ["is the soup in the cafe vegetarian", "does the gym do any yoga classes"],
)
def test_a_detail_the_faq_never_mentions_is_offered_back_not_answered(
    museum: KnowledgeBase, hotel: KnowledgeBase, question: str
) -> None:
    """The café entry is about the café, not about its soup: answering with it would sound
    like an answer and is not one. Asked back, the visitor can still pick it."""
    kb = hotel if "gym" in question else museum
    d = turn(kb, question)
    assert d.kind in ("clarify", "decline"), d


def test_who_when_and_how_many_words_do_not_count_as_unanswered(hotel: KnowledgeBase) -> None:
    d = turn(hotel, "when does the bar close on friday, my husband wants to know")
    assert d.kind == "faq" and d.entry is not None and d.entry.question == "When is the bar open?"


@pytest.mark.parametrize(
    ("site", "question", "heading"),
    [
        # A breed for a dog, "starving" for food, "a couple of" for a number (held-out 9).
        (
            "museum",
            "Can my little terrier come in with me? He's very well behaved",
            "Can I bring my dog?",
        ),
        ("museum", "We're starving, where can we get some lunch round here?", "Is there a café?"),
        ("hotel", "can I get a couple of shirts washed?", "Is there a laundry service?"),
        (
            "hotel",
            "what's the price per kilowatt hour for charging?",
            "Can I charge my electric car?",
        ),
        (
            "museum",
            "Does the headset tour come in Chinese?",
            "Which languages does the audio guide have?",
        ),
    ],
)
def test_visitors_words_for_what_the_faq_names_otherwise(
    museum: KnowledgeBase, hotel: KnowledgeBase, site: str, question: str, heading: str
) -> None:
    assert answered_with(museum if site == "museum" else hotel, question) == heading


@pytest.fixture(scope="module")
def station(embedder: Embedder) -> KnowledgeBase:
    """Held-out 10's railway station: a taxi entry that is not a request to the kiosk."""
    return KnowledgeBase.from_file(UNDERSTAND / "station_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("can I have my money back?", "can I have a refund?"),
        ("do I get anything back?", "do I get a refund?"),
        ("I need a wee, where do I go?", "I need the toilet, where do I go?"),
        ("I'm dying for a pee", "I'm dying for the toilet"),
        ("I think I left my scarf here", "I think I lost something here"),
        ("we've brought sandwiches, where can we eat?", "we've picnic, where can we eat?"),
        ("can we eat our packed lunch here?", "can we eat our picnic here?"),
        ("can we bring our own food?", "can we picnic?"),
        ("can we bring some food for the goats?", "can we bring some food for the goats?"),
        ("have you got sandwiches in the cafe?", "have you got sandwiches in the cafe?"),
        ("he's scraped his knee", "he's first aid"),
        ("where can I get a plaster?", "where can I get first aid?"),
        ("do they walk you round?", "do they give a guided tour?"),
        ("it's pouring down", "it's raining"),
        ("is there a paper plan of the site?", "is there a map of the site?"),
        ("is there a seating plan?", "is there a seating plan?"),
        ("she's gone over on her ankle", "she's first aid"),
        ("is it alright taking the buggy in?", "is it alright taking the pushchair in?"),
        ("can I leave it in the buggy park?", "can I leave it in the buggy park?"),
        ("can we come back in after?", "can we leave and come back after?"),
        ("he went to get back in the car", "he went to get back in the car"),
        ("has anything been spotted today?", "has anything been spotted (sightings) today?"),
        ("have you seen my son?", "have you seen my son?"),
        ("is there anywhere to dump our bags?", "is there anywhere to leave our bags?"),
        ("my phone's about to die", "my phone needs charging"),
        ("my car battery is flat", "my car battery is flat (broken down)"),
        ("where do I unload the van?", "where do I deliver goods the van?"),
        ("when do the penguins get their dinner?", "when is feeding time for the penguins?"),
        ("when do we get our lunch?", "when do we get our lunch?"),
        ("how long does it take to go round?", "how long does it take to visit?"),
        ("can he get round in a wheelchair?", "can he get round in a wheelchair?"),
        ("what'll that set me back?", "what'll that cost?"),
        ("is there someone who shows you round?", "is there someone who give a guided tour?"),
        ("I can't find my little boy!", "I lost my little boy!"),
        ("how much for two grown-ups?", "how much for two adults?"),
        ("it's absolutely chucking it down out there", "it's absolutely raining out there"),
        ("it's bucketing down", "it's raining"),
        ("what if my little boy wanders off?", "what if my little boy gets lost?"),
        ("can I put a hold on it?", "can I reserve it?"),
        ("anywhere with more room for my legs?", "anywhere with more legroom?"),
        ("what's the latest we can get in?", "what's the last entry?"),
        ("loos?", "toilets?"),
        ("what time do we have to be out of the room?", "what time do we have to check out?"),
        ("when can I get into my room", "when can I check in"),
        ("could we keep the room until one?", "could we check out late until one?"),
        ("can I have food sent up to my room?", "can I have food brought by room service?"),
        ("where do I leave the car", "where do I park the car"),
        ("what's the code for the internet?", "what's the code for the wifi?"),
        ("is it cheaper on the internet?", "is it cheaper online?"),
        ("do the little ones have to pay?", "do the children have to pay?"),
        ("does my little one need a ticket?", "does my child need a ticket?"),
        ("Where's the gents, please?", "Where's the men's toilet, please?"),
        ("one grown-up ticket, please", "one adult ticket, please"),
        ("open on Easter Monday?", "open on Easter Monday (a public holiday)?"),
        ("open on christmas day", "open on christmas day (25 December, a public holiday)"),
        ("we're both over seventy", "we're both over seventy (a senior)"),
        ("I'm seventy-two, dear", "I'm seventy-two (a senior), dear"),
        ("I'm at uni", "I'm at uni (a student)"),
        ("do I get money off?", "do I get a discount?"),
        ("does that get us anything off for a show", "does that get us a discount for a show"),
        ("is it alright for a six year old?", "is it alright for a six year old (a child)?"),
        ("my 18-month-old", "my 18-month-old (a child)"),
        ("my sixty-five year old mum", "my sixty-five year old (a senior) mum"),
        (
            "what time are people supposed to pipe down?",
            "what time are people supposed to be quiet?",
        ),
        ("could we stay on a couple more days?", "could we stay extra nights?"),
        ("my nan's seventy-two", "my nan's seventy-two (a senior)"),
        ("what's 65 times 3", "what's 65 times 3"),
        ("what do I type in to get my laptop online?", "what do I type in to use the wifi?"),
        ("is anyone on the front desk tonight?", "is anyone on reception tonight?"),
        ("can I do a few lengths before breakfast?", "can I do swim lengths before breakfast?"),
        ("is there some sort of bundle deal?", "is there some sort of discount?"),
        ("is there a family deal?", "is there a family discount?"),
        ("what's the deal with parking?", "what's the deal with parking?"),
        ("how fast am I allowed to drive?", "with what speed limit am I allowed to drive?"),
        ("how many books can I take out?", "how many books can I borrow?"),
        ("can I take out DVDs too?", "can I borrow DVDs too?"),
        ("how many can I take out?", "how many can I borrow?"),
        ("how many times can I extend it?", "how many times can I renew it?"),
        ("can I put my name down for it?", "can I reserve it?"),
        ("I've got a year five class", "I've got a year five class (a school group)"),
        ("a class of year fours", "a class of year fours (a school group)"),
        ("I'm a teacher", "I'm a teacher (a school group)"),
        ("sorry, where's the ladies?", "sorry, where's the women's toilet?"),
        ("excuse me, where is the washroom?", "excuse me, where is the toilet?"),
        (
            "I lost my hat, where would it have ended up?",
            "I lost something, where is lost property?",
        ),
        # An age without "old" after a child; not a pass's length.
        (
            "how much is it for my boy, he's eight?",
            "how much is it for my boy, he's eight (a child)?",
        ),
        ("the pass is 12 months", "the pass is 12 months"),
        ("I'm picking my sister up off the flight", "I'm meet my sister off the flight"),
        ("picking someone up from arrivals", "meet someone from arrivals"),
        ("can I snap a few of the paintings?", "can I take photos of the paintings?"),
        ("does she get anything knocked off?", "does she get a discount?"),
        ("to become a friend of the gallery?", "to become a member (membership)?"),
        ("open on Boxing Day?", "open on Boxing Day (26 December, a public holiday)?"),
        ("open on Christmas Eve?", "open on Christmas Eve (24 December)?"),
        ("open on New Year's Eve?", "open on New Year's Eve (31 December)?"),
        # Left alone: a duration, a sum of money, an adult's age, a thing taken off a shelf,
        # money off drinks (the answer says "10% off").
        ("is it over 60 minutes?", "is it over 60 minutes?"),
        ("the bill is over seventy pounds", "the bill is over seventy pounds"),
        ("a twenty year old", "a twenty year old"),
        ("a twenty-one year old", "a twenty-one year old"),
        ("a hundred year old castle", "a hundred year old castle"),
        ("can I take anything off the shelf", "can I take anything off the shelf"),
        ("do members get money off drinks?", "do members get money off drinks?"),
        # Left alone: a room kept tidy, a car left earlier.
        ("please keep the room tidy", "please keep the room tidy"),
        ("I left the car by the gate", "I left the car by the gate"),
        # Left alone: a wee bit, luggage left on purpose, money without "back".
        ("a wee bit further", "a wee bit further"),
        ("I've got a wee boy with me", "I've got a wee boy with me"),
        ("I can't find my way to the café", "I can't find my way to the café"),
        ("how much is entry?", "how much is entry ticket?"),
        ("where can I change my baby's nappy?", "where can I use the baby changing?"),
        ("what's the admission fee?", "what's the admission ticket fee?"),
        # Left alone: an entrance that is not a price, food or children taken out, the ladies
        # at the desk.
        ("is the entrance step-free?", "is the entrance step-free?"),
        ("can I change my booking?", "can I change my booking?"),
        ("can we take out the kids?", "can we take out the kids?"),
        ("can I get a pizza to take out?", "can I get a pizza to take out?"),
        ("the ladies at the desk were lovely", "the ladies at the desk were lovely"),
        ("can I leave my bag here", "can I leave my bag here"),
        ("can I pick my tickets up here?", "can I pick my tickets up here?"),
        ("where can I get money out", "where can I get money out"),
        # Held-out 23, after its run.
        ("honestly I'm knackered", "honestly I'm tired"),
        ("can I have a kip in the car?", "can I have a sleep in the car?"),
        ("where's the defib?", "where's the defibrillator?"),
        ("is there a room for the night?", "is there a room for the night (a hotel)?"),
        ("my car won't start", "my car won't start (broken down)"),
        ("a blue one, is there anywhere I can check?", "a one, is there anywhere I can check?"),
        (
            "would somebody have handed them in?",
            "would somebody have handed them in (lost property)?",
        ),
        ("has anyone handed them in?", "handed in to lost property?"),
        ("do we have to pay anything to go in?", "do we have to pay for entry?"),
        # Left alone: a charger that will not start, a child's price to come in.
        ("the charger won't start", "the charger won't start"),
        ("do they have to pay to come in?", "do they have to pay to come in?"),
        # Held-out 28, after its run.
        ("my dad fainted", "my dad is taken ill and needs first aid"),
        ("she went over all funny", "she is taken ill and needs first aid"),
        ("gents?", "the men's toilet?"),
        ("how much is it to get in then?", "how much is it to pay for a ticket to get in then?"),
        ("we'll be twenty minutes late", "we'll be running late"),
        ("is it worth joining up?", "is it worth become a member?"),
        ("can I have a word with the vicar?", "can I speak to the vicar?"),
        ("can I get a voucher for my mum?", "can I get a gift card voucher for my mum?"),
        # Left alone: an illness that is no emergency, the gents' clothes, a price that names
        # its ticket, a tour joined, a place that is funny.
        ("my son is ill, can I get a refund?", "my son is ill, can I get a refund?"),
        ("where can I buy gents clothing?", "where can I buy gents clothing?"),
        ("how much is it to get in for an adult?", "how much is it to get in for an adult?"),
        ("can I join the tour?", "can I join the tour?"),
        ("it's a funny old place", "it's a funny old place"),
        ("the Wi-Fi signal is faint up here", "the Wi-Fi signal is faint up here"),
        ("my wife is dizzy", "my wife is taken ill and needs first aid"),
        # Lost things (held-out 26 and 28, read at stop 31): when, where and what colour.
        (
            "I think I left my scarf in here yesterday afternoon, a blue one",
            "I think I lost something in here",
        ),
        (
            "I left my scarf in the chapel earlier and now it's gone",
            "I lost something and now it's gone",
        ),
        ("I left my hat in Screen 1 last night", "I lost something"),
        ("who shall I talk to about that?", "who do I ask?"),
        # Left alone: the way, a day, a ticket or keys lost (other entries answer those).
        ("I lost my gloves on the way in", "I lost something on the way in"),
        ("I lost my phone here on Monday", "I lost something here on Monday"),
        ("I lost my ticket in the car park", "I lost my ticket in the car park"),
        ("I dropped my keys somewhere in there", "I dropped my keys somewhere in there"),
        # Held-out 29, after its run.
        ("my friend's got chest pains", "my friend's got is taken ill, an emergency"),
        ("where's A and E?", "where's A&E (emergency)?"),
        ("I can't see my son anywhere", "I lost my son"),
        ("we've left something behind", "we've lost something"),
        (
            "do you lend out them chairs, you know, with the wheels?",
            "do you lend out them wheelchair?",
        ),
        ("so we're not stood in lines all day", "so we're not queuing all day"),
        ("somewhere I can work out", "a gym where I can exercise"),
        ("can I get some food sent up?", "can I get some room service?"),
        ("I'm not happy with the room", "I want to make a complaint about the room"),
        ("is it full whack?", "is it the full price?"),
        ("we can't leave him in the car", "we can't keep him in the car"),
        # Held-out 30, after its run.
        ("she's done her wrist in", "she's first aid"),
        ("my keys fell out of my pocket", "my keys lost something"),
        ("can somebody give him a hand?", "can somebody help?"),
        ("what do I put on for this?", "what should I wear for this?"),
        ("my son's turning eight", "my son's turning eight (a birthday)"),
        ("doing my son's tenth here", "doing my son's tenth (a birthday) here"),
        ("could he have his do here?", "could he have a party here?"),
        # Left alone: an order of things, a floor, a thing to do.
        ("my second visit", "my second visit"),
        ("it's on the second floor", "it's on the second floor"),
        ("what can we do here?", "what can we do here?"),
        # Left alone: a way out worked out, a line on a map, someone leaving by car.
        ("can you work out the price?", "can you work out the price?"),
        ("which line goes to town?", "which line goes to town?"),
        ("can I leave in the car?", "can I leave in the car?"),
    ],
)
def test_idioms_are_put_in_plain_words(text: str, plain: str) -> None:
    assert plain_words(text) == plain


def test_a_phrase_the_faq_uses_is_not_rewritten() -> None:
    """A football club's FAQ has season tickets; elsewhere a season ticket is the annual pass
    (held-out 22: the stadium's "Season ticket holders ... get 25% off" was not found)."""
    said = "I've got a season ticket, is the tour cheaper?"
    assert plain_words(said) == "I've got a annual pass, is the tour cheaper?"
    assert plain_words(said, {"season ticket", "tour cost"}) == said


def test_a_named_holiday_is_a_public_holiday(museum: KnowledgeBase) -> None:
    """ "Easter Monday" and "Christmas Day" are what the FAQ's heading calls public holidays
    (held-out 13, after its run: "are you open on Easter Monday?" got the usual opening
    hours, as in four earlier sets)."""
    for text in ("is the museum open on christmas day", "easter monday tomorrow, are you open?"):
        d = turn(museum, text)
        assert d.kind == "faq" and d.entry is not None and d.entry.question == HOLIDAYS, d


def test_an_idiom_finds_the_entry_its_words_do_not(
    museum: KnowledgeBase, station: KnowledgeBase
) -> None:
    """ "money" alone is the cash machine's word and "wee" no FAQ word at all (held-out 10: a
    refund question answered with the cash machine, a toilet question declined)."""
    refund = "Can I get a refund if my train is delayed or cancelled?"
    question = (
        "I bought a ticket for next week but I can't go now, is it possible to get the money back?"
    )
    assert answered_with(station, question) == refund
    assert answered_with(museum, "I need a wee, where do I go?") == TOILETS
    # The embedder hardly knows "loo" (held-out 6, 8, 11: declined).
    assert answered_with(museum, "where's the loo?") == TOILETS
    # "shows you around" is a guided tour, "a brew and a scone" the café (held-out 9, 11).
    question = "is there somebody who shows you around? what time does that start?"
    assert answered_with(museum, question) == "When are the guided tours?"
    assert answered_with(museum, "is there anywhere to get a brew and a scone?") == CAFE
    # A size says nothing about the topic: "big" had diluted the coat's match.
    assert (
        answered_with(museum, "where can I leave my big coat?")
        == "Is there a cloakroom or lockers?"
    )


def test_a_hotel_rooms_coming_and_going_are_check_in_and_check_out(hotel: KnowledgeBase) -> None:
    """ "by what time do I have to leave the room tomorrow" was answered with check-in
    (held-out 7, spoken); "be out of the room" and "get into our room" were asked back in
    five sets by other hands."""
    for question in (
        "by what time do I have to leave the room tomorrow?",
        "what time do we have to be out of the room?",
    ):
        assert answered_with(hotel, question) == "What time is check-out?", question
    assert answered_with(hotel, "when can I get into my room?") == "What time is check-in?"


@pytest.mark.parametrize(
    ("question", "heading"),
    [
        ("how much to stay in the room till three in the afternoon?", "Can I check out late?"),
        ("can I get some food brought up to my room?", "Is there room service?"),
        ("where can I leave my car?", "Is there parking?"),
        ("how do I get online? which network do I pick?", "Is there free wifi?"),
    ],
)
def test_what_visitors_say_for_a_hotels_services(
    hotel: KnowledgeBase, question: str, heading: str
) -> None:
    """Missed or asked back in six to nine sets by other hands each: the embedder does not
    read "keep the room till three" as a late check-out, "food brought up" as room service,
    "leave the car" as parking or "get online" as the wifi."""
    assert answered_with(hotel, question) == heading


def test_a_request_to_call_a_taxi_is_declined_unless_the_faq_answers_that_request(
    station: KnowledgeBase, hotel: KnowledgeBase
) -> None:
    """The station's "Where can I get a taxi or a bus?" says where the rank is; it does not
    call one. The hotel's "Can you call me a taxi?" does (test above)."""
    d = turn(station, "can you call me a taxi please?")
    assert (d.kind, d.reason) == ("decline", "off_topic:calling")
    assert answered_with(hotel, "can you call me a taxi please?") == "Can you call me a taxi?"


def test_related_words_are_symmetric_and_never_the_word_itself() -> None:
    assert "park" in related("car") and "car" in related("park")
    assert "rent" in related("hir") and "hir" in related("rental")  # stems of hire, rental
    assert "smok" in related("cigarett")
    assert "pushchair" in related("buggy") and "pram" in related("stroller")
    assert "car" not in related("car")
    assert related("ticket") == frozenset()  # means different things at different venues


def test_an_faq_request_beats_the_request_pattern(hotel: KnowledgeBase) -> None:
    """ "Can you get me a taxi" is a request to the kiosk, but the hotel FAQ answers exactly
    that request ("Can you call me a taxi?"), so the staff's answer is read."""
    assert answered_with(hotel, "can you get me a taxi please") == "Can you call me a taxi?"
    # ... while the museum FAQ has no such entry: booking a ticket is declined.
    assert turn(hotel, "can you book me a room for next weekend").kind == "decline"


# --------------------------------------------------------------------------- decline


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("can you book me two tickets for tomorrow morning", "off_topic:booking"),
        ("could you book a table in the café for one o'clock?", "off_topic:booking"),
        ("can I pay for my ticket here with my bank card", "off_topic:payment"),
        ("could you phone my husband and tell him I'm waiting", "off_topic:calling"),
        ("what's the weather going to be like this afternoon", "off_topic:weather"),
        ("will there be frost tonight? should I cover my plants", "off_topic:weather"),
        ("is it going to be windy on the beach later", "off_topic:weather"),
        ("who won the football last night", "off_topic:sports"),
        ("what's in the news today", "off_topic:news"),
        ("who painted the Mona Lisa", "off_topic:general"),
        ("I've got a really bad headache, what should I take", "off_topic:medical"),
        ("how do I get to the zoo from here", "off_topic:directions"),
        ("what time is it", "off_topic:clock"),
        ("what time does the nearest supermarket close?", "off_topic:elsewhere"),
        # In-domain wording, but nothing in the FAQ answers it.
        ("do you have a swimming pool", "no_match"),
        ("do you sell umbrellas", "no_match"),
        ("is there a first aid room", "no_match"),
        ("can we rent the museum for a wedding party", "no_match"),
    ],
)
def test_what_the_box_cannot_answer_is_declined(
    museum: KnowledgeBase, question: str, reason: str
) -> None:
    d = turn(museum, question)
    assert (d.kind, d.reason) == ("decline", reason)
    assert d.entry is None and d.choices == ()
    assert "member of staff" in d.text
    assert "the opening hours" in d.text  # names what it can help with


def test_directions_to_a_place_the_faq_describes_are_answered(museum: KnowledgeBase) -> None:
    answer = answered_with(museum, "how do I get to the central station")
    assert answer == "How do I get here by public transport?"


def test_the_way_to_a_place_is_not_part_of_the_place(hotel: KnowledgeBase) -> None:
    """ "... to the airport from here on public transport": the destination is the airport,
    which the hotel's FAQ describes; "public transport" is how, not where."""
    answer = answered_with(hotel, "how do I get to the airport from here on public transport")
    assert answer == "How do I get to the airport?"
    assert turn(hotel, "how do I get to the zoo from here by bus").kind == "decline"


@pytest.mark.parametrize(
    ("site", "question"),
    [
        ("museum", "how much is the lighthouse book they sell in the gift shop"),
        ("museum", "how much is a tram ticket to harbour square"),
        # "You can visit the café without a museum ticket" says whether to pay, not how much.
        ("museum", "how much is a sandwich in the café"),
        ("hotel", "do you have to pay to get into the botanical garden"),
    ],
)
def test_a_price_question_is_not_answered_with_an_entry_that_names_no_price(
    museum: KnowledgeBase, hotel: KnowledgeBase, site: str, question: str
) -> None:
    """The gift shop's entry is on the topic of the book but says nothing of its price: it
    would sound like an answer and not be one. Nor is it offered back ("Do you mean: Is
    there a gift shop?" was not the question) when no entry close to it names a price."""
    d = turn(museum if site == "museum" else hotel, question)
    assert d.kind == "decline", d


def test_a_price_question_offers_the_entries_that_name_one(museum: KnowledgeBase) -> None:
    """Declined only when every entry close to the question names no price."""
    d = turn(museum, "how much is the audio guide")
    assert d.kind != "decline" and (d.kind == "faq" or d.choices), d


@pytest.mark.parametrize(
    ("site", "question", "answer"),
    [
        # The café "without a museum ticket": no price is a price.
        ("museum", "can I go to the cafe without paying for the museum", CAFE),
        ("museum", "how much is it for a child", CHILD_TICKET),
        ("hotel", "how much does it cost to check out late", "Can I check out late?"),
        ("hotel", "do I have to pay for the wifi", "Is there free wifi?"),
    ],
)
def test_a_price_question_is_answered_by_an_entry_that_names_one(
    museum: KnowledgeBase, hotel: KnowledgeBase, site: str, question: str, answer: str
) -> None:
    assert answered_with(museum if site == "museum" else hotel, question) == answer


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("my son is twelve, how much do I pay for him?", CHILD_TICKET),
        ("where can I buy a little souvenir for my niece?", "Is there a gift shop?"),
        ("sorry, the password for the wifi, what was it again", "Is there free wifi?"),
    ],
)
def test_words_about_who_asks_are_not_things_the_faq_lacks(
    museum: KnowledgeBase, question: str, answer: str
) -> None:
    """ "him", "niece", "again" are in no entry, and a word the FAQ lacks made the entry only
    offered back ("Do you mean ...?"); like "son" or "today" they say who asks or how, not
    what about (`_INCIDENTAL_WORDS`)."""
    assert answered_with(museum, question) == answer


def test_a_related_word_in_the_heading_anchors_the_entry(hotel: KnowledgeBase) -> None:
    """ "Drink" is a word visitors use for the bar (concepts.py), and "bar" is in "When is the
    bar open?": the entry is anchored, so a clear lead answers (it was only offered back)."""
    assert answered_with(hotel, "where can I get a drink this evening") == "When is the bar open?"


def test_a_heading_that_states_a_situation_needs_the_question_to_state_it(
    hotel: KnowledgeBase,
) -> None:
    """ "I lost my key card. What should I do?" answered "where do I leave my key card when I
    go" (three tuning sets): the key card matched, what happened to it did not. Offered back
    now; a question that says it was lost, in any of the usual ways, is still answered."""
    lost = "I lost my key card. What should I do?"
    d = turn(hotel, "where do I leave my key card when I go")
    assert d.kind != "faq", d
    for question in (
        "I lost my room key, what do I do?",
        "I can't find my room key anywhere",
        "do I have to pay if I lose my key?",
    ):
        assert answered_with(hotel, question) == lost, question


def test_a_sentence_match_with_the_word_asked_about_holds_an_answer_back(
    station: KnowledgeBase,
) -> None:
    """Heard as "I'm only not at when to pound note. Will the machines give me change?", the
    question was answered with the cash machine ("pound" is a word for cash). The ticket
    machines' answer, which only one sentence of matches ("give change up to £10"), was set
    aside as a sentence match, though better supported and with "change", which the cash
    machine lacks (held-out 16, read). Offered back now, not answered."""
    heard = "I'm only not at when to pound note. Will the machines give me change?"
    d = turn(station, heard)
    assert d.kind != "faq", d
    assert answered_with(station, "is there a cash machine here?") == "Is there a cash machine?"


def test_a_later_part_that_points_back_is_not_answered_alone(zoo: KnowledgeBase) -> None:
    """ "can we bring sandwiches, and is there somewhere covered to eat them if it rains?"
    was answered, typed and spoken, with what to do when it rains (held-out 17, after its
    run): "them" are the sandwiches, and the first part was not answered. Answered with the
    picnic entry since sandwiches are food (stop 22; offered back before). A later part that
    names its own topic is still answered alone."""
    question = "can we bring sandwiches, and is there somewhere covered to eat them if it rains?"
    assert answered_with(zoo, question) == "Can I bring my own food?"
    rain = "What can we do when it rains?"
    assert answered_with(zoo, "can we bring a kite? and what can we do if it rains?") == rain


def test_visitors_words_for_rain_and_sponsoring(zoo: KnowledgeBase) -> None:
    """Held-out 17, after its run: "chucking it down" is rain, and sponsoring a penguin is
    the zoo's adoption scheme; both were declined. (The same two fixes answer held-out 14's
    "lashing down" and held-out 6's "bucketing down", never tuned on.)"""
    rain = "What can we do when it rains?"
    assert (
        answered_with(zoo, "it's absolutely chucking it down, is there anything indoors?") == rain
    )
    adopt = "Can I adopt an animal?"
    assert answered_with(zoo, "how much is it to sponsor one of the penguins for a year?") == adopt


@pytest.fixture(scope="module")
def ferry(embedder: Embedder) -> KnowledgeBase:
    """Held-out 16's ferry terminal: a car fare and a fare for vehicles "over 2.1 metres"."""
    return KnowledgeBase.from_file(UNDERSTAND / "ferry_faq.md", embedder=embedder)


def test_what_the_kiosk_cannot_see_or_forecast_is_declined(ferry: KnowledgeBase) -> None:
    """Held-out 23, after its run: "is there still room for a car on the half one sailing?"
    was answered with the foot passengers' launch (the FAQ says the kiosk cannot see the
    space left), and "what's the weather doing on the island tomorrow?" with the entry on
    cancellations in bad weather (the heading's "weather" let the question through)."""
    d = turn(ferry, "is there still room for a car on the half one sailing, do you know?")
    assert (d.kind, d.reason) == ("decline", "off_topic:live")
    assert d.text.startswith("Sorry, I can't see what is free")
    d = turn(ferry, "what's the weather doing on the island tomorrow?")
    assert (d.kind, d.reason) == ("decline", "off_topic:weather")
    bad_weather = "Do sailings get cancelled in bad weather?"
    assert (
        answered_with(ferry, "what happens to the sailings if the weather is bad?") == bad_weather
    )


def test_over_is_not_a_topic_word(ferry: KnowledgeBase) -> None:
    """ "what's it cost to bring the car over and back" was answered with the vans' fares:
    "over" is in two entries only, so it outweighed "cost" and "car", and the vans' answer
    has it ("vehicles over 2.1 metres high"). Across or more than, it names no topic."""
    car = "How much does it cost to take a car across?"
    question = "what's it cost to bring the car over and back, it's just me in it"
    assert answered_with(ferry, question) == car
    van = "Can I take a van, motorhome or trailer?"
    assert answered_with(ferry, "how much is it to take a motorhome over?") == van


@pytest.fixture(scope="module")
def castle(embedder: Embedder) -> KnowledgeBase:
    """Held-out 11's castle: a ticket, a children's ticket and a family ticket entry."""
    return KnowledgeBase.from_file(UNDERSTAND / "castle_faq.md", embedder=embedder)


def test_an_entry_for_another_kind_of_visitor_is_not_the_answer(castle: KnowledgeBase) -> None:
    """ "how much to get in for two adults?" was answered with the children's prices, both
    the embedding and the words ranking it first ("with an adult" is in that answer).
    Offered back now; a question naming the entry's own visitors is still answered, and a
    family's entry still answers parents with their children."""
    for question in ("how much to get in for two adults?", "how much for two grown-ups?"):
        d = turn(castle, question)
        assert d.kind != "faq", (question, d)
    assert answered_with(castle, "how much is it for the kids?") == (
        "How much are tickets for children?"
    )
    question = "we are two parents and three kids, is there a cheaper ticket for all of us?"
    assert answered_with(castle, question) == "Is there a family ticket?"


def test_a_family_entry_is_for_adults_with_children(museum: KnowledgeBase) -> None:
    """ "does my child need a ticket? she's only two" was answered with the museum's family
    ticket: a family's entry answers a question that names adults and children (or a
    family), not a child alone."""
    d = turn(museum, "does my child need a ticket? she's only two")
    assert d.kind != "faq", d


@pytest.fixture(scope="module")
def leisure(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "leisure_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    "question",
    [
        "how much is a smoothie in the cafe",
        "how much does it cost to charge my electric car in your car park",
    ],
)
def test_a_price_question_needs_the_price_in_the_sentence_about_it(
    leisure: KnowledgeBase, question: str
) -> None:
    """The café's answer says it serves smoothies and prices a lunch box in another sentence;
    the parking answer prices parking and names its car chargers in another. Neither answers
    what the thing asked about costs (both were answered)."""
    assert turn(leisure, question).kind != "faq"


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("how much is parking after the first three hours", "Is there parking?"),
        ("how much is the children's lunch box in the cafe", "When is the cafe open?"),
    ],
)
def test_a_price_question_is_answered_by_the_sentence_that_prices_it(
    leisure: KnowledgeBase, question: str, answer: str
) -> None:
    assert answered_with(leisure, question) == answer


@pytest.mark.parametrize("question", ["what is your email", "do you have a website"])
def test_the_entry_holding_the_contact_detail_asked_for_answers(
    hotel: KnowledgeBase, question: str
) -> None:
    """The embedding puts "what is your email" at 0.23 from "How do I contact reception?" (its
    floor is 0.25); the e-mail address in that answer says more."""
    assert answered_with(hotel, question) == "How do I contact reception?"


def test_decline_texts_follow_the_settings(museum: KnowledgeBase) -> None:
    s = PolicySettings(
        topics=("tickets", "tours"),
        staff="please ask at the ticket desk",
        decline_leads={"weather": "No forecasts here."},
    )
    d = turn(museum, "is it going to rain tomorrow", settings=s)
    assert d.text == (
        "No forecasts here. I can help with questions about tickets and tours. "
        "For anything else, please ask at the ticket desk."
    )
    bare = turn(museum, "is it going to rain tomorrow", settings=PolicySettings())
    assert bare.text.endswith("For that, please ask a member of staff.")


def test_the_hotel_in_domain_questions_it_has_no_entry_for(hotel: KnowledgeBase) -> None:
    for question in (
        "is there a kettle in the rooms",
        "is there an iron in the room",
        "is there a spa",
    ):
        assert turn(hotel, question).kind == "decline", question


def test_another_language_is_declined_politely(museum: KnowledgeBase) -> None:
    for question in ("donde estan los servicios, por favor", "Wo ist die Toilette bitte"):
        d = turn(museum, question)
        assert (d.kind, d.reason) == ("decline", "language")
        assert "English" in d.text


# --------------------------------------------------------------------------- chat, say_again


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("hello there!", "greeting"),
        ("Good evening!", "greeting"),
        ("thank you so much, that was really helpful", "thanks"),
        ("ah brilliant, thanks ever so much", "thanks"),  # held-out 17, after its run
        ("ok bye bye", "goodbye"),
        ("thanks, bye", "goodbye"),
        ("how are you today?", "how_are_you"),
        ("who are you? are you a robot?", "identity"),
        ("hi, what's your name?", "identity"),
        ("are you a real person or a computer?", "identity"),
        ("tell me a joke", "joke"),
        ("tell me something funny", "joke"),
        ("ok great", "ack"),
        # Forms the held-out sets' writers used (declined before):
        ("are you a robot or is there a real person in there?", "identity"),
        ("wait, am I talking to a computer?", "identity"),
        ("who am I talking to, what are you exactly", "identity"),
        ("can you tell me a joke about monkeys", "joke"),
        ("thanks a lot, that really helped", "thanks"),
        ("okay that's all, bye bye", "goodbye"),
        ("cheers, that's all I needed", "goodbye"),
        ("what are you for? what can I ask you", "identity"),  # held-out 7, after its run
        ("what can you do?", "identity"),
        ("so what can you actually help me with?", "identity"),  # held-out 22, after its run
        ("Brilliant, cheers for that.", "thanks"),  # held-out 8, after its run
        ("Right, bye then, see you next week.", "goodbye"),
        ("bye bye robot!", "goodbye"),
        ("hello there! morning!", "greeting"),  # held-out 9, after its run
        ("right, that's me off then, bye now", "goodbye"),
        ("We'll talk to you soon.", "goodbye"),
        ("you're a funny talking box!", "ack"),
        ("thanks, that's dead helpful", "thanks"),  # held-out 11, after its run
        ("cheers love, you've been a star", "thanks"),
        ("Cheers, you've been really helpful, Tah!", "thanks"),  # held-out 24, spoken
        ("lovely, thanks very much, enjoy your night", "goodbye"),  # held-out 24
        ("right, ta-ra then", "goodbye"),
        ("go on then, tell us a joke about knights", "joke"),
        ("mornin'! how you doin' today?", "how_are_you"),  # held-out 12, after its run
        ("wait, who am I talking to? are you a robot or is somebody listening?", "identity"),
        ("ah thanks a million, that's grand", "thanks"),
        ("hiya, you alright?", "how_are_you"),  # and the earlier sets' misses
        ("hello robot! I'm six!", "greeting"),
        ("Right, let's be off then. Bye now.", "goodbye"),
        ("You're very clever, aren't you?", "ack"),  # held-out 14, after its run
        # Held-out 18, after its run (heard so, or typed so):
        ("You're a star. Thank you so much.", "thanks"),
        ("Brilliant. thanks. you've been dead help for.", "thanks"),
        ("God Morning God Morning", "greeting"),
        ("Are you a real person or a computer? Can you help me?", "identity"),
        # Held-out 23, after its run (heard so, or typed so):
        ("cheers mate, that's sorted then", "thanks"),
        ("Thanks love, you've been immersed so helpful.", "thanks"),
        ("right, that's us off, bye now", "goodbye"),
        ("Right that's us off by now", "goodbye"),
        ("ta-ra then, safe travels", "goodbye"),
        ("oh hello, what sort of things can I ask you then?", "identity"),
        ("Hi, you are right.", "how_are_you"),
        ("morning! lovely day for a crossing, isn't it?", "greeting"),
        ("lovely day for it, isn't it?", "ack"),
    ],
)
def test_small_talk(museum: KnowledgeBase, text: str, intent: str) -> None:
    d = turn(museum, text)
    assert (d.kind, d.reason) == ("chat", f"chat:{intent}")
    assert d.text and "{" not in d.text


@pytest.mark.parametrize(
    "text",
    [
        "can you tell me where the toilets are",
        "thanks, can you tell me the wifi password",
        "that's all",
        "hi, I'm lost",
        "hello, I'm looking for the toilets",
        "are you all right with dogs coming in?",
        "aren't you open on Sundays?",
        "isn't there a cafe here?",
    ],
)
def test_a_request_around_small_talk_words_is_not_small_talk(
    museum: KnowledgeBase, text: str
) -> None:
    """ "can you" is filler only around small talk ("can you tell me a joke")."""
    assert turn(museum, text).kind != "chat"


def test_chat_replies_can_be_overridden(museum: KnowledgeBase) -> None:
    s = settings_for(
        museum, chat_replies={"joke": "Why did the ship blush? It saw the sea's bottom."}
    )
    assert turn(museum, "tell me a joke", settings=s).text.startswith("Why did the ship")
    assert turn(museum, "thanks!", settings=s).text == DEFAULT_CHAT_REPLIES["thanks"]


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("is there somewhere to grab a coffee?", CAFE),
        (
            "is there someone who can show us around and explain things?",
            "When are the guided tours?",
        ),
        ("what's the wifi password, mate?", "Is there free wifi?"),
        ("sorry to bother you, where are the toilets please?", TOILETS),
        ("is there a tour with a real person showing us round?", "When are the guided tours?"),
        (
            "my kids are getting bored, is there anything for them to do?",
            "What is there for kids to do?",
        ),
    ],
)
def test_words_that_ask_nothing_are_no_topic_the_faq_lacks(
    museum: KnowledgeBase, text: str, entry: str
) -> None:
    """ "grab", "explain", "mate", "bother": a visitor's way of asking, not something the FAQ
    leaves out, so they do not make the box ask back (held-out sets 4-12, after their runs)."""
    d = turn(museum, text)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == entry, d


def test_a_time_of_day_is_no_topic_the_faq_lacks(hotel: KnowledgeBase) -> None:
    d = turn(hotel, "could I keep the room until one o'clock? what does that cost")
    assert d.kind == "faq" and d.entry is not None
    assert d.entry.question == "Can I check out late?"
    d = turn(hotel, "the room next door is really loud, what time are folks supposed to be quiet?")
    assert d.kind == "faq" and d.entry is not None
    assert d.entry.question == "What are the quiet hours?"


def test_missing_the_start_is_not_asked_about_anything_else(cinema: KnowledgeBase) -> None:
    """ "Will we miss the start?" names what it asks about: "miss" is no word of asking
    (held-out 13, after its run: answered with the box office's hours when it was)."""
    d = turn(cinema, "the film's at half seven, if we're ten minutes late will we miss the start?")
    assert d.kind != "faq" or (
        d.entry is not None and d.entry.question.startswith("What happens if I'm late")
    ), d


def test_how_children_play_is_no_topic_the_faq_lacks(zoo: KnowledgeBase) -> None:
    """ "run", "turns six": how a visitor puts it, not a service the FAQ leaves out."""
    for text, heading in (
        ("is there somewhere the children can run around and climb?", "Is there a playground?"),
        (
            "my daughter's turning six, could she have her party here with her friends?",
            "Can I have a birthday party at the zoo?",
        ),
    ):
        d = turn(zoo, text)
        assert d.kind == "faq" and d.entry is not None and d.entry.question == heading, d


def test_a_greeting_before_a_question_is_not_small_talk(museum: KnowledgeBase) -> None:
    d = turn(museum, "hello there! where are the toilets?")
    assert d.kind == "faq" and d.entry is not None and d.entry.question == TOILETS


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "um... uh... hmm",
        "uhh",
        "...",
        "can I, um, is it possible to, uh",
        "I was wondering if you could, um, the thing with the",
        "um... so... er, yeah",  # the dots after the hesitations hid the opener
        "hmm... er... what was I... um",  # trailed off
        "do you... sorry, the kids are... what was I—",  # lost the thread (held-out 23)
        "where's the nearest",  # cut off before the place
    ],
)
def test_nothing_to_answer_asks_to_say_it_again(museum: KnowledgeBase, text: str) -> None:
    d = turn(museum, text)
    assert d.kind == "say_again"
    assert d.text == PolicySettings().say_again


@pytest.mark.parametrize("text", ["what was I supposed to bring?", "where was I meant to go?"])
def test_lost_thread_words_that_start_a_question_are_not_a_retraction(
    services: KnowledgeBase, text: str
) -> None:
    # "where was I" ends a thought only where the clause ends; here it opens a question.
    d = turn(services, text)
    assert not (d.kind == "say_again" and d.reason == "retracted"), d


def test_never_an_empty_reply_and_never_the_llm_in_faq_mode(museum: KnowledgeBase) -> None:
    questions = [
        "where are the toilets",
        "um",
        "can I, is it",
        "what is the capital of France",
        "is the museum open on mondays",
        "how much does it cost for one grown-up to get in",
        "what's the one thing we really shouldn't miss",
        "asdf qwer zxcv",
        "?!",
    ]
    for q in questions:
        d = turn(museum, q)
        assert d.kind != "llm" and d.text.strip(), (q, d)


# --------------------------------------------------------------------------- clarify


def test_two_close_entries_are_offered_back(museum: KnowledgeBase) -> None:
    d = turn(museum, "excuse me, is the museum open on mondays at all?")
    assert d.kind == "clarify"
    assert {c.label for c in d.choices} == {HOURS, HOLIDAYS}
    assert [c.id for c in d.choices] == ["1", "2"]
    assert d.text.startswith("Do you mean: ") and d.text.endswith("?")
    for c in d.choices:
        assert c.label.rstrip("?") in d.text and c.entry.question == c.label
    assert ", or " in d.text


CHECK_IN = "What time is check-in?"
LUGGAGE = "Can I leave my luggage after check-out?"
ONLINE = "Can I buy tickets online?"


@pytest.mark.parametrize(
    "question",
    [
        # The held-out set's, as ASR heard it and as written; then a paraphrase.
        "Our room isn't ready yet, is there somewhere we can leave our bag until it is?",
        "our room isn't ready yet, is there somewhere we can leave our bags until it is?",
        "we got here early and the room is not ready, can we drop our suitcases somewhere "
        "until it is?",
    ],
)
def test_an_entry_whose_heading_adds_what_the_visitor_never_said_is_asked_back(
    hotel: KnowledgeBase, question: str
) -> None:
    """ "after check-out" is nowhere in the question, and check-in's answer ("you can leave your
    bags at reception until then") covers its "room" and "ready": the luggage room was answered
    with confidence from the last clause alone, which drops them. Now both are offered back."""
    d = turn(hotel, question)
    assert d.kind == "clarify", d
    assert {c.label for c in d.choices} == {CHECK_IN, LUGGAGE}


@pytest.mark.parametrize(
    "question",
    [
        "do I get a cheaper price?",
        "is there a cheaper price for me?",
    ],
)
def test_an_anchor_only_in_the_answer_does_not_outweigh_an_unsaid_qualifier(
    museum: KnowledgeBase, question: str
) -> None:
    """Only the online tickets' answer has "cheaper" ("online tickets are EUR 1 cheaper"); the
    visitor said nothing about buying online, and the ticket price (concessions) matches the
    question about as closely and has its "price": offered back together, not answered
    (since stop 21 also as a price whose words only an answer has: reason "ambiguous")."""
    d = turn(museum, question)
    assert d.kind == "clarify" and d.reason in ("qualified", "ambiguous"), d
    assert [c.label for c in d.choices][:2] == [ONLINE, TICKET]


def test_a_ramble_whose_last_clause_alone_matched_an_answer_is_not_answered(
    museum: KnowledgeBase,
) -> None:
    """The held-out "seventy-four" as ASR heard it: its last clause alone was answered with the
    online tickets (it is now offered back with the ticket price, and the whole declined)."""
    d = turn(museum, "Hello, dear, I'm seven to four. Do I get a cheaper price?")
    assert d.kind in ("clarify", "decline"), d


def test_an_unsaid_heading_word_alone_changes_nothing(hotel: KnowledgeBase) -> None:
    """A rival must have a word of the question the best lacks: check-in's heading is unsaid
    here too, but nothing else covers "ready", and "after check-out" said is no qualifier."""
    d = turn(hotel, "our room's not ready. is there somewhere to keep our bags till it is?")
    # (Its first sentence alone used to answer it; a clause that asks nothing is now read with
    # the question after it, and the whole is offered back, check-in first.)
    assert d.entry == entry(hotel, CHECK_IN) or (
        d.kind == "clarify" and d.choices[0].entry == entry(hotel, CHECK_IN)
    ), d
    d = turn(hotel, "can we leave our bags here after we check out?")
    assert d.kind == "faq" and d.entry == entry(hotel, LUGGAGE), d


@pytest.fixture(scope="module")
def aquarium(embedder: Embedder) -> KnowledgeBase:
    """Held-out 16's aquarium: opening hours, and a café whose answer has its own hours."""
    return KnowledgeBase.from_file(UNDERSTAND / "aquarium_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    ("before", "expect"),
    [
        # "it" is the café, and the café's answer has its hours (it got the venue's hours).
        ("where's the café?", "Is there a cafe, and can we bring a picnic?"),
        # The toilets' answer has no time: the venue's hours (it got the toilets' answer).
        ("where are the toilets?", "When are you open?"),
    ],
)
def test_what_time_does_it_close_is_answered_by_an_answer_with_a_time(
    aquarium: KnowledgeBase, before: str, expect: str
) -> None:
    first = turn(aquarium, before)
    ctx = PolicyContext.after(before, first, None)
    d = turn(aquarium, "what time does it close?", ctx)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == expect, d


def test_a_clarification_is_resolved_in_the_next_turn(museum: KnowledgeBase) -> None:
    first = turn(museum, "excuse me, is the museum open on mondays at all?")
    ctx = PolicyContext.after("excuse me, is the museum open on mondays at all?", first, None)
    assert ctx.choices == first.choices
    labels = [c.label for c in first.choices]
    for reply, expect in [
        ("the first one", labels[0]),
        ("second", labels[1]),
        ("the last one", labels[-1]),
        ("holidays", HOLIDAYS),
        ("opening hours please", HOURS),
        ("2", labels[1]),
    ]:
        d = turn(museum, reply, ctx)
        assert (d.kind, d.reason) == ("faq", "clarified"), reply
        assert d.entry is not None and d.entry.question == expect, reply
        assert d.text == d.entry.answer
    # "No, the cafe": not one of them; the rest of the text is the question.
    assert lookup_query("no, the cafe", ctx) == "the cafe"
    d = turn(museum, "no, the cafe", ctx)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == CAFE
    # A new question simply wins.
    d = turn(museum, "where are the toilets?", ctx)
    assert d.entry is not None and d.entry.question == TOILETS
    # "No" alone: none of them was meant.
    d = turn(museum, "no", ctx)
    assert (d.kind, d.reason) == ("decline", "clarify_rejected")


def test_a_confirmation_takes_yes(museum: KnowledgeBase) -> None:
    e = entry(museum, CAFE)
    offered = Decision(
        "clarify", "Do you mean: Is there a café?", "confirm", choices=(Choice("1", e.question, e),)
    )
    ctx = PolicyContext.after("can I bring food", offered, None)
    d = turn(museum, "yes please", ctx)
    assert d.kind == "faq" and d.entry == e


def _choices() -> tuple[Choice, ...]:
    labels = [HOURS, TICKET, CHILD_TICKET]
    return tuple(Choice(str(i + 1), q, FaqEntry(q, "answer")) for i, q in enumerate(labels))


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("the first one", 0),
        ("First.", 0),
        ("um the second one please", 1),
        ("number two", 1),
        ("3", 2),
        ("three", 2),
        ("the last one", 2),
        ("opening hours", 0),
        ("tickets", 1),  # both ticket labels share it: the shorter, more general one
        ("the one for children", 2),
        ("kids", 2),  # synonyms as in ranking
        ("no, the children one", 2),
        ("How much is a ticket?", 1),  # a button's label sent back
    ],
)
def test_resolve_choice(text: str, index: int) -> None:
    choices = _choices()
    assert resolve_choice(text, choices) == choices[index]


@pytest.mark.parametrize(
    "text", ["yes", "no", "where are the toilets", "is there parking", "", "the fourth one"]
)
def test_resolve_choice_leaves_other_texts_alone(text: str) -> None:
    assert resolve_choice(text, _choices()) is None


def test_resolve_choice_yes_needs_a_single_option() -> None:
    one = _choices()[:1]
    assert resolve_choice("yes", one) == one[0]
    assert resolve_choice("yeah that one", one) == one[0]
    assert resolve_choice("no", one) is None
    assert resolve_choice("yes", ()) is None


# --------------------------------------------------------------------------- follow-ups


def test_follow_ups_are_read_with_the_previous_topic(museum: KnowledgeBase) -> None:
    cases = [
        (HOURS, "what about on sundays", HOURS),
        (
            "Which languages does the audio guide have?",
            "ok, and how much does it cost?",
            "Which languages does the audio guide have?",
        ),
        (CAFE, "until what time?", CAFE),
    ]
    for before, question, expect in cases:
        first = turn(museum, before)
        assert first.kind == "faq"
        ctx = PolicyContext.after(before, first, None)
        follow = contextual_query(question, ctx)
        assert follow is not None and follow.startswith(before), question
        d = turn(museum, question, ctx)
        assert d.kind == "faq" and d.entry is not None, (question, d)
        assert d.entry.question == expect, question
    # "And for the kids?" after the ticket price: the children's price, or a question back
    # between it and the family ticket; alone it would be "What is there for kids to do?".
    first = turn(museum, TICKET)
    d = turn(museum, "and for the kids?", PolicyContext.after(TICKET, first, None))
    assert d.entry == entry(museum, CHILD_TICKET) or CHILD_TICKET in [c.label for c in d.choices]
    assert turn(museum, "and for the kids?").entry == entry(museum, "What is there for kids to do?")
    # Without the context, "until what time?" is about the opening hours, not the café.
    assert turn(museum, "until what time?").entry != entry(museum, CAFE)


@pytest.fixture(scope="module")
def zoo(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "zoo_faq.md", embedder=embedder)


def test_a_follow_up_to_a_question_back_needs_a_clear_lead(zoo: KnowledgeBase) -> None:
    """The visitor picked neither entry offered back and asked on: the previous question, read
    with the new one, could not tell them apart, so a small lead does not answer (held-out 14,
    after its run: "are the kids allowed to feed them?" got the dogs by a lead of 0.08)."""
    before = "have you got a petting zoo?"
    first = turn(zoo, before)
    dog, farm = entry(zoo, "Can I bring my dog?"), entry(zoo, "Is there a petting farm?")
    assert first.kind == "clarify" and {c.entry for c in first.choices} == {dog, farm}, first
    d = turn(zoo, "are the kids allowed to feed them?", PolicyContext.after(before, first, None))
    assert d.entry != dog and (d.entry == farm or farm.question in labels(d)), d


def test_a_lone_word_like_a_greeting_is_offered_back(embedder: Embedder) -> None:
    """ "Hiya!" heard as "Hire." was answered with the car hire desks (held-out 14, after its
    run). A lone word that sounds like a greeting is offered back; other lone words that name
    a topic are answered as before."""
    airport = KnowledgeBase.from_file(UNDERSTAND / "airport_faq.md", embedder=embedder)
    hire = entry(airport, "Where do I pick up or return a hire car?")
    d = turn(airport, "Hire.")
    assert d.kind == "clarify" and [c.entry for c in d.choices] == [hire], d
    # Said twice, as the recogniser heard held-out 18's "hiya!" (answered with the bike hire).
    d = turn(airport, "Hire hire")
    assert d.kind == "clarify" and [c.entry for c in d.choices] == [hire], d
    assert turn(airport, "I need to return a hire car").entry == hire  # more than one word
    assert turn(airport, "Toilets?").entry == entry(airport, "Where are the toilets?")
    assert turn(airport, "Taxi.").entry == entry(airport, "Where can I get a taxi?")


def test_a_price_question_for_one_kind_of_visitor_is_answered_by_the_price_list(
    embedder: Embedder,
) -> None:
    """ "How much for one grown-up?" shares only common words with "How much are tickets?"
    (whose answer prices adults), so it was declined (held-out 15, after its run). A price list
    for the kind of visitor asked about is on the question's topic; a price question that
    names no kind of visitor is not answered by any priced entry."""
    science = KnowledgeBase.from_file(UNDERSTAND / "science_faq.md", embedder=embedder)
    tickets = entry(science, "How much are tickets?")
    for question in ("How much for one grown-up, please?", "How much for a child?"):
        assert turn(science, question).entry == tickets, question
    d = turn(science, "what's it cost?")
    assert d.kind != "faq", d


def test_a_request_is_declined_whatever_its_verb_was_heard_as(embedder: Embedder) -> None:
    """ "Please book me two seats" heard as "please work me two seats" was answered with the
    planetarium's price (held-out 15, spoken, settled words); its shape is a request."""
    science = KnowledgeBase.from_file(UNDERSTAND / "science_faq.md", embedder=embedder)
    for question in (
        "Please work me two seats for the two o'clock planetarium show",
        "Please book me two seats for the two o'clock planetarium show",
    ):
        d = turn(science, question)
        assert d.kind == "decline" and d.reason == "off_topic:booking", (question, d)
    show = "How much is the planetarium, and do I need to book?"
    assert turn(science, "how much is the planetarium show?").entry == entry(science, show)


def test_a_month_only_another_entry_names_offers_both(embedder: Embedder) -> None:
    """ "Are you open the first week of January?" was answered with the opening hours (by
    season), typed and spoken, while another entry says the castle is closed 2 to 15 January
    (held-out 15): the entry that names the month may be the exception, so both are offered."""
    castle = KnowledgeBase.from_file(UNDERSTAND / "castle_faq.md", embedder=embedder)
    hours, closed = entry(castle, HOURS), entry(castle, "When is the castle closed?")
    d = turn(castle, "Are you open the first week of January?")
    assert d.kind == "clarify" and {c.entry for c in d.choices} == {hours, closed}, d
    assert turn(castle, "what are your opening hours?").entry == hours  # no month: as before


def test_a_joke_about_something_is_small_talk(museum: KnowledgeBase) -> None:
    """ "Tell me a science joke!" was declined (held-out 15): a word or two may stand before
    "joke"."""
    for question in ("Tell me a science joke!", "got any good dad jokes?", "tell me a joke"):
        d = turn(museum, question)
        assert (d.kind, d.reason) == ("chat", "chat:joke"), (question, d)


def test_a_fragment_continues_the_previous_question(
    museum: KnowledgeBase,
    hotel: KnowledgeBase,
    zoo: KnowledgeBase,
    leisure: KnowledgeBase,
    garden: KnowledgeBase,
) -> None:
    """ "And in the winter?" asks nothing alone: read alone it was answered with the petting
    farm, whose answer says "until 16:00 in winter"; it asks the previous question again, even
    when that was only asked back. A fragment that names another entry still gets it."""
    before = "when do you open in the summer?"
    ctx = PolicyContext.after(before, turn(zoo, before), None)
    d = turn(zoo, "and in the winter?", ctx)
    farm = entry(zoo, "Is there a petting farm?")
    assert d.entry != farm and (d.entry == entry(zoo, HOURS) or HOURS in labels(d)), d
    assert turn(zoo, "and in the winter?").entry == farm  # alone: why the context matters
    # Two sentences: the first ("for the kids?") is not answered on its own either.
    ctx = PolicyContext.after(TICKET, turn(museum, TICKET), None)
    d = turn(museum, "and for the kids? they're eight and ten", ctx)
    assert d.entry != entry(museum, "What is there for kids to do?"), d
    assert d.entry == entry(museum, CHILD_TICKET) or CHILD_TICKET in labels(d), d
    # "And if ...": the "and" that strip_fillers drops still makes it a follow-up.
    before = "how much is delivery?"
    ctx = PolicyContext.after(before, turn(garden, before), None)
    d = turn(garden, "and if I spend more, like a hundred euros?", ctx)
    assert d.kind == "faq" and d.entry == entry(garden, "Do you deliver?"), d
    # "What about a computer?" after the study rooms names its own entry: the reading with the
    # study rooms had more support and answered with them again.
    library = KnowledgeBase.from_file(UNDERSTAND / "library_faq.md", embedder=zoo.embedder)
    rooms = "can I book a study room?"
    ctx = PolicyContext.after(rooms, turn(library, rooms), None)
    d = turn(library, "what about a computer?", ctx)
    assert d.kind == "faq" and d.entry == entry(library, "Can I use a computer?"), d
    # ... but one that says where asks the previous question there.
    dog = "Can I bring my dog?"
    d = turn(
        hotel, "what about in the restaurant?", PolicyContext.after(dog, turn(hotel, dog), None)
    )
    assert d.entry == entry(hotel, dog) or dog in labels(d), d
    # After a question back, a question that points back is read with the question asked.
    before = "can I try climbing here as a complete beginner?"
    first = turn(leisure, before)
    assert first.kind == "clarify"
    d = turn(
        leisure, "um, and when are those sessions on?", PolicyContext.after(before, first, None)
    )
    wall = "Can I use the climbing wall?"
    assert d.entry == entry(leisure, wall) or wall in labels(d), d
    # "And a pool?" after the gym names its own entry.
    gym = "when is the gym open?"
    d = turn(hotel, "and a pool?", PolicyContext.after(gym, turn(hotel, gym), None))
    assert d.kind == "faq" and d.entry == entry(hotel, "Is there a swimming pool or sauna?"), d


def test_a_pronoun_keeps_the_previous_topic(museum: KnowledgeBase) -> None:
    """ "How long do *they* take?" after the tours: its words are all in "How long does a
    visit take?", which answered it as if it stood alone."""
    tours = "When are the guided tours?"
    ctx = PolicyContext.after(tours, turn(museum, tours), None)
    d = turn(museum, "how long do they take?", ctx)
    assert d.entry != entry(museum, "How long does a visit take?"), d
    assert d.entry == entry(museum, tours) or tours in labels(d), d
    # "One" stands for the thing said before ("is there one for wheelchairs?" after the
    # toilets): not the accessibility entry, whose heading has every word of it.
    ctx = PolicyContext.after(TOILETS, turn(museum, TOILETS), None)
    d = turn(museum, "and is there one for wheelchairs?", ctx)
    assert d.entry == entry(museum, TOILETS) or TOILETS in labels(d), d


def labels(d: Decision) -> list[str]:
    return [c.label for c in d.choices]


def test_a_follow_up_is_rarely_the_same_answer_again(hotel: KnowledgeBase) -> None:
    """The combined reading holds the previous heading, which favours the entry just given:
    "can we stay a bit later?" after the check-out time asks about a late check-out."""
    before = "what time is check-out?"
    first = turn(hotel, before)
    assert first.entry == entry(hotel, "What time is check-out?")
    d = turn(hotel, "can we stay a bit later?", PolicyContext.after(before, first, None))
    assert d.kind != "faq" or d.entry == entry(hotel, "Can I check out late?"), d


def test_a_short_question_naming_another_entry_is_not_read_as_a_follow_up(
    museum: KnowledgeBase,
) -> None:
    """ "Is there a cafe?" after the toilets: short enough to read as a follow-up, and the
    toilets' answer mentions the café, so that reading answered with the toilets again."""
    toilets = TOILETS
    first = turn(museum, toilets)
    ctx = PolicyContext.after(toilets, first, None)
    assert contextual_query("Is there a cafe?", ctx) is not None  # it is read both ways
    d = turn(museum, "Is there a cafe?", ctx)
    assert d.kind == "faq" and d.entry == entry(museum, CAFE), d


@pytest.mark.parametrize(
    "question",
    [
        "Is there some more to get a coffee?",  # ASR for "somewhere", in bench voice
        "Is there somewhere I can get a coffee?",
        "Can I buy a coffee somewhere?",
    ],
)
def test_a_whole_new_question_is_not_answered_with_the_previous_topic(
    museum: KnowledgeBase, question: str
) -> None:
    """A question of its own that answers on its own: the toilets' answer mentions the café,
    and the follow-up reading (toilets + question) had more support, so the toilets came back.
    The "there" of "is there" only says something exists: it does not point back."""
    ctx = PolicyContext.after(TOILETS, turn(museum, TOILETS), None)
    d = turn(museum, question, ctx)
    assert d.kind == "faq" and d.entry == entry(museum, CAFE), d
    # A question that does point back is still read with the topic.
    d = turn(museum, "how do I get there?", ctx)
    assert d.entry != entry(museum, CAFE), d


def test_an_entry_matched_by_one_sentence_of_its_answer_alone_is_not_answered(
    museum: KnowledgeBase,
) -> None:
    """The gift shop's "It opens at the same times as the museum" is the only thing like "what
    year did the museum first open": no word of the question is specific to the gift shop,
    and its question as a whole is far. Offered back at most, never answered."""
    d = turn(museum, "what year did the museum first open")
    assert d.kind != "faq", d
    # A question about the gift shop itself still is.
    d = turn(museum, "when does the gift shop open?")
    assert d.kind == "faq" and d.entry == entry(museum, "Is there a gift shop?"), d


@pytest.mark.parametrize(
    ("before", "question"),
    [
        ("When are the guided tours?", "What is your favourite colour?"),
        ("Can I take photos?", "Where can I part my car?"),  # "park", misheard
    ],
)
def test_a_short_plain_question_is_not_asked_back_about_the_previous_topic(
    museum: KnowledgeBase, before: str, question: str
) -> None:
    """Short enough to be read with the previous topic, and that reading alone found something
    to ask back ("Do you mean: When are the guided tours?" in `bench voice`). A question that
    neither starts with a connector nor points back is not asked about the previous topic."""
    first = turn(museum, before)
    ctx = PolicyContext.after(before, first, None)
    assert contextual_query(question, ctx) is not None  # it is read both ways
    d = turn(museum, question, ctx)
    assert d.entry != entry(museum, before)
    assert entry(museum, before) not in [c.entry for c in d.choices], d
    # ... while one that points back still is: "is it free?" after the tours.
    d = turn(museum, "is it free?", PolicyContext.after(before, first, None))
    assert d.entry == entry(museum, before) or before in [c.label for c in d.choices], d


@pytest.mark.parametrize("heard", ["The.", "Please.", "Yes, please."])
def test_words_that_ask_nothing_are_not_read_as_a_follow_up(
    museum: KnowledgeBase, heard: str
) -> None:
    """What ASR made of "Stop, please." over our own echo after a barge-in: read with the
    previous topic, "The." and "Please." replayed the whole answer that was just cut off."""
    first = turn(museum, CAFE)
    ctx = PolicyContext.after(CAFE, first, None)
    assert contextual_query(heard, ctx) is None
    assert turn(museum, heard, ctx).entry is None
    # A short question about the answer still is one.
    assert contextual_query("how much?", ctx) is not None


def test_a_word_the_answer_does_not_explain_does_not_get_it_again(museum: KnowledgeBase) -> None:
    """ "Lost." (ASR's reading of "Stop, please." over the audio guide's answer in `bench echo`)
    read with that topic got the whole answer again: nothing in it is about "lost"."""
    guide = "Which languages does the audio guide have?"
    first = turn(museum, guide)
    assert first.entry == entry(museum, guide)
    ctx = PolicyContext.after(guide, first, None)
    assert turn(museum, "Lost.", ctx).entry != entry(museum, guide)
    # A follow-up whose word the answer has still gets it: "and in Chinese?"
    assert turn(museum, "and in Chinese?", ctx).entry == entry(museum, guide)


def test_a_full_question_after_an_answer_stands_on_its_own(museum: KnowledgeBase) -> None:
    first = turn(museum, TICKET)
    ctx = PolicyContext.after(TICKET, first, None)
    assert contextual_query("where can I leave my coat during the visit", ctx) is None
    d = turn(museum, "and where are the toilets?", ctx)
    assert d.entry is not None and d.entry.question == TOILETS


def test_context_bookkeeping() -> None:
    e = FaqEntry(HOURS, "9 to 5.")
    answered = Decision("faq", e.answer, "confident", hit=Hit(e, 0.9))
    ctx = PolicyContext.after(HOURS, answered, None)
    assert ctx.topic == e and ctx.choices == ()
    # "Say again" and small talk keep the context; a decline ends it.
    assert PolicyContext.after("um", Decision("say_again", "?", "empty"), ctx) is ctx
    assert PolicyContext.after("thanks", Decision("chat", "!", "chat:thanks"), ctx) is ctx
    declined = PolicyContext.after("weather?", Decision("decline", "no", "x"), ctx)
    assert declined.topic is None
    assert contextual_query("and on sundays?", None) is None
    assert contextual_query("and on sundays?", declined) is None
    assert contextual_query("and on sundays?", ctx) == f"{HOURS} on sundays?"
    # Asked back: a fragment continues the question asked, a whole question does not.
    asked = PolicyContext.after("open in may?", Decision("clarify", "?", "confirm"), ctx)
    assert contextual_query("and in june?", asked) == "open in may? in june?"
    assert contextual_query("is there a cafe?", asked) is None


# --------------------------------------------------------------------------- bad input


def test_two_questions_at_once_get_both_answers(hotel: KnowledgeBase) -> None:
    question = "what's the wifi password and when is the gym open"
    assert question_parts(question) == ("what's the wifi password", "when is the gym open")
    d = turn(hotel, question)
    assert (d.kind, d.reason) == ("faq", "several_questions")
    wifi, gym = entry(hotel, "Is there free wifi?"), entry(hotel, "When is the gym open?")
    assert d.entry == wifi and [h.entry for h in d.hits] == [wifi, gym]
    assert d.text == f"{wifi.answer} {gym.answer}"


def test_one_of_two_questions_answered_says_the_other_is_open(hotel: KnowledgeBase) -> None:
    # Only the wifi is in the FAQ: its answer, and a word that the casino went unanswered
    # (silence about it would read as an answer).
    wifi = entry(hotel, "Is there free wifi?")
    d = turn(hotel, "what's the wifi password? and is there a casino in town?")
    assert d.kind == "faq" and d.entry == wifi
    assert d.text == f"{wifi.answer} {PolicySettings().other_part}"
    # Small talk beside the question is not a question left open.
    d = turn(hotel, "hi, how are you? what's the wifi password?")
    assert d.kind == "faq" and d.entry == wifi and d.text == wifi.answer


def test_a_request_beside_a_question_declines_only_itself(
    museum: KnowledgeBase, hotel: KnowledgeBase
) -> None:
    # Paying is out of scope; the cloakroom is not, and the answer says what was left out.
    d = turn(museum, "do you have a cloakroom, and can I pay by card?")
    assert d.kind == "faq" and d.entry == entry(museum, "Is there a cloakroom or lockers?")
    assert d.text.endswith(PolicySettings().other_part)
    d = turn(hotel, "is there a gym? and can I pay by card?")
    assert d.kind == "faq" and d.entry == entry(hotel, "When is the gym open?")
    assert d.text.endswith(PolicySettings().other_part)
    # Alone, the request is still declined.
    assert turn(museum, "can I pay by card?").reason == "off_topic:payment"


def test_finding_out_is_not_asking_the_way(hotel: KnowledgeBase) -> None:
    d = turn(hotel, "how do I find out if my lost umbrella was handed in?")
    assert d.reason != "off_topic:directions"
    assert turn(hotel, "how do I find the nearest pharmacy?").kind == "decline"


@pytest.mark.parametrize(
    ("text", "heading"),
    [
        # "goes", "after", "twenty-fourth": words the FAQ lacks that name no topic; they held
        # these answers back as "Do you mean ...?" (held-out 9, after its run).
        ("which tram goes to the museum?", "How do I get here by public transport?"),
        ("are you open on the holiday Monday after Easter?", "Are you open on public holidays?"),
        ("what time do you open on the thirty-first?", "What are the opening hours?"),
    ],
)
def test_words_that_name_no_topic_do_not_hold_an_answer(
    museum: KnowledgeBase, text: str, heading: str
) -> None:
    d = turn(museum, text)
    assert (d.kind, d.reason) == ("faq", "confident")
    assert d.entry is not None and d.entry.question == heading


def test_a_ramble_is_answered_by_its_question(museum: KnowledgeBase) -> None:
    ramble = (
        "so we came here last year with my parents and my dad really loved all the old ships, "
        "and now we're back with the kids and my sister who's visiting from Canada, and we "
        "were wondering, how much do children pay to get in?"
    )
    d = turn(museum, ramble)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == CHILD_TICKET


def test_question_parts() -> None:
    assert question_parts("where are the toilets") == ()
    assert question_parts("is there a bus or a tram that stops near the museum") == ()
    assert question_parts("where is the cafe? and is there wifi?") == (
        "where is the cafe",
        "is there wifi?",
    )
    long = "so my husband and I got in really late last night, but first of all, where is an ATM?"
    assert question_parts(long) == ("where is an ATM?",)
    # A clause that asks nothing is read with the question after it, never on its own; one
    # after the last question is left out.
    assert question_parts("We aren't guests here. What does breakfast cost? It smells good.") == (
        "We aren't guests here What does breakfast cost",
    )
    # A price asked of what was just named belongs to its question (held-out 13, after its
    # run: "does it cost anything" alone was answered with the late fees).
    assert question_parts("can I put my name down for that book? does it cost anything?") == (
        "can I put my name down for that book does it cost anything?",
    )
    # A clause that only narrows the question before it, asking nothing of its own (held-out
    # 16, read: "at or around the island?" alone was answered with tickets on the island).
    assert question_parts("do you do boat trips to see seals? like at or around the island?") == (
        "do you do boat trips to see seals at or around the island?",
    )
    # A long one set up by a statement, as the recogniser writes it with a full stop between:
    # the asking clause, as for the same words typed with a comma (held-out 24, spoken).
    said = (
        "My phone's almost dead, and I need to get online to check my booking. "
        "Can I charge it here somewhere?"
    )
    assert question_parts(said) == ("Can I charge it here somewhere?",)
    # ... but not where the setup asks a question of its own, which the last one points at.
    said = (
        "I can't make the twelfth any more, can I move to a different night of the same show. "
        "Is there a charge for that?"
    )
    assert question_parts(said) == (said.replace(". ", " "),)
    assert question_parts("how much is a ticket? is it cheaper online?") == (
        "how much is a ticket",
        "is it cheaper online?",
    )  # names a thing of its own: still a question of its own
    # An ellipsis is a pause in one question, not the end of one (held-out 14, after its run:
    # "lost the... parking ticket... how much" had "lost the" answered with lost property).
    assert question_parts("lost the... parking ticket... how much... the") == ()
    assert question_parts("I need the toilet. I am in a hurry.") == (
        "I need the toilet",
        "I am in a hurry.",
    )  # nothing asks: as before
    # A ramble's question led up to with "so" / "what I wanted to ask was", not at its end.
    ramble = (
        "right, so, we checked out this morning, lovely stay by the way, and our train isn't "
        "until eight, so is there somewhere we could leave our bags for the day"
    )
    assert question_parts(ramble) == ("is there somewhere we could leave our bags for the day",)
    ramble = (
        "we got in last night and the kids are tired, anyway what I wanted to ask was what "
        "time we need to check out tomorrow, because the train is early"
    )
    assert question_parts(ramble) == ("what time we need to check out tomorrow",)
    # A question first, explained after: read whole (the explanation may be what matters).
    assert (
        question_parts(
            "where do i leave the key cards when i go, there's nobody at the desk this early"
        )
        == ()
    )


def test_a_clause_that_asks_nothing_is_not_answered_on_its_own(hotel: KnowledgeBase) -> None:
    """ "We aren't staying at the hotel." alone matched "Can I smoke in the hotel?", and as
    the only part that matched confidently it was the answer to a question about breakfast."""
    d = turn(hotel, "We aren't staying at this hotel. What does breakfast cost for my son?")
    assert d.entry is None or d.entry.question != "Can I smoke in the hotel?", d
    assert d.entry is not None or any("breakfast" in c.label for c in d.choices), d


# --------------------------------------------------------------------------- llm mode


def test_llm_mode_sends_relevant_questions_to_the_llm_only(museum: KnowledgeBase) -> None:
    s = settings_for(museum, answer_mode="llm")
    d = turn(museum, "sorry, where's the bathroom?", settings=s)
    assert (d.kind, d.text) == ("llm", "")
    assert d.entry is not None and d.entry.question == TOILETS
    assert d.hits[0].entry.question == TOILETS  # the facts for the prompt, best first
    ambiguous = turn(museum, "excuse me, is the museum open on mondays at all?", settings=s)
    assert ambiguous.kind == "llm" and {h.entry.question for h in ambiguous.hits} >= {
        HOURS,
        HOLIDAYS,
    }
    # Off-topic, small talk and noise never reach it.
    assert turn(museum, "who won the football last night", settings=s).kind == "decline"
    assert turn(museum, "do you sell umbrellas", settings=s).kind == "decline"
    assert turn(museum, "hello", settings=s).kind == "chat"
    assert turn(museum, "um", settings=s).kind == "say_again"


# --------------------------------------------------------------------------- lexical only


def test_without_embeddings_entries_are_offered_never_answered() -> None:
    kb = KnowledgeBase.from_file(SAMPLE)
    d = turn(kb, "where are the toilets")
    assert d.kind == "clarify" and d.choices[0].label == TOILETS
    assert turn(kb, "what is the meaning of life").kind == "decline"
    assert turn(kb, "hello").kind == "chat"


# --------------------------------------------------------------------------- helpers


def test_an_old_style_grounding_still_decides(museum: KnowledgeBase) -> None:
    g = ground(museum, "sorry, where's the bathroom?")
    old = Grounding(hits=g.hits, direct=g.direct, confidence=g.confidence)
    d = decide("sorry, where's the bathroom?", old, settings=settings_for(museum))
    assert d.kind == "faq" and d.entry is not None and d.entry.question == TOILETS
    nothing = Grounding(hits=[], direct=None, confidence=0.0)
    assert decide("where is the zoo", nothing, settings=PolicySettings()).kind == "decline"


def test_faq_topics() -> None:
    museum_topics = faq_topics(tuple(e.question for e in KnowledgeBase.from_file(SAMPLE).entries))
    assert museum_topics == ("the opening hours", "the guided tours", "free wifi")
    assert faq_topics(("Is there parking?", "Where are the toilets?"), limit=5) == (
        "parking",
        "the toilets",
    )
    assert faq_topics(("What is there for kids to do?", "Can I bring my dog?")) == ()


# --------------------------------------------------------------------------- the bench


def test_bench_scoring() -> None:
    e = FaqEntry(HOURS, "We open at 9.")
    faq = bench.Case("x", "museum", "faq", "when do you open", expect=HOURS, facts=("9",))
    answered = Decision("faq", e.answer, "confident", hit=Hit(e, 0.9))
    other = Decision("faq", "No.", "confident", hit=Hit(FaqEntry("Other?", "No."), 0.9))
    clarify = Decision("clarify", "Do you mean?", "ambiguous")
    decline = Decision("decline", "Sorry.", "no_match")
    assert bench.score(faq, answered) == "correct"
    assert bench.score(faq, other) == "wrong"
    assert bench.score(faq, clarify) == "clarify"
    assert bench.score(faq, decline) == "miss"
    other_hit = Hit(FaqEntry("Other?", "No."), 0.9)
    llm = Decision("llm", "", "ambiguous", hit=other_hit, hits=(other_hit, Hit(e, 0.8)))
    assert bench.score(faq, llm) == "correct"  # the model gets the right entry among its facts
    assert bench.score(faq, Decision("llm", "", "x", hit=other_hit, hits=(other_hit,))) == "wrong"
    off = bench.Case("y", "museum", "offtopic", "weather?")
    assert bench.score(off, decline) == "correct"
    assert bench.score(off, answered) == "wrong"
    bad = bench.Case("z", "museum", "bad", "um", accept=("say_again", "decline"))
    assert bench.score(bad, decline) == "correct"
    assert bench.score(bad, answered) == "wrong"
    two = bench.Case("w", "museum", "bad", "a and b", expect=HOURS, accept=("faq", "clarify"))
    assert bench.score(two, answered) == "correct" and bench.score(two, other) == "wrong"


def test_bench_scores_what_asr_heard() -> None:
    """--transcripts: the questions a spoken bench asked, with its transcripts as their text."""
    cases = [
        bench.Case("a", "museum", "faq", "where are the galleries", expect=TOILETS),
        bench.Case("b", "museum", "followup", "and on sunday?", before="when do you open"),
        bench.Case("c", "museum", "faq", "not asked"),
    ]
    rows = [
        {"id": "a", "transcript": "Where are the calories?", "alternatives": ["Where are the gal"]},
        {"id": "b", "transcript": "", "before_transcript": "When do you open?"},
    ]
    heard = bench.heard(cases, {"rows": rows})
    assert [(c.id, c.text, c.before, c.alternatives) for c in heard] == [
        ("a", "Where are the calories?", None, ("Where are the gal",)),
        ("b", "", "When do you open?", ()),
    ]
    assert heard[0].expect == TOILETS


def test_bench_checks_each_decision_against_the_other_hypotheses(museum: KnowledgeBase) -> None:
    case = bench.Case(
        "a", "museum", "faq", "where are the tally lets", expect=TOILETS,
        alternatives=("where are the toilets",),
    )  # fmt: skip
    [alone] = bench.evaluate([case], {"museum": museum}, nbest=False)
    [checked] = bench.evaluate([case], {"museum": museum})
    assert alone.result == "miss" and alone.decision.kind == "decline"
    assert checked.result == "clarify" and checked.decision.reason == "heard_otherwise"


def test_bench_on_the_tuning_set(museum: KnowledgeBase, hotel: KnowledgeBase) -> None:
    """The calibration's figures on tests/data/understand/tune.toml (the set it was tuned on, so
    an upper bound for unseen questions): what `python -m appliance.bench.understand_text
    --set tests/data/understand/tune.toml` reports."""
    cases, _ = bench.load_cases(TUNE)
    report = bench.summarize(bench.evaluate(cases, {"museum": museum, "hotel": hotel}))
    aims = report["aims"]
    assert aims["wrong"] <= 1  # measured 1 (2 before unmatched words were offered back)
    assert aims["offtopic_declined"] == 1.0
    assert aims["answerable_correct"] >= 0.63  # measured 0.639 (0.737 answering them all)
    assert aims["clarify_rate"] <= 0.16  # measured 0.150
    assert report["per_kind"]["chat"]["correct_rate"] == 1.0
    assert report["per_kind"]["bad"]["correct_rate"] == 1.0


def test_bench_on_the_second_tuning_set(museum: KnowledgeBase, hotel: KnowledgeBase) -> None:
    """tests/data/understand/tune2.toml, written by another helper session from the FAQs alone
    (more off-topic questions that share an entry's words): wrong 13 -> 4 when the words the
    FAQ lacks are offered back instead of answered."""
    cases, _ = bench.load_cases(TUNE.with_name("tune2.toml"))
    aims = bench.summarize(bench.evaluate(cases, {"museum": museum, "hotel": hotel}))["aims"]
    assert aims["wrong"] <= 4  # measured 4
    assert aims["answerable_correct"] >= 0.52  # measured 0.522


@pytest.mark.parametrize(
    ("whole", "offered"),
    [("what are the opening hours", HOURS), ("how much is a ticket", TICKET)],
)
def test_a_question_cut_off_mid_phrase_offers_its_likely_entry_back(
    museum: KnowledgeBase, whole: str, offered: str
) -> None:
    d = turn(museum, whole)
    assert d.kind == "faq" and d.hit is not None and d.hit.entry.question == offered
    d = turn(museum, f"{whole} for the")  # what came next is unknown
    assert d.kind == "clarify" and d.reason == "incomplete"
    assert [c.label for c in d.choices] == [offered]
    llm = settings_for(museum, answer_mode="llm")  # a capable model would not know either
    assert turn(museum, f"{whole} for the", settings=llm).kind == "clarify"


def test_an_answer_sentence_about_another_topic_gives_way_to_that_topic(
    museum: KnowledgeBase,
) -> None:
    # The gift shop's answer says "It opens at the same times as the museum": close to the
    # question by that one sentence, it must not be what the box offers or answers.
    d = turn(museum, "when does the museum open")
    assert d.kind == "faq" and d.hit is not None and d.hit.entry.question == HOURS
    assert d.reason == "plainest"  # the holidays entry, as close, names what was not said
    d = turn(museum, "when does the gift shop open")
    assert d.kind == "faq" and d.hit is not None and d.hit.entry.question == "Is there a gift shop?"


def test_the_plainest_entry_must_have_every_word_its_rivals_have(museum: KnowledgeBase) -> None:
    first = turn(museum, "what are the opening hours")
    d = turn(
        museum,
        "and on bank holidays?",
        PolicyContext.after("what are the opening hours", first, None),
    )
    # The follow-up's reading has the hours' heading words, so the hours entry adds nothing
    # unsaid; but "holidays" is a word only the holidays entry has: asked back, not answered.
    assert d.kind == "clarify" and {c.label for c in d.choices} == {HOURS, HOLIDAYS}


def test_the_plainest_entry_is_not_one_whose_heading_the_question_misses(
    zoo: KnowledgeBase,
) -> None:
    """ "Is there a petting zoo?": "petting" shares a stem with "pet", a word related to the dog
    entry's "dog", so that heading added nothing unsaid, and the dog entry, whose answer names
    the petting farm, was answered as the plainest. The farm's heading is the one it matches."""
    d = turn(zoo, "is there a petting zoo?")
    assert d.entry != entry(zoo, "Can I bring my dog?"), d
    assert d.entry == entry(
        zoo, "Is there a petting farm?"
    ) or "Is there a petting farm?" in labels(d), d


# --------------------------------------------------------------------------- n-best


def test_distinct_readings_keep_only_other_words() -> None:
    heard = "where are the toilets"
    alternatives = [
        "where are a toilets",
        "where are the toilets?",
        "where are the tablets",
        "where are the tablets, please",
        "where is the café",
        "where's the cafe",
    ]
    assert distinct_readings(heard, alternatives) == ["where are the tablets", "where is the café"]
    assert distinct_readings(heard, alternatives, limit=1) == ["where are the tablets"]
    assert distinct_readings(heard, ["", "um"]) == []


class Readings:
    """`decide_other` for `reconcile`: a turn on the real FAQ, each text it was asked noted."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.asked: list[str] = []

    def __call__(self, text: str) -> Decision:
        self.asked.append(text)
        return turn(self.kb, text)


def test_an_answer_stands_whatever_another_hearing_would_answer(museum: KnowledgeBase) -> None:
    # The beam's runners-up hold words nobody said even for clear speech: "Can I bring my
    # dog?" came with "... my kid?" and was asked back between the dog and the children.
    s = settings_for(museum)
    other = Readings(museum)
    heard = turn(museum, "can I bring my dog")
    assert heard.kind == "faq" and heard.hit is not None
    assert reconcile(heard, "can I bring my dog", ["can I bring my kid"], other, s) is heard
    assert other.asked == []  # not even weighed


def test_nothing_found_but_another_hearing_is_answered_offers_that_entry(
    museum: KnowledgeBase,
) -> None:
    s = settings_for(museum)
    other = Readings(museum)
    heard = turn(museum, "where are the tally lets")
    assert heard.kind == "decline" and heard.reason == "no_match"
    d = reconcile(heard, "where are the tally lets", ["where are the toilets"], other, s)
    assert d.kind == "clarify" and d.reason == "heard_otherwise"
    assert [c.label for c in d.choices] == [TOILETS]
    # Small talk, a request the box cannot do: what was heard best stands, unweighed.
    for text in ("thank you", "can you book me a taxi"):
        first = turn(museum, text)
        assert reconcile(first, text, ["where are the toilets"], other, s) is first
    assert other.asked == ["where are the toilets"]


def test_usual_replies_are_staff_text_the_box_gives_most(museum: KnowledgeBase) -> None:
    chat = {"thanks": "My pleasure."}
    settings = settings_for(museum, chat_replies=chat)
    texts = usual_replies(museum.entries, settings)
    assert (
        texts[0] == decline(settings, "no_match").text and texts[1] == settings.say_again
    )  # likeliest first
    assert "My pleasure." in texts and texts[-len(museum.entries) :] == [
        e.answer for e in museum.entries
    ]
    assert len(set(texts)) == len(texts)
    # A capable LLM phrases the answers: only the fixed replies are predictable.
    llm = usual_replies(museum.entries, settings_for(museum, chat_replies=chat, answer_mode="llm"))
    assert llm == texts[: 2 + len(DEFAULT_CHAT_REPLIES)]
    assert "I'm much better with facts than with jokes" in " ".join(llm)  # all small talk


def test_a_journey_cut_off_before_its_destination_is_not_answered(
    museum: KnowledgeBase,
) -> None:
    """ "the one that goes to": where to is what was cut off (held-out 10's "the train to...
    the one that goes to" was answered with the station's taxi and bus entry). A question
    asking where ends on "to" and is answered."""
    d = turn(museum, "the tram to... the one that goes to")
    assert d.kind in ("clarify", "say_again") and d.reason == "incomplete", d
    assert (
        answered_with(museum, "where does the tram go to")
        == "How do I get here by public transport?"
    )


def test_a_question_cut_off_after_the_one_that_is_not_answered(ferry: KnowledgeBase) -> None:
    # Held-out 23, typed: "the one that—" was answered with the foot passengers' boat.
    d = turn(ferry, "the boat to... erm... is it the, mm, the one that\u2014")
    assert d.kind in ("clarify", "say_again") and d.reason == "incomplete", d


@pytest.fixture(scope="module")
def theatre(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "theatre_faq.md", embedder=embedder)


def test_a_visitors_age_names_the_price_they_ask_about(
    theatre: KnowledgeBase, zoo: KnowledgeBase, aquarium: KnowledgeBase
) -> None:
    """Held-out 17, after its run: "me and the wife are both over seventy, do we get anything
    off for a Thursday afternoon show?" - with "a discount" put for "anything off", its last
    clause alone was the groups' discount (a wrong answer); the seniors named before it now
    go with it and it is asked back. "does my two year old need a ticket" had been declined:
    a two year old is a child, whose price the ticket entry gives. One adult with a child is
    not the family ticket's two adults (held-out 16's "one adult and a six-year-old")."""
    question = (
        "me and the wife are both over seventy, do we get anything off for a Thursday "
        "afternoon show in the main house?"
    )
    d = turn(theatre, question)
    assert d.kind == "clarify", d
    assert answered_with(zoo, "does my two year old need a ticket") == "How much is a ticket?"
    d = turn(aquarium, "how much for one adult and a six-year-old?")
    assert d.entry is None or d.entry.question != "Do you have family tickets or group discounts?"


@pytest.fixture(scope="module")
def holiday_park(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "holidaypark_faq.md", embedder=embedder)


def test_the_staffs_answer_on_someone_hurt_is_not_medical_advice(
    holiday_park: KnowledgeBase,
) -> None:
    """Held-out 18, after its run: "… his arm looks really bad, where's the nearest hospital?"
    was declined as a medical question, though the FAQ's entry on emergencies and someone hurt
    names the nearest A&E. A medical question with no such entry is still declined."""
    emergency = "What do I do in an emergency, if someone is hurt, or if I lose something?"
    question = (
        "oh god, sorry, my son's come off the climbing frame and his arm looks really bad, "
        "where's the nearest hospital?"
    )
    assert answered_with(holiday_park, question) == emergency
    d = turn(holiday_park, "I've got a terrible headache, what medicine should I take?")
    assert (d.kind, d.reason) == ("decline", "off_topic:medical"), d


def test_the_visitors_own_phone_is_not_a_request_for_a_number(holiday_park: KnowledgeBase) -> None:
    """Held-out 18, after its run: "I've got no bars at all on my phone, where's the best place
    to make a call?" was answered with reception's entry (for its phone number). "Your phone
    number" still asks for one."""
    question = "I've got no bars at all on my phone, where's the best place to make a call?"
    d = turn(holiday_park, question)
    assert d.entry is None or not d.entry.question.startswith("When is reception open"), d
    d = turn(holiday_park, "what's your phone number?")
    offered = [d.entry] if d.entry is not None else [c.entry for c in d.choices]
    reception = "When is reception open, and can we stay extra nights?"
    assert reception in [e.question for e in offered], d


def test_a_topic_ruled_out_is_neither_answered_nor_offered(museum: KnowledgeBase) -> None:
    """ "Where's good for lunch round here that isn't the café?" was answered with the café
    (held-out 19, typed and spoken); the words ruled out count for nothing either (the
    membership entry's "10% off in the café" had then answered it)."""
    for question in (
        "where's good for lunch round here that isn't the café?",
        "is there somewhere to eat apart from the café?",
        "anywhere for a coffee other than your café?",
    ):
        d = turn(museum, question)
        assert CAFE not in (d.entry.question if d.entry else "", *(c.label for c in d.choices))
        assert d.kind != "faq", d
    assert answered_with(museum, "is there a café?") == CAFE


def test_a_question_on_the_one_entry_offered_is_about_it(museum: KnowledgeBase) -> None:
    """ "Do you mean: Is there a café?" - "what time does it close?": the visitor took the one
    entry offered and asks on about it (held-out 19, spoken: answered with the closed days)."""
    first = turn(museum, "is there a cafe in gear?")
    assert first.kind == "clarify" and [c.label for c in first.choices] == [CAFE], first
    context = PolicyContext.after("is there a cafe in gear?", first, None)
    d = turn(museum, "what time does it close?", context)
    assert d.kind == "faq" and d.entry is not None and d.entry.question == CAFE, d


def test_a_school_class_and_books_taken_out(castle: KnowledgeBase, embedder: Embedder) -> None:
    """Held-out 19: "a class of year fours ... the price per child?" got the children's
    ticket (its last clause alone); "how many books can I take out?" the donations entry
    (both wrong answers)."""
    question = "I'm bringing a class of year fours in the spring, what's the price per child?"
    assert answered_with(castle, question) == "Do you take school and group bookings?"
    library = KnowledgeBase.from_file(UNDERSTAND / "library_faq.md", embedder=embedder)
    borrow = "How many books can I borrow and for how long?"
    assert answered_with(library, "how many books can I take out?") == borrow


def test_a_price_matched_only_in_another_entrys_answer_is_not_answered(
    museum: KnowledgeBase, castle: KnowledgeBase, hotel: KnowledgeBase, embedder: Embedder
) -> None:
    """Latent wrong answers found probing every FAQ with common price questions (stop 21):
    "how much is entry?" got the museum's free days ("Entry is free on the first Sunday") and
    the castle's membership ("Members get free entry all year"); "how much is a ticket to get
    in?" the hotel's car park ("ask reception for a parking ticket") and a mall's lost car park
    ticket."""
    assert answered_with(museum, "how much is entry?") == TICKET
    assert answered_with(museum, "what's the entry fee?") == TICKET
    for question in ("how much is entry?", "what's the entry fee?"):
        d = turn(castle, question)
        assert d.entry is None or d.entry.question != "Is there an annual membership?", d
    d = turn(hotel, "how much is a ticket to get in?")
    assert d.kind != "faq", d
    mall = KnowledgeBase.from_file(UNDERSTAND / "mall_faq.md", embedder=embedder)
    assert turn(mall, "how much is a ticket to get in?").kind != "faq"
    lost = "What if I lose my car park ticket?"
    assert answered_with(mall, "I've lost my car park ticket, what now?") == lost
    assert answered_with(mall, "what happens if I lose my parking ticket?") == lost


def test_a_far_meaning_on_one_shared_word_is_offered_not_answered(embedder: Embedder) -> None:
    """Common questions probed on every FAQ (stop 21): "how long does it take to see
    everything?" was answered with a garden centre's bus route and a science centre's live
    shows, on "take" in their answers alone (semantic 0.26-0.28). Below `answer_min_semantic`
    an entry whose heading shares no word with the question is offered back at most."""
    for name in ("garden_faq.md", "science_faq.md"):
        kb = KnowledgeBase.from_file(UNDERSTAND / name, embedder=embedder)
        d = turn(kb, "how long does it take to see everything?")
        assert d.kind != "faq", (name, d)


def test_a_heading_that_says_what_went_wrong_needs_the_mishap_said(embedder: Embedder) -> None:
    """ "Can I leave my bags somewhere?" was answered with an airport's "My suitcase didn't
    arrive. What should I do?" (the everyday-questions probe, stop 21)."""
    airport = KnowledgeBase.from_file(UNDERSTAND / "airport_faq.md", embedder=embedder)
    d = turn(airport, "can I leave my bags somewhere?")
    assert d.kind != "faq", d
    assert answered_with(airport, "my luggage hasn't arrived") == (
        "My suitcase didn't arrive. What should I do?"
    )


def test_a_heading_about_another_of_the_visitors_things_is_not_answered(
    hotel: KnowledgeBase, museum: KnowledgeBase, embedder: Embedder
) -> None:
    """ "Can I charge my phone?" was answered with a hotel's and a mall's "Can I charge my
    electric car?" on the verb alone (the everyday-questions probe, stop 22): the heading is
    about the visitor's car, the question about their phone. Related words still count ("my
    puppy" is "my dog"), and the car's own question is still answered."""
    ev = "Can I charge my electric car?"
    mall = KnowledgeBase.from_file(UNDERSTAND / "mall_faq.md", embedder=embedder)
    for kb in (hotel, mall):
        d = turn(kb, "can I charge my phone?")
        assert d.kind != "faq", d
        assert answered_with(kb, "can I charge my car here?") == ev
    assert answered_with(museum, "can I bring my puppy?") == "Can I bring my dog?"


@pytest.fixture(scope="module")
def hospital(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "hospital_faq.md", embedder=embedder)


def test_where_to_go_at_a_hospital_is_not_medical_advice(hospital: KnowledgeBase) -> None:
    """Held-out 20, after its run: at a hospital's entrance "where I go for the x-ray? the
    doctor give me this paper" and "where do I pick up the tablets the doctor's just
    prescribed me?" were declined as medical questions. Advice is still declined."""
    clinic = "How do I find my clinic?"
    assert (
        answered_with(hospital, "please, where I go for the x-ray? the doctor give me this paper")
        == clinic
    )
    d = turn(hospital, "where do I pick up the tablets the doctor's just prescribed me?")
    assert d.reason != "off_topic:medical", d
    d = turn(hospital, "should I take paracetamol for this?")
    assert (d.kind, d.reason) == ("decline", "off_topic:medical"), d


def test_a_question_taken_back_and_not_finished_is_asked_again(museum: KnowledgeBase) -> None:
    """ "the bar... no wait, the, erm, sorry, what was—" was answered with the bar's hours
    (held-out 20): the visitor took the bar back. A question after the retraction stands."""
    d = turn(museum, "the cafe... no wait, the, erm, sorry, what was—")
    assert d.kind == "say_again" and d.reason == "retracted", d
    d = turn(museum, "the shop, no wait, is there a cafe?")
    assert d.kind == "faq" and d.entry is not None and d.entry.question == CAFE, d
    assert turn(museum, "the cafe... no wait, forget it").reason == "retracted"
    assert turn(museum, "what's the wifi password, I always forget it").reason != "retracted"


def test_slang_laughter_and_things_handed_in(hospital: KnowledgeBase) -> None:
    """Held-out 20: "haha, are you a robot?" and "hallo, good morning!" were declined, "where
    can I get out for a fag?" and "... where would they have been handed in?" too."""
    assert turn(hospital, "haha, are you a robot?").kind == "chat"
    assert turn(hospital, "hallo, good morning!").kind == "chat"
    assert answered_with(hospital, "where can I get out for a fag?") == "Can I smoke or vape here?"
    question = (
        "I think I left my reading glasses in the café yesterday, where would they have been "
        "handed in?"
    )
    assert answered_with(hospital, question) == "Where is lost property?"
    pharmacy = "Where is the pharmacy and when is it open?"
    assert answered_with(hospital, "where do I hand in my prescription?") == pharmacy


def test_a_season_ticket_is_the_annual_pass(zoo: KnowledgeBase) -> None:
    """Held-out 6's and 20's "season ticket" was asked back or declined (stop 22)."""
    assert answered_with(zoo, "do you have a season ticket?") == "Is there an annual pass?"


def test_a_request_the_staff_answered_in_other_words(hotel: KnowledgeBase) -> None:
    """ "Could you order me a cab?" was declined as a booking though the hotel's "Can you call
    me a taxi?" answers it: a related word of the request in the heading counts (held-out
    20's "could you get me a cab to the station?" was declined the same way)."""
    assert answered_with(hotel, "could you order me a cab?") == "Can you call me a taxi?"
    d = turn(hotel, "can you book me a table for dinner?")
    assert (d.kind, d.reason) == ("decline", "off_topic:booking"), d


@pytest.fixture(scope="module")
def conference(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "conference_faq.md", embedder=embedder)


@pytest.fixture(scope="module")
def science(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "science_faq.md", embedder=embedder)


FOOD = "Where can I get something to eat or drink?"


def test_a_food_court_or_a_badminton_court_is_no_court_of_law(
    conference: KnowledgeBase, leisure: KnowledgeBase
) -> None:
    """Held-out 21: "where's the food court?" and "how much to book a badminton court?" were
    declined as legal questions. A court of law still is."""
    assert answered_with(conference, "where's the food court?") == FOOD
    question = "how much to book a badminton court for an hour?"
    assert answered_with(leisure, question) == "Can I book the sports hall?"
    d = turn(leisure, "my landlord won't give my deposit back, should I take him to court?")
    assert (d.kind, d.reason) == ("decline", "off_topic:legal"), d


def test_the_hours_of_what_was_just_named(conference: KnowledgeBase) -> None:
    """Held-out 21: after the food court, "what time does it open?" got the venue's hours
    ("open" was a word of its own, so the question did not point back); after the cloakroom,
    "and what time does it shut?" too, as its answer tells its hours against the sessions
    ("opens 30 minutes before the first session"), not by the clock."""

    def after(before: str, question: str) -> Decision:
        first = turn(conference, before)
        return turn(conference, question, PolicyContext.after(before, first, None))

    d = after("where's the food court?", "what time does it open?")
    assert d.entry is not None and d.entry.question == FOOD, d
    d = after("where can I leave my coat?", "and what time does it shut?")
    cloakroom = "Is there a cloakroom or somewhere to leave luggage?"
    assert d.entry is not None and d.entry.question == cloakroom, d


def test_more_ways_of_taking_a_question_back(conference: KnowledgeBase) -> None:
    """Held-out 21: words said to someone else, "never mind", "no, hang on" and a "forget it"
    followed only by who will see to it were answered or declined; they are asked again."""
    for said in (
        "sorry, ignore that, I was talking to my colleague",
        "where's the, um… the thing for the… no, hang on",
        "how much is — oh no, actually forget it, my wife's sorting it",
        "How much is, oh no, actually forget it, my wife is sorting it.",  # as heard
        "can my— sorry, no, wait, never mind",
    ):
        d = turn(conference, said)
        assert (d.kind, d.reason) == ("say_again", "retracted"), (said, d)
    assert answered_with(conference, "never mind the badge, is there wifi?") == "Is there wifi?"


def test_asking_whether_anyone_is_behind_the_screen_is_small_talk(
    conference: KnowledgeBase,
) -> None:
    for said in (
        "are you a real person or is this a computer?",
        "who am I talking to, is there someone behind there?",
        "A real person or is this a computer?",  # heard without "are you"
    ):
        d = turn(conference, said)
        assert (d.kind, d.reason) == ("chat", "chat:identity"), (said, d)


def test_everyday_words_for_a_conference_centre(
    conference: KnowledgeBase, leisure: KnowledgeBase, science: KnowledgeBase
) -> None:
    """Held-out 21's misses on words the embedder does not tie to the FAQ's: slang, a stay
    for the night, locking up, a dying phone, a delivery driver, lending, pausing, quitting
    and a postcode for the sat-nav."""
    cases = (
        (conference, "where's the bog?", "Where are the toilets and baby changing?"),
        (
            conference,
            "I haven't sorted a room for tonight yet… is there anywhere to stay close by?",
            "Are there hotels nearby?",
        ),
        (
            conference,
            "what time do you lot lock up tonight?",
            "What are the centre's opening hours?",
        ),
        (
            conference,
            "my phone's on 3 percent, is there anywhere I can juice it up?",
            "Where can I charge my phone?",
        ),
        (
            conference,
            "I've got three pallets for a stand in Hall A, where do I unload?",
            "Where do exhibitors deliver and collect goods?",
        ),
        (
            conference,
            "it's all a bit much for me, is there anywhere calm I could sit?",
            "Is there a prayer room or a quiet room?",
        ),
        (science, "can we borrow a wheelchair?", "Is the centre wheelchair accessible?"),
        (
            leisure,
            "is there a way to pause my membership while I'm away?",
            "Can I freeze or cancel my membership?",
        ),
        (leisure, "is there a ladies-only night in the sauna?", "Is there a sauna and steam room?"),
        (leisure, "how do I quit? I'm moving away", "Can I freeze or cancel my membership?"),
        (science, "what's the postcode, for the satnav?", "How can I contact Sparkworks?"),
        # Upstairs and downstairs say where, not what about (as "inside" and "nearby" do).
        (conference, "is the cash machine upstairs free to use?", "Is there a cash machine?"),
        (leisure, "can I get a coffee downstairs after my swim?", "When is the cafe open?"),
    )
    for kb, question, heading in cases:
        assert answered_with(kb, question) == heading, question
    # Not any lock, or any bog.
    assert turn(conference, "can I lock up my bike here?").entry != entry(
        conference, "What are the centre's opening hours?"
    )


def test_a_price_whose_words_only_another_answer_has(science: KnowledgeBase) -> None:
    """ "is the dome thing extra or is it in with the ticket?" was answered with the
    wheelchair entry, whose answer names the dome's wheelchair spaces (semantic 0.43)."""
    d = turn(science, "is the dome thing extra or is it in with the ticket?")
    assert d.kind != "faq", d


def test_a_question_that_points_back_at_a_declined_one_is_declined(
    conference: KnowledgeBase,
) -> None:
    """Held-out 21, spoken: "where's the food court?" heard "Where's the food caught?" was
    declined, and "what time does it open?" then got the venue's hours: "it" was the thing
    declined. Asked first, the same question is about the venue."""
    hours = "What are the centre's opening hours?"
    for before in ("Where's the food caught?", "where's the nearest Aldi?"):
        first = turn(conference, before)
        assert first.kind == "decline", first
        d = turn(conference, "what time does it open?", PolicyContext.after(before, first, None))
        assert (d.kind, d.reason) == ("decline", "after_decline"), d
    assert answered_with(conference, "what time does it open?") == hours


def test_the_next_train_to_another_place_is_a_timetable_the_kiosk_cannot_see(
    conference: KnowledgeBase, station: KnowledgeBase
) -> None:
    """Held-out 21 and 11: "what time's the last train to Manchester tonight?" was offered
    back as the way here by train. The times of a service to another place are declined, at a
    station too; the way here by train is still answered."""
    for kb, said in (
        (conference, "what time's the last train to Manchester tonight?"),
        (conference, "when's the next train to Birmingham from Linford Central?"),
        (station, "when's the next train to Leeds?"),
    ):
        d = turn(kb, said)
        assert (d.kind, d.reason) == ("decline", "off_topic:timetable"), (said, d)
        assert d.text.startswith("Sorry, I can't see train, bus or flight times.")
    by_train = "How do I get here by train, tram or bus?"
    assert answered_with(conference, "how do I get here by train?") == by_train
    said = "is there a ticket machine for the next train to Leeds?"
    assert turn(station, said).reason != "off_topic:timetable"


def test_a_place_down_the_road_is_another_place(
    conference: KnowledgeBase, hotel: KnowledgeBase
) -> None:
    """Held-out 21: "is the Aldi down the road open on Sundays?" was offered back as the
    venue's or the café's hours. The people next door at a hotel are still the neighbours."""
    d = turn(conference, "is the Aldi down the road open on Sundays?")
    assert (d.kind, d.reason) == ("decline", "off_topic:elsewhere"), d
    said = "the people next door are very loud, what time are they supposed to be quiet?"
    assert turn(hotel, said).reason != "off_topic:elsewhere"


@pytest.fixture(scope="module")
def stadium(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "stadium_faq.md", embedder=embedder)


def test_the_sites_own_sport_is_no_sports_question(
    stadium: KnowledgeBase, science: KnowledgeBase
) -> None:
    """Held-out 22: at a football stadium "my boy's football mad, do you do kids' parties?"
    was declined as a sports question. A sport the FAQ talks about is the site's topic;
    results, players and transfers are still out of scope there, and the sport elsewhere."""
    said = "do you do kids' parties here? my boy's nine next month and he's football mad"
    assert answered_with(stadium, said) == "Can I have a birthday party at the stadium?"
    for kb, said in (
        (stadium, "how much did the club actually pay for that new centre back?"),
        (stadium, "who won the football last night?"),
        (science, "is the football on tonight?"),
    ):
        d = turn(kb, said)
        assert (d.kind, d.reason) == ("decline", "off_topic:sports"), (said, d)


def test_a_season_ticket_at_a_football_club_and_a_discount_in_percent(
    stadium: KnowledgeBase,
) -> None:
    """Held-out 22: the stadium's tour prices say "Season ticket holders ... get 25% off": the
    phrase stays a season ticket there (no annual pass to find), and "25% off" prices it."""
    said = "I've got a season ticket, do I get anything knocked off the tour price?"
    plan = lookups(said, None, sound_index(stadium))  # the FAQ's phrases come with its sounds
    d = decide(said, settings=settings_for(stadium), **rank_plan(plan, partial(ground, stadium)))
    assert d.kind == "faq" and d.entry is not None, d
    assert d.entry.question == "How much is a stadium tour?"


@pytest.fixture(scope="module")
def services(embedder: Embedder) -> KnowledgeBase:
    """Held-out 23's motorway services: food outlets in one entry, their hours in another."""
    return KnowledgeBase.from_file(UNDERSTAND / "services_faq.md", embedder=embedder)


def test_a_time_of_day_asked_needs_an_answer_with_hours(services: KnowledgeBase) -> None:
    """Held-out 23, after its run: "will we still get a hot meal here at like half ten
    tonight?" was answered with the list of outlets, which names no hours."""
    d = turn(services, "will we still be able to get a hot meal here at like half ten tonight?")
    assert d.kind != "faq", d
    food = "What food can I get here?"
    assert answered_with(services, "what food can I get here?") == food
    # A number that is no time of day changes nothing.
    d = turn(services, "what food can I get at one of the tables here?")
    assert d.entry is None or d.entry.question != "Are you open all night?"


def test_a_room_for_the_night_is_the_hotel(services: KnowledgeBase) -> None:
    """It had been the entry on sleeping in the car (held-out 23)."""
    question = "we can't drive any further tonight, is there a room for the night anywhere here?"
    assert answered_with(services, question) == "Is there a hotel here?"


def test_a_thing_the_visitor_cannot_name_is_offered_back(services: KnowledgeBase) -> None:
    """ "Where's the KWH, that what do you call it?" was answered with the charging prices
    (held-out 23, spoken): a guess at the thing, asked back."""
    d = turn(services, "Where's the KWH that what do you call it?")
    assert d.kind == "clarify", d


@pytest.fixture(scope="module")
def touristinfo(embedder: Embedder) -> KnowledgeBase:
    """Held-out 24's tourist information centre: its intro says it cannot see live bus and
    train times, tides or seats left."""
    return KnowledgeBase.from_file(UNDERSTAND / "touristinfo_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    ("site", "said", "reason"),
    [
        # Held-out 24, typed and spoken: each was answered with the nearest entry.
        ("theatre", "how many seats have you got left for tonight?", "off_topic:live"),
        (
            "touristinfo",
            "are there still seats on the three o'clock seal boat, or is it full?",
            "off_topic:live",
        ),
        (
            "touristinfo",
            "is the number 12 running late? we've been stood at that stop for ages",
            "off_topic:live",
        ),
        (
            "touristinfo",
            "can you tell me the train times to London for tomorrow morning?",
            "off_topic:timetable",
        ),
        ("theatre", "any nice restaurants round here for after the show?", "off_topic:elsewhere"),
        # "Any" heard as "In the".
        (
            "theatre",
            "In the nice restaurant round here for after the show, somewhere that stays open late.",
            "off_topic:elsewhere",
        ),
    ],
)
def test_live_times_seats_and_places_around_here_are_declined(
    theatre: KnowledgeBase, touristinfo: KnowledgeBase, site: str, said: str, reason: str
) -> None:
    kb = {"theatre": theatre, "touristinfo": touristinfo}[site]
    d = turn(kb, said)
    assert (d.kind, d.reason) == ("decline", reason), d


def test_a_kind_of_place_around_here_the_staff_wrote_about_is_answered(
    touristinfo: KnowledgeBase,
) -> None:
    """The staff's own word decides: their food guide lists restaurants, and the chemist has
    an entry (held-out 24's "is there a chemist nearby where I can get some tablets?" was
    declined: the place was read as what followed "nearby")."""
    said = "my hay fever's going mental, is there a chemist nearby where I can get some tablets?"
    assert answered_with(touristinfo, said) == "Where is the nearest chemist, doctor or hospital?"
    eat = "Where can we eat, and can we have a picnic?"
    assert answered_with(touristinfo, "any nice restaurants round here?") == eat


def test_what_ends_on_and_with_a_full_stop_was_cut_off(touristinfo: KnowledgeBase) -> None:
    """The recogniser ends every utterance with a full stop: held-out 24's "right, ta-ra then"
    heard as "Ride, toilet, and." was answered with the toilets; it is offered back."""
    d = turn(touristinfo, "Ride, toilet, and.")
    assert (d.kind, d.reason) == ("clarify", "incomplete"), d
    assert answered_with(touristinfo, "where are the toilets.") == "Where are the toilets?"


def test_visitors_words_for_a_stay_captions_and_small_talk(
    touristinfo: KnowledgeBase, holiday_park: KnowledgeBase, theatre: KnowledgeBase
) -> None:
    """Held-out 24, declined before: "B&B" (read as two letters "b"), "tack on another couple
    of nights", subtitles for captions, and small talk with a wish or a second question."""
    said = "we've turned up with nowhere to stay tonight, can you lot sort us out a B&B?"
    assert answered_with(touristinfo, said) == "Can you book accommodation for me?"
    said = "we're loving it here, can we, like, tack on another couple of nights?"
    assert answered_with(holiday_park, said) == (
        "When is reception open, and can we stay extra nights?"
    )
    d = turn(theatre, "I'm deaf — do any of the shows have, like, subtitles?")
    captioned = "Do you have captioned, audio-described or signed performances?"
    assert d.kind in ("faq", "clarify") and captioned in offered(d), d
    d = turn(touristinfo, "lovely, thanks very much, enjoy your night")
    assert d.kind == "chat", d
    d = turn(touristinfo, "are you a robot or is there someone talking through you?")
    assert (d.kind, d.reason) == ("chat", "chat:identity"), d


def test_a_rambles_asking_clause_answers_only_what_the_whole_ranks_first(
    leisure: KnowledgeBase, touristinfo: KnowledgeBase
) -> None:
    """Read alone, a ramble's asking clause loses what the visitor said before it: held-out
    21's "is there anything in the water for babies? mine's nine months" was answered with the
    children's swimming lessons. It answers only with the entry the whole ranks first."""
    d = turn(leisure, "is there anything in the water for babies? mine's nine months")
    assert d.kind != "faq", d
    said = (
        "My phone's almost dead, and I need to get online to check my booking. "
        "Can I charge it here somewhere?"
    )
    assert answered_with(touristinfo, said) == "Is there Wi-Fi, and can I charge my phone?"


@pytest.fixture(scope="module")
def farm_park(embedder: Embedder) -> KnowledgeBase:
    """Held-out 25's farm park: its café takes cards only, its tractor rides stop in high
    winds, and it has an entry on lost property and one on seasonal events."""
    return KnowledgeBase.from_file(UNDERSTAND / "farmpark_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    ("said", "heading"),
    [
        # Held-out 25, typed: each was declined.
        ("I only have cash, can I pay in the café with that?", "Do you take cash?"),
        ("erm, what time do you lot close today?", "When is the farm park open?"),
        ("what's the number to ring you?", "How can I contact the farm park?"),
        (
            "I left my umbrella here on Monday, where would it be now?",
            "I lost something. Where is lost property?",
        ),
        ("do you do anything for Halloween?", "What seasonal events are on?"),
        # Spoken: "loos" heard as "loose".
        ("Where the loose please?", "Where are the toilets?"),
    ],
)
def test_visitors_words_for_paying_phoning_closing_and_losing(
    farm_park: KnowledgeBase, said: str, heading: str
) -> None:
    assert answered_with(farm_park, said) == heading


def test_a_payment_method_asks_no_price() -> None:
    """ "Can I pay in the café with that?" asks how to pay, which an answer without an amount
    answers; "do I have to pay to park?" asks whether, which needs an amount or "free"."""
    from appliance.knowledge.policy import _ASKS_PAYING_RE

    assert _ASKS_PAYING_RE.search("can I pay in the café with that?") is None
    assert _ASKS_PAYING_RE.search("can I pay by card at the desk?") is None
    assert _ASKS_PAYING_RE.search("do I have to pay to park?") is not None
    assert _ASKS_PAYING_RE.search("do we pay at the door?") is not None


def test_what_happens_in_bad_weather_is_not_a_forecast(farm_park: KnowledgeBase) -> None:
    """Held-out 25: "what about if it's really windy though?" after the tractor rides was
    declined as the weather; their answer says they stop in high winds. A forecast is still
    declined, even where entries talk about the weather."""
    before = "when do the tractor rides go?"
    first = turn(farm_park, before)
    d = turn(
        farm_park,
        "what about if it's really windy though?",
        PolicyContext.after(before, first, None),
    )
    assert d.kind != "decline", d
    said = "if you shut early because of the weather, do we get our money back?"
    assert turn(farm_park, said).kind != "decline"
    for forecast in ("is it going to rain later?", "will it be windy tomorrow?"):
        d = turn(farm_park, forecast)
        assert (d.kind, d.reason) == ("decline", "off_topic:weather"), d


def test_advice_on_the_visitors_own_choices_is_declined(farm_park: KnowledgeBase) -> None:
    """Held-out 25, typed: a question about getting a rabbit as a pet was answered with
    holding the animals."""
    said = "so my daughter wants a rabbit now, do you think it's a good idea to get one as a pet?"
    d = turn(farm_park, said)
    assert (d.kind, d.reason) == ("decline", "off_topic:advice"), d


def test_who_are_you_to_a_talking_box_is_small_talk(farm_park: KnowledgeBase) -> None:
    d = turn(farm_park, "ooh, a talking box, who are you then?")
    assert (d.kind, d.reason) == ("chat", "chat:identity"), d


def test_a_word_heard_twice_running_is_offered_back(farm_park: KnowledgeBase) -> None:
    """Held-out 25, spoken in babble: "do I need to book for it?" heard as "Do you need to
    look for a toilet toilet?" was answered with the toilets. Digits said one by one are no
    such sign."""
    d = turn(farm_park, "Do you need to look for a toilet toilet?")
    assert (d.kind, d.reason) == ("clarify", "repeated_word"), d
    assert answered_with(farm_park, "do you need to look for a toilet?") == "Where are the toilets?"
    d = turn(farm_park, "can you call me on four four seven one?")
    assert d.reason != "repeated_word", d


def test_a_short_setup_then_a_question_naming_its_heading(farm_park: KnowledgeBase) -> None:
    """A ramble of 10 to 15 words is read by its asking clause only where the clause names
    its entry's whole heading: "where's first aid?" after what happened (held-out 25, typed:
    asked back). A short garbled setup before a bare "will you be open?" is not read alone
    (tried at 10 words without this check: 4 more wrong answers on the benches)."""
    said = "my girl fell over and her knee's bleeding, where's first aid?"
    assert question_parts(said) == ("where's first aid?",)
    assert answered_with(farm_park, said) == "Is there first aid?"
    garbled = "We were hoping to bring them laws on parks in day. Will you be open?"
    assert question_parts(garbled) == ("Will you be open?",)
    d = turn(farm_park, garbled)
    assert d.kind != "faq", d


@pytest.fixture(scope="module")
def open_day(embedder: Embedder) -> KnowledgeBase:
    """Held-out 26's university open day (read since)."""
    return KnowledgeBase.from_file(UNDERSTAND / "openday_faq.md", embedder=embedder)


def test_a_phrase_heard_three_times_running_is_asked_again(open_day: KnowledgeBase) -> None:
    """Held-out 26, spoken in babble: "cheers, that's really helpful" heard as "The kiosk, the
    kiosk, the kiosk, ..." was answered with registration (its answer names the kiosk). A
    word said three times on purpose is no such sign."""
    d = turn(open_day, "The kiosk, the kiosk, the kiosk, the kiosk. The kiosk, the kiosk")
    assert (d.kind, d.reason) == ("say_again", "looped"), d
    d = turn(open_day, "no no no, where can we get something to eat?")
    assert d.kind == "faq", d
    d = turn(open_day, "thank you, thank you, thank you")
    assert (d.kind, d.reason) == ("chat", "chat:thanks"), d


@pytest.mark.parametrize(
    "said",
    [
        "is car park P3 full yet, do you know?",
        "is the physics talk already full?",
        "how long's the queue for the halls tour right now?",
    ],
)
def test_whether_something_is_full_now_is_live(open_day: KnowledgeBase, said: str) -> None:
    """Held-out 26: the FAQ's opening lines say the kiosk cannot see which talks are full or
    how busy the car parks are; these were answered with parking or asked back."""
    d = turn(open_day, said)
    assert (d.kind, d.reason) == ("decline", "off_topic:live"), d


def test_whether_something_is_usually_full_is_answered(open_day: KnowledgeBase) -> None:
    assert answered_with(open_day, "is the car park usually full on Saturdays?") == (
        "Where can we park?"
    )


def test_a_follow_up_asking_where_after_when(open_day: KnowledgeBase) -> None:
    """Held-out 26: after the times of the talks, "and where is it?" was answered with the
    times again (the follow-up's query held the whole "When are ..." heading)."""

    def after(before: str, question: str) -> Decision:
        first = turn(open_day, before)
        return turn(open_day, question, PolicyContext.after(before, first, None))

    when, where = "When are the subject talks?", "Where are the subject talks held?"
    assert answered_with(open_day, "what time's the English talk?") == when
    d = after("what time's the English talk?", "and where is it?")
    assert (d.kind, d.entry) == ("faq", entry(open_day, where)), d
    d = after("what time's the English talk?", "and how long is it?")
    assert d.entry != entry(open_day, where), d


def test_own_food_is_a_picnic_and_a_small_injury_first_aid(
    castle: KnowledgeBase, open_day: KnowledgeBase
) -> None:
    """Held-out 26, typed: brought sandwiches were answered with the café; a cut finger and a
    plaster were declined."""
    said = "we've brought sandwiches with us, erm, where can we sit and eat them?"
    assert answered_with(castle, said) == "Can we bring a picnic?"
    assert answered_with(castle, "have you got sandwiches in the cafe?") == "Is there a café?"
    said = "I've cut my finger on a door, is there anywhere I can get a plaster?"
    assert answered_with(open_day, said) == "Where is first aid?"


def test_a_money_word_the_staff_wrote_with_its_neighbour_is_their_topic(
    open_day: KnowledgeBase, embedder: Embedder
) -> None:
    """Held-out 26: "is anybody explaining the student loan stuff today?" was declined as
    financial advice at an open day whose finance talk covers "student loans". A loan alone,
    or a gallery whose works are "on loan", is still advice."""
    said = "is anybody explaining the student loan stuff today? my dad's got loads of questions"
    d = turn(open_day, said)
    assert d.kind == "clarify", d
    assert "Is there a talk about student finance and fees?" in [c.label for c in d.choices]
    d = turn(open_day, "should I take out a loan?")
    assert (d.kind, d.reason) == ("decline", "off_topic:financial"), d
    gallery = KnowledgeBase.from_file(UNDERSTAND / "gallery_faq.md", embedder=embedder)
    d = turn(gallery, "can I get a loan to buy a painting?")
    assert (d.kind, d.reason) == ("decline", "off_topic:financial"), d


@pytest.fixture(scope="module")
def reserve(embedder: Embedder) -> KnowledgeBase:
    """Held-out 27's nature reserve (read since)."""
    return KnowledgeBase.from_file(UNDERSTAND / "reserve_faq.md", embedder=embedder)


@pytest.mark.parametrize(
    ("site", "said", "heading"),
    [
        # Ages the FAQ never writes as words, and going round for visiting (declined).
        (
            "reserve",
            "how much is it for me and my two kids to go round? they're eight and twelve",
            "How much does it cost to visit?",
        ),
        (
            "reserve",
            "has anything good been spotted this morning? anything a bit rare?",
            "What's been seen on the reserve recently?",
        ),
        ("reserve", "will the buggy be okay on the paths out there?", "Can I bring a pushchair?"),
        (
            "reserve",
            "my friend's gone over on her ankle out on the sea wall and she can't walk, what do "
            "I do?",
            "Where is first aid, and what if someone is hurt on the trails?",
        ),
        # Asked back before: "gonna" was a word the FAQ lacks; a loaf is bread.
        (
            "reserve",
            "roughly how much is the car park if we're gonna be here all day?",
            "Where can I park, and how much is it?",
        ),
        (
            "reserve",
            "the kids have brought a whole loaf for the ducks, that's alright isn't it?",
            "Can I feed the ducks?",
        ),
        # "Over-65s" is the price list's word for a senior.
        (
            "aquarium",
            "is it any cheaper if you're over sixty-five? I'm bringing my nan",
            "How much does it cost to get in?",
        ),
        (
            "aquarium",
            "if we go out for a bite to eat can we come back in after?",
            "How long does a visit take, and can I leave and come back?",
        ),
        (
            "aquarium",
            "when do the penguins get their dinner?",
            "What time are the feeding times and talks?",
        ),
        (
            "aquarium",
            "is there anywhere to dump our bags? they're really heavy",
            "How long does a visit take, and can I leave and come back?",
        ),
        # Held-out 28: spoken, the first was answered with the hearing loop ("who can help").
        (
            "cathedral",
            "My friend has come over all faint who can help",
            "What should I do if someone is taken ill?",
        ),
        (
            "cathedral",
            "is there a vicar or someone around I could have a word with? I'm having a bit of a "
            "rough time",
            "Can I speak to a priest or a chaplain?",
        ),
        ("cathedral", "how much is it to get in then?", "Do I have to pay to get in?"),
        ("cathedral", "gents?", "Where are the toilets?"),
        ("zoo", "how much is it to get in then?", "How much is a ticket?"),
        (
            "cinema",
            "we're stuck in traffic, gonna be about twenty minutes behind, will they still let "
            "us in?",
            "What happens if I'm late, and how long are the adverts?",
        ),
        # Read at stop 31: where and when it was lost; a question of common words only.
        (
            "cathedral",
            "I think I left my scarf in here yesterday afternoon, a blue one",
            "I've lost something. Where is lost property?",
        ),
        (
            "cinema",
            "what happens if we're late?",
            "What happens if I'm late, and how long are the adverts?",
        ),
        # Held-out 29: a chemist "in here" is the site's own pharmacy, a chair to push is a
        # wheelchair, a sarnie is food, working out is the gym, food sent up is room service,
        # a dog's lead is the dog's.
        (
            "hospital",
            "is the chemist in here open on a Saturday?",
            "Where is the pharmacy and when is it open?",
        ),
        (
            "hospital",
            "my husband can't walk very far, is there a chair I can push him round in?",
            "Can I borrow a wheelchair?",
        ),
        (
            "hospital",
            "where can I grab a coffee and a sarnie while I wait?",
            "Is there a café, and where is the shop?",
        ),
        (
            "hotel",
            "is there somewhere I can work out first thing, like half six?",
            "When is the gym open?",
        ),
        (
            "hotel",
            "can I get some food sent up? I really can't be bothered going out",
            "Is there room service?",
        ),
        (
            "themepark",
            "my husband's got MS and he can't stand for very long, is there some sort of pass so "
            "he doesn't have to wait in line with everyone?",
            "Is there a ride access pass for disabled visitors?",
        ),
        (
            "themepark",
            "we've got the dog in the car, can he come round with us on his lead?",
            "Can I bring my dog?",
        ),
    ],
)
def test_held_out_27_to_29_questions_in_other_words(
    request: pytest.FixtureRequest, site: str, said: str, heading: str
) -> None:
    """Held-out 27 to 29, typed or spoken: each was declined or asked back (or, once,
    answered wrongly); the visitor's words are none of the FAQ's."""
    kb: KnowledgeBase = request.getfixturevalue(site)
    assert answered_with(kb, said) == heading


def test_small_talk_taken_back_is_asked_again(aquarium: KnowledgeBase) -> None:
    """Held-out 27, spoken: "sorry, is the, the jelly— no wait" heard "Sorry, it is perfect.
    No wait." was thanked for ("perfect"). Small talk after the retraction still counts."""
    d = turn(aquarium, "Sorry, it is perfect. No wait.")
    assert (d.kind, d.reason) == ("say_again", "retracted"), d
    d = turn(aquarium, "no, sorry, thank you")
    assert (d.kind, d.reason) == ("chat", "chat:thanks"), d
    d = turn(aquarium, "Platform tickets in our forecale. No, wait. No.")
    assert (d.kind, d.reason) == ("say_again", "retracted"), d


def test_a_phone_about_to_die_needs_charging(conference: KnowledgeBase) -> None:
    """Held-out 27 (and 23, 25): "my phone is about to die" was asked back, its dying no word
    of the FAQ's."""
    said = "my phone is about to die, where can I charge it?"
    assert answered_with(conference, said) == "Where can I charge my phone?"


def test_whether_another_kind_of_place_is_open_is_declined(
    conference: KnowledgeBase, reserve: KnowledgeBase
) -> None:
    """Held-out 27: "is the Norbridge museum open on Sundays?" and "do you know if the pier's
    open today?" were asked back with the site's own hours. A part of the site, or a name of
    its own misheard, is no other place."""
    for kb, said in (
        (conference, "is the Norbridge museum open on Sundays?"),
        (reserve, "do you know if the pier's open today?"),
    ):
        d = turn(kb, said)
        assert (d.kind, d.reason) == ("decline", "off_topic:elsewhere"), d
    assert answered_with(conference, "is the building open on Sundays?") == (
        "What are the centre's opening hours?"
    )
    assert answered_with(reserve, "is the shop open now?") == "Is there a shop?"


@pytest.fixture(scope="module")
def cathedral(embedder: Embedder) -> KnowledgeBase:
    """Held-out 28's cathedral (read since)."""
    return KnowledgeBase.from_file(UNDERSTAND / "cathedral_faq.md", embedder=embedder)


@pytest.fixture(scope="module")
def cinema(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "cinema_faq.md", embedder=embedder)


@pytest.fixture(scope="module")
def garden(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(UNDERSTAND / "garden_faq.md", embedder=embedder)


def test_a_restart_given_up_is_asked_again(garden: KnowledgeBase) -> None:
    """Held-out 28: "mm... the pots, the, no—" (heard "Mm the pots the no") was answered with
    recycling plant pots. No sentence ends on "the no"; "the no-entry sign" goes on."""
    for said in ("mm... the pots, the, no—", "Mm the pots the no"):
        d = turn(garden, said)
        assert (d.kind, d.reason) == ("say_again", "retracted"), d
    d = turn(garden, "where is the no-entry sign?")
    assert d.reason != "retracted", d


def test_a_question_ending_on_her_is_not_cut_off(cathedral: KnowledgeBase) -> None:
    """Held-out 28, spoken: "... is there another way in for her" was asked to be said again
    ("her" can end a question unfinished); the entry offered back is the better reply."""
    said = (
        "my mum can't manage steps and I saw there's some at the big front door is there "
        "another way in for her"
    )
    d = turn(cathedral, said)
    assert d.kind == "clarify", d
    assert [c.label for c in d.choices] == ["Is the cathedral wheelchair accessible?"]
    d = turn(cathedral, "is it the one that")
    assert (d.kind, d.reason) == ("say_again", "incomplete"), d


@pytest.fixture(scope="module")
def themepark(embedder: Embedder) -> KnowledgeBase:
    """Held-out 29's theme park (read since)."""
    return KnowledgeBase.from_file(UNDERSTAND / "themepark_faq.md", embedder=embedder)


def test_what_the_kiosk_cannot_do_or_see_is_declined(
    themepark: KnowledgeBase, hospital: KnowledgeBase, cinema: KnowledgeBase
) -> None:
    """Held-out 29: paying on the kiosk's own screen was answered with the Fast Lane's price,
    and the visitor's own appointment time with how to check in. Paying by card, and where to
    go for an appointment, are still the staff's answers."""
    for kb, said, why in (
        (
            themepark,
            "can I just pay for the fast lane thing on this screen with my card?",
            "payment",
        ),
        (themepark, "can I book the birthday party on the screen here?", "booking"),
        (hospital, "can you tell me what time my appointment is? I've lost the letter", "records"),
        (hospital, "when's my scan?", "records"),
    ):
        d = turn(kb, said)
        assert (d.kind, d.reason) == ("decline", f"off_topic:{why}"), (said, d)
    assert answered_with(themepark, "can I pay with my card?") == "Can I pay with cash?"
    assert turn(cinema, "can I buy popcorn at the screen?").kind == "faq"  # the auditorium
    assert answered_with(hospital, "what time should I get here for my appointment?") == (
        "How do I check in for my appointment?"
    )


def test_a_way_not_wanted_and_the_full_price_are_no_topic(
    hotel: KnowledgeBase, themepark: KnowledgeBase, cathedral: KnowledgeBase
) -> None:
    """Held-out 29: "... I don't really want a taxi" was answered with the taxi; "is it full
    whack?" was declined as a question about what is full right now. Held-out 28: "the
    nearest place to park the car" was declined as directions elsewhere."""
    d = turn(
        hotel,
        "what's the cheapest way to get out to the airport tomorrow? I don't really want a taxi",
    )
    assert offered(d) == ["How do I get to the airport?"], d
    d = turn(themepark, "my nan's seventy-two, does she get in any cheaper or is it full whack?")
    assert d.reason != "off_topic:live", d
    assert (
        answered_with(cathedral, "where's the nearest place to park the car?")
        == "Where can I park?"
    )
    d = turn(cathedral, "where's the nearest place to get a pint?")
    assert (d.kind, d.reason) == ("decline", "off_topic:directions"), d
    # Not wanting to miss something rules nothing out (no article: no thing named).
    d = turn(cathedral, "I don't want to miss anything, what are the highlights?")
    assert offered(d) == ["What are the things I shouldn't miss?"], d


def test_small_talk_beside_a_name_or_a_remark_is_still_small_talk(themepark: KnowledgeBase) -> None:
    """Held-out 29: "thank you ever so much" heard "thank you, Emma so much", "hello there"
    heard "Hello, Nair", and a joke asked for beside a remark were declined as questions."""
    for said, intent in (
        ("Lovely, thank you, Emma so much.", "thanks"),
        ("Hello, Nair, are you a computer or is there somebody in there?", "identity"),
        ("go on then, tell us a joke, the kids are getting bored", "joke"),
    ):
        d = turn(themepark, said)
        assert (d.kind, d.reason) == ("chat", f"chat:{intent}"), (said, d)
    # A word of the FAQ is no name; a question beside a joke, or a joke on a topic, is no
    # small talk.
    assert answered_with(themepark, "hello, Toilets") == "Where are the toilets and baby changing?"
    assert turn(themepark, "tell us a joke, where are the toilets?").kind != "chat"
    assert turn(themepark, "tell me a joke about the prime minister").kind == "decline"


def test_a_nut_allergy_is_an_allergy(themepark: KnowledgeBase) -> None:
    """Held-out 29: "my son's got a nut allergy ..." was declined ("nut" no word of the FAQ)."""
    d = turn(themepark, "my son's got a nut allergy, how do I find out what's safe for him to eat?")
    assert offered(d) == ["Do you cater for food allergies?"], d


def test_the_hospital_as_a_place_to_go_is_a_journey(
    station: KnowledgeBase, cinema: KnowledgeBase
) -> None:
    """Held-out 10, 13, 16 and 25: "which bus goes to the hospital from here?" was declined as
    medical advice at a station whose bus entry names the hospital's bus. Where the FAQ does
    not, the way there is still declined as directions elsewhere; a hospital needed is still
    medical."""
    said = "which bus goes to the hospital from here?"
    assert answered_with(station, said) == "Where can I get a taxi or a bus?"
    d = turn(cinema, "how do I get to the hospital?")
    assert (d.kind, d.reason) == ("decline", "off_topic:directions"), d
    d = turn(station, "I think I need a hospital")
    assert (d.kind, d.reason) == ("decline", "off_topic:medical"), d


def test_a_request_the_staff_answered_is_offered_back_not_declined(
    hotel: KnowledgeBase, cinema: KnowledgeBase
) -> None:
    """Held-out 6 and 20: "could you get me a cab to the station?" was declined as a booking,
    because the airport's entry led the hotel's "Can you call me a taxi?" by a little; both
    are offered back now. Held-out 13: "the closest place to leave the car" was declined as
    directions elsewhere."""
    d = turn(hotel, "could you get me a cab to the station?")
    assert d.kind == "clarify", d
    assert "Can you call me a taxi?" in [c.label for c in d.choices]
    d = turn(hotel, "can you book me a table for tonight?")
    assert (d.kind, d.reason) == ("decline", "off_topic:booking"), d
    said = "where's the closest place to leave the car, mate?"
    assert answered_with(cinema, said) == "Where can I park, and how do I get here by bus or train?"


def test_a_condition_beside_a_question_the_staff_answered_with_it_in_mind(
    cinema: KnowledgeBase, themepark: KnowledgeBase
) -> None:
    """Held-out 13: "my daughter's diabetic, can she bring her own snacks in?" was declined as
    medical advice though the cinema allows snacks needed "for medical reasons". A condition
    the staff did not write of, or a medicine, is still declined."""
    d = turn(cinema, "my daughter's diabetic, is it okay if she brings her own snacks in?")
    assert offered(d) == ["Can I take food and drink into the film?"], d
    assert answered_with(themepark, "my son is allergic to nuts, is the food ok for him?") == (
        "Do you cater for food allergies?"
    )
    for kb, said in (
        (cinema, "I'm pregnant, is it ok to watch a horror film?"),
        (themepark, "she's diabetic, can she take paracetamol with her insulin?"),
    ):
        d = turn(kb, said)
        assert d.kind == "decline" and d.entry is None, (said, d)


@pytest.fixture(scope="module")
def snowcentre(embedder: Embedder) -> KnowledgeBase:
    """Held-out 30's snow centre (read since)."""
    return KnowledgeBase.from_file(UNDERSTAND / "snowcentre_faq.md", embedder=embedder)


def test_closing_time_snow_and_fixtures(snowcentre: KnowledgeBase, stadium: KnowledgeBase) -> None:
    """Held-out 30: "what time do you close on a Sunday?" was declined (the heading says
    "open", and only a refund entry's heading said "closed"); at a snow centre "up on the
    snow" was declined as the weather; "who are we playing on Saturday?" was answered with a
    tour that runs on Saturdays."""
    assert answered_with(snowcentre, "what time do you lot shut tonight?") == (
        "When is the snow centre open?"
    )
    assert answered_with(stadium, "what time do you close on a Sunday?") == (
        "When is the visitor centre open?"
    )
    d = turn(snowcentre, "where do I stick my handbag and jacket while I'm up on the snow?")
    assert d.reason != "off_topic:weather" and d.kind in ("faq", "clarify"), d
    for kb, said, why in (
        (snowcentre, "is it going to snow tomorrow?", "weather"),
        (stadium, "who are we playing on Saturday?", "sports"),
    ):
        d = turn(kb, said)
        assert (d.kind, d.reason) == ("decline", f"off_topic:{why}"), (said, d)
    assert turn(snowcentre, "is it snowing outside?").kind == "decline"


def test_small_talk_about_the_kiosk_itself(snowcentre: KnowledgeBase) -> None:
    """Held-out 30: "are you a robot or is someone sat in there?" and "ha, don't you get cold
    standing here all day?" were declined as questions."""
    assert turn(snowcentre, "are you a robot or is someone sat in there?").kind == "chat"
    assert turn(snowcentre, "ha, don't you get cold standing here all day?").kind == "chat"
    assert turn(snowcentre, "ha, don't you get cold on the slope?").kind != "chat"
    # "hiya! you alright?" as it was heard in the spoken run.
    assert turn(snowcentre, "Hire you all right").kind == "chat"


def test_a_thing_named_only_for_its_holders_is_not_priced(stadium: KnowledgeBase) -> None:
    """Held-out 30: "how much is a season ticket for next year?" was answered with the tour's
    prices, whose "Season ticket holders ... get 25% off" named it. The tour's price for them
    is still the tour's topic."""
    d = turn(stadium, "how much is a season ticket for next year?")
    assert d.kind == "decline", d
    d = turn(stadium, "how much is the tour for season ticket holders?")
    assert offered(d)[:1] == ["How much is a stadium tour?"], d


def test_insurance_is_declined_unless_the_staff_wrote_of_it(snowcentre: KnowledgeBase) -> None:
    """Held-out 30: "do I need my own insurance ..., like for accidents?" was answered with
    first aid."""
    d = turn(snowcentre, "do I need my own insurance to go on the slope, like for accidents?")
    assert (d.kind, d.reason) == ("decline", "off_topic:financial"), d


def test_a_short_question_pointing_back_then_a_statement_follows_on(
    stadium: KnowledgeBase,
) -> None:
    """Held-out 30: "is there one with a hoist? my son's a full-time wheelchair user" after the
    toilets was answered with wheelchair access (the statement's topic); the toilets' answer
    has the hoist. Without a previous topic, the statement is read as before."""
    before = "where are the toilets?"
    ctx = PolicyContext.after(before, turn(stadium, before), None)
    said = "is there one with a hoist? my son's a full-time wheelchair user"
    d = turn(stadium, said, ctx)
    assert offered(d) == ["Where are the toilets?"], d
    assert offered(turn(stadium, said)) != ["Where are the toilets?"]
