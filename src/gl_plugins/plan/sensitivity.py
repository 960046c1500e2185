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
the sum of ``w * e`` over a plan's tensors estimates the plan's mean KLD.

That sum leaves out a cost no weight error shows: ggml's CPU kernels quantize
the activations they multiply with a quantized weight, to 8 bits in blocks of
256 (Q8_K) against K- and IQ types and in blocks of 32 (Q8_0, Q8_1) against the
32-block types (:data:`gl_plugins.ggml_types.VEC_DOT_TYPE`); a float weight
multiplies float activations. The *compute cost* of a tensor is its weight
times the cost per unit of weight of its activation type. Two reference files
measure them: every tensor at Q8_0 (all activations Q8_0) and every tensor at
Q6_K (Q8_K; Q8_0 where rows are not 256 wide). What the weights leave of the
first file's KLD, over the summed weights, is the cost of Q8_0 activations;
what is left of the second's once its Q8_0 tensors are paid for is the cost of
Q8_K activations. On Qwen2.5-Coder-1.5B the Q8_K cost is several times the
Q8_0 one, and a file whose weights requantize exactly to the base's own grid
still measures three times the KLD of an all-Q8_0 file. :func:`estimate` adds
the compute costs.

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
        costs: dict[str, list[float]] = {}
        for m in self.models:
            for act, c in (m.get("compute") or {}).get("cost", {}).items():
                if c > 0:
                    costs.setdefault(act, []).append(c)
        # per activation type, KLD per unit of weight (Q8_1 is quantized as Q8_0 is: 8 bits, blocks of 32)
        self.compute_costs = {act: _geomean(cs) for act, cs in costs.items()}
        if "Q8_0" in self.compute_costs:
            self.compute_costs.setdefault("Q8_1", self.compute_costs["Q8_0"])
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

    def compute_cost(self, name: str, type_: str) -> float:
        """What multiplying with tensor ``name`` in ``type_`` costs in KLD through its activations' type
        (0 for a float type, and for an activation type never measured)."""
        from gl_plugins.ggml_types import activation_type

        c = self.compute_costs.get(activation_type(type_), 0.0)
        return self.weight(name).value * c if c else 0.0

    def describe(self) -> dict:
        """What the weights are, for ``--explain``: where they were fitted, and the fallback's scale."""
        return {"weights": "KLD per unit of relative error", "fitted": self.source,
                "fitted_by": load().get("command"), "groups": len(self.fitted), "prior_scale": self.scale,
                "compute_costs": {a: float(f"{c:.4g}") for a, c in sorted(self.compute_costs.items())}}


class Priors:
    """The role priors alone, in the Gaussian table's units (budget --errors gaussian)."""

    def __init__(self, facts):
        self.facts = facts

    def weight(self, name: str) -> Weight:
        from gl_plugins.plan.recipes import sensitivity

        return Weight(sensitivity(self.facts, name), "role prior", group_of(self.facts, name))

    def compute_cost(self, name: str, type_: str) -> float:
        return 0.0  # the Gaussian table has no unit to put it in

    def describe(self) -> dict:
        return {"weights": "role priors (x1.5 in the first and last eighth of the layers)"}


def fit_group(delta_kld: float, delta_error: float) -> float:
    """A group's weight from its lowering run: KLD per unit of relative error (0 when nothing moved)."""
    return max(delta_kld, 0.0) / delta_error if delta_error > 0 else 0.0


def estimate(weights, table, tensors, types: dict[str, str]) -> tuple[float | None, list[str]]:
    """The estimated mean KLD of a file with ``types`` (tensor -> ggml type): the sum over ``tensors``
    of weight x measured relative error (``table``: an ErrorTable) plus each tensor's compute cost.
    (None, the tensors without a figure) when some type of some tensor was not measured; float types
    count as no error and no compute cost."""
    from gl_plugins.ggml_types import TYPES_BY_NAME

    total, missing = 0.0, []
    for t in tensors:
        ty = types[t.name]
        if not TYPES_BY_NAME[ty].quantized:
            continue
        e = table.error(t.name, ty) if t.name in table.tensors else None
        if e is None:
            missing.append(t.name)
            continue
        total += weights.weight(t.name).value * e + weights.compute_cost(t.name, ty)
    return (None if missing else total), missing


def fit_compute_costs(weights, table, tensors, references: dict[str, tuple[dict[str, str], float]]) -> dict:
    """The compute costs (KLD per unit of weight, per activation type) from the reference files:
    ``references`` maps "Q8_0" and "Q6_K" to (types of the file, its measured mean KLD). The Q8_0 file
    gives the cost of Q8_0 activations (its KLD less its weighted error, over its summed weights); the
    Q6_K file, once its weighted error and its Q8_0-activation tensors are paid for, the cost of Q8_K
    activations over the weights of its tensors that take them. A cost is never below 0."""
    from gl_plugins.ggml_types import activation_type

    out: dict = {"cost": {}, "references": {}}
    for ref in ("Q8_0", "Q6_K"):
        if ref not in references:
            continue
        types, kld = references[ref]
        err = sum(weights.weight(t.name).value * table.error(t.name, types[t.name]) for t in tensors)
        by_act: dict[str, float] = {}
        for t in tensors:
            a = activation_type(types[t.name])
            by_act[a] = by_act.get(a, 0.0) + weights.weight(t.name).value
        paid = sum(out["cost"].get("Q8_0", 0.0) * w for a, w in by_act.items() if a in ("Q8_0", "Q8_1"))
        act = "Q8_0" if ref == "Q8_0" else "Q8_K"
        left = kld - err - (paid if act == "Q8_K" else 0.0)
        on = by_act.get(act, 0.0) + (by_act.get("Q8_1", 0.0) if act == "Q8_0" else 0.0)
        out["cost"][act] = float(f"{max(0.0, left / on):.5g}") if on > 0 else 0.0
        out["references"][ref] = {"kld": kld, "weighted_error": float(f"{err:.5g}"),
                                  "weights": {a: float(f"{w:.5g}") for a, w in sorted(by_act.items())}}
    return out


def estimate_plan(weights, table, facts, plan) -> tuple[float | None, list[str]]:
    """:func:`estimate` of the file ``plan`` makes of the model ``facts`` (the types llama-quantize
    gives each tensor, as :func:`gl_plugins.plan.resolve.resolve` replays them)."""
    from gl_plugins.model.tensors import quantizable
    from gl_plugins.plan.resolve import resolve

    types = {a.name: a.type for a in resolve(plan, facts).assignments}
    return estimate(weights, table, quantizable(facts), types)
