"""Contextual biasing toward the FAQ's words: lexicon, trie scorer, beam search, n-best.

The scorer tests run on the real Moonshine tokenizer (read from its file, no model); the
search tests on the real model with speech made by the Piper voice.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import pytest
from voicefixtures import asr, load_asr, load_tts, manifest, speech_16k, vad  # noqa: F401

from appliance.inference import ModelRunner
from appliance.knowledge import KnowledgeBase
from appliance.models_manifest import require
from appliance.voice.asr import TranscriptionAborted
from appliance.voice.bias import (
    PROPER_WEIGHT,
    ROOT,
    BiasLexicon,
    BiasTrie,
    boundary_mask,
    inflections,
    surface_forms,
)
from appliance.voice.engine import VoiceEngine
from appliance.voice.moonshine import (
    GREEDY,
    DecodeOptions,
    MoonshineAsr,
    MoonshineTokenizer,
    max_tokens_for,
)
from appliance.voice.vad import SileroVad

ROOT_DIR = Path(__file__).resolve().parents[1]
MUSEUM_FAQ = (ROOT_DIR / "appliance/data/sample_faq.md").read_text()
HOTEL_FAQ = (ROOT_DIR / "tests/data/understand/hotel_faq.md").read_text()


@functools.cache
def tokenizer() -> MoonshineTokenizer:
    return MoonshineTokenizer.from_file(require(manifest(), "asr_tokenizer", check_hash=False))


def walk(trie: BiasTrie, ids: list[int], node: int = ROOT) -> tuple[int, float]:
    """(final state, bonus collected) over `ids`."""
    total = 0.0
    for t in ids:
        node, bonus = trie.step(node, t)
        total += bonus
    return node, total


def ids(text: str) -> list[int]:
    return tokenizer().encode(text)


# --- tokenizer ----------------------------------------------------------------------------


def test_encode_is_sentencepiece_bpe() -> None:
    tok = tokenizer()
    assert [tok.pieces[i].decode() for i in tok.encode("Can I climb?")] == [
        "▁Can",
        "▁I",
        "▁clim",
        "b",
        "?",
    ]
    assert tok.decode(tok.encode("Where is the Lantern Café?")) == "Where is the Lantern Café?"
    # Characters outside the vocabulary fall back to their UTF-8 bytes (ids 3..258).
    assert tok.encode("☃")[-3:] == [3 + b for b in "☃".encode()]


def test_encode_matches_what_the_model_writes(asr: MoonshineAsr) -> None:  # noqa: F811
    """Our encoder reproduces the model's own token sequences, so trie paths are the paths the
    decoder takes."""
    for text in ("Where are the toilets?", "Is there a family ticket?", "Can I bring my dog?"):
        audio = speech_16k(text)
        tokens = asr.greedy(asr.encode(audio), max_tokens_for(len(audio) / 16000))
        assert asr.tokenizer.encode(asr.tokenizer.decode(tokens)) == tokens


# --- lexicon ------------------------------------------------------------------------------


def test_lexicon_from_faq_keeps_content_words_and_names() -> None:
    lex = BiasLexicon.from_faq_text(MUSEUM_FAQ)
    terms = dict(lex.terms)
    for word in ("galleries", "tugboat", "cloakroom", "lighthouse", "wheelchair"):
        assert terms.get(word) == 1.0, word
    for name in ("Lantern Café", "Cape Meridian", "Harbour Square", "Little Wren", "Sunday"):
        assert terms.get(name) == PROPER_WEIGHT, name
    assert "Harbour Light Maritime Museum" in terms  # from the `# ` title
    for dropped in ("the", "and", "you", "what", "yes", "two", "12", "harbourlight.example"):
        assert dropped not in terms and dropped.capitalize() not in terms, dropped
    assert not any("@" in t or "." in t for t in terms)
    hotel = dict(BiasLexicon.from_faq_text(HOTEL_FAQ).terms)
    assert {"Wilgenhof", "Keizersbrug", "Nightjar Bar", "Royal Botanical Garden"} <= set(hotel)


def test_lexicon_from_phrases() -> None:
    lex = BiasLexicon.from_phrases(["  Lantern   Café ", "tugboat", "tugboat", ""], weight=2.0)
    assert lex.terms == (("Lantern Café", 2.0), ("tugboat", 2.0))
    assert len(lex) == 2 and lex.weight("tugboat") == 2.0 and lex.weight("ship") is None


def test_the_site_lexicon_adds_the_wake_phrase_as_a_name() -> None:
    entries = KnowledgeBase.from_file(ROOT_DIR / "appliance/data/sample_faq.md").entries
    lex = BiasLexicon.for_site(entries, " Hey  Mycroft ")
    assert lex is not None
    assert lex.weight("Hey Mycroft") == lex.weight("Mycroft") == PROPER_WEIGHT
    assert lex.weight("Hey") is None  # a common word alone would pull ordinary speech
    assert dict(lex.terms).items() >= dict(BiasLexicon.from_entries(entries).terms).items()
    assert BiasLexicon.for_site(entries) == BiasLexicon.from_entries(entries)
    only = BiasLexicon.for_site((), "Okay Nabu")
    assert only is not None and set(dict(only.terms)) == {"Okay Nabu", "Nabu"}
    assert BiasLexicon.for_site(()) is None


def test_surface_forms() -> None:
    assert {"galleries", "Galleries", "gallery", "Gallery"} <= surface_forms("galleries")
    assert surface_forms("Lantern Café") == {"Lantern Café", "Lantern Cafe"}
    assert "close" in inflections("closed") and "ticket" in inflections("tickets")


# --- trie scorer --------------------------------------------------------------------------


def trie_of(*words: str, weight: float = 1.0) -> BiasTrie:
    return BiasTrie.build(BiasLexicon.from_phrases(words), tokenizer(), weight)


def test_lexicon_word_is_boosted_and_keeps_its_bonus() -> None:
    trie = trie_of("galleries")
    word = ids("galleries")
    assert len(word) >= 2  # a multi-token word: the bonus is paid token by token
    node, total = walk(trie, word)
    assert total == pytest.approx(len(word) * 1.0)
    # Completed and followed by a boundary (a new word, punctuation or the end): kept.
    for after in (ids("in"), ids("?")[-1:]):
        assert walk(trie, after, node)[1] == pytest.approx(0.0)
    assert trie.finish(node) == pytest.approx(0.0)
    # The capitalised form and the singular are boosted too.
    assert walk(trie, ids("Gallery"))[1] > 0


def test_abandoned_partial_match_gives_its_bonus_back() -> None:
    trie = trie_of("galleries")
    first = ids("galleries")[:1]
    node, partial = walk(trie, first)
    assert partial > 0 and node != ROOT
    # Left for another word, for a non-word continuation, or by ending the hypothesis.
    assert walk(trie, first + ids("in"))[1] == pytest.approx(0.0)
    taken = {*trie.children[node], *trie.children[ROOT]}
    off_path = next(t for t in range(259, 32000) if t not in taken)
    assert walk(trie, [*first, off_path])[1] == pytest.approx(0.0)
    assert partial + trie.finish(node) == pytest.approx(0.0)
    # A completed word that the next token extends ("tour" + "ist") is not that word.
    tour = trie_of("tour")
    assert walk(tour, ids("tourist") + ids("in"))[1] == pytest.approx(0.0)
    assert walk(tour, ids("tour") + ids("in"))[1] > 0


def test_nested_terms_keep_the_completed_one() -> None:
    """ "Lantern" is a term and so is "Lantern Café": stopping after "Lantern" keeps its bonus,
    and a half-said "Lantern Ca..." gives back only the part after "Lantern"."""
    trie = trie_of("Lantern", "Lantern Café")
    lantern = walk(trie, ids("Lantern"))[1]
    node, partial = walk(trie, ids("Lantern") + ids("Café")[:1])
    assert partial > lantern > 0
    assert partial + trie.finish(node) == pytest.approx(lantern)
    assert walk(trie, ids("Lantern Café"))[1] > partial


def test_bonus_of_prefix_and_row_agree_with_step() -> None:
    trie = trie_of("galleries", "tugboat", "Little Wren", weight=2.0)
    word = ids("galleries")
    assert trie.bonus([], word[0]) == pytest.approx(2.0)
    assert trie.bonus(word[:1], word[1]) == pytest.approx(2.0)
    assert trie.bonus(word[:1], ids("in")[0]) == pytest.approx(-2.0)  # abandoned: repaid
    rng = np.random.default_rng(0)
    for prefix in ([], word[:1], word, ids("Little"), ids("Little Wren")):
        node = walk(trie, prefix)[0]
        row = trie.row(node)
        sample = {*rng.integers(3, 32000, 300).tolist(), *trie.children[node], 2, *ids("tug")}
        for t in sample:
            assert row[t] == pytest.approx(trie.step(node, t)[1], abs=1e-6), (prefix, t)


def test_text_without_lexicon_words_is_not_scored() -> None:
    trie = trie_of("galleries", "tugboat", "Wilgenhof")
    text = ids("What's the weather going to be like this afternoon?")
    node, total = walk(trie, text)
    assert total == pytest.approx(0.0) and trie.finish(node) == pytest.approx(0.0)


def test_boundary_mask() -> None:
    tok = tokenizer()
    mask = boundary_mask(tok.pieces)
    assert mask[2]  # </s>
    assert mask[ids("in")[0]] and mask[ids("?")[-1]]
    assert not mask[ids("galleries")[1]]


# --- search on the real model -------------------------------------------------------------

CLIPS = (
    "What time does the museum open on Sunday?",
    "Are suitcases allowed in the galleries?",
    "Hi there, where is the Hotel Wilgenhof?",
    "so, um, what's the entrance fee",
)


def test_beam_of_one_is_the_greedy_search(asr: MoonshineAsr) -> None:  # noqa: F811
    for text in CLIPS:
        audio = speech_16k(text)
        hidden, cap = asr.encode(audio), max_tokens_for(len(audio) / 16000)
        greedy = asr.greedy(hidden, cap)
        (only,) = asr.beam_search(hidden, cap, None, width=1)
        assert list(only.tokens) == greedy, text
        # The engine's default options are greedy search: the exact tokens of before.
        assert asr.decode(hidden, cap) == greedy
        assert asr.search(hidden, cap, options=GREEDY, trie=None) == [tuple(greedy)]


def test_beam_search_returns_ranked_nbest(asr: MoonshineAsr) -> None:  # noqa: F811
    audio = speech_16k(CLIPS[1])
    hidden, cap = asr.encode(audio), max_tokens_for(len(audio) / 16000)
    hyps = asr.beam_search(hidden, cap, None, width=4)
    assert 1 <= len(hyps) <= 4
    assert [h.normalised for h in hyps] == sorted((h.normalised for h in hyps), reverse=True)
    assert all(h.score <= 0 for h in hyps)  # log-probs only, no bias
    assert "galler" in asr.tokenizer.decode(hyps[0].tokens).lower()


def _site_asr(beam: int = 4, weight: float = 1.5) -> MoonshineAsr:
    """A second engine over the same sessions, so tests that set a lexicon leave the shared
    fixture as it was."""
    shared = load_asr()
    return MoonshineAsr(
        shared._encoder,
        shared._decoder,
        shared.tokenizer,
        DecodeOptions(beam=beam, bias_weight=weight, length_penalty=0.5),
    )


def test_biasing_fixes_a_misheard_name() -> None:
    """Piper's "Wilgenhof" comes out as "woolgenhof" and "tram to Harbour Square" as "trend to
    harbor square" without biasing; with the site's lexicon, as written in the FAQ."""
    engine = _site_asr()
    hotel = speech_16k("Hi there, where is the Hotel Wilgenhof?")
    museum = speech_16k("Is there a tram to Harbour Square?")
    assert "Wilgenhof" not in engine.transcribe(hotel).text
    assert "tram" not in engine.transcribe(museum).text.split()
    engine.set_bias(BiasLexicon.from_faq_text(HOTEL_FAQ))
    tr = engine.transcribe(hotel)
    assert "Wilgenhof" in tr.text, tr
    engine.set_bias(BiasLexicon.from_faq_text(MUSEUM_FAQ))
    tr = engine.transcribe(museum)
    assert "tram" in tr.text and "Harbour Square" in tr.text, tr
    engine.set_bias(None)
    assert "tram" not in engine.transcribe(museum).text.split()


def test_biasing_leaves_clear_off_lexicon_speech_alone() -> None:
    engine = _site_asr(weight=2.0)
    audio = speech_16k("What's the weather going to be like this afternoon?")
    plain = engine.transcribe(audio).text
    engine.set_bias(BiasLexicon.from_faq_text(MUSEUM_FAQ))
    assert engine.transcribe(audio).text == plain


def test_transcript_alternatives_are_other_distinct_hypotheses() -> None:
    engine = _site_asr()
    engine.set_bias(BiasLexicon.from_faq_text(MUSEUM_FAQ))
    tr = engine.transcribe(speech_16k("Where is the cloakroom?"))
    assert "cloakroom" in tr.text
    assert tr.alternatives and tr.text not in tr.alternatives

    def key(s: str) -> str:
        return " ".join("".join(c for c in s.casefold() if c.isalnum() or c == " ").split())

    keys = [key(t) for t in (tr.text, *tr.alternatives)]
    assert len(keys) == len(set(keys))  # no repeats that differ only in case or punctuation
    greedy = load_asr().transcribe(speech_16k("Where is the cloakroom?"))
    assert greedy.alternatives == ()


def test_beam_search_polls_should_stop_per_step() -> None:
    engine = _site_asr()
    polls = 0

    def stop_after_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    with pytest.raises(TranscriptionAborted, match="after 2 tokens"):
        engine.transcribe(speech_16k(CLIPS[0]), should_stop=stop_after_three)
    assert polls == 4


def test_set_bias_and_options_swap_safely_under_concurrent_calls() -> None:
    engine = _site_asr()
    audio = speech_16k("Is there a tram to Harbour Square?")
    museum = BiasLexicon.from_faq_text(MUSEUM_FAQ)
    errors: list[BaseException] = []
    done = threading.Event()

    def swap() -> None:
        try:
            while not done.is_set():
                engine.set_bias(museum)
                engine.set_options(DecodeOptions(beam=3, bias_weight=1.0, length_penalty=0.5))
                engine.set_bias(None)
                engine.set_options(DecodeOptions(beam=4, bias_weight=1.5, length_penalty=0.5))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=swap)
    t.start()
    try:
        texts = {engine.transcribe(audio).text for _ in range(3)}
    finally:
        done.set()
        t.join()
    assert not errors and all(texts)
    engine.set_bias(museum)
    assert engine.lexicon is museum
    engine.set_options(DecodeOptions(beam=1, bias_weight=0.0))
    assert engine.transcribe(audio).alternatives == ()  # weight 0: no trie, greedy again
    engine.set_options(DecodeOptions(beam=4, bias_weight=1.5, length_penalty=0.5))
    assert "Harbour Square" in engine.transcribe(audio).text  # the lexicon was kept


def test_decode_options_are_validated() -> None:
    with pytest.raises(ValueError, match="beam"):
        DecodeOptions(beam=0)
    with pytest.raises(ValueError, match="bias_weight"):
        DecodeOptions(bias_weight=-1.0)
    with pytest.raises(ValueError, match="length_penalty"):
        DecodeOptions(length_penalty=float("nan"))


async def test_engine_sync_bias_follows_the_knowledge_base(vad: SileroVad) -> None:  # noqa: F811
    engine = VoiceEngine(
        vad_session=vad._session,
        asr=ModelRunner(_site_asr(), name="asr"),
        tts=ModelRunner(load_tts(), name="tts"),
    )
    museum = KnowledgeBase.from_file(ROOT_DIR / "appliance/data/sample_faq.md")
    assert await engine.sync_bias(museum)
    assert not await engine.sync_bias(museum)  # same object: nothing to do
    lexicon = engine.asr.model.lexicon
    assert lexicon is not None and lexicon.weight("Lantern Café") == PROPER_WEIGHT
    audio = speech_16k("Is there a tram to Harbour Square?")
    tr = await engine.asr.run(engine.asr.model.transcribe, audio, None)
    assert "Harbour Square" in tr.text
    hotel = KnowledgeBase.from_file(ROOT_DIR / "tests/data/understand/hotel_faq.md")
    assert await engine.sync_bias(hotel)
    lexicon = engine.asr.model.lexicon
    assert lexicon is not None and lexicon.weight("Wilgenhof") == PROPER_WEIGHT
    # The wake phrase joins the FAQ's words; a change of phrase alone rebuilds.
    assert await engine.sync_bias(hotel, "Hey Mycroft")
    assert not await engine.sync_bias(hotel, "Hey Mycroft")
    lexicon = engine.asr.model.lexicon
    assert lexicon is not None and lexicon.weight("Mycroft") == PROPER_WEIGHT
    assert lexicon.weight("Wilgenhof") == PROPER_WEIGHT
    assert await engine.sync_bias(None)
    assert engine.asr.model.lexicon is None
