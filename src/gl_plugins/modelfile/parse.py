"""Ollama Modelfiles: parse, render and turn into a create request, as Ollama does.

The parser follows Ollama's own state machine (``parser/parser.go``):

- an instruction is a word of letters, case-insensitive: FROM, PARAMETER,
  TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES, RENDERER, PARSER,
  DRAFT; then spaces; then a value;
- a value runs to the end of the line, or is quoted with ``"…"`` or
  ``\"\"\"…\"\"\"``; a quoted value ends at the first line end where the
  (trimmed) text read so far closes its quote, so it may span lines;
- ``#`` starts a comment only where an instruction could start;
- ``PARAMETER name value``: the name is letters, digits and ``_``, and is
  case-sensitive; ``MESSAGE role value``: role is system, user or assistant;
- at least one FROM.

:func:`render` writes a Modelfile that parses back to the same commands
(it picks, per value, the plainest quoting that survives the parser, and
refuses a value no quoting can carry). Typed PARAMETER values are checked by
:func:`typed_parameters` the way Ollama's ``api.FormatParams`` does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import GLError, InputError, read_input

INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE",
                "REQUIRES", "RENDERER", "PARSER", "DRAFT")
ROLES = ("system", "user", "assistant")

# the json tags of api.Options and api.Runner (api/types.go), typed as api.FormatParams parses them
INT_PARAMETERS = ("num_ctx", "num_predict", "num_keep", "seed", "top_k", "repeat_last_n", "num_batch",
                  "num_gpu", "main_gpu", "num_thread", "draft_num_predict")
FLOAT_PARAMETERS = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                    "frequency_penalty")
BOOL_PARAMETERS = ("use_mmap",)
LIST_PARAMETERS = ("stop",)
# accepted by Ollama with a warning and then ignored
DEPRECATED_PARAMETERS = ("penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
                         "mirostat", "mirostat_tau", "mirostat_eta")
PARAMETERS = INT_PARAMETERS + FLOAT_PARAMETERS + BOOL_PARAMETERS + LIST_PARAMETERS

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
                       re.IGNORECASE)
_GO_SPACE = " \t\n\r\v\f\u0085\u00a0"


@dataclass
class Command:
    instruction: str  # one of INSTRUCTIONS, upper case
    value: str  # for MESSAGE the content, for PARAMETER the value
    key: str = ""  # PARAMETER name or MESSAGE role
    line: int | None = None  # where the instruction starts (1-based), when parsed

    def same(self, other: "Command") -> bool:
        return (self.instruction, self.key, self.value) == (other.instruction, other.key, other.value)


@dataclass
class Modelfile:
    commands: list[Command] = field(default_factory=list)
    path: str | None = None

    def all(self, instruction: str) -> list[Command]:
        return [c for c in self.commands if c.instruction == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1].value if found else None

    @property
    def from_(self) -> str | None:
        return self.last("FROM")

    @property
    def template(self) -> str | None:
        return self.last("TEMPLATE")

    @property
    def system(self) -> str | None:
        return self.last("SYSTEM")

    @property
    def licenses(self) -> list[str]:
        return [c.value for c in self.all("LICENSE")]

    @property
    def messages(self) -> list[dict]:
        return [{"role": c.key, "content": c.value} for c in self.all("MESSAGE")]

    def parameter_commands(self) -> list[Command]:
        return self.all("PARAMETER")

    def same(self, other: "Modelfile") -> bool:
        return len(self.commands) == len(other.commands) and all(
            a.same(b) for a, b in zip(self.commands, other.commands))


class ModelfileError(InputError):
    """A Modelfile Ollama would refuse to parse."""

    def __init__(self, path, message: str, *, line: int | None = None):
        self.detail = message
        super().__init__(path, message, line=line)


# ---------------------------------------------------------------- parsing

_NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT = range(6)


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_space(c: str) -> bool:
    return c in " \t"


def _is_newline(c: str) -> bool:
    return c in "\r\n"


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def _decode(data: bytes | str, path: str) -> str:
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            data, encoding = data[len(bom):], enc
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ModelfileError(path, f"is not valid {encoding.upper()} text (at byte {e.start})") from None


def parse(text: bytes | str, path: str | os.PathLike = "Modelfile", *, require_from: bool = True) -> Modelfile:
    """Parse Modelfile text; raises :class:`ModelfileError` with the line of the first problem."""
    path = os.fspath(path)
    src = _decode(text, path)
    commands: list[Command] = []
    curr = _NIL
    buf: list[str] = []
    line = 1
    instruction = key = role = ""
    start_line = 1

    def fail(message: str, at: int):
        raise ModelfileError(path, message, line=at)

    i, n = 0, len(src)
    while i < n:
        r = src[i]
        here = line
        if r == "\n" or (r == "\r" and not (i + 1 < n and src[i + 1] == "\n")):
            line += 1
        i += 1
        # the next state for this character
        if curr == _NIL:
            if r == "#":
                nxt, out = _COMMENT, ""
            elif _is_space(r) or _is_newline(r):
                nxt, out = _NIL, ""
            else:
                nxt, out = _NAME, r
                start_line = here
        elif curr == _NAME:
            if _is_alpha(r):
                nxt, out = _NAME, r
            elif _is_space(r):
                nxt, out = _VALUE, ""
            else:
                word = "".join(buf)
                if word.upper() in INSTRUCTIONS and _is_newline(r):
                    fail(f"{word.upper()} has no value", here)
                fail(f"{word + r!r} is not an instruction; expected one of {', '.join(INSTRUCTIONS)}"
                     if r.strip() else f"{word!r} is not an instruction", here)
        elif curr == _VALUE:
            nxt, out = (_NIL, r) if (_is_newline(r) or _is_space(r)) else (_VALUE, r)
        elif curr == _PARAM:
            if _is_alpha(r) or r.isdigit() and r.isascii() or r == "_":
                nxt, out = _PARAM, r
            elif _is_space(r):
                nxt, out = _VALUE, ""
            else:
                name = "".join(buf)
                if _is_newline(r):
                    fail(f"PARAMETER {name} has no value" if name else "PARAMETER has no name", here)
                fail(f"PARAMETER name {name + r!r} may hold only letters, digits and '_'", here)
        elif curr == _MESSAGE:
            if _is_alpha(r):
                nxt, out = _MESSAGE, r
            elif _is_space(r):
                nxt, out = _VALUE, ""
            else:
                fail("MESSAGE needs a role and a value: MESSAGE <system|user|assistant> <text>", here)
        else:  # comment
            nxt, out = (_NIL, "") if _is_newline(r) else (_COMMENT, "")

        if nxt != curr:
            if curr == _NAME:
                word = "".join(buf)
                if word.upper() not in INSTRUCTIONS:
                    fail(f"{word!r} is not an instruction; expected one of {', '.join(INSTRUCTIONS)}", here)
                instruction = word.upper()
                key = ""
                if instruction == "PARAMETER":
                    nxt = _PARAM
                elif instruction == "MESSAGE":
                    nxt = _MESSAGE
            elif curr == _PARAM:
                key = "".join(buf)
            elif curr == _MESSAGE:
                word = "".join(buf)
                if word not in ROLES:
                    fail(f"MESSAGE role {word!r} must be one of \"system\", \"user\" or \"assistant\"", here)
                role = word
            elif curr == _VALUE:
                value, ok = _unquote("".join(buf).strip(_GO_SPACE))
                if not ok or _is_space(out):
                    buf.append(out)
                    continue
                commands.append(Command(instruction, value, role or key, start_line))
                role = key = ""
            buf.clear()
            curr = nxt
        if out and out.isprintable():
            buf.append(out)

    if curr == _VALUE:
        value, ok = _unquote("".join(buf).strip(_GO_SPACE))
        if not ok:
            fail(f"{instruction} value opened with a quote on line {start_line} is never closed", start_line)
        commands.append(Command(instruction, value, role or key, start_line))
    elif curr in (_NAME, _PARAM, _MESSAGE):
        fail(f"the file ends inside the {''.join(buf) or instruction} instruction, before its value", line)
    mf = Modelfile(commands, path)
    if require_from and not mf.all("FROM"):
        raise ModelfileError(path, "no FROM line; a Modelfile must name its model or GGUF with FROM")
    return mf


def parse_file(path: str | os.PathLike, *, require_from: bool = True) -> Modelfile:
    data = read_input(path, "a Modelfile")
    return parse(data, path, require_from=require_from)


# ---------------------------------------------------------------- rendering

def _survives(instruction: str, key: str, candidate: str, value: str) -> bool:
    head = f"{instruction} {key} " if key else f"{instruction} "
    try:
        mf = parse(f"{head}{candidate}\n", require_from=False)
    except GLError:
        return False
    return len(mf.commands) == 1 and mf.commands[0].value == value


def quote(value: str, instruction: str = "SYSTEM", key: str = "") -> str:
    """The plainest spelling of ``value`` that Ollama's parser reads back unchanged."""
    single, triple = f'"{value}"', f'"""{value}"""'
    quoted = (triple, single) if ("\n" in value or '"' in value) else (single, triple)
    for candidate in (value, *quoted):
        if candidate and _survives(instruction, key, candidate, value):
            return candidate
    raise GLError(f"{instruction} {key + ' ' if key else ''}value {value[:60]!r} cannot be written in a "
                  f"Modelfile: no quoting Ollama's parser accepts keeps it unchanged")


def render_command(c: Command) -> str:
    if c.instruction in ("PARAMETER", "MESSAGE"):
        return f"{c.instruction} {c.key} {quote(c.value, c.instruction, c.key)}"
    return f"{c.instruction} {quote(c.value, c.instruction)}"


def render(mf: Modelfile, header: str = "") -> str:
    """Modelfile text; ``header`` lines are written as ``#`` comments first."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    lines += [render_command(c) for c in mf.commands]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- parameters

def parameter_value(name: str, raw: str):
    """The typed value of one PARAMETER, as Ollama's FormatParams reads it; raises ValueError."""
    if name in INT_PARAMETERS:
        if not _INT_RE.fullmatch(raw):
            raise ValueError(f"{name} takes an integer, not {raw!r}")
        return int(raw)
    if name in FLOAT_PARAMETERS:
        if not _FLOAT_RE.fullmatch(raw):
            raise ValueError(f"{name} takes a number, not {raw!r}")
        return float(raw)
    if name in BOOL_PARAMETERS:
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ValueError(f"{name} takes true or false, not {raw!r}")
    if name in LIST_PARAMETERS:
        return raw
    raise ValueError(f"unknown parameter {name!r}")


def typed_parameters(mf: Modelfile) -> dict:
    """PARAMETER commands as the create request's ``parameters``; raises InputError on the first bad one.

    ``stop`` accumulates into a list; any other repeated name keeps its last value; deprecated
    names are dropped, as Ollama does.
    """
    out: dict = {}
    for c in mf.parameter_commands():
        if c.key in DEPRECATED_PARAMETERS:
            continue
        try:
            v = parameter_value(c.key, c.value)
        except ValueError as e:
            raise InputError(mf.path or "Modelfile", str(e), line=c.line) from None
        if c.key in LIST_PARAMETERS:
            out.setdefault(c.key, []).append(v)
        else:
            out[c.key] = v
    return out


def parameter_text(value) -> str:
    """A typed parameter value spelled for a PARAMETER line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameter_commands(params: dict) -> list[Command]:
    out = []
    for name, value in params.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out.append(Command("PARAMETER", parameter_text(v), name))
    return out


# ---------------------------------------------------------------- create request

def expand_from(value: str, base_dir: str | os.PathLike) -> Path:
    """Where a FROM/ADAPTER value points on disk, resolved as Ollama's CLI does."""
    if value.startswith("~"):
        return Path(os.path.abspath(os.path.expanduser(value)))
    p = Path(value)
    return Path(os.path.abspath(p if p.is_absolute() else Path(base_dir) / p))


def create_request(mf: Modelfile, base_dir: str | os.PathLike, digest_of) -> dict:
    """The ``/api/create`` body ``ollama create -f`` sends for this Modelfile (model name left out).

    FROM naming an existing file becomes ``files: {basename: digest}`` (``digest_of(path)``);
    otherwise ``from``. The request holds only what the Modelfile sets.
    """
    req: dict = {}
    for c in mf.all("FROM"):
        path = expand_from(c.value, base_dir)
        if path.is_file():
            req.setdefault("files", {})[path.name] = digest_of(path)
        else:
            req["from"] = c.value
    if mf.all("ADAPTER"):
        req["adapters"] = {expand_from(c.value, base_dir).name: digest_of(expand_from(c.value, base_dir))
                           for c in mf.all("ADAPTER")}
    for name in ("template", "system", "renderer", "parser", "requires"):
        v = mf.last(name.upper())
        if v is not None:
            req[name] = v
    if mf.licenses:
        req["license"] = mf.licenses
    params = typed_parameters(mf)
    if params:
        req["parameters"] = params
    if mf.messages:
        req["messages"] = mf.messages
    return req
