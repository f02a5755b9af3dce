"""Text normalisation for retrieval: unicode-aware words, stopwords, a light stemmer, synonyms."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOPWORDS", "SYNONYMS", "joined_terms", "stem", "tokenize"]


# Small on purpose: only words that carry no topic. "much", "free", "open" and the like stay.
STOPWORDS = frozenset(
    """
    a about all also am an and any are as at be been being but by can could did do does doing
    for from get got had has have having he her here hi hello his how i if in into is it its
    just me my of on or our please she should so some than that the their them then there these
    they this those to too us was we were what when where which who whom why will with would you
    your yours something anything somewhere anywhere someone anyone thing
    """.split()
)

# Venue-independent synonyms that visitors use where staff write another word.
SYNONYMS = {
    "kid": "child",
    "children": "child",
    "toddler": "child",
    "baby": "child",
    "son": "child",
    "daughter": "child",
    "grandson": "child",
    "granddaughter": "child",
    "grandchild": "child",
    "grandchildren": "child",
    "grandkid": "child",
    "boy": "child",
    "girl": "child",
    "restroom": "toilet",
    "bathroom": "toilet",
    "lavatory": "toilet",
    "loo": "toilet",
    "wc": "toilet",
    "wi": "wifi",  # "wi-fi" is also indexed as its joined form
    "internet": "wifi",
    "price": "cost",
    "fee": "cost",
    "pay": "cost",
    "photo": "photograph",
    "picture": "photograph",
    "eat": "cafe",
    "food": "cafe",
    "drink": "cafe",
    "restaurant": "cafe",
    "coffee": "cafe",
    "coat": "cloakroom",
    "jacket": "cloakroom",
    "bag": "locker",
    "elevator": "lift",
    "sell": "buy",
    "purchase": "buy",
    "telephone": "phone",
    "call": "phone",
    # Comparatives and superlatives of the words visitors ask times, prices and ways with
    # ("can we stay later", "the nearest stop") meet the FAQ's "late", "near".
    "later": "late",
    "latest": "late",
    "earlier": "early",
    "earliest": "early",
    "cheaper": "cheap",
    "cheapest": "cheap",
    "nearer": "near",
    "nearest": "near",
    "closer": "close",
    "closest": "close",
    "sooner": "soon",
    "soonest": "soon",
    # "What time do you shut?": the FAQ says when it closes.
    "shut": "close",
}

_WORD_RE = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_POSSESSIVE_RE = re.compile(r"['’]s$")


def _strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# Plurals the suffix rules cannot undo: "scarves" would become "scarv", never "scarf".
_IRREGULAR_PLURALS = {
    "scarves": "scarf",
    "skis": "ski",  # "-is" keeps its "s" elsewhere ("this", "axis")
    "shelves": "shelf",
    "knives": "knife",
    "wives": "wife",
    "halves": "half",
    "loaves": "loaf",
    "wolves": "wolf",
    "calves": "calf",
    "thieves": "thief",
    "women": "woman",
    "men": "man",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
}


def stem(word: str) -> str:
    """Light suffix stemming: enough that plurals, -ing and -ed forms meet their base word.

    A final "e" is dropped last so that "close", "closed" and "closing" all become "clos".
    """
    word = _IRREGULAR_PLURALS.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    else:
        return word[:-1] if len(word) > 3 and word.endswith("e") else word
    # "stopped" -> "stopp" -> "stop"; keep "ll", "ss", "zz" ("called" -> "call").
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1].isalpha():
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


_STEMMED_SYNONYMS = {stem(k): stem(v) for k, v in SYNONYMS.items()}


def _term(word: str) -> str | None:
    if word in STOPWORDS:
        return None
    stemmed = stem(word)
    return _STEMMED_SYNONYMS.get(stemmed, stemmed)


def tokenize(text: str) -> list[str]:
    """Lowercase, unicode-aware words minus stopwords, stemmed; hyphenated words also joined."""
    text = _strip_accents(unicodedata.normalize("NFKC", text).casefold())
    out: list[str] = []
    for match in _WORD_RE.finditer(text):
        word = _POSSESSIVE_RE.sub("", match.group())
        pieces = re.split(r"[-'’]", word)
        if len(pieces) > 1 and "-" in word:
            joined = _term("".join(pieces))
            if joined is not None:
                out.append(joined)
        elif len(pieces) > 1:  # "don't" -> "dont"
            pieces = ["".join(pieces)]
        for piece in pieces:
            term = _term(piece)
            if term is not None:
                out.append(term)
    return out


def joined_terms(text: str) -> frozenset[str]:
    """The terms `tokenize` makes by joining a hyphenated word ("ladies-only" ->
    "ladiesonly"), besides its parts: a joined form no FAQ has is no word of its own."""
    text = _strip_accents(unicodedata.normalize("NFKC", text).casefold())
    out: set[str] = set()
    for match in _WORD_RE.finditer(text):
        word = _POSSESSIVE_RE.sub("", match.group())
        if "-" in word:
            joined = _term("".join(re.split(r"[-'’]", word)))
            if joined is not None:
                out.add(joined)
    return frozenset(out)
