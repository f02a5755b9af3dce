"""FAQ parsing, BM25 and hybrid ranking on the sample venue FAQ, the embedding model (tokenizer,
ONNX graph, manifest check, vectors against recorded ones) and the grounded system prompt."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.inference import InferenceSettings
from appliance.knowledge import (
    FaqEntry,
    Hit,
    KnowledgeBase,
    KnowledgeError,
    build_facts_prompt,
    build_system_prompt,
    parse_faq,
    stem,
    tokenize,
)
from appliance.knowledge.embeddings import (
    MODEL_ID_VOCAB,
    MODEL_ID_WEIGHTS,
    Embedder,
    EmbedderError,
    TensorInfo,
    WordPieceTokenizer,
    build_bert_onnx,
    graph_path,
    load_safetensors,
    read_safetensors_header,
)
from appliance.knowledge.grounding import KNOWLEDGE_HEADER, prepare
from appliance.knowledge.ranking import heading_parts
from appliance.knowledge.text import joined_terms
from appliance.models_manifest import ModelError, load_manifest, require

SAMPLE = Path(str(importlib.resources.files("appliance") / "data" / "sample_faq.md"))
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.from_file(SAMPLE)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()  # the real model, size and sha256 checked against the manifest


@pytest.fixture(scope="module")
def hybrid_kb(embedder: Embedder) -> KnowledgeBase:
    return KnowledgeBase.from_file(SAMPLE, embedder=embedder)


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
        ("scarves", "scarf"),
        ("knives", "knife"),
        ("women", "woman"),
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
    assert tokenize("later latest") == tokenize("late late")
    assert tokenize("the nearest stop") == tokenize("near stop")
    assert tokenize("when do you shut") == tokenize("when do you close")
    assert tokenize("shuts shutting") == tokenize("closes closing")


def test_joined_terms_are_the_hyphenated_words_made_one() -> None:
    """`tokenize` keeps a hyphenated word's parts and the word made one; `joined_terms` names
    the latter, which the answer policy does not count as a word of its own."""
    said = "is there a ladies-only night, or a grown-ups' wi-fi? don't know"
    joined = joined_terms(said)
    assert joined == {"ladiesonly", "wifi", "grownup"}
    assert joined <= set(tokenize(said))
    assert {"lady", "only"} <= set(tokenize(said)) - joined


# --------------------------------------------------------------------------- sample FAQ


def test_sample_faq_parses_cleanly() -> None:
    entries, warnings = parse_faq(SAMPLE.read_text(encoding="utf-8"))
    assert warnings == []
    assert 20 <= len(entries) <= 25
    assert all(1 <= e.answer.count(". ") + 1 <= 4 for e in entries)  # short answers


# (query, expected FAQ question, a fact from its answer)
SEARCH_CASES = [
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
]


@pytest.mark.parametrize(("query", "question", "fact"), SEARCH_CASES)
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


def test_prompt_prefix_is_persona_instruction_and_the_faq_in_file_order(
    kb: KnowledgeBase,
) -> None:
    persona = "You are Bea,\n  the museum guide."
    prefix = build_system_prompt(persona, kb.entries, budget_chars=10**6)
    lines = prefix.splitlines()
    assert lines[0] == "You are Bea, the museum guide."
    assert "Answer only from the venue's facts" in lines[1]
    assert "one to three short" in lines[1] and "do not know" in lines[1]
    assert lines[3] == KNOWLEDGE_HEADER
    pairs = [f"Q: {e.question}\nA: {e.answer}" for e in kb.entries]
    assert "\n".join(lines[4:]) == "\n".join(pairs)  # every entry, in the FAQ's order
    # The same inputs give the same bytes: nothing turn-specific is in it.
    assert build_system_prompt(persona, kb.entries, budget_chars=10**6) == prefix


def test_prompt_prefix_keeps_whole_leading_entries_within_its_budget(kb: KnowledgeBase) -> None:
    whole = build_system_prompt("P.", kb.entries, budget_chars=10**6)
    none = build_system_prompt("P.", kb.entries, budget_chars=0)
    assert KNOWLEDGE_HEADER not in none and none == "\n".join(whole.splitlines()[:2])
    part = build_system_prompt("P.", kb.entries, budget_chars=600)
    assert len(part) - len(none) <= 600 and whole.startswith(part)
    kept = part.splitlines()[4:]
    assert kept and len(kept) % 2 == 0 and kept[-1].startswith("A: ")  # whole entries only
    assert kept[0] == f"Q: {kb.entries[0].question}"


def test_facts_prompt_puts_the_best_hit_last(kb: KnowledgeBase) -> None:
    hits = kb.search("how much is a ticket for kids", k=2)
    lines = build_facts_prompt(hits).splitlines()
    assert lines[0] == "Facts:"
    # best hit last: it sits right before the visitor's question
    assert lines[-2:] == [f"Q: {hits[0].entry.question}", f"A: {hits[0].entry.answer}"]
    assert lines[-4] == f"Q: {hits[1].entry.question}"


def test_facts_prompt_without_hits_and_custom_header() -> None:
    assert build_facts_prompt([], header="Museum facts:") == "Museum facts:\n(none)"
    hit = Hit(FaqEntry("Wifi?", "Free, no password."), 3.0)
    assert build_facts_prompt([hit]) == "Facts:\nQ: Wifi?\nA: Free, no password."


# --------------------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return Embedder.load(check_hash=False).tokenizer


# Ids from the model's own tokenizer.json run by the `tokenizers` package.
@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Größe café naïve", [101, 24665, 2080, 17499, 7668, 15743, 102]),
        ("emoji 😀 ok", [101, 7861, 29147, 2072, 100, 7929, 102]),
        ("日本語テキスト", [101, 1864, 1876, 1950, 1713, 30227, 30233, 30240, 102]),
        ("tab\there\x00nul\u200bzw", [101, 21628, 2182, 11231, 23858, 2860, 102]),
        ("un" * 80, [101, 100, 102]),  # one word over 100 characters -> [UNK]
        (
            "3:30pm, 45%... ok?!",
            [101, 1017, 1024, 2382, 9737, 1010, 3429, 1003, 1012, 1012, 1012, 7929, 1029, 999, 102],
        ),
        (
            "€12 and $5 — “quotes” ‘x’",
            [101, 1574, 12521, 1998, 1002, 1019, 1517, 1523, 16614, 1524, 1520, 1060, 1521, 102],
        ),
        ("", [101, 102]),
    ],
)
def test_wordpiece_matches_reference_tokenizer(
    tokenizer: WordPieceTokenizer, text: str, ids: list[int]
) -> None:
    assert tokenizer.encode(text) == ids


def _wordpiece_reference() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads((DATA / "wordpiece_reference.json").read_text())
    return rows


def test_wordpiece_matches_recorded_ids(tokenizer: WordPieceTokenizer) -> None:
    """250 texts (FAQ lines, accents, punctuation, CJK, emoji, control characters, over-long
    words, truncation at 256, random strings) with the ids the tokenizer gave when recorded.
    None has a code point unassigned in Python 3.11's Unicode tables but U+0378: a later
    Python may assign one, and then keep it as [UNK] instead of dropping it."""
    rows = _wordpiece_reference()
    assert len(rows) == 250
    wrong = [r["text"] for r in rows if tokenizer.encode(str(r["text"])) != r["ids"]]
    assert wrong == []


def test_wordpiece_agrees_with_the_tokenizers_package() -> None:
    """The `tokenizers` package built from the same vocabulary gives our ids on every recorded
    text but the few marked otherwise (capital sigma at a word's end, unassigned code points,
    part of CJK Extension E, characters its Unicode tables class differently): the reason the
    module keeps its own tokenizer. A newly differing text means one of the two changed."""
    tokenizers = pytest.importorskip("tokenizers")
    manifest = load_manifest()
    vocab = require(manifest, MODEL_ID_VOCAB, check_hash=False)
    reference = tokenizers.BertWordPieceTokenizer(str(vocab), lowercase=True)
    reference.enable_truncation(256)
    rows = _wordpiece_reference()
    agreeing = [r for r in rows if r["tokenizers_agrees"]]
    assert len(agreeing) == 243 and any(r["text"] == "ΟΔΟΣ" for r in rows if r not in agreeing)
    wrong = [r["text"] for r in agreeing if reference.encode(str(r["text"])).ids != r["ids"]]
    assert wrong == []


def test_embedder_matches_recorded_vectors(embedder: Embedder) -> None:
    """Vectors for 32 varied texts (empty, whitespace only, truncated, CJK, emoji, ...) as the
    embedder gave them when recorded, when it wrote its ONNX protobuf by hand and read the
    safetensors file itself; the same graph built with `onnx.helper` must give them again."""
    texts = json.loads((DATA / "embedder_reference.json").read_text())["texts"]
    recorded = np.load(DATA / "embedder_reference.npy")
    assert recorded.shape == (len(texts), 384)
    assert float(np.abs(embedder.embed(texts) - recorded).max()) <= 1e-5


def test_wordpiece_truncates_and_needs_special_tokens(tokenizer: WordPieceTokenizer) -> None:
    ids = tokenizer.encode("ticket " * 500, max_tokens=16)
    assert len(ids) == 16 and ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]"])


def test_embedder_reproduces_published_similarity(embedder: Embedder) -> None:
    """sentence-transformers documents 0.7553 for this pair with all-MiniLM-L6-v2: our own
    graph, tokenizer and pooling reproduce the reference model, not just something similar."""
    vecs = embedder.embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert float(vecs[0] @ vecs[1]) == pytest.approx(0.7553, abs=0.002)
    assert embedder.providers == ["CPUExecutionProvider"]


def test_embedder_padding_does_not_change_a_vector(embedder: Embedder) -> None:
    """Batched with a much longer text (so padded), a text gets the vector it gets alone."""
    short = "where are the toilets"
    alone = embedder.embed([short])
    batched = embedder.embed(["a much longer text " * 20, short, "x"])
    assert np.allclose(alone[0], batched[1], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_embedder_refuses_a_weights_file_with_the_wrong_hash(tmp_path: Path) -> None:
    manifest = load_manifest()
    bad = dataclasses.replace(manifest[MODEL_ID_WEIGHTS], sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch") as info:
        Embedder.load(manifest={**manifest, MODEL_ID_WEIGHTS: bad})
    assert "model.safetensors" in str(info.value)
    with pytest.raises(ModelError, match=MODEL_ID_VOCAB):
        Embedder.load(manifest={MODEL_ID_WEIGHTS: manifest[MODEL_ID_WEIGHTS]}, check_hash=False)


def _safetensors(path: Path, header: object, payload: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    return path


def test_safetensors_header_errors_name_the_file(tmp_path: Path) -> None:
    ok = _safetensors(
        tmp_path / "ok.safetensors",
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
        struct.pack("<2f", 1.0, 2.0),
    )
    assert read_safetensors_header(ok) == {"w": TensorInfo("F32", (2,))}
    assert load_safetensors(ok)["w"].tolist() == [1.0, 2.0]
    _safetensors(
        tmp_path / "lying", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"x" * 8
    )
    (tmp_path / "short").write_bytes(b"\x01\x00")
    (tmp_path / "not-json").write_bytes(struct.pack("<Q", 3) + b"{x}")
    for name in ("short", "not-json", "lying"):
        for read in (read_safetensors_header, load_safetensors):
            with pytest.raises(EmbedderError, match="not a safetensors file") as err:
                read(tmp_path / name)
            assert name in str(err.value)
    with pytest.raises(EmbedderError, match="missing"):
        load_safetensors(tmp_path / "missing")
    with pytest.raises(EmbedderError, match="no word embeddings"):
        build_bert_onnx({"w": TensorInfo("F32", (2,))})


def test_embedder_graph_is_cached_and_a_damaged_cache_rebuilt(tmp_path: Path) -> None:
    """The graph (no weights, ~32 KB) is built once: a later start takes it from the cache and
    never imports `onnx` (~0.5 s); a damaged cache file is rebuilt, not an error."""
    settings = InferenceSettings(providers="cpu", cache_dir=str(tmp_path))
    first = Embedder.load(settings, check_hash=False)
    (cached,) = tmp_path.iterdir()  # no temporary files left behind
    assert cached.name.startswith("minilm-graph-") and cached.stat().st_size < 100_000
    code = (
        "import sys\n"
        "from appliance.inference import InferenceSettings\n"
        "from appliance.knowledge.embeddings import Embedder\n"
        "settings = InferenceSettings(providers='cpu', cache_dir=sys.argv[1])\n"
        "Embedder.load(settings, check_hash=False)\n"
        "print('onnx' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "False", run.stderr
    cached.write_bytes(b"not a model")
    again = Embedder.load(settings, check_hash=False)
    text = ["where are the toilets"]
    assert np.array_equal(again.embed(text), first.embed(text))
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]
    assert cached.read_bytes() != b"not a model"
    # Other tensor shapes (another model file) get another cache file.
    word = {"embeddings.word_embeddings.weight": TensorInfo("F32", (30522, 384))}
    wider = {"embeddings.word_embeddings.weight": TensorInfo("F32", (30523, 384))}
    assert graph_path(word, tmp_path) != graph_path(wider, tmp_path)


def test_the_sites_vectors_are_kept_between_starts(tmp_path: Path) -> None:
    """The FAQ's vectors (questions, answers, anchors, answer sentences) come from the disk
    cache on the next start, the same as computed; an edited entry is the only one computed
    again, a visitor's question is never kept, and a damaged file is computed again."""
    settings = InferenceSettings(providers="cpu", cache_dir=str(tmp_path))
    first = Embedder.load(settings)
    assert first.cache is not None
    kb = KnowledgeBase.from_file(SAMPLE, embedder=first)
    prepare(kb)  # the answer sentences too
    texts = first.cache.misses + first.cache.hits  # hits: a one-sentence answer's sentence
    assert first.cache.misses > 2 * len(kb) and first.cache.hits < len(kb)
    kb.search("is there a vegetarian soup today")
    (kept,) = tmp_path.glob("minilm-vectors-*.npz")

    second = Embedder.load(settings)  # the next start
    assert second.cache is not None
    again = KnowledgeBase.from_file(SAMPLE, embedder=second)
    prepare(again)
    assert (second.cache.hits, second.cache.misses) == (texts, 0)
    with np.load(kept) as data:
        assert "is there a vegetarian soup today" not in set(data["texts"].tolist())
    question = "How much is a ticket?"
    computed, looked_up = kb.search(question, k=5), again.search(question, k=5)
    assert [h.entry for h in computed] == [h.entry for h in looked_up]
    assert np.allclose([h.score for h in computed], [h.score for h in looked_up], atol=1e-5)

    edited = [
        dataclasses.replace(e, answer="Tickets cost 99 euros.") if e.question == question else e
        for e in again.entries
    ]
    third = Embedder.load(settings)
    assert third.cache is not None
    KnowledgeBase(edited, embedder=third)
    assert third.cache.misses == 1  # the edited answer alone

    kept.write_bytes(b"not an npz")
    broken = Embedder.load(settings)
    assert broken.cache is not None
    KnowledgeBase.from_file(SAMPLE, embedder=broken)
    assert broken.cache.hits == 0 and broken.cache.misses > 0
    assert [p.name for p in tmp_path.glob("*vectors*")] == [kept.name]  # rewritten, no temps
    with np.load(kept) as data:
        assert len(data["texts"]) == broken.cache.misses


# --------------------------------------------------------------------------- hybrid ranking


@pytest.mark.parametrize(
    ("query", "question"),
    [
        # BM25 alone ranks the gift shop and the public holidays first.
        ("What time does the museum open on Sunday?", "What are the opening hours?"),
        ("Is the museum open on Mondays?", "What are the opening hours?"),
    ],
)
def test_hybrid_fixes_lexical_failures(
    kb: KnowledgeBase, hybrid_kb: KnowledgeBase, query: str, question: str
) -> None:
    assert kb.search(query)[0].entry.question != question  # still a BM25 failure
    hits = hybrid_kb.search(query)
    assert hits[0].entry.question == question
    assert hits[0].semantic is not None and hits[0].semantic > 0.5


def test_hybrid_keeps_the_lexical_table(hybrid_kb: KnowledgeBase) -> None:
    """The BM25 table above, ranked by the hybrid: 19 of 20. The known miss: "which tram goes
    to the museum" ranks wheelchair access first ("museum" dominates both short questions in
    embedding space, and the transport answer never says "museum")."""
    misses = [
        q for q, question, _ in SEARCH_CASES if hybrid_kb.search(q)[0].entry.question != question
    ]
    assert misses == ["which tram goes to the museum"]


def test_hybrid_search_edge_cases(hybrid_kb: KnowledgeBase) -> None:
    assert hybrid_kb.hybrid
    assert hybrid_kb.search("") == []
    assert hybrid_kb.search("   ?!  ") == []
    assert hybrid_kb.search("zeppelin quantum xylophone") == []  # below the default floor
    assert hybrid_kb.search("what is the weather tomorrow") == []
    assert hybrid_kb.search("ticket", k=0) == []
    hits = hybrid_kb.search("ticket", k=3, min_score=float("-inf"))
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    ranking = hybrid_kb.rank("tell me a joke", min_score=float("-inf"))
    assert ranking.chit_chat > 0.8 > ranking.hits[0].score


def test_lexical_only_hits_have_no_semantic_part(kb: KnowledgeBase) -> None:
    assert not kb.hybrid
    hit = kb.search("ticket")[0]
    assert hit.semantic is None and hit.lexical == hit.score > 0
    assert kb.rank("tell me a joke").chit_chat == 0.0


@pytest.mark.parametrize(
    ("heading", "parts"),
    [
        (
            "When is reception open, and can we stay extra nights?",
            ["When is reception open?", "Can we stay extra nights?"],
        ),
        (
            "Is there a cafe, and can we bring a picnic?",
            ["Is there a cafe?", "Can we bring a picnic?"],
        ),
        # One question: "and" joins two things, or a list of situations.
        ("Can I eat and drink in the galleries?", []),
        ("What do I do in an emergency, if someone is hurt, or if I lose something?", []),
        ("Where are the toilets?", []),
    ],
)
def test_a_heading_that_asks_two_questions_is_split(heading: str, parts: list[str]) -> None:
    assert heading_parts(heading) == parts
