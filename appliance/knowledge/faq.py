"""The site FAQ as staff write it: Markdown, each `## ` heading a question, the text under it
the answer. Parsing is forgiving (warnings, not errors) except where nothing usable is left."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FaqEntry", "KnowledgeError", "parse_faq"]


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str


class KnowledgeError(Exception):
    """The FAQ file cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_QUESTION_RE = re.compile(r"^##(?:[ \t]+(.*?))?[ \t]*$")  # "## text"; "##" alone is an empty h2
_TITLE_RE = re.compile(r"^#(?:[ \t]|$)")  # a "# " section title ends the current answer
_CLOSING_HASHES_RE = re.compile(r"[ \t]+#+$")  # ATX closing sequence: "## Question ##"
_LIST_MARKER_RE = re.compile(r"^(?:[-*+]|\d{1,3}[.)])[ \t]+")
_EMPHASIS_RE = re.compile(r"(\*\*|__|`)")
_LINK_RE = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_COMMENT_RE = re.compile(r"<!--.*?-->")


def _inline(text: str) -> str:
    """Strip inline Markdown that would be read aloud literally (emphasis, link syntax)."""
    text = _COMMENT_RE.sub("", text)
    text = _LINK_RE.sub(r"\1 (\2)", text)
    text = _EMPHASIS_RE.sub("", text)
    return " ".join(text.split())


def _answer_text(lines: list[str]) -> str:
    """Join answer lines into one plain line; list items become sentences of their own."""
    parts: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        is_item = _LIST_MARKER_RE.match(line) is not None
        line = _inline(_LIST_MARKER_RE.sub("", line))
        if not line:
            continue
        if is_item and parts and parts[-1][-1] not in ".!?:;,":
            parts[-1] += "."
        parts.append(line)
    return " ".join(parts)


def _question_key(question: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split()).rstrip("?!. ")


def parse_faq(markdown: str) -> tuple[list[FaqEntry], list[str]]:
    """Split the FAQ into entries: each `## ` heading is a question, the text below its answer.

    Text before the first `## ` (title, intro) is ignored, and so is text after a `# ` section
    title until the next question. Deeper headings (`### `) stay part of the answer. Empty
    questions, questions without an answer and repeated questions (the first one wins) are
    skipped with a warning that carries the 1-based line number.
    """
    entries: list[FaqEntry] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    current: tuple[int, str] | None = None  # (line number, question)
    body: list[str] = []

    def finish() -> None:
        if current is None:
            return
        lineno, question = current
        answer = _answer_text(body)
        key = _question_key(question)
        if not question:
            warnings.append(f"line {lineno}: empty question heading; skipped")
        elif not answer:
            warnings.append(f"line {lineno}: question {question!r} has no answer; skipped")
        elif key in seen:
            warnings.append(
                f"line {lineno}: question {question!r} repeats line {seen[key]}; kept the first one"
            )
        else:
            seen[key] = lineno
            entries.append(FaqEntry(question=question, answer=answer))

    lines = markdown.removeprefix("\ufeff").splitlines()
    for lineno, line in enumerate(lines, start=1):
        m = _QUESTION_RE.match(line)
        if m is not None:
            finish()
            question = _inline(_CLOSING_HASHES_RE.sub("", m.group(1) or ""))
            current, body = (lineno, question), []
        elif _TITLE_RE.match(line):
            finish()
            current, body = None, []
        elif current is not None:
            body.append(line)
    finish()
    return entries, warnings
