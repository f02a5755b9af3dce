"""Site knowledge: the staff-edited Markdown FAQ (faq), text normalisation (text), ranking
(ranking: BM25 + sentence embeddings), grounding (the direct-answer decision and the LLM prompt).

The local LLM (SmolLM2-135M) is fluent but weak on facts, so it only rephrases what retrieval
hands it, and a confident match is answered with the staff's own text.
"""

from __future__ import annotations

from .faq import FaqEntry, KnowledgeError, parse_faq
from .grounding import Grounding, build_facts_prompt, build_system_prompt, ground, strip_fillers
from .ranking import CHIT_CHAT, Hit, KnowledgeBase, Ranking, TextEmbedder
from .text import stem, tokenize

__all__ = [
    "CHIT_CHAT",
    "FaqEntry",
    "Grounding",
    "Hit",
    "KnowledgeBase",
    "KnowledgeError",
    "Ranking",
    "TextEmbedder",
    "build_facts_prompt",
    "build_system_prompt",
    "ground",
    "parse_faq",
    "stem",
    "strip_fillers",
    "tokenize",
]
