"""Tensor plans and their resolution: which type every tensor gets, and why, before quantizing.

A :class:`TensorPlan` is what one ``llama-quantize`` invocation is told: a base
file type, ordered ``--tensor-type`` rules, ``--token-embedding-type``,
``--output-tensor-type``, ``--pure`` and whether an imatrix is given.
:func:`resolve` replays llama-quantize's decision for every tensor of a model
(see :mod:`gl_plugins.plan.type_choice` for the port of llama.cpp's logic) and
returns one :class:`Assignment` per tensor with the final type, the mechanism
that decided it, and its size; totals match ``llama-quantize --dry-run``.

Precedence, as in ``llama_tensor_get_type``: tensors that may not be quantized
keep their type; ``--token-embedding-type`` decides ``token_embd.weight`` and
``per_layer_token_embd.weight`` (the latter only when no rule names it);
``--output-tensor-type`` decides ``output.weight``; then, only when the base
type is quantized, the first rule whose lowercased pattern ``regex_search``-es
the name; then, unless ``--pure``, llama.cpp's per-file-type mixture; then the
shape fallback when the row length does not divide the type's block size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from gl_plugins.errors import GLError
from gl_plugins.ggml_types import FTYPES, TYPES_BY_NAME, get_ftype, get_type, tensor_bytes
from gl_plugins.model.tensors import weight_order_key, why_not_quantizable
from gl_plugins.plan import type_choice as qh


# Types llama-quantize can write (each is the default type of some file type).
PRODUCIBLE = frozenset(t for _, t in FTYPES.values())
# The file type whose default is a given ggml type: the base type of a plan whose rules name it most.
FTYPE_FOR_TYPE = {
    "Q2_K": "Q2_K", "Q3_K": "Q3_K_S", "Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q6_K": "Q6_K", "Q8_0": "Q8_0",
    "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
    "IQ3_S": "IQ3_S", "IQ3_XXS": "IQ3_XXS", "IQ2_S": "IQ2_M", "IQ2_XS": "IQ2_XS", "IQ2_XXS": "IQ2_XXS",
    "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "MXFP4": "MXFP4_MOE",
    "Q1_0": "Q1_0", "Q2_0": "Q2_0", "F16": "F16", "BF16": "BF16", "F32": "F32",
}


class NoFallbackError(GLError):
    """A tensor gets a type whose block does not divide its rows and that has no fallback."""

    def __init__(self, message: str, tensor: str, ne0: int, type_: str, rule_no: int | None):
        super().__init__(message)
        self.tensor, self.ne0, self.type, self.rule_no = tensor, ne0, type_, rule_no


@dataclass
class Rule:
    pattern: str  # as written; llama-quantize lowercases it before use
    type: str  # as written; matched case-insensitively against ggml type names


@dataclass
class TensorPlan:
    base_type: str  # llama-quantize file type (Q2_K, Q4_K_M, IQ2_M …)
    rules: list[Rule]
    token_embedding_type: str | None = None
    output_tensor_type: str | None = None
    imatrix: bool = False
    pure: bool = False
    recipe: str | None = None
    params: dict = field(default_factory=dict)


@dataclass
class Assignment:
    name: str
    shape: tuple
    type: str  # final ggml type, after the shape fallback
    requested: str  # the type chosen before the shape fallback
    reason: str  # "rule 3: ^blk\.1\.ffn_up\.weight$", "not quantizable", "shape fallback from Q2_K" …
    bytes: int
    needs_imatrix: bool  # llama-quantize refuses, or ggml aborts, without imatrix data for it
    source_type: str = ""  # the tensor's type in the input file
    n_elements: int = 0
    rule: int | None = None  # 1-based index of the rule that matched, if one did
    note: str = ""  # detail: why not quantizable, what chose the type before a fallback

    @property
    def fell_back(self) -> bool:
        return self.type != self.requested

    @property
    def bpw(self) -> float:
        return self.bytes * 8 / self.n_elements if self.n_elements else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class Resolution:
    plan: TensorPlan
    assignments: list[Assignment]
    bytes: int
    n_params: int
    bpw: float

    def fallbacks(self) -> list[Assignment]:
        """Tensors whose type the shape fallback changed."""
        return [a for a in self.assignments if a.fell_back]

    def needs_imatrix(self) -> list[Assignment]:
        """Tensors llama-quantize refuses to quantize without importance data."""
        return [a for a in self.assignments if a.needs_imatrix]

    def tensor(self, name: str) -> Assignment | None:
        for a in self.assignments:
            if a.name == name:
                return a
        return None

    def bpw_excluding(self, names) -> float:
        """Bits per weight over every tensor except ``names``."""
        skip = set(names)
        b = sum(a.bytes for a in self.assignments if a.name not in skip)
        n = sum(a.n_elements for a in self.assignments if a.name not in skip)
        return b * 8 / n if n else 0.0

    def to_dict(self) -> dict:
        return {"plan": plan_to_dict(self.plan), "bytes": self.bytes, "n_params": self.n_params,
                "bpw": round(self.bpw, 4), "fallbacks": len(self.fallbacks()),
                "needs_imatrix": [a.name for a in self.needs_imatrix()],
                "tensors": [a.to_dict() for a in self.assignments]}


# ------------------------------------------------------------------ JSON round trip

def plan_to_dict(plan: TensorPlan) -> dict:
    d = asdict(plan)
    d["rules"] = [{"pattern": r.pattern, "type": r.type} for r in plan.rules]
    return d


def plan_from_dict(d: dict, where: str = "plan") -> TensorPlan:
    """A plan from :func:`plan_to_dict` output; GLError naming the bad field otherwise."""
    if not isinstance(d, dict):
        raise GLError(f"{where}: a tensor plan must be a JSON object, not {type(d).__name__}")
    if not isinstance(d.get("base_type"), str):
        raise GLError(f"{where}: 'base_type' must be a llama-quantize type name")
    rules = d.get("rules", [])
    if not isinstance(rules, list):
        raise GLError(f"{where}: 'rules' must be a list")
    out = []
    for i, r in enumerate(rules, 1):
        if not (isinstance(r, dict) and isinstance(r.get("pattern"), str) and isinstance(r.get("type"), str)):
            raise GLError(f"{where}: rule {i} must be an object with string 'pattern' and 'type'")
        out.append(Rule(r["pattern"], r["type"]))
    for key in ("token_embedding_type", "output_tensor_type", "recipe"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise GLError(f"{where}: {key!r} must be a string or null")
    params = d.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise GLError(f"{where}: 'params' must be an object")
    return TensorPlan(base_type=d["base_type"], rules=out, token_embedding_type=d.get("token_embedding_type"),
                      output_tensor_type=d.get("output_tensor_type"), imatrix=bool(d.get("imatrix", False)),
                      pure=bool(d.get("pure", False)), recipe=d.get("recipe"), params=dict(params))


def stock_plan(ftype: str, imatrix: bool = False) -> TensorPlan:
    """What a plain ``llama-quantize IN OUT FTYPE`` does (with ``--imatrix`` when ``imatrix``)."""
    name = get_ftype(ftype)
    return TensorPlan(base_type=name, rules=[], imatrix=imatrix, recipe="stock", params={"ftype": name})


# ------------------------------------------------------------------ resolution

def lowered(pattern: str) -> str:
    """The pattern as llama-quantize uses it: ASCII letters lowercased, nothing else."""
    return pattern.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")


def check_rules(rules: list[Rule]) -> list[str]:
    """The ggml type of each rule; GLError naming the first rule llama-quantize would refuse."""
    from gl_plugins.plan.tensor_map import PatternError, compile_pattern

    out = []
    for i, r in enumerate(rules, 1):
        try:
            compile_pattern(lowered(r.pattern))
        except PatternError as e:
            raise GLError(f"rule {i} ({r.pattern}={r.type}): the pattern is not a regex llama.cpp accepts: {e}") from None
        t = TYPES_BY_NAME.get(str(r.type).strip().upper())
        if t is None:
            raise GLError(f"rule {i} ({r.pattern}={r.type}): unknown ggml type {r.type!r}")
        out.append(t.name)
    return out


@lru_cache(maxsize=16)
def first_matches(patterns: tuple[str, ...], names: tuple[str, ...]) -> tuple:
    """Per name, the index of the first (lowercased) pattern that ``regex_search``-es it, or None."""
    from gl_plugins.plan.tensor_map import match_sets

    first: list = [None] * len(names)
    for r, hits in enumerate(match_sets([lowered(p) for p in patterns], list(names))):
        for i in hits:
            if first[i] is None or first[i] > r:
                first[i] = r
    return tuple(first)


def resolve(plan: TensorPlan, facts) -> Resolution:
    """Every tensor's final type, the reason, and its bytes, as llama-quantize will decide them."""
    ftype = get_ftype(plan.base_type)
    default = FTYPES[ftype][1]
    default_quantized = TYPES_BY_NAME[default].quantized
    tok_type = get_type(plan.token_embedding_type).name if plan.token_embedding_type else None
    out_type = get_type(plan.output_tensor_type).name if plan.output_tensor_type else None
    rule_types = check_rules(plan.rules)
    patterns = tuple(r.pattern for r in plan.rules)

    tensors = sorted(facts.tensors, key=lambda t: weight_order_key(t.name))
    names = [t.name for t in tensors]
    first = first_matches(patterns, tuple(names)) if patterns else (None,) * len(names)
    mix = qh.Mixture(qh.model_params(facts, names), ftype, plan.imatrix, out_type)

    assignments = []
    total = n_params = 0
    for t, hit in zip(tensors, first):
        shape = tuple(int(d) for d in t.shape)
        n = math.prod(shape)
        cat = qh.category(t.name)
        rule_no = None
        note = ""
        blocked = why_not_quantizable(t.name, shape, facts.architecture)
        if blocked:
            requested = final = t.type
            reason, note = "not quantizable", blocked
        elif tok_type and cat == qh.TOKEN_EMBD and not (
                t.name == "per_layer_token_embd.weight" and hit is not None):
            requested = final = tok_type
            reason = "token embedding type"
        elif out_type and cat == qh.OUTPUT:
            requested = final = out_type
            reason = "output tensor type"
        elif not default_quantized:
            requested = final = default
            reason = f"base type ({default})"
        else:
            if hit is not None:
                rule_no = hit + 1
                requested = rule_types[hit]
                reason = f"rule {rule_no}: {patterns[hit]}"
            elif plan.pure:
                requested = default
                reason = f"base type ({default}, --pure)"
            else:
                try:
                    requested = mix.choose(default, t.name, shape, cat)
                except ValueError as e:
                    raise GLError(f"{facts.source}: llama-quantize would stop at {t.name}: {e}") from None
                reason = f"llama.cpp heuristics ({ftype})"
            try:
                final = qh.shape_fallback(requested, shape[0])
            except ValueError as e:
                raise NoFallbackError(f"{t.name}: {e}; llama-quantize would stop here", t.name, shape[0],
                                      requested, rule_no) from None
            if final != requested:
                note = reason
                reason = f"shape fallback from {requested}"
        if final == t.type and t.bytes is not None:
            size = t.bytes
        elif final in TYPES_BY_NAME:
            size = tensor_bytes(final, shape)
        else:
            raise GLError(f"{facts.source}: tensor {t.name} has {t.type}, a type gl does not know, "
                          f"so its size cannot be computed")
        needs = not blocked and (qh.requires_imatrix(t.name, final, ftype)
                                 or (final != t.type and final in qh.GGML_REQUIRES_IMATRIX))
        assignments.append(Assignment(t.name, shape, final, requested, reason, size, needs, t.type, n,
                                      rule_no, note))
        total += size
        n_params += n
    return Resolution(plan, assignments, total, n_params, total * 8 / n_params if n_params else 0.0)


# ------------------------------------------------------------------ command line

def command(plan: TensorPlan, input: str, output: str, map_path: str | None = None,
            imatrix_path: str | None = None, threads: int | None = None) -> list[str]:
    """The llama-quantize arguments (after the program name) that carry out ``plan``.

    With ``map_path`` the rules go to ``--tensor-type-file``; without it each rule
    becomes a ``--tensor-type`` option. An imatrix plan without a path gets the
    placeholder ``IMATRIX``.
    """
    args: list[str] = []
    if plan.imatrix:
        args += ["--imatrix", str(imatrix_path or "IMATRIX")]
    if plan.token_embedding_type:
        args += ["--token-embedding-type", get_type(plan.token_embedding_type).name.lower()]
    if plan.output_tensor_type:
        args += ["--output-tensor-type", get_type(plan.output_tensor_type).name.lower()]
    if plan.pure:
        args.append("--pure")
    if plan.rules:
        if map_path:
            args += ["--tensor-type-file", str(map_path)]
        else:
            for r in plan.rules:
                args += ["--tensor-type", f"{r.pattern}={r.type}"]
    args += [str(input), str(output), get_ftype(plan.base_type)]
    if threads:
        args.append(str(int(threads)))
    return args
