"""The remedy for imatrix gaps: pin each uncovered tensor to the cheapest type that needs no imatrix.

The pins are anchored ``--tensor-type`` rules placed before the plan's own rules
(llama-quantize uses the first rule that matches), so llama-quantize proceeds;
for a tensor an explicit ``--token-embedding-type``/``--output-tensor-type``
decides, the option itself changes.
The type is chosen on the bytes it will really take: a type whose block size
does not divide the row length is charged for its shape fallback, and the
rule names the type that will actually be used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# General-purpose types llama-quantize makes without importance data, cheapest first.
# Ternary (TQ*), 1-/2-bit experimental (Q1_0, Q2_0) and FP4 types are left out:
# they are meant for models trained for them.
CANDIDATES = ("Q2_K", "Q3_K", "IQ3_S", "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_K", "Q5_0", "Q5_K", "Q6_K", "Q8_0")


@dataclass
class Remedy:
    pins: dict[str, str]  # tensor -> type
    rules: list[tuple[str, str]]  # (pattern, type), pins first, then the plan's own rules
    before: object  # Resolution of the original plan
    after: object  # Resolution with the pins
    still_needing: list[str]  # uncovered tensors that would still need an imatrix (should be empty)
    options: dict = field(default_factory=dict)  # llama-quantize options changed: token_embedding_type …

    @property
    def added_bytes(self) -> int:
        return self.after.bytes - self.before.bytes

    def summary(self) -> str:
        if not self.pins:
            return "nothing to pin: every tensor that needs an imatrix has data"
        mib = self.added_bytes / 2**20
        return (f"pinned {len(self.pins)} tensor(s) to types that need no imatrix "
                f"({', '.join(sorted(set(self.pins.values())))}): {self.before.bpw:.3f} -> "
                f"{self.after.bpw:.3f} bpw ({self.after.bpw - self.before.bpw:+.3f} bpw, {mib:+.2f} MiB)")

    def to_dict(self) -> dict:
        return {"pins": self.pins, "rules": [f"{p}={t.lower()}" for p, t in self.rules],
                "bpw_before": round(self.before.bpw, 4), "bpw_after": round(self.after.bpw, 4),
                "bytes_added": self.added_bytes, "still_needing": self.still_needing, "options": self.options}


def cheapest_type(name: str, shape, ftype: str) -> str:
    """The candidate type taking the fewest bytes for this tensor, after its shape fallback."""
    from gl_plugins.ggml_types import tensor_bytes
    from gl_plugins.plan.type_choice import requires_imatrix, shape_fallback

    best = None
    for cand in CANDIDATES:
        final = shape_fallback(cand, int(shape[0]))
        if requires_imatrix(name, final, ftype):
            continue
        size = tensor_bytes(final, shape)
        if best is None or size < best[0]:
            best = (size, final)
    return best[1]


def remedy(plan, facts, before, uncovered: list[str]) -> Remedy:
    """Pins for the ``uncovered`` tensors of ``plan`` (resolved as ``before``) and the plan they give.

    A tensor that ``--token-embedding-type`` or ``--output-tensor-type`` decides cannot be
    changed by a rule (llama-quantize consults those options first), so for it the option
    itself is changed in the resulting plan (see :attr:`Remedy.options`).
    """
    from gl_plugins.imatrix.coverage import needs_data
    from gl_plugins.plan.resolve import Rule, resolve
    from gl_plugins.model.tensors import OUTPUT
    from gl_plugins.plan.tensor_map import rules_for

    ftype = before.plan.base_type
    shapes = {a.name: a.shape for a in before.assignments}
    needing = {a.name for a in before.assignments if needs_data(a)}
    pins = {n: cheapest_type(n, shapes[n], ftype) for n in uncovered if n in needing}
    options = {}
    by_rule = dict(pins)
    if plan.token_embedding_type and "token_embd.weight" in pins:
        options["token_embedding_type"] = by_rule.pop("token_embd.weight")
    if plan.output_tensor_type and OUTPUT in pins:
        options["output_tensor_type"] = by_rule.pop(OUTPUT)
    pin_rules = rules_for(by_rule)
    rules = pin_rules + [(r.pattern, r.type) for r in plan.rules]
    pinned = replace(plan, rules=[Rule(p, t) for p, t in pin_rules] + list(plan.rules), **options)
    after = resolve(pinned, facts)
    still = [a.name for a in after.assignments if needs_data(a) and a.name in set(uncovered)]
    return Remedy(pins, rules, before, after, still, options)


def write_rules(path, rem: Remedy) -> None:
    """Write the rules as a ``--tensor-type-file`` (atomically)."""
    from gl_plugins.plan.tensor_map import write_map

    write_map(path, rem.rules)
