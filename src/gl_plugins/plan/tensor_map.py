"""llama-quantize tensor-type maps: reading them as llama-quantize does, and writing exact ones.

Reading follows ``tools/quantize/quantize.cpp``: the file is split into
whitespace-separated tokens (so a rule cannot hold a space and there is no
comment syntax), each token is split at its first ``=``, the pattern is
lowercased (ASCII only) and the type is matched case-insensitively against
ggml type names. llama.cpp then compiles each pattern as an ECMAScript
``std::regex`` and tests it with ``regex_search``; :func:`compile_pattern`
gives the Python equivalent and refuses syntax ECMAScript does not have.

Writing produces anchored, escaped patterns that match exactly the tensors
they name and nothing else, one rule per (type, tensor role), so no two rules
ever match the same tensor and the order of the lines does not matter.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import warnings
from dataclasses import dataclass

from gl_plugins.errors import GLError, read_input
from gl_plugins.ggml_types import TYPES_BY_NAME

_ASCII_WS = b" \t\n\r\x0b\x0c"


@dataclass
class MapRule:
    """One rule as llama-quantize reads it, with where it came from."""
    written: str  # the pattern exactly as written
    pattern: str  # what llama-quantize uses: the pattern lowercased
    type: str  # ggml type name, upper case
    type_written: str
    index: int  # 1-based position among the rules
    line: int | None = None  # line in the file, when read from one
    token: str = ""


class MapSyntaxError(GLError):
    """A token llama-quantize refuses; carries the token and its line."""

    def __init__(self, where: str, token: str, reason: str, line: int | None = None):
        self.token = token
        self.line = line
        self.reason = reason
        pos = f" (line {line})" if line is not None else ""
        super().__init__(f"{where}{pos}: {reason} in rule {token!r}; llama-quantize would stop here")


def tokens(data: bytes):
    """(token, line) pairs, split on ASCII whitespace as ``std::ifstream >> std::string`` does."""
    line = 1
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c in _ASCII_WS:
            if c == 10:
                line += 1
            i += 1
            continue
        j = i
        while j < n and data[j] not in _ASCII_WS:
            j += 1
        yield data[i:j], line
        i = j


def parse_token(token: str, index: int, *, where: str = "--tensor-type", line: int | None = None) -> MapRule:
    """One ``PATTERN=TYPE`` token, exactly as ``parse_tensor_type`` reads it."""
    sep = token.find("=")
    if sep < 0:
        reason = "no '=' (a '#' comment is not allowed; llama-quantize has no comment syntax)" \
            if token.startswith("#") else "malformed tensor type (no '=')"
        raise MapSyntaxError(where, token, reason, line)
    if sep == 0:
        raise MapSyntaxError(where, token, "missing tensor name before '='", line)
    written, type_written = token[:sep], token[sep + 1:]
    if not type_written:
        raise MapSyntaxError(where, token, "missing quantization type after '='", line)
    t = TYPES_BY_NAME.get(type_written.upper()) if type_written.isascii() else None
    if t is None:
        raise MapSyntaxError(where, token, f"invalid ggml type {type_written!r}", line)
    pattern = written.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")
    return MapRule(written=written, pattern=pattern, type=t.name, type_written=type_written, index=index,
                   line=line, token=token)


def parse_map_bytes(data: bytes, where: str) -> list[MapRule]:
    rules = []
    for raw, line in tokens(data):
        token = raw.decode("utf-8", "surrogateescape")
        rules.append(parse_token(token, len(rules) + 1, where=where, line=line))
    return rules


def read_map(path: str | os.PathLike) -> list[MapRule]:
    """The rules of a ``--tensor-type-file``; MapSyntaxError where llama-quantize would stop."""
    data = read_input(path, "a tensor-type file")
    return parse_map_bytes(data, os.fspath(path))


def parse_options(tokens: list[str], start: int = 1) -> list[MapRule]:
    """Rules given as repeated ``--tensor-type PATTERN=TYPE`` options."""
    return [parse_token(t, start + i) for i, t in enumerate(tokens)]


# ------------------------------------------------------------------ ECMAScript regex

_GROUP_OK = (":", "=", "!")
_ESCAPE_OK = set("dwsbnrtvfxuc")  # letter escapes ECMAScript knows (the pattern is lowercased)


class PatternError(ValueError):
    """A pattern llama.cpp's std::regex (ECMAScript) would not compile."""


@functools.lru_cache(maxsize=8192)
def compile_pattern(pattern: str) -> re.Pattern:
    """The Python regex that matches what ``std::regex(pattern)`` + ``regex_search`` matches.

    ``pattern`` is already lowercased. Syntax Python accepts but ECMAScript does
    not (named groups ``(?P<…>)``, look-behind, inline flags, atomic groups,
    possessive quantifiers, ``\\a``/``\\z`` escapes) raises :class:`PatternError`.
    """
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise PatternError("the pattern ends in a lone backslash")
            e = pattern[i + 1]
            if e.isalpha() and e not in _ESCAPE_OK:
                raise PatternError(f"'\\{e}' is not an escape ECMAScript regex knows")
            if e == "c" and not (i + 2 < n and pattern[i + 2].isalpha()):
                raise PatternError("'\\c' must be followed by a letter")
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if pattern.startswith("[^]", i) or pattern.startswith("[]", i):
                i += 2 if pattern.startswith("[]", i) else 3
                continue
        elif c == "(" and pattern.startswith("(?", i):
            nxt = pattern[i + 2:i + 3]
            if nxt not in _GROUP_OK:
                raise PatternError(f"'(?{nxt}' groups are not ECMAScript regex syntax")
        elif c in "*+?}" and pattern[i + 1:i + 2] == "+":
            raise PatternError("possessive quantifiers ('*+', '++') are not ECMAScript regex syntax")
        i += 1
    if in_class:
        raise PatternError("unterminated character class '['")
    if pattern.startswith(("*", "+", "?")):
        raise PatternError(f"nothing to repeat before {pattern[0]!r}")
    try:
        # MULTILINE changes nothing for one name (no newline in it) and lets the same
        # compiled pattern search many names joined by newlines (see NameIndex)
        with warnings.catch_warnings():  # "possible nested set" and the like: the user sees findings, not warnings
            warnings.simplefilter("ignore")
            return re.compile(pattern, re.ASCII | re.MULTILINE)
    except re.error as e:
        raise PatternError(e.msg) from None


def syntax_chars(pattern: str):
    """(character, group depth) of every character of ``pattern`` that is regex syntax:
    not escaped and not inside a ``[…]`` class."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        else:
            if c == ")":
                depth -= 1
            yield c, depth
            if c == "(":
                depth += 1
        i += 1


def _top_level_alternation(pattern: str) -> bool:
    return any(c == "|" and depth == 0 for c, depth in syntax_chars(pattern))


def required_literal(pattern: str) -> str:
    """A substring every match of ``pattern`` must contain ("" when none can be proved).

    Used only to skip regex searches that cannot succeed; the regex still decides.
    """
    if _top_level_alternation(pattern):
        return ""
    runs, cur = [], []
    i, n = 0, len(pattern)
    depth = 0

    def cut():
        runs.append("".join(cur))
        cur.clear()

    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            after = pattern[i + 2:i + 3]
            if depth or e.isalnum() or after in ("?", "*", "{"):
                cut()
            else:
                cur.append(e)
                if after == "+":
                    cut()
            i += 2
            continue
        if c == "[":
            cut()
            j = i + 1
            if pattern[j:j + 1] == "^":
                j += 1
            if pattern[j:j + 1] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            if pattern[i:i + 1] in ("?", "*", "{", "+"):
                i += 1
            continue
        nxt = pattern[i + 1:i + 2]
        if c == "(":
            depth += 1
            cut()
        elif c == ")":
            depth = max(0, depth - 1)
            cut()
            if nxt in ("?", "*", "{", "+"):
                i += 1
        elif c == "{" and not depth:
            cut()
            close = pattern.find("}", i)
            i = close if close >= 0 else n
        elif depth or c in ".^$*+?}|" or nxt in ("?", "*", "{"):
            cut()
        else:
            cur.append(c)
            if nxt == "+":
                cut()
        i += 1
    cut()
    return max(runs, key=len)


class NameIndex:
    """Tensor names joined into one string, so most patterns are matched at C speed."""

    def __init__(self, names: list[str]):
        self.names = names
        self.starts = []
        pos = 1
        for name in names:
            self.starts.append(pos)
            pos += len(name) + 1
        self.text = "\n" + "\n".join(names) + "\n"

    def _name_at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def containing(self, literal: str, limit: int) -> list[int] | None:
        """Indices of the names holding ``literal``; None when there are more than ``limit``."""
        text, starts, out = self.text, self.starts, []
        pos = text.find(literal)
        while pos >= 0:
            i = self._name_at(pos)
            out.append(i)
            if len(out) > limit:
                return None
            if i + 1 >= len(starts):
                break
            pos = text.find(literal, starts[i + 1])
        return out

    def searching(self, rx: re.Pattern) -> list[int]:
        """Indices of the names ``rx`` (compiled with MULTILINE, unable to match a newline) finds."""
        text, starts, out = self.text, self.starts, []
        names = self.names
        m = rx.search(text)
        while m is not None:
            i = self._name_at(m.start())
            if i >= 0 and m.end() <= starts[i] + len(names[i]):
                out.append(i)
            nxt = starts[i + 1] if i + 1 < len(starts) else len(text)
            if nxt >= len(text):
                break
            m = rx.search(text, nxt)
        return out


_MAY_MATCH_NEWLINE = re.compile(r"\[\^|\\[sxuc0n]|[\x00-\x1f]")


def match_sets(patterns: list[str], names: list[str]) -> list[list[int]]:
    """For each (lowercased) pattern, the indices of ``names`` it ``regex_search``-es."""
    index = NameIndex(names)
    out = []
    for p in patterns:
        rx = compile_pattern(p)
        search = rx.search
        lit = required_literal(p)
        hits = index.containing(lit, 16) if lit else None
        if hits is not None:
            out.append([i for i in hits if search(names[i])])
        elif not _MAY_MATCH_NEWLINE.search(p):
            out.append(index.searching(rx))
        else:
            out.append([i for i, n in enumerate(names) if search(n)])
    return out


# ------------------------------------------------------------------ writing

def escape_name(name: str) -> str:
    """A regex matching ``name`` literally that survives llama-quantize's lowercasing.

    Regex metacharacters get a backslash; upper-case letters become ``\\xHH``
    escapes (a lowercased hex escape still names the same character).
    """
    out = []
    for ch in name:
        if ch in ".^$|?*+()[]{}\\/-":
            out.append("\\" + ch if ch not in "-/" else ch)
        elif "A" <= ch <= "Z":
            out.append(f"\\x{ord(ch):02x}")
        elif ch.isspace() or ch == "=" or ord(ch) > 126 or ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def rules_for(types: dict[str, str]) -> list[tuple[str, str]]:
    """Anchored rules giving each named tensor its type, grouped by (type, role) for brevity.

    ``types`` maps tensor name -> ggml type. Returns ``(pattern, type)`` pairs in a
    stable order: non-block tensors first, then block roles in name order. Every
    pattern is ``^…$`` over exact names, so each tensor is matched by exactly one rule.
    """
    singles: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[int]] = {}
    for name in sorted(types):
        t = types[name]
        m = _BLOCK.match(name)
        if m and m.group(1) == str(int(m.group(1))):
            groups.setdefault((m.group(2), t), []).append(int(m.group(1)))
        else:
            singles.append((f"^{escape_name(name)}$", t))
    out = list(singles)
    for (role, t), layers in sorted(groups.items()):
        layers.sort()
        alt = layers[0] if len(layers) == 1 else "(?:" + "|".join(map(str, layers)) + ")"
        out.append((f"^blk\\.{alt}\\.{escape_name(role)}$", t))
    return out


def render(rules) -> str:
    """The text of a ``--tensor-type-file``: one ``pattern=type`` per line, no comments."""
    lines = []
    for r in rules:
        pattern, type_ = (r.pattern, r.type) if hasattr(r, "pattern") else r
        token = f"{pattern}={type_.lower()}"
        if any(c in token for c in " \t\r\n\x0b\x0c") or token.startswith("#"):
            raise ValueError(f"rule {token!r} cannot be written to a tensor-type file")
        lines.append(token)
    return "\n".join(lines) + ("\n" if lines else "")


def write_map(path: str | os.PathLike, rules) -> None:
    """Write a tensor-type file atomically (temp file, then ``os.replace``)."""
    from gl_plugins.atomic import atomic_write

    atomic_write(path, render(rules), encoding="ascii")
