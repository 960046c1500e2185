"""Modelfile findings: what Ollama would refuse, and what would make the model misbehave.

Grammar and typing problems are errors (Ollama refuses the file). Held
against a GGUF, two more checks apply: every special-token-looking stop
value and every turn marker of TEMPLATE must be in the GGUF's vocabulary,
and TEMPLATE must use the turn markers of the chat template embedded in the
GGUF (a Gemma template on a ChatML model never stops).
"""

from __future__ import annotations

import difflib
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import InputError
from gl_plugins.findings import Finding
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.publish.names import is_valid

SOURCE = "modelfile-lint"

# special-token spellings: <|im_start|>, <|turn>, <turn|>, <start_of_turn>, </s>, [INST], [/INST]
MARKER_RE = re.compile(r"<\|[^<>|\s]{1,48}\|>|<\|[A-Za-z_][\w.]{0,47}>|<[A-Za-z_][\w.]{0,47}\|>"
                       r"|</?[A-Za-z_][\w]{0,47}>|\[/?[A-Z][A-Z_]{1,30}\]")
# REQUIRES as parser/parser.go reads it: a "v" is put in front unless there, then golang.org/x/mod
# semver.IsValid: vMAJOR, vMAJOR.MINOR or vMAJOR.MINOR.PATCH[-pre][+build], no leading zeros
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER_RE = re.compile(rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
                        rf"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?")
# tool and thinking markers: special tokens in some vocabularies, plain text in others; a model whose
# vocabulary lacks them still chats, it only cannot call tools or think in that format
CAPABILITY_MARKERS = ("<tools>", "</tools>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                      "<think>", "</think>", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]",
                      "[TOOL_RESULTS]", "[/TOOL_RESULTS]")


class Vocabulary:
    """Membership tests on a GGUF's token list without decoding all of it.

    A token ``t`` is in the list when the bytes ``u64(len(t)) + t`` occur in the
    array's byte range: token texts hold no NUL bytes, so such a run can only
    be a whole element.
    """

    def __init__(self, raw):
        self._set: set[str] | None = None
        self._blob: bytes | None = None
        if hasattr(raw, "path") and raw.elem_type == 8:  # a lazy GGUFArray of strings
            self.count = raw.count
            with open(raw.path, "rb") as f:
                import mmap

                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    pos, unpack = raw.offset, struct.Struct("<Q").unpack_from
                    for _ in range(raw.count):
                        pos += 8 + unpack(mm, pos)[0]
                    self._blob = mm[raw.offset:pos]
        else:
            self._set = set(raw or [])
            self.count = len(self._set)

    def __contains__(self, token: str) -> bool:
        if self._set is not None:
            return token in self._set
        data = token.encode("utf-8")
        return self._blob.find(struct.pack("<Q", len(data)) + data) >= 0

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0


@dataclass
class ChatInfo:
    """What a GGUF says about chatting with it."""

    path: str
    architecture: str | None
    chat_template: str | None
    tokens: Vocabulary | set[str] = field(default_factory=set)
    bos: str | None = None
    eos: str | None = None


def chat_info(path: str | os.PathLike) -> ChatInfo:
    from gl_plugins.model.gguf_header import read_header

    h = read_header(path)
    raw = h.get("tokenizer.ggml.tokens") or []
    vocab = Vocabulary(raw)

    def tok(key):
        i = h.get(key)
        if not isinstance(i, int) or not 0 <= i < len(vocab):
            return None
        return raw[i] if isinstance(raw, list) else _token_at(raw, i)

    tmpl = h.get("tokenizer.chat_template")
    return ChatInfo(os.fspath(path), h.architecture, tmpl if isinstance(tmpl, str) else None, vocab,
                    tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id"))


def from_target(path: str | os.PathLike) -> tuple[Path | None, ChatInfo | None]:
    """(the file a Modelfile's FROM names, its chat facts when that is an existing GGUF), or (None, None)."""
    from gl_plugins.errors import InputError
    from gl_plugins.modelfile import parse as mfmod

    try:
        mf = mfmod.parse_file(path, require_from=False)
    except InputError:
        return None, None
    if not mf.from_:
        return None, None
    target = mfmod.expand_from(mf.from_, Path(path).parent)
    if target.is_file():
        with open(target, "rb") as fh:
            if fh.read(4) == b"GGUF":
                return target, chat_info(target)
    return target, None


def _token_at(raw, index: int) -> str:
    """One element of a lazy string array, found by skipping the ones before it."""
    import mmap

    with open(raw.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos, unpack = raw.offset, struct.Struct("<Q").unpack_from
        for _ in range(index):
            pos += 8 + unpack(mm, pos)[0]
        n = unpack(mm, pos)[0]
        return mm[pos + 8:pos + 8 + n].decode("utf-8", "replace")


def markers(text: str) -> list[str]:
    """Special-token spellings in a template, in order of first use."""
    seen: dict[str, None] = {}
    for m in MARKER_RE.finditer(text or ""):
        seen.setdefault(m.group(0), None)
    return list(seen)


def chat_template_markers(info: ChatInfo) -> set[str]:
    found = set(markers(info.chat_template or ""))
    if info.chat_template:
        if "bos_token" in info.chat_template and info.bos:
            found.add(info.bos)
        if "eos_token" in info.chat_template and info.eos:
            found.add(info.eos)
    return found


def _finding(severity, code, message, mf_path, line=None, hint="", evidence="") -> Finding:
    return Finding(severity, code, message, source=SOURCE, file=mf_path, line=line, hint=hint,
                   evidence=evidence)


def _parameter_hint(name: str) -> str:
    for known in mfmod.PARAMETERS:
        if known.lower() == name.lower():
            return f"PARAMETER names are case-sensitive: write {known}"
    close = difflib.get_close_matches(name, mfmod.PARAMETERS, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "known parameters: " + ", ".join(mfmod.PARAMETERS)


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~", "\\")) or value.lower().endswith((".gguf", ".bin", ".safetensors"))


def _template_balance(template: str) -> str | None:
    depth = 0
    for m in re.finditer(r"\{\{|\}\}", template):
        depth += 1 if m.group(0) == "{{" else -1
        if depth < 0 or depth > 1:
            return "has '}}' without '{{'" if depth < 0 else "opens '{{' inside an action"
    return "has an action '{{' that is never closed" if depth else None


def lint_modelfile(mf: mfmod.Modelfile, *, base_dir: str | os.PathLike | None = None,
                   gguf: ChatInfo | None = None, check_from: bool = True) -> list[Finding]:
    """Findings for a parsed Modelfile, optionally held against the GGUF it will run."""
    path = mf.path or "Modelfile"
    out: list[Finding] = []
    base = Path(base_dir) if base_dir is not None else Path(path).parent

    froms = mf.all("FROM")
    if not froms:
        out.append(_finding("error", "modelfile-no-from", "no FROM line", path,
                            hint="add FROM with the GGUF file (or a model name) the model is built from"))
    elif check_from:
        for c in froms:
            target = mfmod.expand_from(c.value, base)
            if target.exists():
                continue
            if _looks_like_path(c.value) or not is_valid(c.value):
                out.append(_finding("error", "modelfile-from-missing",
                                    f"FROM {c.value}: no such file, and not a model name Ollama accepts",
                                    path, c.line, hint=f"the path is read relative to {base}"))

    seen: dict[str, mfmod.Command] = {}
    for c in mf.commands:
        if c.instruction == "PARAMETER":
            if c.key in mfmod.DEPRECATED_PARAMETERS:
                out.append(_finding("warning", "modelfile-deprecated-parameter",
                                    f"PARAMETER {c.key} is deprecated; Ollama ignores it", path, c.line))
                continue
            if c.key not in mfmod.PARAMETERS:
                out.append(_finding("error", "modelfile-unknown-parameter", f"unknown PARAMETER {c.key!r}",
                                    path, c.line, hint=_parameter_hint(c.key)))
                continue
            try:
                mfmod.parameter_value(c.key, c.value)
            except ValueError as e:
                out.append(_finding("error", "modelfile-parameter-type", str(e), path, c.line))
                continue
            slot = f"PARAMETER {c.key}"
            if c.key in mfmod.LIST_PARAMETERS:
                continue
        elif c.instruction in ("TEMPLATE", "SYSTEM", "RENDERER", "PARSER", "REQUIRES"):
            slot = c.instruction
        else:
            continue
        if slot in seen:
            out.append(_finding("warning", "modelfile-repeated",
                                f"{slot} is set again (first on line {seen[slot].line}); only the last one counts",
                                path, c.line))
        seen[slot] = c

    for c in mf.all("REQUIRES"):
        if not requires_valid(c.value):
            out.append(_finding("error", "modelfile-requires", f"REQUIRES {c.value!r} is not a version "
                                "like 0.14.0", path, c.line,
                                hint="Ollama reads it as semver with a v in front: 0, 0.14, 0.14.0 or "
                                     "0.14.0-rc1; no leading zeros"))
    if check_from:
        from_paths = {mfmod.expand_from(c.value, base) for c in froms}
        for c in mf.all("DRAFT"):
            target = mfmod.expand_from(c.value, base)
            if target in from_paths:
                out.append(_finding("error", "modelfile-draft", f"DRAFT {c.value} is the FROM file", path, c.line,
                                    hint="DRAFT names a smaller model that proposes tokens for the FROM model"))
            elif not target.exists():
                out.append(_finding("error", "modelfile-draft", f"DRAFT {c.value}: no such file", path, c.line,
                                    hint=f"DRAFT must name a local GGUF; the path is read relative to {base}"))
    for c in mf.all("TEMPLATE"):
        problem = _template_balance(c.value)
        if problem:
            out.append(_finding("error", "modelfile-template-syntax", f"TEMPLATE {problem}", path, c.line))

    template_cmd = (mf.all("TEMPLATE") or [None])[-1]
    stops = [c for c in mf.parameter_commands() if c.key == "stop"]
    rendered = bool(mf.all("RENDERER") or mf.all("PARSER"))
    if template_cmd is None and not rendered and not (gguf is not None and gguf.chat_template):
        out.append(_finding("warning", "modelfile-no-template", "no TEMPLATE", path,
                            hint="without TEMPLATE, RENDERER or a chat template in the GGUF, Ollama sends the "
                                 "raw prompt; use a template from modelfiles/"))
    if not stops:
        out.append(_finding("warning", "modelfile-no-stop", "no PARAMETER stop", path,
                            hint="a model imported without stop parameters often never stops; add the "
                                 "family's end-of-turn token"))
    if gguf is not None:
        out += _against_gguf(mf, path, gguf, template_cmd, stops)
    return out


def _against_gguf(mf, path, gguf: ChatInfo, template_cmd, stops) -> list[Finding]:
    out: list[Finding] = []
    name = os.path.basename(gguf.path)
    for c in stops:
        if MARKER_RE.fullmatch(c.value) and gguf.tokens and c.value not in gguf.tokens:
            out.append(_finding("error", "modelfile-stop-not-in-vocab",
                                f"stop {c.value} is not a token of {name}", path, c.line,
                                hint="this stop can never match; use the end-of-turn token of the model's family"))
    if template_cmd is None:
        return out
    used = [m for m in markers(template_cmd.value) if m not in CAPABILITY_MARKERS]
    if gguf.tokens:
        missing = [m for m in used if m not in gguf.tokens]
        if missing:
            out.append(_finding("error", "modelfile-template-token-not-in-vocab",
                                f"TEMPLATE uses {', '.join(missing)}, not tokens of {name}", path,
                                template_cmd.line, hint="the TEMPLATE belongs to another model family"))
    if gguf.chat_template:
        expected = chat_template_markers(gguf)
        specials = {t for t in (gguf.bos, gguf.eos) if t}
        extra = [m for m in used if m not in expected and m not in specials]
        turn_markers = sorted(expected - specials)
        if extra or (not used and turn_markers):
            what = (f"uses {', '.join(extra)}, which the chat template in {name} never uses" if extra
                    else f"uses no turn markers, but the chat template in {name} does")
            out.append(_finding("error", "modelfile-template-mismatch", f"TEMPLATE {what}", path,
                                template_cmd.line,
                                hint="pick the modelfiles/ template of the model's family (or set family in gl.toml)",
                                evidence="chat template markers: " + (", ".join(turn_markers) or "none")))
    return out


def requires_valid(value: str) -> bool:
    """Whether Ollama's Modelfile parser accepts this REQUIRES value."""
    return bool(_SEMVER_RE.fullmatch(value if value.startswith("v") else "v" + value))


def lint_file(path: str | os.PathLike, *, gguf: ChatInfo | None = None, check_from: bool = True) -> list[Finding]:
    """Findings for a Modelfile on disk; a file Ollama cannot parse is one error finding."""
    path = os.fspath(path)
    try:
        mf = mfmod.parse_file(path, require_from=False)
    except InputError as e:
        if isinstance(e, mfmod.ModelfileError):
            return [_finding("error", "modelfile-syntax", e.detail, path, e.line)]
        raise
    return lint_modelfile(mf, gguf=gguf, check_from=check_from)
