"""What a model is made of: the facts, and for a GGUF the types and their real bits per weight."""

from __future__ import annotations

from gl_plugins.facts import ModelFacts
from gl_plugins.model.tensors import EMBEDDINGS, layer_ranges



def type_table(facts: ModelFacts) -> list[dict]:
    """Per ggml type: tensor count, parameters, bytes and share of the file's bytes."""
    rows: dict[str, dict] = {}
    total = sum(t.bytes or 0 for t in facts.tensors)
    for t in facts.tensors:
        r = rows.setdefault(t.type, {"type": t.type, "tensors": 0, "params": 0, "bytes": 0})
        r["tensors"] += 1
        r["params"] += t.n_elements
        r["bytes"] += t.bytes or 0
    for r in rows.values():
        r["share"] = round(r["bytes"] / total, 4) if total else 0.0
        r["bpw"] = round(r["bytes"] * 8 / r["params"], 3) if r["params"] else 0.0
    return sorted(rows.values(), key=lambda r: -r["bytes"])


def bits_per_weight(facts: ModelFacts, exclude_embeddings: bool = False) -> float | None:
    """Bytes × 8 / parameters, over every tensor (or all but the embedding tables)."""
    tensors = [t for t in facts.tensors if not (exclude_embeddings and t.name in EMBEDDINGS)]
    if not tensors or any(t.bytes is None for t in tensors):
        return None
    params = sum(t.n_elements for t in tensors)
    return round(sum(t.bytes for t in tensors) * 8 / params, 4) if params else None


def report(facts: ModelFacts) -> dict:
    """The ``gl inspect --json`` document."""
    d = facts.to_dict(with_tensors=False)
    d["n_layer"] = facts.n_layer
    if facts.kind == "gguf":
        d["bpw"] = bits_per_weight(facts)
        d["bpw_without_embeddings"] = bits_per_weight(facts, exclude_embeddings=True)
        d["bytes"] = sum(t.bytes or 0 for t in facts.tensors)
        d["n_params"] = sum(t.n_elements for t in facts.tensors)
        d["types"] = type_table(facts)
        d["tensors"] = [{"name": t.name, "shape": list(t.shape), "type": t.type, "bytes": t.bytes}
                        for t in facts.tensors]
    return d


def render_text(facts: ModelFacts) -> str:
    lines = [f"{facts.source}  ({facts.kind})",
             f"  architecture      {facts.architecture}" + (f"  ({facts.name})" if facts.name else "")]

    def add(label, value):
        lines.append(f"  {label:<17} {value}")

    add("hidden size", facts.hidden_size if facts.hidden_size is not None else "unknown")
    if facts.ffn_sizes:
        widths = sorted(set(facts.ffn_sizes))
        if len(widths) == 1:
            add("FFN width", f"{widths[0]}  (ratio {facts.ffn_ratio:.2f})" if facts.ffn_ratio else widths[0])
        else:
            for w in widths:
                layers = [i for i, f in enumerate(facts.ffn_sizes) if f == w]
                ratio = f"ratio {w / facts.hidden_size:.2f}, " if facts.hidden_size else ""
                add("FFN width", f"{w}  ({ratio}layers {layer_ranges(layers)})")
    else:
        add("FFN width", "unknown")
    add("layers", facts.n_layer if facts.n_layer is not None else "unknown")
    if facts.n_head:
        add("attention heads", f"{facts.n_head} (KV heads {facts.n_head_kv})")
    if facts.sliding_window_layers:
        add("attention", f"sliding window {facts.sliding_window} on layers "
                         f"{layer_ranges(facts.sliding_window_layers)}; global on "
                         f"{layer_ranges(facts.global_attention_layers)}")
    else:
        add("attention", "global on every layer (no sliding window)")
    add("KV-shared layers", layer_ranges(facts.kv_shared_layers))
    if facts.per_layer_embedding:
        add("per-layer embed", f"{facts.per_layer_embedding} per layer")
    if facts.n_expert:
        add("experts", f"{facts.n_expert} ({facts.n_expert_used} used per token, FFN {facts.expert_ffn_size})")
    if facts.nextn_layers:
        add("NextN/MTP layers", facts.nextn_layers)
    if facts.vocab_size:
        add("vocabulary", facts.vocab_size)
    if facts.kind == "gguf":
        add("file type", facts.file_type or "unknown")
        total = sum(t.bytes or 0 for t in facts.tensors)
        params = sum(t.n_elements for t in facts.tensors)
        add("tensors", f"{len(facts.tensors)}  ({params:,} parameters, {total / 2**20:.2f} MiB)")
        bpw, bpw_ne = bits_per_weight(facts), bits_per_weight(facts, exclude_embeddings=True)
        add("bits per weight", f"{bpw:.3f} whole file; {bpw_ne:.3f} without embedding tables"
            if bpw is not None and bpw_ne is not None else "unknown (tensor types gl does not know)")
        lines.append("")
        lines.append(f"  {'type':<9} {'tensors':>7} {'params':>13} {'MiB':>9} {'share':>7} {'bpw':>6}")
        for r in type_table(facts):
            lines.append(f"  {r['type']:<9} {r['tensors']:>7} {r['params']:>13,} {r['bytes'] / 2**20:>9.2f} "
                         f"{r['share'] * 100:>6.1f}% {r['bpw']:>6.2f}")
        unknown = sorted({t.type for t in facts.tensors if t.bytes is None})
        if unknown:
            lines.append(f"  note: tensor types gl does not know: {', '.join(unknown)}")
    return "\n".join(lines)
