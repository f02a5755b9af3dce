"""FAQ parsing, BM25 ranking on the sample venue FAQ, and the grounded system prompt."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from appliance.knowledge import (
    FaqEntry,
    Hit,
    KnowledgeBase,
    KnowledgeError,
    build_system_prompt,
    parse_faq,
    stem,
    tokenize,
)

SAMPLE = Path(str(importlib.resources.files("appliance") / "data" / "sample_faq.md"))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.from_file(SAMPLE)


# --------------------------------------------------------------------------- parse_faq


def test_parse_basic_ignores_preamble_and_joins_lines() -> None:
    md = (
        "# Title\n"
        "Intro text that is not an answer.\n"
        "\n"
        "## When do you open?\n"
        "We open at 9:30\n"
        "on weekdays.\n"
        "\n"
        "## Where is the café?  \n"
        "Ground floor.\n"
    )
    entries, warnings = parse_faq(md)
    assert entries == [
        FaqEntry("When do you open?", "We open at 9:30 on weekdays."),
        FaqEntry("Where is the café?", "Ground floor."),
    ]
    assert warnings == []


def test_parse_crlf_bom_and_trailing_spaces() -> None:
    md = "\ufeff## Parking?   \r\nYes, 80 spaces.   \r\n\r\n## Wifi? ##\r\nFree.\r\n"
    entries, warnings = parse_faq(md)
    assert entries == [FaqEntry("Parking?", "Yes, 80 spaces."), FaqEntry("Wifi?", "Free.")]
    assert warnings == []


def test_parse_skips_empty_question_missing_answer_and_duplicates_with_line_numbers() -> None:
    md = (
        "## Dogs?\n"  # line 1
        "Assistance dogs only.\n"
        "##\n"  # line 3: empty heading
        "Orphan text.\n"
        "## No answer here\n"  # line 5
        "   \n"
        "## DOGS ?\n"  # line 7: same question as line 1
        "All dogs welcome.\n"
    )
    entries, warnings = parse_faq(md)
    assert entries == [FaqEntry("Dogs?", "Assistance dogs only.")]
    assert len(warnings) == 3
    assert warnings[0].startswith("line 3:") and "empty" in warnings[0]
    assert warnings[1].startswith("line 5:") and "no answer" in warnings[1]
    assert warnings[2].startswith("line 7:") and "line 1" in warnings[2]


def test_parse_markdown_cleanup_lists_subheadings_and_sections() -> None:
    md = (
        "## How much is a **ticket**?\n"
        "Prices:\n"
        "- Adult €12\n"
        "- Child €6\n"
        "See [our site](https://example.org/t).\n"
        "### Note\n"
        "Cash is fine.\n"
        "# Section title\n"
        "Text under a section title belongs to no question.\n"
        "## Lockers?\n"
        "1. Use a €1 coin\n"
    )
    entries, warnings = parse_faq(md)
    assert warnings == []
    assert entries[0] == FaqEntry(
        "How much is a ticket?",
        "Prices: Adult €12. Child €6 See our site (https://example.org/t). ### Note Cash is fine.",
    )
    assert entries[1] == FaqEntry("Lockers?", "Use a €1 coin")


def test_parse_nothing() -> None:
    assert parse_faq("") == ([], [])
    assert parse_faq("# Just a title\nand intro\n") == ([], [])


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("tickets", "ticket"),
        ("opening", "open"),
        ("opened", "opens"),
        ("closing", "close"),
        ("activities", "activity"),
        ("stopped", "stop"),
        ("languages", "language"),
    ],
)
def test_stem_meets_base_word(a: str, b: str) -> None:
    assert stem(a) == stem(b)


def test_stem_leaves_short_and_double_s_words() -> None:
    assert stem("bus") == "bus"
    assert stem("class") == "class"
    assert stem("bring") == "bring"


def test_tokenize_unicode_stopwords_synonyms_hyphens() -> None:
    assert tokenize("Where are the TOILETS?") == ["toilet"]
    assert tokenize("the of and is") == []
    assert tokenize("Café") == tokenize("cafe")
    assert tokenize("kids") == tokenize("children")
    assert "wifi" in tokenize("Is there wi-fi?")
    assert tokenize("Museum's") == tokenize("museum")
    assert tokenize("Größe") == tokenize("GROSSE") == ["gross"]


# --------------------------------------------------------------------------- sample FAQ


def test_sample_faq_parses_cleanly() -> None:
    entries, warnings = parse_faq(SAMPLE.read_text(encoding="utf-8"))
    assert warnings == []
    assert 20 <= len(entries) <= 25
    assert all(1 <= e.answer.count(". ") + 1 <= 4 for e in entries)  # short answers


@pytest.mark.parametrize(
    ("query", "question", "fact"),
    [
        ("when do you open on sunday?", "What are the opening hours?", "10:00"),
        ("how much is a ticket for kids", "How much is a ticket for children?", "€6"),
        ("can I bring my dog", "Can I bring my dog?", "assistance dogs"),
        ("How much does an adult ticket cost?", "How much is a ticket?", "€12"),
        ("where is the restroom", "Where are the toilets?", "ground floor"),
        ("what time is the guided tour", "When are the guided tours?", "11:00"),
        ("is there wi-fi", "Is there free wifi?", "HarbourLight-Guest"),
        ("where can I park my car", "Is there parking?", "€2.50"),
        ("which tram goes to the museum", "How do I get here by public transport?", "Tram line 4"),
        ("can I take pictures inside", "Can I take photos?", "flash"),
        ("is it accessible for wheelchair users", "Is the museum wheelchair accessible?", "lifts"),
        (
            "do you have an audio guide in German",
            "Which languages does the audio guide have?",
            "German",
        ),
        ("where can I leave my coat", "Is there a cloakroom or lockers?", "cloakroom"),
        ("my son is ten, does he have to pay?", "How much is a ticket for children?", "€6"),
        ("is there a family discount", "Is there a family ticket?", "€30"),
        ("where can I get something to eat", "Is there a café?", "Lantern Café"),
        ("what is your most famous exhibit", "What is the most famous exhibit?", "1887"),
        ("I lost my scarf", "I lost something. Where is lost and found?", "30 days"),
        ("are you open on public holidays", "Are you open on public holidays?", "16:00"),
        ("can I buy tickets on the internet", "Can I buy tickets online?", "harbourlight.example"),
    ],
)
def test_search_puts_right_entry_first(
    kb: KnowledgeBase, query: str, question: str, fact: str
) -> None:
    hits = kb.search(query)
    assert hits, query
    assert hits[0].entry.question == question
    assert fact.lower() in hits[0].entry.answer.lower()
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_edge_cases(kb: KnowledgeBase) -> None:
    assert kb.search("") == []
    assert kb.search("   ?!  ") == []
    assert kb.search("what is the and of it") == []  # stopwords only
    assert kb.search("zeppelin quantum xylophone") == []  # unknown words
    assert kb.search("what is the weather tomorrow") == []
    assert kb.search("ticket", k=0) == []
    assert len(kb.search("ticket", k=2)) == 2
    assert kb.search("ticket", min_score=1e9) == []


def test_search_empty_knowledge_base() -> None:
    empty = KnowledgeBase([])
    assert len(empty) == 0
    assert empty.search("ticket") == []


def test_question_outweighs_answer() -> None:
    kb = KnowledgeBase(
        [
            FaqEntry("Where is the lighthouse lens?", "On the third floor."),
            FaqEntry("Where is the shop?", "Next to the lighthouse lens exhibit."),
        ]
    )
    hits = kb.search("lighthouse", min_score=0.0)
    assert [h.entry.question for h in hits] == [
        "Where is the lighthouse lens?",
        "Where is the shop?",
    ]
    assert hits[0].score > hits[1].score > 0


# --------------------------------------------------------------------------- from_file


def test_from_file_loads_and_keeps_warnings(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text("## A?\nYes.\n## B?\n", encoding="utf-8")
    kb = KnowledgeBase.from_file(path)
    assert len(kb) == 1
    assert kb.warnings == ("line 3: question 'B?' has no answer; skipped",)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"# Title only\nno questions\n", "no questions found"),
    ],
)
def test_from_file_errors_name_path_and_reason(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "faq.md"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KnowledgeError) as info:
        KnowledgeBase.from_file(path)
    assert str(path) in str(info.value)
    assert reason in info.value.reason


def test_from_file_on_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError) as info:
        KnowledgeBase.from_file(tmp_path)
    assert info.value.path == tmp_path


# --------------------------------------------------------------------------- prompt


def test_system_prompt_has_persona_instruction_and_best_fact_last(kb: KnowledgeBase) -> None:
    hits = kb.search("how much is a ticket for kids", k=2)
    prompt = build_system_prompt("You are Bea,\n  the museum guide.", hits)
    lines = prompt.splitlines()
    assert lines[0] == "You are Bea, the museum guide."
    assert "only from the facts below" in lines[1]
    assert "one to three short" in lines[1] and "do not know" in lines[1]
    assert lines[3] == "Facts:"
    # best hit last: it sits right before the visitor's question
    assert lines[-2] == f"Q: {hits[0].entry.question}"
    assert lines[-1] == f"A: {hits[0].entry.answer}"
    assert lines[-4] == f"Q: {hits[1].entry.question}"
    assert len(prompt) < 900  # small enough for a 135M model's short context


def test_system_prompt_without_hits_and_custom_header() -> None:
    prompt = build_system_prompt("", [], venue_facts_header="Museum facts:")
    lines = prompt.splitlines()
    assert lines[0].startswith("Answer only from the facts below")
    assert lines[-2:] == ["Museum facts:", "(none)"]


def test_system_prompt_single_hit() -> None:
    hit = Hit(FaqEntry("Wifi?", "Free, no password."), 3.0)
    prompt = build_system_prompt("Persona.", [hit])
    assert prompt.endswith("Facts:\nQ: Wifi?\nA: Free, no password.")
