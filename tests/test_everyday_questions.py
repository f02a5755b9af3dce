"""The commonest visitor questions, asked of every site's FAQ: an answer must be on the topic.

Held-out sets ask each site a few dozen questions; the same everyday question ("can I charge
my phone?") asked of seventeen sites found wrong answers none of them had asked (stops 21-22:
a hotel's car chargers, a gallery's bus route for "where is the exit?"). Asking back or
declining is always allowed here (a site may lack the topic); an answer must be an entry
whose heading or answer is about what was asked. Each check is a loose pattern over the
entry's heading and answer: it catches an answer on another topic, not a poor one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import SAMPLE, UNDERSTAND
from test_policy import turn

from appliance.knowledge.embeddings import Embedder
from appliance.knowledge.ranking import KnowledgeBase

_TIME = r"\d{1,2}[:.]\d{2}|\d{1,2} ?(?:am|pm)\b|midnight|noon|24 hours"
_PRICE = r"£|€|\$|\bfree\b"

# (question, pattern its answer's heading or text must match, where: "heading" or "any").
EVERYDAY: tuple[tuple[str, str, str], ...] = (
    ("what time do you close?", _TIME, "any"),
    ("when do you open in the morning?", _TIME, "any"),
    ("where are the toilets?", r"toilet|loo|\bWC\b|restroom", "any"),
    ("how much is a ticket?", _PRICE, "any"),
    ("how much is entry?", _PRICE, "any"),
    ("how much is a ticket to get in?", _PRICE, "any"),
    ("can I charge my phone?", r"socket|USB|plug|charging point", "any"),
    ("is there somewhere to charge an electric car?", r"electric|\bEV\b|charg", "any"),
    ("is there wifi?", r"wi-?fi|internet", "any"),
    ("where is the exit?", r"exit|way out", "heading"),
    ("can I take pictures?", r"photo|picture|camera|film(?:ing)?\b", "any"),
    ("where can I get a coffee?", r"caf[eé]|coffee|restaurant|\bbar\b|drink|kiosk", "any"),
    ("where can I park?", r"park", "any"),
    ("can I bring my dog?", r"\bdogs?\b|\bpets?\b|animal", "any"),
    ("is it wheelchair accessible?", r"wheelchair|accessib|step-free|\blifts?\b|ramp", "any"),
    ("where can I leave my coat?", r"cloakroom|locker|coat|\bbags?\b|luggage", "any"),
    ("I've lost my phone", r"\blost\b|property|found", "any"),
    ("is there a cash machine?", r"cash|\bATM\b", "any"),
    ("where can I smoke?", r"smok|vap", "any"),
    ("can we eat our own food here?", r"food|picnic|\beat", "any"),
    ("how do I get here by bus?", r"\bbus", "any"),
    ("is there a gift shop?", r"\bshop", "any"),
    ("where can I change my baby's nappy?", r"baby|changing|nappy|nappies", "any"),
    ("how long does it take to see everything?", r"hours?\b|minutes", "any"),
    ("do you do a student discount?", r"student|concession|discount", "any"),
    ("can I pay by card?", r"card|cash|contactless|\bpay", "any"),
    ("is there a lift?", r"\blifts?\b|elevator|step-free|accessib", "any"),
    ("what's your phone number?", r"\d{4,}|\d{3,} \d{3,}", "any"),
    ("can I get a refund?", r"refund|money back|exchange|cancel", "any"),
    ("are there lockers?", r"locker|cloakroom|left luggage|luggage", "any"),
    ("do you have a map?", r"\bmaps?\b|leaflet|guide|plan\b", "any"),
    ("can children come in?", r"child|\bkids?\b|\bage|famil|under", "any"),
    ("is there a hearing loop?", r"hearing|loop|\bdeaf", "any"),
    ("can I bring a school group?", r"group|school|class", "any"),
    ("is there somewhere to sit down?", r"\bseats?\b|bench|\bsit|rest\b|seating", "any"),
)

# Left out: the hospital and the tourist information, where "can I charge my phone?" finds a
# phone entry this test's pattern does not accept (as it stood when they were held out). A
# new held-out site stays out until its set has been run once, unread (the farm park of
# held-out 25 and the open day of held-out 26 are in since).
HELD_OUT = {
    "hospital_faq.md",
    "touristinfo_faq.md",
    "reserve_faq.md",
    "cathedral_faq.md",
    "themepark_faq.md",
    "snowcentre_faq.md",
}
FAQS = sorted(p.name for p in UNDERSTAND.glob("*_faq.md") if p.name not in HELD_OUT)


@pytest.fixture(scope="module")
def sites(embedder: Embedder) -> dict[str, KnowledgeBase]:
    paths = [UNDERSTAND / name for name in FAQS] + [SAMPLE]
    return {p.name: KnowledgeBase.from_file(Path(p), embedder=embedder) for p in paths}


# Wrong answers this test found and no rule fixes yet, each with why; the test fails when one
# of them is answered correctly (take it off the list) as well as on any new one.
# All answered on one weak word at a semantic match of 0.30-0.44, where a floor high enough
# to hold them cost ~50 right answers on the text benches (stop 22).
KNOWN: dict[tuple[str, str], str] = {
    # "sit" and "down" in an answer: no seating entry at either site.
    ("castle_faq.md", "is there somewhere to sit down?"): "Is there a baby changing room?",
    ("science_faq.md", "is there somewhere to sit down?"): (
        "Do you have quiet or sensory-friendly sessions?"
    ),
    # No entry on a picnic; the café's answer is the nearest.
    ("gallery_faq.md", "can we eat our own food here?"): "Is there a café or a shop?",
    # The hotel has no bus entry; its airport transfer answer names trains and taxis.
    ("hotel_faq.md", "how do I get here by bus?"): "How do I get to the airport?",
    # "Keep your phone charged" in the e-ticket answer.
    ("station_faq.md", "can I charge my phone?"): "Can I use a ticket on my phone?",
}


def test_everyday_questions_are_answered_on_their_topic_or_not_at_all(
    sites: dict[str, KnowledgeBase],
) -> None:
    wrong: dict[tuple[str, str], str] = {}
    for name, kb in sites.items():
        for question, pattern, where in EVERYDAY:
            d = turn(kb, question)
            if d.kind != "faq" or d.entry is None:
                continue
            text = (
                d.entry.question if where == "heading" else d.entry.question + "\n" + d.entry.answer
            )
            if not re.search(pattern, text, re.IGNORECASE):
                wrong[(name, question)] = d.entry.question
    assert wrong == KNOWN, "\n".join(
        f"{site}: {q!r} -> {h!r}" for (site, q), h in sorted(wrong.items())
    )
