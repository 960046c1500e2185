"""What Ollama reads from a chat template: its capabilities, and whether a GGUF's own chat template wins.

A restatement of Ollama v0.33.0-rc2, for gl's decisions:

- Go TEMPLATE side: ``Template.Vars`` / ``Identifiers`` (template/template.go):
  the lowercased identifiers of every field (``.Tools`` -> ``tools``) and
  variable (``$.Messages`` -> ``$``, ``messages``) used in a pipeline, but
  not declarations, and nothing inside a chain such as ``(index $m 1).Role``;
  ``goTemplateCapabilities`` (server/images.go): ``tools`` when the variables
  hold ``tools``, ``insert`` when they hold ``suffix``, ``thinking`` when
  ``thinking.InferTags`` (thinking/template.go) finds an opening and a closing
  tag: for each ``.Thinking`` field inside a ``range`` over ``.Messages``, the
  trimmed first and last text of the nearest enclosing list (the last such
  field decides); ``goTemplateHasToolRoundTrip``: variables ``tools`` and
  ``toolcalls``, and the text holds ``eq .Role "tool"``, ``tool_response`` or
  ``TOOL_RESULTS``.
- GGUF Jinja side: ``chatTemplateCapabilities`` / ``chatTemplateHasToolRoundTrip``
  / ``chatTemplateHasThinkingSupport`` (server/images.go): substring tests.
- ``shouldPreferChatTemplate`` (server/images.go): with more capabilities the
  Jinja wins unless the Go template has a tool round trip the Jinja lacks;
  with the same capabilities, both with tools, the Jinja wins only when it has
  a round trip and the Go template does not.

The Go side is read with a small parser of Go template actions, enough for
Modelfile templates; the test suite holds it against Go's own text/template
(tests/gotemplate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------- the GGUF's Jinja


def jinja_capabilities(chat_template: str | None) -> list[str]:
    """``chatTemplateCapabilities``: tools, thinking (in that order), from substrings."""
    t = chat_template or ""
    if not t:
        return []
    caps = []
    if "tools" in t or "tool_call" in t:
        caps.append("tools")
    if ("<think>" in t and "</think>" in t) or (
            ("content.split('</think>')" in t or 'content.split("</think>")' in t)
            and "reasoning_content" not in t and "<SPECIAL_12>" not in t):
        caps.append("thinking")
    return caps


_JINJA_TOOL_RESULTS = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"",
                       "role\"] == 'tool'", "role\"] == \"tool\"", "message.role == 'tool'",
                       'message.role == "tool"', "ipython")


def jinja_has_tool_round_trip(chat_template: str | None) -> bool:
    t = chat_template or ""
    if "tools" not in t and "tool_call" not in t:
        return False
    calls = "tool_calls" in t or "assistant_tool_call" in t
    return calls and any(s in t for s in _JINJA_TOOL_RESULTS)


# ---------------------------------------------------------------- a Go template, parsed enough


class TemplateSyntaxError(ValueError):
    pass


@dataclass
class _Node:
    kind: str  # text | action | if | range | with | template
    text: str = ""  # text, or the pipeline of an action/branch
    body: list = field(default_factory=list)
    orelse: list | None = None


_SPACE = " \t\r\n"
_ACTION_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|\'(?:\\.|[^\'\\])*\'|\(|\)|\$\w*(?:\.\w+)*|\.\w+(?:\.\w+)*'
                           r'|[^\s()"`\']+')


def _actions(src: str):
    """(kind, value) pieces: ("text", s) and ("action", inside), with Go's trim markers applied."""
    out = []
    pos, n = 0, len(src)
    trim_next = False
    while pos < n:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        left_trim = start >= 0 and src[start + 2:start + 3] == "-" and src[start + 3:start + 4] in tuple(_SPACE)
        if left_trim:
            text = text.rstrip(_SPACE)
        if text:
            out.append(("text", text))
        if start < 0:
            break
        i = start + 3 if left_trim else start + 2
        # find the closing delimiter outside string literals
        j = i
        while True:
            if j >= n:
                raise TemplateSyntaxError("unclosed action")
            c = src[j]
            if c in "\"'`":
                end = src.find(c, j + 1) if c == "`" else _string_end(src, j)
                if end < 0:
                    raise TemplateSyntaxError("unterminated quoted string")
                j = end + 1
                continue
            if src.startswith("}}", j):
                break
            j += 1
        inner = src[i:j]
        trim_next = inner.endswith((" -", "\t-", "\n-", "\r-"))
        if trim_next:
            inner = inner[:-1]
        inner = inner.strip(_SPACE)
        if not (inner.startswith("/*") and inner.endswith("*/")):
            out.append(("action", inner))
        pos = j + 2
    return out


def _string_end(src: str, j: int) -> int:
    quote = src[j]
    k = j + 1
    while k < len(src):
        if src[k] == "\\":
            k += 2
            continue
        if src[k] == quote:
            return k
        if src[k] == "\n":
            return -1
        k += 1
    return -1


def parse_template(src: str) -> list[_Node]:
    """The node tree of a Go template; raises :class:`TemplateSyntaxError`."""
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list]] = [(None, root)]  # (branch node, the list being filled)
    chained: list[int] = []  # per open branch: how many nested ifs an `else if` chain opened
    for kind, value in _actions(src):
        current = stack[-1][1]
        if kind == "text":
            current.append(_Node("text", value))
            continue
        word, _, rest = value.partition(" ")
        word = word.strip(_SPACE)
        if word in ("if", "range", "with"):
            node = _Node(word, rest.strip(_SPACE))
            current.append(node)
            stack.append((node, node.body))
            chained.append(0)
        elif word == "else":
            if len(stack) == 1:
                raise TemplateSyntaxError("unexpected {{else}}")
            node = stack[-1][0]
            node.orelse = []
            stack[-1] = (node, node.orelse)
            sub, _, cond = rest.strip(_SPACE).partition(" ")
            if sub in ("if", "with"):
                nested = _Node(sub, cond.strip(_SPACE))
                node.orelse.append(nested)
                stack.append((nested, nested.body))
                chained[-1] += 1
        elif word == "end":
            if len(stack) == 1:
                raise TemplateSyntaxError("unexpected {{end}}")
            for _ in range(chained.pop() + 1):
                stack.pop()
        elif word in ("define", "block"):
            raise TemplateSyntaxError(f"{{{{{word}}}}} is not read by gl")
        elif word == "template":
            current.append(_Node("template", rest))
        else:
            current.append(_Node("action", value))
    if len(stack) != 1:
        raise TemplateSyntaxError("unexpected EOF")
    return root


def _pipeline_parts(pipe: str) -> tuple[list[list[str]], list[list[str]]]:
    """(identifier lists, field identifier lists) of a pipeline, as Identifiers and InferTags see them."""
    m = re.match(r"\s*(\$\w*\s*,\s*)?\$\w*\s*:?=(?!=)", pipe)
    if m:
        pipe = pipe[m.end():]
    idents: list[list[list[str]]] = [[]]
    fields: list[list[list[str]]] = [[]]
    tokens = list(_ACTION_TOKEN.finditer(pipe))
    for k, t in enumerate(tokens):
        tok = t.group(0)
        if tok == "(":
            idents.append([])
            fields.append([])
        elif tok == ")":
            if len(idents) == 1:
                raise TemplateSyntaxError("unexpected right paren")
            inner_i, inner_f = idents.pop(), fields.pop()
            nxt = tokens[k + 1] if k + 1 < len(tokens) else None
            if nxt is not None and nxt.start() == t.end() and nxt.group(0).startswith("."):
                continue  # a chain: Identifiers does not look inside it
            idents[-1].extend(inner_i)
            fields[-1].extend(inner_f)
        elif tok.startswith("$"):
            idents[-1].append(tok.split("."))
        elif tok.startswith(".") and len(tok) > 1:
            prev = tokens[k - 1] if k else None
            if prev is not None and prev.end() == t.start() and prev.group(0) == ")":
                continue  # the field of a chain
            idents[-1].append(tok[1:].split("."))
            fields[-1].append(tok[1:].split("."))
    if len(idents) != 1:
        raise TemplateSyntaxError("unclosed left paren")
    return idents[0], fields[0]


def _walk(nodes: list[_Node], visit, ancestors: list):
    ancestors.append(nodes)
    for n in nodes:
        ancestors.append(n)
        visit(n, ancestors)
        for part in (n.body, n.orelse):
            if part:
                _walk(part, visit, ancestors)
        ancestors.pop()
    ancestors.pop()


@dataclass
class GoTemplate:
    """What Ollama reads from a Go TEMPLATE: variables, capabilities, thinking tags, tool round trip."""

    vars: list[str]
    capabilities: list[str]
    thinking_tags: tuple[str, str]
    tool_round_trip: bool


def read_go_template(src: str) -> GoTemplate:
    """Raises :class:`TemplateSyntaxError` for a template gl cannot read (Ollama then infers nothing)."""
    tree = parse_template(src)
    names: set[str] = set()
    tags = ["", ""]

    def visit(node: _Node, ancestors: list):
        if node.kind == "text":
            return
        idents, fields = _pipeline_parts(node.text)
        names.update(i.lower() for ident in idents for i in ident)
        if not any(f and f[0] == "Thinking" for f in fields):
            return
        ranges = [a for a in ancestors if isinstance(a, _Node) and a.kind == "range"]
        if not ranges or not any(f and f[0] == "Messages" for f in _pipeline_parts(ranges[-1].text)[1]):
            return
        lists = [a for a in ancestors[:-1] if isinstance(a, list)]
        enclosing = lists[-1]
        if enclosing[0].kind == "text":
            tags[0] = enclosing[0].text.strip(_SPACE)
        if enclosing[-1].kind == "text":
            tags[1] = enclosing[-1].text.strip(_SPACE)

    _walk(tree, visit, [])
    v = sorted(names)
    caps = []
    if "tools" in v:
        caps.append("tools")
    if "suffix" in v:
        caps.append("insert")
    if tags[0] and tags[1]:
        caps.append("thinking")
    round_trip = "tools" in v and "toolcalls" in v and (
        'eq .Role "tool"' in src or "tool_response" in src or "TOOL_RESULTS" in src)
    return GoTemplate(v, caps, (tags[0], tags[1]), round_trip)


def go_template_capabilities(src: str | None) -> list[str]:
    if not src:
        return []
    try:
        return read_go_template(src).capabilities
    except TemplateSyntaxError:
        return []


def prefers_chat_template(chat_template: str | None, go_template: str | None) -> bool:
    """``shouldPreferChatTemplate``: whether Ollama renders the GGUF's Jinja instead of this Go TEMPLATE."""
    if not chat_template or not go_template:
        return False
    jinja = jinja_capabilities(chat_template)
    try:
        go = read_go_template(go_template)
    except TemplateSyntaxError:
        go = GoTemplate([], [], ("", ""), False)
    if len(jinja) > len(go.capabilities):
        return not go.tool_round_trip or jinja_has_tool_round_trip(chat_template)
    if sorted(jinja) != sorted(go.capabilities) or "tools" not in jinja:
        return False
    return jinja_has_tool_round_trip(chat_template) and not go.tool_round_trip
