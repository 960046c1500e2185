"""How much a unit of a tensor's measured error costs in end-to-end KL divergence, per tensor class and depth.

The weights are fitted by ``bench/sensitivity.py`` on gl's two real sample
models (Gemma 3 270M and Qwen2.5-Coder-1.5B, their F16 bases and gl's imatrix
of each). From a reference file with every quantizable tensor at Q8_0, one
*group* of tensors at a time is lowered to Q2_K (llama.cpp's fallback type
where its rows are not 256 wide) and the file's mean KLD against the base is
measured on gl's evaluation text. A group is a tensor class in one third of
the layers (``ffn_down@0`` is ffn_down in the first third) or a tensor outside
the layers (``token_embd``, ``output``; a tied embedding is ``output``). Its
weight is

    w = (KLD(lowered) - KLD(reference)) / sum over its tensors of (e_low - e_Q8_0)

with ``e`` the tensor's relative error as ``gl plan errors`` measures it with
the same imatrix. So the weights are in KLD per unit of relative error, and
the sum of ``w * e`` over a plan's tensors estimates the plan's mean KLD. What
the weights leave unexplained of the reference file's own KLD is the
*intercept*: a cost every quantized file pays whatever its weight errors
(llama.cpp's CPU kernels also quantize the activations they multiply with
quantized weights). :func:`estimate` adds it.

For a model of an architecture that was measured, that model's weights are
used; otherwise the geometric mean over the measured models. A group that
was never measured (another class, another tensor) falls back to its role
prior (:data:`gl_plugins.plan.recipes.ROLE_WEIGHT`) times the scale that
brings the priors of the measured groups onto their fitted weights; the
source of every weight is said with it (``gl plan --explain``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gl_plugins.model.tensors import layer_of, role

DATA = Path(__file__).resolve().parents[1] / "data" / "sensitivity.json"
THIRDS = 3
FORMAT = 1


def group_of(facts, name: str) -> str:
    """The group a tensor's weight is fitted for: ``class@third`` inside the layers, else its role
    (a tied embedding counts as the ``output``)."""
    if name == "token_embd.weight" and facts.tensor("output.weight") is None:
        return "output"
    r = role(name)
    layer, n = layer_of(name), int(facts.n_layer or 0)
    if layer is None or not n:
        return r
    return f"{r}@{min(THIRDS - 1, THIRDS * layer // n)}"


def group_class(group: str) -> str:
    return group.split("@", 1)[0]


@dataclass(frozen=True)
class Weight:
    value: float
    kind: str  # "fitted", "role prior" (the Gaussian table's units) or "role prior x SCALE" (never measured)
    group: str = ""

    @property
    def fitted(self) -> bool:
        return self.kind == "fitted"


@lru_cache(maxsize=4)
def load(path: str = str(DATA)) -> dict:
    """The fitted weights gl ships (``bench/sensitivity.py`` writes them); an empty set when absent."""
    p = Path(path)
    if not p.exists():
        return {"format": FORMAT, "models": []}
    doc = json.loads(p.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{p}: sensitivity data of format {doc.get('format')!r}, gl reads {FORMAT}")
    return doc


def _geomean(xs) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


class Sensitivities:
    """The weight of every tensor of one model: fitted where its group was measured, prior otherwise."""

    def __init__(self, facts, doc: dict | None = None):
        from gl_plugins.plan.recipes import ROLE_WEIGHT

        doc = load() if doc is None else doc
        models = doc.get("models", [])
        same = [m for m in models if m.get("architecture") == facts.architecture]
        self.models = same or models
        self.facts = facts
        fitted: dict[str, list[float]] = {}
        for m in self.models:
            for g, row in m.get("groups", {}).items():
                if row.get("weight", 0) > 0:
                    fitted.setdefault(g, []).append(row["weight"])
        self.fitted = {g: _geomean(ws) for g, ws in fitted.items()}
        # per model: its reference file's KLD less what its own weights explain of it
        own = [m["reference_kld"] - sum(r.get("weight", 0) * r.get("reference_error", 0)
                                        for r in m.get("groups", {}).values())
               for m in self.models if "reference_kld" in m]
        self.intercept = max(0.0, sum(own) / len(own)) if own else 0.0
        ratios = [w / ROLE_WEIGHT.get(group_class(g), 1.0) for g, w in self.fitted.items()]
        self.scale = _geomean(ratios) if ratios else 1.0
        self.source = ("fitted on " + ", ".join(m["model"] for m in self.models)
                       + (" (geometric mean)" if len(self.models) > 1 else "")) if self.models else "none fitted"

    def weight(self, name: str) -> Weight:
        from gl_plugins.plan.recipes import sensitivity

        g = group_of(self.facts, name)
        if g in self.fitted:
            return Weight(self.fitted[g], "fitted", g)
        return Weight(sensitivity(self.facts, name) * self.scale, f"role prior x {self.scale:.3g}", g)

    def describe(self) -> dict:
        """What the weights are, for ``--explain``: where they were fitted, and the fallback's scale."""
        return {"weights": "KLD per unit of relative error", "fitted": self.source,
                "fitted_by": load().get("command"), "groups": len(self.fitted), "prior_scale": self.scale,
                "intercept": self.intercept}


class Priors:
    """The role priors alone, in the Gaussian table's units (budget --errors gaussian)."""

    def __init__(self, facts):
        self.facts = facts

    def weight(self, name: str) -> Weight:
        from gl_plugins.plan.recipes import sensitivity

        return Weight(sensitivity(self.facts, name), "role prior", group_of(self.facts, name))

    intercept = 0.0

    def describe(self) -> dict:
        return {"weights": "role priors (x1.5 in the first and last eighth of the layers)"}


def fit_group(delta_kld: float, delta_error: float) -> float:
    """A group's weight from its lowering run: KLD per unit of relative error (0 when nothing moved)."""
    return max(delta_kld, 0.0) / delta_error if delta_error > 0 else 0.0


def estimate(weights, table, tensors, types: dict[str, str]) -> tuple[float | None, list[str]]:
    """The estimated mean KLD of a file with ``types`` (tensor -> ggml type): the weights' intercept
    plus the sum over ``tensors`` of weight x measured relative error (``table``: an ErrorTable).
    (None, the tensors without a figure) when some type of some tensor was not measured; float types
    count as no error, and a file with no quantized tensor has no intercept either."""
    from gl_plugins.ggml_types import TYPES_BY_NAME

    quantized = any(TYPES_BY_NAME[types[t.name]].quantized for t in tensors)
    total, missing = (weights.intercept if quantized else 0.0), []
    for t in tensors:
        ty = types[t.name]
        if not TYPES_BY_NAME[ty].quantized:
            continue
        e = table.error(t.name, ty) if t.name in table.tensors else None
        if e is None:
            missing.append(t.name)
            continue
        total += weights.weight(t.name).value * e
    return (None if missing else total), missing


def estimate_plan(weights, table, facts, plan) -> tuple[float | None, list[str]]:
    """:func:`estimate` of the file ``plan`` makes of the model ``facts`` (the types llama-quantize
    gives each tensor, as :func:`gl_plugins.plan.resolve.resolve` replays them)."""
    from gl_plugins.model.tensors import quantizable
    from gl_plugins.plan.resolve import resolve

    types = {a.name: a.type for a in resolve(plan, facts).assignments}
    return estimate(weights, table, quantizable(facts), types)
