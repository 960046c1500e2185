"""Recognising a collapsed generation from its text alone.

Three signs, each with the evidence that shows it:

- **loop**: the end of the text is one unit (a sentence, an n-gram, one
  character) repeated at least ``min_repeats`` times, over at least
  ``min_coverage`` of the text: the model would repeat it forever. The unit
  is found as the shortest period of the text's tail (whitespace collapsed).
- **empty**: nothing but whitespace was generated.
- **non-words**: fewer than ``min_word_share`` of the whitespace-separated
  tokens are words (see :func:`is_word`). The prompts are English, so text
  in other scripts, tokens glued together (``WireSection``), markup and
  stray punctuation all count against it; healthy output of even a 270M
  model scores above 0.95, a destroyed one 0.4-0.8.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

MIN_REPEATS = 3.0
MIN_COVERAGE = 0.3
MIN_LOOP_CHARS = 24
MIN_WORD_SHARE = 0.85
MIN_TOKENS_FOR_WORDS = 8
EXCERPT = 240


@dataclass
class Loop:
    unit: str  # the repeating text
    repeats: float  # how many times it occurs at the end (fractions for a cut-off last copy)
    coverage: float  # share of the text that is the loop
    start: int  # where the loop starts in the normalised text


@dataclass
class Collapse:
    kind: str  # loop | empty | non-words
    detail: str  # one sentence for people
    excerpt: str  # the generated text that shows it
    figures: dict = field(default_factory=dict)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def find_loop(text: str, min_repeats: float = MIN_REPEATS, min_coverage: float = MIN_COVERAGE) -> Loop | None:
    """The shortest unit the end of ``text`` repeats, when it repeats enough to be a loop."""
    s = normalise(text)
    n = len(s)
    for p in range(1, int(n / min_repeats) + 1):
        i = n - 1
        while i >= p and s[i] == s[i - p]:
            i -= 1
        stretch = (n - 1 - i) + p  # characters of s[i+1-p:] that follow the period
        if stretch / p >= min_repeats and stretch >= max(min_coverage * n, MIN_LOOP_CHARS):
            start = n - stretch
            start += _readable_start(s[start:start + p])
            return Loop(s[start:start + p], stretch / p, stretch / n, start)
    return None


def _readable_start(unit: str) -> int:
    """Where to start showing a repeating unit: after a sentence end, else after a space."""
    doubled = unit + unit
    for mark in (". ", "! ", "? ", " "):
        k = doubled.find(mark)
        if 0 <= k < len(unit):
            return (k + len(mark)) % len(unit)
    return 0


def _core(token: str) -> str:
    i, j = 0, len(token)
    while i < j and unicodedata.category(token[i])[0] in "PS":
        i += 1
    while j > i and unicodedata.category(token[j - 1])[0] in "PS":
        j -= 1
    return token[i:j]


_NUMBER = re.compile(r"[+-]?\d[\d.,:/%]*[A-Za-z]{0,3}")  # 1450, 14th, 1300s, 100g, 3.5%
_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")


def is_word(token: str) -> bool:
    """An English word or a number, once the punctuation around it is stripped.

    Letters must be ASCII Latin in one casing pattern (``the``, ``The``,
    ``NASA``): glued tokens (``JeromeAu``), mixed scripts, markup and bare
    punctuation are not words.
    """
    core = _core(token)
    if not core:
        return False
    if _NUMBER.fullmatch(core):
        return True
    if not _WORD.fullmatch(core):
        return False
    letters = re.sub(r"['’-]", "", core)
    return letters.islower() or letters.isupper() or (letters[0].isupper() and letters[1:].islower())


def word_share(text: str) -> tuple[float | None, int]:
    """(share of whitespace-separated tokens that are words, number of tokens)."""
    toks = text.split()
    if not toks:
        return None, 0
    return sum(map(is_word, toks)) / len(toks), len(toks)


def excerpt(text: str, start: int = 0, limit: int = EXCERPT) -> str:
    s = normalise(text)
    if len(s) <= limit:
        return s
    start = min(max(start - 40, 0), len(s) - limit)
    return ("…" if start else "") + s[start:start + limit] + ("…" if start + limit < len(s) else "")


def diagnose(text: str, *, hit_limit: bool | None = None, min_repeats: float = MIN_REPEATS,
             min_coverage: float = MIN_COVERAGE, min_word_share: float = MIN_WORD_SHARE) -> Collapse | None:
    """The collapse ``text`` shows, or None when it reads as ordinary text.

    A loop counts only when generation ran to the token limit (or when that
    is unknown): a repetition that the model itself ended is not a collapse.
    """
    s = normalise(text)
    if not s:
        return Collapse("empty", "the model generated nothing", "", {"chars": 0})
    share, counted = word_share(s)
    if share is not None and counted >= MIN_TOKENS_FOR_WORDS and share < min_word_share:
        return Collapse("non-words", f"only {share:.0%} of {counted} tokens are words "
                                     f"(at least {min_word_share:.0%} expected)", excerpt(s),
                        {"word_share": round(share, 3), "tokens": counted})
    if hit_limit is not False:
        loop = find_loop(s, min_repeats, min_coverage)
        if loop:
            unit = loop.unit if len(loop.unit) <= 120 else loop.unit[:117] + "…"
            return Collapse("loop", f"{unit.strip()!r} repeats {loop.repeats:.1f} times to the token limit "
                                    f"({loop.coverage:.0%} of the output)", excerpt(s, loop.start),
                            {"period_chars": len(loop.unit), "repeats": round(loop.repeats, 2),
                             "coverage": round(loop.coverage, 3)})
    return None
