"""LLM text deltas -> speakable chunks for TTS.

Two streaming stages, both pure:

* ``MarkdownStripper`` removes Markdown that must not be read aloud (``**bold**``, `` `code` ``,
  list bullets, headings, rules, code fences, ``[text](url)`` -> ``text``).
* ``SentenceChunker`` cuts the clean text: the *first* chunk at the first clause boundary
  (``, ; : —`` or a sentence end) once it is long enough, or, when that clause is long, before
  a phrase-starting word ("... Tuesday to Friday | from 9:30"), so TTS can start before the LLM
  has finished its first sentence (waiting for whole sentences cost ~0.6-1.4 s);
  later chunks at sentence ends, merging short sentences up to ``min_chars``.

Every decision waits until the characters it depends on have arrived (the char after a
full stop, the word after "etc."), so the chunks do not depend on how the stream was split
into deltas. Newlines are hard boundaries: list items and headings keep their pause.
"""

from __future__ import annotations

import re

_CLOSERS = "\"')]}”’»"
_SENTENCE_END = ".!?…"
_CLAUSE = ",;:"
_SPACE = re.compile(r"\s")
_LINK_LIMIT = 400  # a "[" unresolved after this many chars is just a bracket
# Words a long first clause may be cut *before* (a phrase starts there): prepositions,
# conjunctions, relatives. "We are open Tuesday to Friday | from 9:30 to 17:00, ..."
_PHRASE_STARTS = frozenset(
    """and but or so because since although though while whereas unless until till if
    which who whose where when whenever that from to with without for on at in into onto by
    about as than via per during including near behind next opposite between after before""".split()
)
# ... but not after a word that leans on what follows ("is | on the ground floor", "next | to").
_LEANS_FORWARD = frozenset(
    """is are was were be been being am isn't aren't the a an of to and or not no very too
    next close due according prior thanks up out back down off away it's there's""".split()
)
_TOKEN = re.compile(r"\S+")
_PHRASE_MIN_CHARS = 20  # ~4 words: a shorter first chunk sounds clipped

# Tokens before a "." (lower case, inner dots kept, final dot removed).
_NEVER_END = frozenset(
    "mr mrs ms dr st prof sr jr mt ft vs approx ca e.g i.e cf dept ave rd blvd nr fig".split()
)
_END_IF_CAPITAL = frozenset("etc a.m p.m am pm inc ltd co corp u.s u.k".split())
_NOT_END_BEFORE_DIGIT = frozenset("no nos tel ext ph".split())


def _clean(text: str) -> str:
    return " ".join(text.split())


def _strip_inline(text: str) -> str:
    return text.replace("*", "").replace("`", "")


class MarkdownStripper:
    """Streaming Markdown -> plain text. ``feed`` returns text that is final."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pending = ""
        self._line_start = True
        self._prev = ""  # previous raw char on this line (word-boundary test for "_")

    def feed(self, delta: str) -> str:
        self._pending += delta.replace("\r", "")
        return self._drain(final=False)

    def flush(self) -> str:
        out = self._drain(final=True)
        self._reset()  # ready for the next stream
        return out

    def _drain(self, final: bool) -> str:
        s = self._pending
        n = len(s)
        i = 0
        out: list[str] = []
        while i < n:
            if self._line_start:
                prefix = _line_prefix(s, i, final)
                if prefix is None:
                    break
                j, drop = prefix
                if drop:  # a rule or code fence line: keep only its line break
                    k = s.find("\n", j)
                    if k == -1:
                        i = n
                    else:
                        out.append("\n")
                        i = k + 1
                    continue
                i = j
                self._line_start = False
                self._prev = ""
                continue
            c = s[i]
            nxt = s[i + 1] if i + 1 < n else None
            if c == "\n":
                out.append("\n")
                self._line_start = True
                i += 1
                continue
            if c in "*`":
                pass  # emphasis and code markers are silent
            elif c == "~":
                if nxt is None and not final:
                    break
                if nxt == "~":  # ~~strike~~
                    self._prev = c
                    i += 2
                    continue
                out.append(c)
            elif c == "_":
                if nxt is None and not final:
                    break
                # keep snake_case, drop _emphasis_ markers
                if self._prev.isalnum() and nxt is not None and nxt.isalnum():
                    out.append(c)
            elif c == "[" or (c == "!" and nxt == "["):
                start = i + 1 if c == "!" else i
                link = _link(s, start, final)
                if link is None:
                    break
                if isinstance(link, tuple):
                    end, text = link
                    out.append(text)
                    self._prev = text[-1:] or "]"
                    i = end
                    continue
                out.append(c)
            elif c == "!" and nxt is None and not final:
                break  # might be an image "![...]"
            else:
                out.append(c)
            self._prev = c
            i += 1
        self._pending = s[i:]
        return "".join(out)


def _line_prefix(s: str, i: int, final: bool) -> tuple[int, bool] | None:
    """At a line start: (index after any block marker, drop the whole line?) or None = wait."""
    n = len(s)
    k = i
    while k < n and s[k] in " \t":
        k += 1
    if k >= n:
        return None if not final else (k, False)
    c = s[k]
    if c == "\n":
        return (k, False)
    line_end = s.find("\n", k)
    line = s[k : line_end if line_end != -1 else n]
    complete = line_end != -1 or final
    if c in "-*_=" and all(ch in (c, " ", "\t") for ch in line):
        if not complete:
            return None  # "---" rule, "- " bullet or "**" bold: not known yet
        return (k, True)
    if c in "-*+":
        if k + 1 >= n:
            return None if not final else (k, False)
        if s[k + 1] in " \t":
            return (_skip_blanks(s, k + 2), False)
        return (k, False)
    if c == "#":
        m = k
        while m < n and s[m] == "#":
            m += 1
        if m >= n:
            return None if not final else (m, False)
        if m - k <= 6 and s[m] in " \t\n":
            return (_skip_blanks(s, m), False)
        return (k, False)
    if c.isdigit():
        m = k
        while m < n and s[m].isdigit():
            m += 1
        if m + 1 >= n:
            return None if not final else (k, False)
        if m - k <= 3 and s[m] in ".)" and s[m + 1] in " \t":
            return (_skip_blanks(s, m + 2), False)
        return (k, False)
    if c == ">":
        if k + 1 >= n and not final:
            return None
        return (_skip_blanks(s, k + 1), False)
    if c in "`~":
        m = k
        while m < n and s[m] == c:
            m += 1
        if m >= n and not final:
            return None
        if m - k >= 3:
            return (k, True) if complete else None
        return (k, False)
    return (k, False)


def _skip_blanks(s: str, j: int) -> int:
    while j < len(s) and s[j] in " \t":
        j += 1
    return j


def _link(s: str, i: int, final: bool) -> tuple[int, str] | bool | None:
    """``s[i] == "["``: (end, text) for ``[text](url)``, False if not a link, None = wait."""
    window = s[i : i + _LINK_LIMIT]
    full = len(window) == _LINK_LIMIT or final

    def undecided() -> bool | None:
        return False if full else None

    close = window.find("]")
    newline = window.find("\n")
    if close == -1 or (newline != -1 and newline < close):
        return False if newline != -1 else undecided()
    if close + 1 >= len(window):
        return undecided()
    if window[close + 1] != "(":
        return False
    paren = window.find(")", close + 2)
    newline = window.find("\n", close + 2)
    if paren == -1 or (newline != -1 and newline < paren):
        return False if newline != -1 else undecided()
    return (i + paren + 1, _strip_inline(window[1:close]))


def strip_markdown(text: str) -> str:
    """One-shot form of ``MarkdownStripper`` (same result as streaming it)."""
    md = MarkdownStripper()
    return md.feed(text) + md.flush()


def _sentence_end(buf: str, i: int, j: int, final: bool) -> bool | None:
    """Is the "." at ``buf[i]`` (followed by whitespace at ``buf[j]``) a sentence end?

    None = need more text (the next word decides).
    """
    k = i
    while k > 0 and not buf[k - 1].isspace() and buf[k - 1] not in "(\"'“‘":
        k -= 1
    token = buf[k:i].lower()
    if token in _NEVER_END or (len(token) == 1 and buf[k].isupper()):
        return False
    if token not in _END_IF_CAPITAL and token not in _NOT_END_BEFORE_DIGIT:
        return True
    m = j
    while m < len(buf) and buf[m] in " \t":
        m += 1
    if m >= len(buf):
        return True if final else None
    nxt = buf[m]
    if token in _NOT_END_BEFORE_DIGIT:
        return not nxt.isdigit()
    return nxt.isupper() or nxt == "\n"


class SentenceChunker:
    """Feed LLM deltas, get chunks ready for TTS; ``flush`` at the end of the stream."""

    def __init__(
        self,
        *,
        first_chunk_min_chars: int = 12,
        first_chunk_max_chars: int = 36,
        min_chars: int = 40,
        max_chars: int = 220,
    ) -> None:
        if not 1 <= first_chunk_min_chars <= max_chars or not 0 <= min_chars <= max_chars:
            raise ValueError("need 1 <= first_chunk_min_chars <= max_chars, min_chars <= max_chars")
        self.first_chunk_min_chars = first_chunk_min_chars
        # Time to the first reply sample grows with the first chunk (Piper is not streaming:
        # ~35 ms per second of speech on 2 cores, more when the box is busy). A first clause
        # longer than this is cut before a phrase-starting word (`_first_phrase_cut`); a value
        # below first_chunk_min_chars turns that off.
        self.first_chunk_max_chars = first_chunk_max_chars
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._md = MarkdownStripper()
        self._buf = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        """Complete chunks that can be spoken now."""
        self._buf += self._md.feed(delta)
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """Everything left at the end of the stream; the chunker is then ready for a new one."""
        self._buf += self._md.flush()
        out = self._drain(final=True)
        self._buf = ""
        self._first = True
        return out

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            self._buf = self._buf.lstrip()
            cut = self._find_cut(final)
            if cut is None:
                return out
            chunk = _clean(self._buf[:cut])
            self._buf = self._buf[cut:]
            if chunk:
                out.append(chunk)
                self._first = False

    def _find_cut(self, final: bool) -> int | None:
        """Index to cut the buffer at, or None to wait for more text."""
        limit = self.first_chunk_max_chars
        if not self._first or limit < self.first_chunk_min_chars:
            return self._find_boundary(final)
        # First chunk: a clause boundary or, if none comes first, the first phrase start
        # that leaves enough words before it. Both are decided from text that has arrived
        # (a phrase word only once it is complete), so the cut does not depend on how the
        # stream was split into deltas; for a streaming LLM it comes as early as it can.
        decided, phrase = self._first_phrase_cut(final)
        if phrase is None:
            return self._find_boundary(final)
        whole = self._buf
        self._buf = whole[:phrase]
        try:
            clause = self._find_boundary(final=False)
        finally:
            self._buf = whole
        if clause is not None or decided:
            return clause if clause is not None else phrase
        # Only a phrase start before _PHRASE_MIN_CHARS so far: it is taken only if no better
        # one comes up to first_chunk_max_chars, so wait for that text (a max_chars cut now
        # would depend on how the stream was split).
        return None

    def _first_phrase_cut(self, final: bool) -> tuple[bool, int | None]:
        """(decided, cut): the start of the first phrase-starting word with at least
        _PHRASE_MIN_CHARS and at most first_chunk_max_chars of text before it, not after a
        word that leans forward; failing that the first one with at least
        first_chunk_min_chars before it ("The museum car park | on Quay Street has 80 spaces
        and costs ..." was one 5 s chunk, synthesized in up to 1.2 s before anything played).
        `decided` is False while text that could change the answer has not arrived; the cut
        is then the short candidate so far (or None)."""
        buf = self._buf
        least = max(self.first_chunk_min_chars, _PHRASE_MIN_CHARS)
        short: int | None = None
        prev = ""
        for m in _TOKEN.finditer(buf):
            word, start = m.group(), m.start()
            if m.end() >= len(buf) and not final:
                return False, short  # the last word may still be growing ("to" -> "today")
            before = len(_clean(buf[:start]))
            if before > self.first_chunk_max_chars:
                return True, short
            if word.lower() in _PHRASE_STARTS and prev.lower().rstrip(",;:") not in _LEANS_FORWARD:
                if before >= least:
                    return True, start
                if before >= self.first_chunk_min_chars and short is None:
                    short = start
            prev = word
        return final, short

    def _find_boundary(self, final: bool) -> int | None:
        """Index of the next clause/sentence boundary to cut at, or None to wait for more."""
        buf = self._buf
        n = len(buf)
        if n == 0:
            return None
        need = self.first_chunk_min_chars if self._first else self.min_chars
        i = 0
        while i < n and i <= self.max_chars:
            c = buf[i]
            end: int | None = None
            hard = False  # newline: cut even when short
            if c == "\n":
                end, hard = i + 1, True
            elif c in _SENTENCE_END:
                j = i + 1
                while j < n and buf[j] in _SENTENCE_END:
                    j += 1
                while j < n and buf[j] in _CLOSERS:
                    j += 1
                if j >= n:
                    if not final:
                        return None
                    end = j
                elif buf[j].isspace():
                    is_end = True
                    if c == "." and j == i + 1:
                        verdict = _sentence_end(buf, i, j, final)
                        if verdict is None:
                            return None
                        is_end = verdict
                    if is_end:
                        end = j
                i = j - 1
            elif self._first and (c == "—" or c in _CLAUSE):  # clauses: first chunk only
                if c == "—":
                    end = i + 1
                elif i + 1 >= n:
                    if not final and len(_clean(buf[:i])) + 1 >= need:
                        return None  # "," might be followed by a space: wait and see
                elif buf[i + 1].isspace():
                    end = i + 1
            if end is not None:
                text = _clean(buf[:end])
                if len(text) > self.max_chars:
                    break
                if hard or len(text) >= need:
                    return end
            i += 1
        if n > self.max_chars:
            spaces = [m.start() for m in _SPACE.finditer(buf, 0, self.max_chars + 1)]
            if spaces and spaces[-1] > 0:
                return spaces[-1]
            later = _SPACE.search(buf, self.max_chars)
            if later is not None:
                return later.start()  # one word longer than max_chars: do not cut inside it
        return n if final else None
