"""Time the plan resolver and the map linter at the sizes the issue asks about.

* resolve a plan against a 1,000-tensor model (a gl-style map with anchored rules,
  and a stock file type that runs llama.cpp's mixture for every tensor);
* lint a 1,000-rule hand-written map (one unanchored ``blk.N.role=type`` rule per
  tensor, the lab's style) against the same model.

Both are asked to take under 1 s. Prints the best of five cold runs of each (caches
of compiled patterns emptied before every run).

    python bench/plan_resolve.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gl_plugins.facts import ModelFacts, Tensor  # noqa: E402
from gl_plugins.plan.resolve import resolve, stock_plan  # noqa: E402
from gl_plugins.plan.lint import lint  # noqa: E402
from gl_plugins.plan.recipes import Protect  # noqa: E402

ROLES = (("attn_q", (4096, 4096)), ("attn_k", (4096, 1024)), ("attn_v", (4096, 1024)),
         ("attn_output", (4096, 4096)), ("ffn_up", (4096, 14336)), ("ffn_gate", (4096, 14336)),
         ("ffn_down", (14336, 4096)), ("attn_norm", (4096,)), ("ffn_norm", (4096,)))


def model(n_tensors: int = 1000) -> ModelFacts:
    tensors = [Tensor("token_embd.weight", (4096, 128256), "BF16", 4096 * 128256 * 2),
               Tensor("output.weight", (4096, 128256), "BF16", 4096 * 128256 * 2),
               Tensor("output_norm.weight", (4096,), "F32", 4096 * 4)]
    layer = 0
    while len(tensors) < n_tensors:
        for role, shape in ROLES:
            if len(tensors) < n_tensors:
                n = 1
                for d in shape:
                    n *= d
                tensors.append(Tensor(f"blk.{layer}.{role}.weight", shape, "BF16" if len(shape) > 1 else "F32",
                                      n * (2 if len(shape) > 1 else 4)))
        layer += 1
    return ModelFacts(source="bench", kind="gguf", architecture="llama", n_layer=layer, n_head=32, n_head_kv=8,
                      sliding_window_layers=[i for i in range(layer) if i % 4], tensors=tensors)


def best_of(fn, n=5) -> float:
    """Best of ``n`` cold runs: the caches of compiled patterns and matches are emptied first."""
    from gl_plugins.plan.resolve import first_matches
    from gl_plugins.plan.tensor_map import compile_pattern

    times = []
    for _ in range(n):
        compile_pattern.cache_clear()
        first_matches.cache_clear()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    facts = model()
    quantizable = [t.name for t in facts.tensors if len(t.shape) > 1]
    gl_plan = Protect().plan(facts)
    stock = stock_plan("Q4_K_M")
    lab_map = "\n".join(f"{n[:-len('.weight')]}=q4_k" for n in (quantizable * 2)[:1000]).encode()
    rows = [
        (f"resolve gl protect plan ({len(gl_plan.rules)} anchored rules)", lambda: resolve(gl_plan, facts)),
        ("resolve stock Q4_K_M (llama.cpp mixture)", lambda: resolve(stock, facts)),
        ("lint 1,000-rule hand-written map", lambda: lint(lab_map, facts, base_type="Q4_K_M", target_bpw=4.5)),
    ]
    print(f"model: {len(facts.tensors)} tensors, {facts.n_layer} layers")
    worst = 0.0
    for label, fn in rows:
        s = best_of(fn)
        worst = max(worst, s)
        print(f"  {label:<52} {s * 1000:8.1f} ms")
    print("target: each under 1000 ms -> " + ("met" if worst < 1.0 else "NOT met"))
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
