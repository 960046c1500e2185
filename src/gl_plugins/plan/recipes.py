"""gl's built-in recipes: ``uniform``, ``protect`` and ``budget``.

A recipe turns model facts and its options into a :class:`TensorPlan` in which
nothing is implicit: every quantizable tensor is named by an anchored rule,
the embeddings and the output get explicit flags, and every type fits its
tensor's row length, so llama-quantize's shape fallback never changes what
the map says. Where a requested type cannot hold a tensor's rows, the recipe
writes the type llama.cpp would have fallen back to and lists the tensor in
``params["fitted"]``.

``budget`` minimises an estimated quantization error under a size budget; how
the error is estimated is described in ``docs/plan.md`` and next to
:data:`TYPE_ERROR`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import click

from gl_plugins.errors import GLError
from gl_plugins.ggml_types import FTYPES, NEEDS_IMATRIX, TYPES_BY_NAME, get_type, tensor_bytes
from gl_plugins.hookspecs import hookimpl
from gl_plugins.model.tensors import EMBEDDINGS, OUTPUT, is_ple, layer_of, quantizable, role, why_not_quantizable
from gl_plugins.plan import type_choice as qh
from gl_plugins.plan.resolve import FTYPE_FOR_TYPE, PRODUCIBLE, Rule, TensorPlan, resolve, stock_plan
from gl_plugins.plan.tensor_map import rules_for



def producible(name: str, what: str = "type") -> str:
    """A ggml type llama-quantize can write; GLError naming the bad value otherwise."""
    t = get_type(name).name
    if t not in PRODUCIBLE:
        raise GLError(f"{what} {name!r} is a ggml type llama-quantize cannot produce; use one of "
                      + ", ".join(sorted(PRODUCIBLE)))
    return t


def embedding_safe_type(name: str, what: str) -> str:
    """A type the embeddings/output can take: never one ggml refuses without imatrix data,
    which llama-imatrix never records for the embeddings."""
    t = producible(name, what)
    if t in qh.GGML_REQUIRES_IMATRIX:
        raise GLError(f"{what} {name!r}: ggml cannot make {t} without imatrix data, and llama-imatrix "
                      f"records none for the embeddings or the output; choose e.g. Q4_K or Q6_K")
    return t


def fit(type_: str, ne0: int) -> str:
    """The type llama.cpp really uses for rows ``ne0`` wide (its shape fallback)."""
    return qh.shape_fallback(type_, ne0)


@dataclass
class Choice:
    """A recipe's decision for one tensor, before it becomes rules and flags."""
    types: dict[str, str] = field(default_factory=dict)  # tensor -> ggml type (already fitted)
    fitted: list[tuple[str, str, str]] = field(default_factory=list)  # (tensor, asked, written)

    def set(self, t, asked: str) -> None:
        used = fit(asked, t.shape[0])
        self.types[t.name] = used
        if used != asked:
            self.fitted.append((t.name, asked, used))


def build_plan(facts, choice: Choice, *, recipe: str, params: dict, imatrix: bool = False) -> TensorPlan:
    """Rules and flags that give every quantizable tensor exactly ``choice.types``."""
    types = dict(choice.types)
    tok = types.pop("token_embd.weight", None)
    out = types.pop("output.weight", None)
    if tok is None and "per_layer_token_embd.weight" in types:
        tok = types.pop("per_layer_token_embd.weight")
    elif tok is not None and types.get("per_layer_token_embd.weight") == tok:
        types.pop("per_layer_token_embd.weight")
    quantized = [t for t in types.values() if TYPES_BY_NAME[t].quantized]
    if quantized:
        dominant = Counter(quantized).most_common(1)[0][0]
        base = FTYPE_FOR_TYPE.get(dominant, "Q8_0")
    else:
        kinds = set(types.values())
        base = FTYPE_FOR_TYPE[kinds.pop()] if len(kinds) == 1 else "Q8_0"
    if TYPES_BY_NAME[FTYPES[base][1]].quantized:
        rules = [Rule(p, t) for p, t in rules_for(types)]
    else:
        rules = []  # the base type is not quantized: rules would be ignored, every tensor gets it
    needs = any(t in NEEDS_IMATRIX for n, t in choice.types.items() if n not in EMBEDDINGS and n != OUTPUT)
    params = dict(params)
    if choice.fitted:
        params["fitted"] = [list(f) for f in choice.fitted]
    return TensorPlan(base_type=base, rules=rules, token_embedding_type=tok, output_tensor_type=out,
                      imatrix=imatrix or needs, recipe=recipe, params=params)


def _type_option(flag: str, default: str | None, help_: str) -> click.Option:
    return click.Option([flag], default=default, show_default=True, help=help_, metavar="TYPE")


# ------------------------------------------------------------------ uniform

class Uniform:
    name = "uniform"
    description = "Every quantizable tensor at one type; embeddings and output explicit."

    @property
    def options(self):
        return [
            click.Option(["--type", "type_"], required=True, metavar="TYPE",
                         help="ggml type for every quantizable tensor (e.g. Q4_K, IQ4_XS, Q8_0)."),
            _type_option("--embedding-type", None, "Type of token_embd (default: --type, fitted to its rows)."),
            _type_option("--output-type", None, "Type of output.weight (default: --type, fitted to its rows)."),
        ]

    def plan(self, facts, type_=None, embedding_type=None, output_type=None, **_):
        if not type_:
            raise GLError("uniform: --type is required")
        t = producible(type_, "--type")
        safe = "Q4_K" if t in qh.GGML_REQUIRES_IMATRIX else t
        emb = embedding_safe_type(embedding_type, "--embedding-type") if embedding_type else safe
        outp = embedding_safe_type(output_type, "--output-type") if output_type else safe
        choice = Choice()
        for x in quantizable(facts, llama_order=True):
            choice.set(x, emb if x.name in EMBEDDINGS else outp if x.name == "output.weight" else t)
        return build_plan(facts, choice, recipe=self.name,
                          params={"type": t, "embedding_type": emb, "output_type": outp})


# ------------------------------------------------------------------ protect

PROTECT_CLASSES = ("ple", "global-attn", "attn-v", "first-last", "output")


class Protect:
    name = "protect"
    description = ("Low type for the FFN, higher types for chosen sensitive classes (per-layer embeddings, "
                   "global-attention layers, attn_v, first/last layers, output).")

    @property
    def options(self):
        return [
            _type_option("--low", "Q2_K", "Type for the FFN and every tensor not protected."),
            _type_option("--attn", "Q3_K", "Type for attention weights that are not protected."),
            _type_option("--high", "Q4_K", "Type for protected tensors."),
            _type_option("--embedding-type", "Q4_K", "Type of token_embd."),
            _type_option("--output-type", "Q6_K", "Type of output.weight (and of token_embd when tied, "
                                                  "if 'output' is protected)."),
            click.Option(["--protect"], multiple=True, type=click.Choice(PROTECT_CLASSES),
                         help="Classes kept at --high (repeatable; default: all of them)."),
            click.Option(["--edge-layers"], type=int, default=1, show_default=True,
                         help="How many first and last layers 'first-last' protects."),
        ]

    def plan(self, facts, low="Q2_K", attn="Q3_K", high="Q4_K", embedding_type="Q4_K", output_type="Q6_K",
             protect=(), edge_layers=1, **_):
        low, attn, high = (producible(v, f"--{k}") for k, v in (("low", low), ("attn", attn), ("high", high)))
        emb = embedding_safe_type(embedding_type, "--embedding-type")
        outp = embedding_safe_type(output_type, "--output-type")
        classes = tuple(protect) or PROTECT_CLASSES
        if edge_layers < 0:
            raise GLError(f"--edge-layers must be 0 or more, not {edge_layers}")
        n = int(facts.n_layer or 0)
        edges = set(range(min(edge_layers, n))) | set(range(max(n - edge_layers, 0), n))
        global_layers = set(facts.global_attention_layers)
        tied = facts.tensor("output.weight") is None
        choice = Choice()
        why: Counter = Counter()
        for t in quantizable(facts, llama_order=True):
            r, layer = role(t.name), layer_of(t.name)
            attn_role = r.startswith("attn_")
            if t.name == "output.weight":
                cls, ty = "output", outp if "output" in classes else low
            elif t.name == "token_embd.weight":
                cls, ty = ("output (tied embedding)", outp) if tied and "output" in classes else ("embedding", emb)
            elif is_ple(t.name) and "ple" in classes:
                cls, ty = "ple", high
            elif layer in edges and "first-last" in classes:
                cls, ty = "first-last", high
            elif attn_role and layer in global_layers and "global-attn" in classes:
                cls, ty = "global-attn", high
            elif r == "attn_v" and "attn-v" in classes:
                cls, ty = "attn-v", high
            elif attn_role:
                cls, ty = "attention", attn
            else:
                cls, ty = "ffn and rest", low
            why[cls] += 1
            choice.set(t, ty)
        params = {"low": low, "attn": attn, "high": high, "embedding_type": emb, "output_type": outp,
                  "protect": list(classes), "edge_layers": edge_layers, "edge_layer_ids": sorted(edges),
                  "global_attention_layers": sorted(global_layers), "classes": dict(why)}
        return build_plan(facts, choice, recipe=self.name, params=params)


# ------------------------------------------------------------------ budget

# Relative output error ||(W - Q(W)) x||^2 / ||W x||^2 of each type, as (quantized without
# an imatrix, with one): geometric means over the 28 weights of a synthetic model with
# Gaussian weights and log-normal input importances, measured by bench/quant_error.py with
# the pinned llama.cpp. None: llama-quantize will not make the type without an imatrix.
TYPE_ERROR: dict[str, tuple[float | None, float]] = {
    "Q2_K": (8.783e-02, 4.113e-02),
    "Q3_K": (2.275e-02, 1.487e-02),
    "Q4_K": (5.092e-03, 3.275e-03),
    "Q5_K": (1.305e-03, 8.824e-04),
    "Q6_K": (3.152e-04, 2.188e-04),
    "Q8_0": (2.863e-05, 2.863e-05),
    "Q4_0": (7.384e-03, 5.174e-03),
    "Q4_1": (6.119e-03, 3.146e-03),
    "Q5_0": (1.822e-03, 1.274e-03),
    "Q5_1": (1.433e-03, 7.399e-04),
    "IQ4_NL": (5.797e-03, 4.113e-03),
    "IQ4_XS": (5.887e-03, 4.229e-03),
    "IQ3_S": (2.757e-02, 1.114e-02),
    "IQ3_XXS": (None, 1.660e-02),
    "IQ2_S": (None, 4.097e-02),
    "IQ2_XS": (None, 5.041e-02),
    "IQ2_XXS": (None, 6.883e-02),
    "IQ1_M": (None, 1.139e-01),
    "IQ1_S": (None, 1.570e-01),
}

# How much a unit of relative output error in one tensor costs, by role. These
# are priors, in the spirit of llama.cpp's own mixtures (which spend extra bits
# on attn_v, ffn_down and the output): the output projection feeds the logits
# directly; attn_v and ffn_down write into the residual stream.
ROLE_WEIGHT = {
    "output": 8.0, "attn_v": 2.0, "attn_qkv": 1.5, "attn_kv_b": 1.5, "attn_output": 1.5, "ffn_down": 2.0,
    "ffn_down_exps": 2.0, "ffn_down_shexp": 2.0, "attn_q": 0.75, "attn_k": 0.75, "ffn_up": 1.0, "ffn_gate": 1.0,
    "token_embd": 1.0, "per_layer_token_embd": 0.5, "inp_gate": 0.5, "proj": 0.5,
}
ERROR_SOURCES = ("gaussian", "measured")  # budget --errors
EDGE_WEIGHT = 1.5  # first and last eighth of the layers (llama.cpp's use_more_bits edges)
# budget --errors measured: the least fall in estimated KLD, in percent, that 1 % more bytes must buy
MIN_GAIN = 1.0
CANDIDATES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS",
              "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "F16")


def sensitivity(facts, name: str) -> float:
    """The weight of a tensor's relative error in the total (role prior x layer position)."""
    r = role(name)
    if name == "token_embd.weight" and facts.tensor("output.weight") is None:
        r = "output"  # tied: the embedding is also the output projection
    w = ROLE_WEIGHT.get(r, 1.0)
    layer, n = layer_of(name), int(facts.n_layer or 0)
    if layer is not None and n and (layer < n // 8 or layer >= 7 * n // 8):
        w *= EDGE_WEIGHT
    return w


def type_error(type_: str, with_imatrix: bool) -> float | None:
    if type_ in ("F16", "BF16", "F32"):
        return 0.0
    plain, imx = TYPE_ERROR.get(type_, (None, None))
    return imx if with_imatrix else plain


class Budget:
    name = "budget"
    description = "Choose per-tensor types to hit a bits-per-weight budget with the least estimated error."

    @property
    def options(self):
        return [
            click.Option(["--target-bpw"], type=float, required=True, help="Bits per weight to aim for."),
            click.Option(["--imatrix", "imatrix_path"], type=click.Path(dir_okay=False),
                         help="Importance matrix: enables the IQ types that need one (for tensors it covers) "
                              "and the lower error of imatrix quantization."),
            click.Option(["--exclude-embeddings"], is_flag=True,
                         help="Count the budget over everything but token/per-layer embeddings; "
                              "those get --embedding-type."),
            _type_option("--embedding-type", "Q8_0", "Embedding type with --exclude-embeddings."),
            click.Option(["--types"], help="Comma-separated candidate types (default: all gl has "
                                           "error data for)."),
            click.Option(["--errors"], type=click.Choice(ERROR_SOURCES), default="gaussian", show_default=True,
                         help="Each tensor's error per type: gaussian (the table measured on Gaussian weights) "
                              "or measured (by ggml on this model's own weights, as `gl plan errors` does; "
                              "cached, minutes the first time). measured also estimates llama.cpp's stock "
                              "mixture of nearest size and keeps it unless budget's own plan estimates lower."),
            click.Option(["--min-gain"], type=click.FloatRange(min=0), default=MIN_GAIN, show_default=True,
                         help="With --errors measured: the least fall in estimated KLD, in percent, that one "
                              "percent more bytes must buy. The plan stops short of the target where more "
                              "bytes would buy less; 0 spends the whole budget."),
        ]

    def plan(self, facts, target_bpw=None, imatrix_path=None, exclude_embeddings=False, embedding_type="Q8_0",
             types=None, errors="gaussian", min_gain=MIN_GAIN, **_):
        if target_bpw is None or not (0 < float(target_bpw) <= 32):
            raise GLError(f"--target-bpw must be a number of bits per weight above 0, not {target_bpw!r}")
        if errors not in ERROR_SOURCES:
            raise GLError(f"--errors must be one of {', '.join(ERROR_SOURCES)}, not {errors!r}")
        if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not min_gain >= 0:
            raise GLError(f"--min-gain must be a number of percent at or above 0, not {min_gain!r}")
        covered: set[str] | None = None
        if imatrix_path:
            from gl_plugins.imatrix.formats import read_imatrix

            imx = read_imatrix(imatrix_path)
            covered = {n for n, e in imx.entries.items() if (e.counts > 0).all()}
        cands = [producible(c.strip(), "--types entry") for c in types.split(",") if c.strip()] if types \
            else list(CANDIDATES)
        unknown = [c for c in cands if type_error(c, bool(covered)) is None and c not in NEEDS_IMATRIX]
        if unknown and errors == "gaussian":
            raise GLError(f"budget has no error data for {', '.join(unknown)}; choose among "
                          + ", ".join(CANDIDATES) + " (or measure them with --errors measured)")
        emb_type = embedding_safe_type(embedding_type, "--embedding-type") if exclude_embeddings else None
        if errors == "measured":
            excluded = set(EMBEDDINGS) if emb_type else set()
            within = list(_stock_within(facts, float(target_bpw), excluded, imatrix_path))
            nearest = within[0] if within else None
            free = {t.name for t in quantizable(facts)} - excluded
            stock_types = sorted({ty for n, ty in nearest[2].items() if n in free} - set(cands)) if nearest else []
            table = measured_table(facts, list(cands) + stock_types, imatrix_path)
            return budget_plan(facts, float(target_bpw), cands, covered, emb_type, imatrix_path, table=table,
                               within=within, min_gain=float(min_gain))
        return budget_plan(facts, float(target_bpw), cands, covered, emb_type, imatrix_path)


def measured_table(facts, types, imatrix_path):
    """The errors ggml makes in ``types`` on the weights of the GGUF ``facts`` were read from (see
    :func:`gl_plugins.plan.measured.measure_errors`, which resolves ``pkg:NAME``, caches and shows
    progress on stderr); GLError naming the source when it holds no tensor data."""
    from gl_plugins.plan.measured import measure_errors

    if facts.kind != "gguf":
        what = "a config.json" if facts.kind == "config" else "a Hugging Face repository's config"
        raise GLError(f"{facts.source}: budget --errors measured needs the model's weights, and {what} holds "
                      f"none; give the GGUF file (or pkg:NAME)")
    return measure_errors(facts.source, imatrix=imatrix_path, types=types,
                          echo=lambda m: click.echo(f"gl: {m}", err=True))


def error_model(table, covered):
    """``err(tensor, type)``: the relative error of a tensor in a type (None: no figure, not a candidate).
    From ``table`` (an ErrorTable) when given, else from :data:`TYPE_ERROR`."""
    if table is None:
        return lambda t, c: type_error(c, covered is not None and t.name in covered)

    return lambda t, c: table.error(t.name, c) if t.name in table.tensors else None


def weights_for(facts, measured: bool):
    """The tensor weights ``s(t)`` (``.weight(name) -> Weight``, ``.describe()``): with measured errors the
    sensitivities fitted on gl's sample models (:mod:`gl_plugins.plan.sensitivity`, role priors only for
    groups never measured); with the Gaussian table the role priors, in the table's units."""
    from gl_plugins.plan.sensitivity import Priors, Sensitivities

    return Sensitivities(facts) if measured else Priors(facts)


def _options_for(facts, t, cands, covered, err, weigh, compute_cost=None) -> list[tuple[int, float, str]]:
    """(bytes, estimated error, type) per admissible type of tensor ``t``, cheapest first; the error is
    the weighted one plus, with ``compute_cost``, what the type's activations cost."""
    exempt = t.name in EMBEDDINGS or t.name == OUTPUT
    use_imx = covered is not None and t.name in covered
    s = weigh(t.name).value
    out = []
    for c in cands:
        if t.shape[0] % TYPES_BY_NAME[c].block_size:
            continue  # would fall back: the map would not say what happens
        if c in NEEDS_IMATRIX and (exempt or not use_imx):
            continue
        e = err(t, c)
        if e is None:
            continue
        out.append((tensor_bytes(c, t.shape), s * e + (compute_cost(t.name, c) if compute_cost else 0.0), c))
    out.sort()
    # drop dominated options (no cheaper-or-equal option with lower error)
    pareto, best = [], float("inf")
    for b, e, c in out:
        if e < best:
            pareto.append((b, e, c))
            best = e
    return pareto


def budget_plan(facts, target_bpw: float, cands, covered, emb_type, imatrix_path, table=None,
                within=None, min_gain: float = MIN_GAIN) -> TensorPlan:
    """The plan of least estimated error within ``target_bpw``. With a measured ``table`` (an ErrorTable)
    the errors are the model's own, the estimate is a mean KLD (weighted errors plus compute costs, see
    :mod:`gl_plugins.plan.sensitivity`), no byte is spent that buys less than ``min_gain`` percent of
    estimated KLD per percent of size, and llama.cpp's stock mixture of nearest size is the other
    candidate, kept unless the plan is estimated lower (``within``: the stock mixtures not above the
    target, largest first, when the caller has them)."""
    tensors = quantizable(facts, llama_order=True)
    fixed = [t for t in facts.tensors if why_not_quantizable(t.name, t.shape, facts.architecture)]
    fixed_bytes = sum(int(t.bytes or 0) for t in fixed)
    excluded = set(EMBEDDINGS) if emb_type else set()
    n_all = sum(t.n_elements for t in facts.tensors)
    n_counted = sum(t.n_elements for t in facts.tensors if t.name not in excluded)
    budget = target_bpw * n_counted / 8 - fixed_bytes
    err = error_model(table, covered)
    weights = weights_for(facts, table is not None)
    weigh = weights.weight
    choice = Choice()
    free = []
    for t in tensors:
        if t.name in excluded:
            choice.set(t, emb_type)
        else:
            opts = _options_for(facts, t, cands, covered, err, weigh,
                                weights.compute_cost if table is not None else None)
            if not opts:
                raise GLError(f"budget: no candidate type fits {t.name} (row length {t.shape[0]})")
            free.append((t, opts))
    options = [o for _, o in free]
    fixed_cost, other_bytes = 0.0, 0
    if table is not None:
        # the KLD the allocation cannot move: the compute cost of the tensors outside the budget
        fixed_cost = sum(weights.compute_cost(t.name, choice.types[t.name]) for t in tensors if t.name in excluded)
        other_bytes = fixed_bytes + sum(tensor_bytes(choice.types[t.name], t.shape) for t in tensors
                                        if t.name in excluded)
    pick = _allocate(options, budget, min_gain if table is not None else 0.0, (fixed_cost, other_bytes))
    types = {t.name: opts[i][2] for (t, opts), i in zip(free, pick)}
    est = sum(opts[i][1] for (_, opts), i in zip(free, pick))
    params = {"target_bpw": target_bpw, "exclude_embeddings": bool(emb_type), "embedding_type": emb_type,
              "candidates": list(cands), "imatrix": str(imatrix_path) if imatrix_path else None,
              "estimated_error": round(est, 6), "n_params": n_all,
              "errors": "measured" if table is not None else "gaussian"}
    if table is not None:
        est += fixed_cost
        spent = (fixed_bytes + sum(o[i][0] for o, i in zip(options, pick))) * 8 / n_counted  # as the target
        if within is None:
            within = list(_stock_within(facts, target_bpw, excluded, imatrix_path))
        stock = _stock_candidate(within, [t for t, _ in free], err, weigh, weights.compute_cost)
        if stock is not None:
            stock["error"] += fixed_cost  # the excluded tensors keep the plan's type in either file
        won = stock is not None and stock["error"] <= est  # a tie keeps llama.cpp's own mixture
        params.update({"min_gain": min_gain, "budget_bpw": round(spent, 4),
                       "chosen": "stock" if won else "budget", "budget_estimated_error": _sig(est),
                       "stock_type": stock and stock["type"], "stock_bpw": stock and round(stock["bpw"], 4),
                       "stock_estimated_error": stock and _sig(stock["error"]), "estimated_error": _sig(est)})
        if won:
            types = stock["types"]
            params["estimated_error"] = _sig(stock["error"])
    for t in tensors:
        if t.name not in excluded:
            choice.set(t, types[t.name])
    params["explain"] = explanation(tensors, choice.types, err, weights, excluded, table)
    return build_plan(facts, choice, recipe="budget", params=params, imatrix=bool(imatrix_path))


# llama-quantize's file types that people publish and compare against, smallest to largest on a
# 256-aligned model: the ladder the stock candidates come from (not the float types, the ternary
# TQ types, MXFP4_MOE or the Q1_0/Q2_0 bit types)
STOCK_LADDER = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S", "Q2_K", "IQ3_XXS", "IQ3_XS",
                "IQ3_S", "IQ3_M", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_1", "Q4_K_S",
                "Q4_K_M", "Q5_0", "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")


def stock_mixtures(facts, imatrix_path=None, excluded=frozenset()) -> list[tuple[str, float, dict[str, str]]]:
    """(file type, bpw, type per tensor) of every mixture of :data:`STOCK_LADDER`
    (``llama-quantize IN OUT T``) this model can be made in, largest first; bpw is counted without
    ``excluded``. Those llama-quantize would refuse (an imatrix needed and none given, a tensor it
    would stop at) are left out."""
    found = []
    for ftype in STOCK_LADDER:
        try:
            res = resolve(stock_plan(ftype, imatrix=bool(imatrix_path)), facts)
        except GLError:
            continue
        bpw = res.bpw_excluding(excluded) if excluded else res.bpw
        if not (res.needs_imatrix() and not imatrix_path):
            found.append((ftype, bpw, {a.name: a.type for a in res.assignments}))
    return sorted(found, key=lambda f: -f[1])


def _stock_within(facts, target_bpw, excluded, imatrix_path):
    """The stock mixtures not above ``target_bpw``, largest first."""
    return (m for m in stock_mixtures(facts, imatrix_path, excluded) if m[1] <= target_bpw)


def _stock_candidate(within, free, err, weigh, compute_cost) -> dict | None:
    """The first of the stock mixtures ``within`` (largest first) whose every type of the ``free``
    tensors has an error figure: its type, bpw, per-tensor types and estimated mean KLD over them
    (weighted errors and compute costs; None: no stock type qualifies)."""
    for ftype, bpw, types in within:
        errs = [err(t, types[t.name]) for t in free]
        if all(e is not None for e in errs):
            return {"type": ftype, "bpw": bpw, "types": types,
                    "error": sum(weigh(t.name).value * e + compute_cost(t.name, types[t.name])
                                 for t, e in zip(free, errs))}
    return None


def explanation(tensors, types, err, weights, excluded, table) -> dict:
    """Per tensor class (role): the types chosen (with counts), their mean relative error and where it
    comes from, the weights used and what they are, the weighted error, the compute cost (what its
    activations' type costs, see :mod:`gl_plugins.plan.sensitivity`) and the bytes spent."""
    rows: dict[str, dict] = {}
    for t in tensors:
        ty, w = types[t.name], weights.weight(t.name)
        s = w.value
        e = err(t, ty)
        r = rows.setdefault(role(t.name), {"class": role(t.name), "tensors": 0, "types": {}, "errors": [],
                                            "weights": set(), "sources": [], "weighted_error": 0.0, "bytes": 0,
                                            "compute_cost": 0.0, "in_budget": t.name not in excluded})
        r["tensors"] += 1
        r["types"][ty] = r["types"].get(ty, 0) + 1
        r["weights"].add(_sig(s))
        if w.kind not in r["sources"]:
            r["sources"].append(w.kind)
        r["bytes"] += tensor_bytes(ty, t.shape)
        r["compute_cost"] += weights.compute_cost(t.name, ty)
        if e is not None:
            r["errors"].append(e)
            r["weighted_error"] += s * e
    source = "measured" if table is not None else "table"
    out = [{"class": r["class"], "tensors": r["tensors"], "types": dict(sorted(r["types"].items())),
            "error": _sig(sum(r["errors"]) / len(r["errors"])) if r["errors"] else None,
            "error_source": source, "weights": sorted(r["weights"]), "weight_source": "; ".join(r["sources"]),
            "weighted_error": _sig(r["weighted_error"]), "compute_cost": _sig(r["compute_cost"]),
            "bytes": r["bytes"], "in_budget": r["in_budget"]}
           for r in sorted(rows.values(), key=lambda r: -r["bytes"])]
    doc = {"errors": source, "weights": weights.describe(), "classes": out}
    if table is not None:
        doc.update({"measured_by": table.helper, "rows": table.rows, "imatrix": table.imatrix,
                    "cache": str(table.cache),
                    "concentrated": sorted(t.name for t in tensors if t.name in table.concentrated)})
    return doc


def _sig(x: float) -> float:
    """``x`` to 4 significant digits (errors span many decades)."""
    return float(f"{x:.4g}")


def _allocate(options: list[list[tuple[int, float, str]]], budget: float, min_gain: float = 0.0,
              fixed: tuple[float, int] = (0.0, 0)) -> list[int]:
    """Pick one option per tensor, total bytes <= budget, minimising total error.

    Lagrangian relaxation (each tensor minimises error + lambda x bytes; bisection on
    lambda finds the cheapest lambda that fits), then a greedy pass spends what is
    left on the upgrades with the best error saved per byte.

    With ``min_gain`` G > 0 a byte must also earn its place. ``fixed`` is the error and the bytes no
    option moves; a plan's total error E and size B count them. Along the Lagrangian path (the plans
    of falling lambda, each the least error for its size) the plan of least E x B^G within the budget
    is taken: past it, one percent more bytes buys less than G percent of E. When that is a smaller
    plan than the budget's, it is returned as it is, and every budget above its size gets the same
    plan; otherwise the greedy pass buys only upgrades that lower E x B^G.
    """
    def pick_for(lam: float) -> list[int]:
        return [min(range(len(o)), key=lambda i: o[i][1] + lam * o[i][0]) for o in options]

    def cost(p):
        return sum(o[i][0] for o, i in zip(options, p))

    cheapest = [0] * len(options)
    if cost(cheapest) > budget:
        return cheapest  # the budget is below the smallest possible file: take the smallest
    if min_gain > 0:
        best = _least_product(options, budget, min_gain, fixed)
        if best is not None:
            return best
    lo, hi = 0.0, 1.0
    while cost(pick_for(hi)) > budget:
        hi *= 4
        if hi > 1e30:
            return cheapest
    for _ in range(100):
        mid = (lo + hi) / 2
        if cost(pick_for(mid)) > budget:
            lo = mid
        else:
            hi = mid
    p = pick_for(hi)
    left = budget - cost(p)
    err = fixed[0] + sum(o[i][1] for o, i in zip(options, p))
    size = fixed[1] + cost(p)

    def pays(de: float, db: int) -> bool:  # lowers E x B^G (always, without a least gain)
        return min_gain <= 0 or (err - de) * (size + db) ** min_gain < err * size ** min_gain

    while True:
        best = None
        for k, (o, i) in enumerate(zip(options, p)):
            for j in range(i + 1, len(o)):
                db = o[j][0] - o[i][0]
                de = o[i][1] - o[j][1]
                if db <= left and de > 0 and (best is None or de / db > best[0]) and pays(de, db):
                    best = (de / max(db, 1), k, j, db, de)
        if best is None:
            return p
        _, k, j, db, de = best
        p[k] = j
        left -= db
        err -= de
        size += db


def _lower_hull(o: list[tuple[int, float, str]]) -> list[int]:
    """The options of one tensor (bytes rising, error falling) on its lower convex hull: the ones some
    lambda picks. Each step to the next saves less error per byte than the step before."""
    h = [0]
    for i in range(1, len(o)):
        while len(h) >= 2:
            a, b = h[-2], h[-1]
            if (o[b][1] - o[i][1]) / (o[i][0] - o[b][0]) >= (o[a][1] - o[b][1]) / (o[b][0] - o[a][0]):
                h.pop()
            else:
                break
        h.append(i)
    return h


def _least_product(options, budget: float, min_gain: float, fixed: tuple[float, int]) -> list[int] | None:
    """The plan of least E x B^min_gain on the Lagrangian path within ``budget`` (see :func:`_allocate`),
    or None when that is the path's last plan within the budget (the budget, not the gain, binds)."""
    steps = []  # (error saved per byte, tensor, option): the path takes them from the best rate down
    for k, o in enumerate(options):
        h = _lower_hull(o)
        steps += [((o[a][1] - o[b][1]) / (o[b][0] - o[a][0]), k, b) for a, b in zip(h, h[1:])]
    steps.sort(key=lambda s: (-s[0], s[1], s[2]))
    pick = [0] * len(options)
    err = fixed[0] + sum(o[0][1] for o in options)
    size = fixed[1] + sum(o[0][0] for o in options)
    best, best_at, taken = err * size ** min_gain, 0, 0
    for _, k, j in steps:
        o, i = options[k], pick[k]
        if size - fixed[1] + o[j][0] - o[i][0] > budget:
            break
        err += o[j][1] - o[i][1]
        size += o[j][0] - o[i][0]
        pick[k] = j
        taken += 1
        if err * size ** min_gain < best:
            best, best_at = err * size ** min_gain, taken
    if best_at == taken:
        return None
    pick = [0] * len(options)
    for _, k, j in steps[:best_at]:
        pick[k] = j
    return pick


@hookimpl(trylast=True)
def gl_register_recipes(register):
    for recipe in (Uniform(), Protect(), Budget()):
        register(recipe)
