"""Lint a hand-written llama-quantize tensor map against a model.

Every token is read as ``llama-quantize`` reads it (see :mod:`gl_plugins.tensor_map`);
the rules that survive are resolved against the model (see :mod:`gl_plugins.plan`),
so the report says what the file will really do, tensor by tensor, and what it
will weigh. Findings:

============================  ========  =====================================================
code                          severity  meaning
============================  ========  =====================================================
map-syntax                    error     llama-quantize rejects the token (no ``=``, ``#``,
                                        empty pattern or type, unknown type): unusable map
map-regex                     error     the pattern is not a regex llama.cpp compiles: unusable
map-type-not-producible       error     a ggml type llama-quantize cannot write: unusable
map-type-no-fallback          error     a type whose block does not divide the rows and that has
                                        no fallback (Q1_0 on 64-wide rows): llama-quantize stops
pattern-lowercased            error /   llama-quantize lowercases patterns; error when that
                              warning   changes what the rule matches
rule-matches-nothing          error     no tensor of the model has such a name
rule-matches-unquantizable    error     it matches only tensors llama-quantize never changes
rule-overridden-by-flag       error     --token-embedding-type / --output-tensor-type decide
rule-shadowed                 error     every tensor it matches is taken by an earlier rule
rule-partly-shadowed          warning   some of its tensors get an earlier rule's other type
pattern-overreach             error     it matches tensors its text does not name
                                        (``blk.1`` also catches ``blk.10`` … ``blk.19``)
unescaped-dot                 warning   ``.`` matches any character; write ``\\.``
shape-fallback                error     the type cannot hold the rows; llama.cpp substitutes
flag-type-rows                error     a flag type that does not divide the rows: no fallback
                                        applies there and quantizing fails
embedding-needs-imatrix       error     IQ2_XXS/IQ2_XS/IQ1_S on an embedding or the output: ggml
                                        aborts without imatrix data, which never exists for them
rules-ignored                 error     the base type is not quantized, so no rule applies
unmatched-tensors             warning   tensors no rule names get llama.cpp's mixture
needs-imatrix                 warning   types llama-quantize refuses without ``--imatrix``
bpw-target                    error     the file's real bits per weight miss the target
base-type-assumed             info      no --base-type given; the one assumed
============================  ========  =====================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from gl_plugins.errors import GLError, read_input
from gl_plugins.findings import Finding, by_severity
from gl_plugins.ggml_types import FTYPES, TYPES_BY_NAME, get_ftype, get_type, tensor_bytes
from gl_plugins.model import tensors
from gl_plugins.plan import type_choice as qh
from gl_plugins.plan.resolve import FTYPE_FOR_TYPE, PRODUCIBLE, NoFallbackError, Resolution, Rule, TensorPlan, resolve
from gl_plugins.plan.tensor_map import (MapRule, MapSyntaxError, NameIndex, PatternError, compile_pattern, match_sets,
                                        parse_token, syntax_chars, tokens)

SOURCE = "plan-lint"
UNUSABLE = frozenset({"map-syntax", "map-regex", "map-type-not-producible", "map-type-no-fallback"})
MIB = 1024 * 1024


@dataclass
class LintReport:
    file: str
    findings: list[Finding]
    rules: list[MapRule]  # the rules llama-quantize accepts (rejected tokens left out)
    resolution: Resolution
    base_type: str
    base_assumed: bool
    target_bpw: float | None
    rule_stats: list[dict] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether llama-quantize accepts the map at all."""
        return not any(f.code in UNUSABLE for f in self.findings)

    @property
    def exit_status(self) -> int:
        if not self.usable:
            return 2
        return 1 if any(f.severity == "error" for f in self.findings) else 0

    def to_dict(self) -> dict:
        r = self.resolution
        return {"file": self.file, "usable": self.usable, "exit_status": self.exit_status,
                "base_type": self.base_type, "base_type_assumed": self.base_assumed,
                "target_bpw": self.target_bpw, "bpw": round(r.bpw, 4), "bytes": r.bytes,
                "n_params": r.n_params, "findings": [f.to_dict() for f in self.findings],
                "rules": self.rule_stats,
                "tensors": [{"name": a.name, "type": a.type, "reason": a.reason, "bytes": a.bytes}
                            for a in r.assignments]}


def read_tokens(data: bytes, where: str) -> tuple[list[MapRule], list[Finding]]:
    """Every token of a map, parsed as llama-quantize parses it, without stopping at the first bad one.

    A line whose first token starts with ``#`` is reported once, as a comment, and its
    tokens are left out of the prediction (as if the line were deleted).
    """
    rules, findings = [], []
    comment_line = None
    line_first: dict[int, bool] = {}
    for raw, line in tokens(data):
        token = raw.decode("utf-8", "surrogateescape")
        first = line not in line_first
        line_first[line] = True
        if first and token.startswith("#"):
            comment_line = line
            text = data.splitlines()[line - 1].decode("utf-8", "replace").strip()
            findings.append(Finding("error", "map-syntax", f"comment line {text[:60]!r}: llama-quantize has no "
                                    f"comment syntax, reads {token!r} as a rule without '=', and stops", SOURCE,
                                    file=where, line=line, hint=_syntax_hint(token)))
            continue
        if line == comment_line:
            continue
        try:
            rules.append(parse_token(token, len(rules) + 1, where=where, line=line))
        except MapSyntaxError as e:
            findings.append(Finding("error", "map-syntax", f"{e.reason} in {token!r}; llama-quantize stops here "
                                    f"and quantizes nothing", SOURCE, file=where, line=line,
                                    hint=_syntax_hint(token)))
    return rules, findings


def _syntax_hint(token: str) -> str:
    if token.startswith("#"):
        return "delete comment lines: the file is read as whitespace-separated PATTERN=TYPE tokens"
    if "=" not in token:
        return "a rule is PATTERN=TYPE with no spaces; a space splits it into two tokens"
    return "types are ggml type names such as q4_k, q6_k, iq4_xs, q8_0"


def lint(data: bytes | None, facts, *, where: str = "map", option_rules: list[str] = (),
         base_type: str | None = None, target_bpw: float | None = None,
         token_embedding_type: str | None = None, output_tensor_type: str | None = None,
         imatrix: bool = False) -> LintReport:
    """Lint a map (file bytes) and/or ``--tensor-type`` rules against ``facts``."""
    findings: list[Finding] = []
    rules: list[MapRule] = []
    # llama-quantize gathers --tensor-type and --tensor-type-file rules in command-line order;
    # gl reads --tensor-type options first, then the file.
    for tok in option_rules:
        try:
            rules.append(parse_token(tok, len(rules) + 1, where="--tensor-type"))
        except MapSyntaxError as e:
            findings.append(Finding("error", "map-syntax", f"{e.reason} in --tensor-type {tok!r}", SOURCE,
                                    file="--tensor-type", hint=_syntax_hint(tok)))
    if data is not None:
        more, bad = read_tokens(data, where)
        for r in more:
            r.index = len(rules) + 1
            rules.append(r)
        findings += bad

    usable_rules = []
    for r in rules:
        try:
            compile_pattern(r.pattern)
        except PatternError as e:
            findings.append(Finding("error", "map-regex", f"pattern {r.written!r} does not compile as "
                                    f"llama.cpp's std::regex: {e}", SOURCE, file=_where(r, where), line=r.line,
                                    hint="escape regex characters you mean literally; use (?:...) groups only"))
            continue
        if r.type not in PRODUCIBLE:
            findings.append(Finding("error", "map-type-not-producible", f"{r.token!r}: llama-quantize cannot "
                                    f"quantize to {r.type}", SOURCE, file=_where(r, where), line=r.line,
                                    hint="choose a type llama-quantize writes, e.g. q4_k, q6_k, q8_0, iq4_xs"))
            continue
        usable_rules.append(r)

    assumed = base_type is None
    if assumed:
        counts: dict[str, int] = {}
        for r in usable_rules:
            counts[r.type] = counts.get(r.type, 0) + 1
        quant = sorted((c, t) for t, c in counts.items() if t in FTYPE_FOR_TYPE and TYPES_BY_NAME[t].quantized)
        base_type = FTYPE_FOR_TYPE[quant[-1][1]] if quant else "Q8_0"
        assumption = Finding("info", "base-type-assumed", f"no --base-type given; assuming {base_type} "
                             f"(the commonest quantized type of the rules)", SOURCE, file=where,
                             hint="pass --base-type with the type you give llama-quantize: it decides "
                                  "every tensor no rule names")
        findings.append(assumption)
    base = get_ftype(base_type)
    tok = get_type(token_embedding_type).name if token_embedding_type else None
    out = get_type(output_tensor_type).name if output_tensor_type else None
    plan = TensorPlan(base_type=base, rules=[Rule(r.written, r.type_written) for r in usable_rules],
                      token_embedding_type=tok, output_tensor_type=out, imatrix=imatrix, recipe="lint")
    while True:  # a rule llama-quantize would stop at is an error finding; the rest still resolve
        try:
            res = resolve(plan, facts)
            break
        except NoFallbackError as e:
            if e.rule_no is None:  # the base type's own mixture stops llama-quantize
                if not assumed or plan.base_type == "Q8_0":
                    raise GLError(f"{where}: with base type {plan.base_type}, {e}") from None
                assumption.message = (f"no --base-type given; assuming Q8_0 ({plan.base_type}, the commonest "
                                      f"quantized type of the rules, has no fallback for {e.tensor})")
                plan.base_type = base = "Q8_0"
                continue
            r = usable_rules.pop(e.rule_no - 1)
            del plan.rules[e.rule_no - 1]
            findings.append(Finding("error", "map-type-no-fallback", f"{r.token!r} gives {e.tensor} {e.type}, "
                                    f"whose block does not divide its rows of {e.ne0} and which has no fallback "
                                    f"type: llama-quantize stops there", SOURCE, file=_where(r, where),
                                    line=r.line, tensor=e.tensor,
                                    hint="choose a type whose block divides the row width, e.g. "
                                         + _fitting(e.type, [e.ne0])))
    stats = _rule_findings(usable_rules, res, facts, where, findings)
    _global_findings(res, facts, plan, where, target_bpw, findings)
    findings = by_severity(findings, then=lambda f: f.line if f.line is not None else 10**9)
    return LintReport(where, findings, usable_rules, res, base, assumed, target_bpw, stats)


def _where(r: MapRule, where: str) -> str:
    return where if r.line is not None else "--tensor-type"


def _names(items, limit=4) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" … ({len(items)} in all)" if len(items) > limit else "")


_LITERALISH = re.compile(r"^\^?(?:[a-z0-9_\-]|\\\.|\.)+\$?$")


def intended(pattern: str, names: list[str], index: NameIndex) -> set[int] | None:
    """The names a literal-looking pattern's text suggests, reading ``.`` as a dot and numbers whole.

    ``blk.1.`` suggests layer 1; ``blk.1`` suggests layer 1 too, not 10-19. None when the
    pattern is a real regex (groups, classes, repetition) whose intent cannot be read.
    """
    if not _LITERALISH.match(pattern):
        return None
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[1 if start else 0:len(pattern) - (1 if end else 0)]
    lit = body.replace("\\.", ".")
    hits = index.containing(lit, len(names) + 1) or []
    out = set()
    for i in hits:
        name = names[i]
        p = name.find(lit)
        while p >= 0:
            e = p + len(lit)
            ok = (not start or p == 0) and (not end or e == len(name))
            if lit[0].isdigit() and p > 0 and name[p - 1].isdigit():
                ok = False
            if lit[-1].isdigit() and e < len(name) and name[e].isdigit():
                ok = False
            if ok:
                out.add(i)
                break
            p = name.find(lit, p + 1)
    return out


def _has_unescaped_dot(pattern: str) -> bool:
    return any(c == "." for c, _ in syntax_chars(pattern))


def _rule_findings(rules: list[MapRule], res: Resolution, facts, where: str, findings: list[Finding]) -> list[dict]:
    assignments = res.assignments
    names = [a.name for a in assignments]
    index = NameIndex(names)
    matched = match_sets([r.pattern for r in rules], names) if rules else []
    by_flag = {i for i, a in enumerate(assignments) if a.reason in ("token embedding type", "output tensor type")}
    blocked = {i for i, a in enumerate(assignments) if a.reason == "not quantizable"}
    stats = []
    n_layer = int(facts.n_layer or 0)
    for k, r in enumerate(rules):
        hits = matched[k]
        rule_no = k + 1
        eff = [i for i in hits if assignments[i].rule == rule_no]
        file, line = _where(r, where), r.line
        label = f"{r.written}={r.type_written}"

        def add(sev, code, msg, hint="", evidence="", tensor=None):
            findings.append(Finding(sev, code, msg, SOURCE, tensor=tensor, file=file, line=line, hint=hint,
                                    evidence=evidence))

        if r.pattern != r.written:
            try:
                as_written = compile_pattern(r.written)
                before = [i for i, n in enumerate(names) if as_written.search(n)]
            except PatternError:
                before = None
            changed = before is None or before != hits
            add("error" if changed else "warning", "pattern-lowercased",
                f"{label}: llama-quantize lowercases the pattern to {r.pattern!r}"
                + (", which changes what it matches" if changed else ""),
                hint="write patterns in lower case; \\D, \\W, \\S, \\B become \\d, \\w, \\s, \\b")
        if not hits:
            layers = f" (layers 0-{n_layer - 1})" if n_layer else ""
            add("error", "rule-matches-nothing", f"{label}: no tensor of the model matches{layers}",
                hint="check the tensor names with `gl inspect MODEL --tensors`")
        elif all(i in blocked for i in hits):
            add("error", "rule-matches-unquantizable", f"{label}: matches only tensors llama-quantize never "
                f"quantizes ({_names(names[i] for i in hits)})", hint="norms and 1-D tensors keep their type")
        else:
            flagged = [i for i in hits if i in by_flag]
            if flagged:
                add("error", "rule-overridden-by-flag", f"{label}: {_names(names[i] for i in flagged)} "
                    f"are decided by --token-embedding-type/--output-tensor-type, not by this rule",
                    hint="set the type with the flag, or drop the flag")
            live = [i for i in hits if i not in blocked and i not in by_flag]
            taken = [i for i in live if assignments[i].rule != rule_no]
            earlier = sorted({assignments[i].rule for i in taken if assignments[i].rule})
            if live and not eff and earlier:  # with no earlier rule taking them, rules-ignored says why
                add("error", "rule-shadowed", f"{label}: never applies; every tensor it matches is taken by "
                    f"the earlier {_labels(rules, earlier)} (the first matching rule wins)",
                    hint="put specific rules before general ones, or anchor the general ones")
            elif taken:
                differ = [i for i in taken
                          if assignments[i].rule and _rule_type(rules, assignments[i].rule) != r.type]
                if differ:
                    add("warning", "rule-partly-shadowed", f"{label}: {len(differ)} of its tensors get an earlier "
                        f"rule's type instead ({_names(names[i] for i in differ)})",
                        hint="the first matching rule wins; order rules from specific to general")
            want = intended(r.pattern, names, index)
            if want is not None:
                extra = [i for i in hits if i not in want and i not in blocked]
                if extra:
                    add("error", "pattern-overreach", f"{label}: also matches {len(extra)} tensor(s) its text "
                        f"does not name: {_names(names[i] for i in extra)}",
                        hint="anchor and escape: ^blk\\.1\\.attn_v\\.weight$ matches exactly one tensor")
            if _has_unescaped_dot(r.pattern) and (want is None or not [i for i in hits if i not in want]):
                add("warning", "unescaped-dot", f"{label}: '.' matches any character, not just a dot",
                    hint="write \\. for a literal dot")
            fb = [i for i in eff if assignments[i].fell_back]
            if fb:
                said = sum(tensor_bytes(r.type, assignments[i].shape) for i in fb)
                real = sum(assignments[i].bytes for i in fb)
                into = sorted({assignments[i].type for i in fb})
                width = sorted({assignments[i].shape[0] for i in fb})
                add("error", "shape-fallback", f"{label}: {r.type} needs rows divisible by "
                    f"{TYPES_BY_NAME[r.type].block_size}; {len(fb)} tensor(s) with rows of "
                    f"{', '.join(map(str, width))} become {', '.join(into)} instead "
                    f"({(real - said) / MIB:+.2f} MiB, {(real - said) * 8 / res.n_params:+.3f} bpw)",
                    hint=f"name a type that fits, e.g. {_fitting(r.type, width)}",
                    evidence=_names(names[i] for i in fb))
        stats.append({"index": rule_no, "line": r.line, "token": r.token, "pattern": r.pattern, "type": r.type,
                      "matches": len(hits), "applies_to": len(eff),
                      "final_types": sorted({assignments[i].type for i in eff})})
    return stats


def _labels(rules: list[MapRule], numbers) -> str:
    out = []
    for n in numbers:
        r = rules[n - 1]
        out.append(f"{r.written}={r.type_written}" + (f" (line {r.line})" if r.line is not None else ""))
    return ("rules " if len(out) > 1 else "rule ") + ", ".join(out)


def _rule_type(rules, rule_no):
    return rules[rule_no - 1].type if rule_no else None


def _fitting(type_: str, widths) -> str:
    ok = [t for t in ("Q4_0", "Q5_0", "Q8_0", "IQ4_NL", "Q4_1", "Q5_1")
          if all(w % TYPES_BY_NAME[t].block_size == 0 for w in widths)]
    return " or ".join(ok[:3]) if ok else "F16"


def _global_findings(res: Resolution, facts, plan: TensorPlan, where: str, target: float | None,
                     findings: list[Finding]) -> None:
    default = FTYPES[plan.base_type][1]
    if plan.rules and not TYPES_BY_NAME[default].quantized:
        findings.append(Finding("error", "rules-ignored", f"base type {plan.base_type} is not quantized, so "
                                f"llama-quantize applies none of the {len(plan.rules)} rules", SOURCE, file=where,
                                hint="give a quantized base type; rules only refine a quantized one"))
    for flag, a in ((f"--token-embedding-type {plan.token_embedding_type}", x) for x in res.assignments
                    if x.reason == "token embedding type"):
        _flag_rows(flag, a, where, findings)
    for a in res.assignments:
        if a.reason == "output tensor type":
            _flag_rows(f"--output-tensor-type {plan.output_tensor_type}", a, where, findings)
    loose = [a for a in res.assignments if a.reason.startswith("llama.cpp heuristics")
             or (a.fell_back and a.note.startswith("llama.cpp heuristics"))]
    if loose:
        kinds: dict[str, int] = {}
        for a in loose:
            kinds[a.type] = kinds.get(a.type, 0) + 1
        findings.append(Finding("warning", "unmatched-tensors", f"{len(loose)} quantizable tensor(s) match no "
                                f"rule and get llama.cpp's {plan.base_type} mixture: "
                                + ", ".join(f"{n}x {t}" for t, n in sorted(kinds.items())), SOURCE, file=where,
                                hint="name every tensor you care about, or pass --base-type deliberately",
                                evidence=_names(a.name for a in loose)))
    for a in res.assignments:
        if a.type in qh.GGML_REQUIRES_IMATRIX and a.type != a.source_type and (
                a.name in tensors.EMBEDDINGS or a.name == tensors.OUTPUT):
            findings.append(Finding("error", "embedding-needs-imatrix", f"{a.name} gets {a.type} ({a.reason}): "
                                    f"ggml aborts making {a.type} without imatrix data, and llama-imatrix records "
                                    f"none for the embeddings (nor for the output without --process-output)",
                                    SOURCE, tensor=a.name, file=where,
                                    hint="give the embeddings and the output a K-type or Q8_0"))
    needs = res.needs_imatrix()
    if needs and not plan.imatrix:
        findings.append(Finding("warning", "needs-imatrix", f"{len(needs)} tensor(s) get types llama-quantize "
                                f"refuses without --imatrix ({', '.join(sorted({a.type for a in needs}))})",
                                SOURCE, file=where, hint="compute one with llama-imatrix and pass --imatrix",
                                evidence=_names(a.name for a in needs)))
    if target is not None:
        tol = max(0.02, 0.01 * target)
        diff = res.bpw - target
        emb = sum(a.bytes for a in res.assignments if a.name in tensors.EMBEDDINGS)
        share = f"; embeddings hold {emb * 100 / res.bytes:.0f}% of the bytes" if res.bytes else ""
        if abs(diff) > tol:
            findings.append(Finding("error", "bpw-target", f"the map gives {res.bpw:.2f} bpw "
                                    f"({res.bytes / MIB:.2f} MiB), not the {target:g} it aims for ({diff:+.2f})"
                                    + share, SOURCE, file=where,
                                    hint="`gl plan MODEL --recipe budget --target-bpw X` writes a map that hits it"))
        else:
            findings.append(Finding("info", "bpw-target", f"the map gives {res.bpw:.2f} bpw, within {tol:.2f} of "
                                    f"the {target:g} it aims for", SOURCE, file=where))


def _flag_rows(flag: str, a, where: str, findings: list[Finding]) -> None:
    t = TYPES_BY_NAME.get(a.type)
    if t is not None and a.shape[0] % t.block_size:
        findings.append(Finding("error", "flag-type-rows", f"{flag}: {a.name} has rows of {a.shape[0]}, not a "
                                f"multiple of {t.block_size}; llama-quantize applies no fallback to this flag and "
                                f"quantizing fails", SOURCE, tensor=a.name, file=where,
                                hint=f"use a type that fits, e.g. {_fitting(a.type, [a.shape[0]])}"))


def lint_file(path: str | os.PathLike | None, facts, **kw) -> LintReport:
    """:func:`lint` on a file (None: only ``option_rules``)."""
    data = None
    where = "--tensor-type"
    if path is not None:
        where = os.fspath(path)
        data = read_input(path, "a tensor-type file")
    return lint(data, facts, where=where, **kw)
