"""Evidence: recorded outcomes of real quantizations, and how well predictors match them.

An evidence file is JSON Lines, one observation per line::

    {"model": "hf:Qwen/Qwen2.5-7B", "facts": {...} | null, "quant": "Q2_K",
     "outcome": "works" | "fails", "note": "...", "figures": {"bpw": 6.88},
     "plan": "3f2a..." (optional)}

``model`` is a source :func:`gl_plugins.facts.load_facts` understands (a path
relative to the evidence file, an HF id, ``pkg:…``) or just a name; ``facts``
is ``ModelFacts.to_dict(with_tensors=False)``. At least one of the two must be
given; inline facts win, so a file with facts needs no network. ``plan``, when
given, is the digest of a gl plan (``gl floor``'s budget candidates): the file
was made by that plan over the base type ``quant``, not by the stock type, so
predictors of stock types abstain on it. ``gl experiment`` and ``gl floor``
append to such files; ``gl predict --evidence`` scores predictors against them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins import host
from gl_plugins.errors import GLError, InputError
from gl_plugins.facts import ModelFacts, Tensor

OUTCOMES = ("works", "fails")
BUILTIN = "builtin"
# gl's own evidence, by source: the lab's five observations (facts from the models' real config.json),
# and the quality frontier gl measured on its two real sample models (bench/builtin_evidence.py)
BUILTIN_SOURCES = {"lab": ("lab_evidence.jsonl", "gl's built-in lab observations"),
                   "measured": ("measured_evidence.jsonl",
                                "gl's measurements of its sample models' frontier, bench/quality.py")}


def builtin_path(source: str = "lab") -> Path:
    """The file of one source of gl's built-in evidence (see :data:`BUILTIN_SOURCES`)."""
    return Path(__file__).parents[1] / "data" / BUILTIN_SOURCES[source][0]


def source_label(source: str) -> str:
    """How a source of observations is named in reports: ``builtin:lab`` as its description, a file as itself."""
    name = source.partition(":")[2] if source.startswith(f"{BUILTIN}:") else None
    return BUILTIN_SOURCES[name][1] if name in BUILTIN_SOURCES else source


@dataclass
class Observation:
    quant: str  # llama-quantize spelling
    outcome: str  # works | fails
    model: str | None = None
    facts: dict | None = None
    note: str = ""
    figures: dict = field(default_factory=dict)
    plan: str | None = None  # digest of the gl plan the file was made with (None: the stock type)
    path: str | None = None  # the evidence file it came from
    line: int | None = None
    source: str | None = None  # the source it was read from: the file as given, or builtin:lab, builtin:measured

    @property
    def label(self) -> str:
        if self.model:
            return self.model
        return (self.facts or {}).get("name") or (self.facts or {}).get("source") or "?"

    def to_dict(self) -> dict:
        d = {"model": self.model, "facts": self.facts, "quant": self.quant, "outcome": self.outcome,
             "note": self.note}
        if self.figures:
            d["figures"] = self.figures
        if self.plan:
            d["plan"] = self.plan
        return d

    def model_facts(self) -> ModelFacts:
        """The facts the observation was made on: inline facts, else loaded from ``model``."""
        if self.facts is not None:
            return facts_from_dict(self.facts, self.path or "<evidence>", self.line)
        from gl_plugins.facts import load_facts

        source = self.model
        if self.path and not source.startswith(("hf:", "pkg:")):
            near = Path(self.path).parent / source
            if near.exists():
                source = os.fspath(near)
        try:
            return load_facts(source)
        except GLError as e:
            raise InputError(self.path or "<evidence>", f"model {self.model!r} cannot be read: {e}",
                             line=self.line) from None


# ---------------------------------------------------------------- facts as plain data

_INT_FIELDS = {"hidden_size", "n_layer", "n_head", "n_head_kv", "sliding_window", "per_layer_embedding",
               "head_dim", "n_expert", "n_expert_used", "expert_ffn_size", "nextn_layers", "vocab_size"}
_LIST_FIELDS = {"ffn_sizes", "sliding_window_layers", "kv_shared_layers"}
_STR_FIELDS = {"source", "kind", "architecture", "file_type", "name", "chat_template"}
_BOOL_FIELDS = {"tied_embeddings"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def facts_from_dict(d: dict, path: str = "<facts>", line: int | None = None) -> ModelFacts:
    """A :class:`ModelFacts` from ``ModelFacts.to_dict()`` output; derived keys are ignored."""
    if not isinstance(d, dict):
        raise InputError(path, "facts must be a JSON object", line=line)
    known = {f.name for f in dataclasses.fields(ModelFacts)}
    kw = {}
    for key, value in d.items():
        if key not in known or value is None:
            continue
        bad = ((key in _INT_FIELDS and not _is_int(value))
               or (key in _LIST_FIELDS and not (isinstance(value, list) and all(map(_is_int, value))))
               or (key in _STR_FIELDS and not isinstance(value, str))
               or (key in _BOOL_FIELDS and not isinstance(value, bool)))
        if bad:
            raise InputError(path, f"facts field {key!r} has an unusable value {value!r}", line=line)
        kw[key] = value
    if "tensors" in kw:
        try:
            kw["tensors"] = [Tensor(t["name"], tuple(t["shape"]), t["type"], t.get("bytes"))
                             for t in kw["tensors"]]
        except (TypeError, KeyError) as e:
            raise InputError(path, f"facts field 'tensors' is malformed ({e})", line=line) from None
    kw.setdefault("source", d.get("name") or "evidence")
    kw.setdefault("kind", "config")
    kw.setdefault("architecture", "unknown")
    return ModelFacts(**kw)


# ---------------------------------------------------------------- reading and writing

def parse_observation(obj, path: str = "<evidence>", line: int | None = None) -> Observation:
    """Check one observation (a decoded JSON object); InputError naming file and line if unusable."""
    from gl_plugins.ggml_types import get_ftype

    def bad(msg):
        return InputError(path, msg, line=line)

    if not isinstance(obj, dict):
        raise bad("an observation must be a JSON object")
    model, facts = obj.get("model"), obj.get("facts")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise bad("'model' must be a non-empty string")
    if facts is not None and not isinstance(facts, dict):
        raise bad("'facts' must be a JSON object or null")
    if model is None and facts is None:
        raise bad("an observation needs 'model' or 'facts'")
    quant = obj.get("quant")
    if not isinstance(quant, str):
        raise bad("'quant' must name a llama-quantize type, e.g. \"Q2_K\"")
    try:
        quant = get_ftype(quant)
    except GLError as e:
        raise bad(str(e)) from None
    outcome = obj.get("outcome")
    if outcome not in OUTCOMES:
        raise bad(f"'outcome' must be \"works\" or \"fails\", not {outcome!r}")
    note = obj.get("note", "")
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise bad("'note' must be a string")
    figures = obj.get("figures") or {}
    if not isinstance(figures, dict) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in figures.values()):
        raise bad("'figures' must be an object of numbers")
    plan = obj.get("plan")
    if plan is not None and (not isinstance(plan, str) or not plan.strip()):
        raise bad("'plan' must be the digest of a gl plan (a string)")
    if facts is not None:
        facts_from_dict(facts, path, line)  # fail now, not half-way through scoring
    return Observation(quant=quant, outcome=outcome, model=model, facts=facts, note=note,
                       figures=dict(figures), plan=plan, path=path, line=line)


def read_evidence(source: str | os.PathLike) -> list[Observation]:
    """Observations from a JSON Lines file, or gl's own: ``"builtin"`` (every source of
    :data:`BUILTIN_SOURCES`, in order) or one of them (``"builtin:lab"``, ``"builtin:measured"``).
    Blank lines are skipped; each observation records its source."""
    given = os.fspath(source)
    if given == BUILTIN:
        return [o for name in BUILTIN_SOURCES for o in read_evidence(f"{BUILTIN}:{name}")]
    if given.startswith(f"{BUILTIN}:"):
        name = given.partition(":")[2]
        if name not in BUILTIN_SOURCES:
            raise GLError(f"no built-in evidence {given!r}; there are {BUILTIN}, "
                          + ", ".join(f"{BUILTIN}:{n}" for n in BUILTIN_SOURCES))
        path = builtin_path(name)
    else:
        path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "evidence file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot be read ({e})") from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(given, f"is not valid JSON: {e.msg} (column {e.colno})", line=n) from None
        obs = parse_observation(obj, given, n)
        obs.path = os.fspath(path)
        obs.source = given
        out.append(obs)
    return out


def by_source(observations: list[Observation]) -> dict[str, list[Observation]]:
    """The observations grouped by the source they were read from, in order."""
    out: dict[str, list[Observation]] = {}
    for o in observations:
        out.setdefault(o.source or "", []).append(o)
    return out


def append_evidence(path: str | os.PathLike, observation: dict | Observation) -> Observation:
    """Append one observation as one line (a single write to a file opened for appending).

    The observation is checked first, so a file written here always reads back.
    """
    obj = observation.to_dict() if isinstance(observation, Observation) else observation
    obs = parse_observation(obj, os.fspath(path))
    line = json.dumps(obs.to_dict(), ensure_ascii=False, separators=(", ", ": ")) + "\n"
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    return obs


FIGURES = ("bpw", "predicted_bpw", "perplexity", "base_perplexity", "perplexity_ratio", "collapsed_prompts",
           "prompts", "loop_share")


def evidence_figures(figures: dict) -> dict:
    """The numbers an evidence line keeps of a validation's figures: those of :data:`FIGURES`, and
    the KLD ones as ``kld_mean``, ``kld_p99`` …"""
    out = {k: figures[k] for k in FIGURES if isinstance(figures.get(k), (int, float))}
    for k, v in (figures.get("kld") or {}).items():
        if isinstance(v, (int, float)):
            out[f"kld_{k}"] = v
    return out


def measured_observation(model_path, facts, quant: str, figures: dict, outcome: str, note: str,
                         plan: str | None = None) -> dict:
    """An evidence line for one quantization gl measured (``gl experiment``, ``gl floor``)."""
    line = {"model": os.fspath(model_path), "facts": facts.to_dict(with_tensors=False), "quant": quant,
            "outcome": outcome, "note": note[:500], "figures": figures}
    if plan:
        line["plan"] = plan
    return line


# ---------------------------------------------------------------- scoring

@dataclass(frozen=True)
class Gates:
    """Judge an observation by its measured figures instead of its recorded outcome.

    ``max_kld`` bounds the mean KL divergence against the base (``figures.kld_mean``, as
    ``gl experiment`` and ``gl floor`` record it), ``max_loops`` the share of generation
    prompts that collapsed (``figures.loop_share``). An observation passes when every
    given bound holds; one without the figure a bound needs is left out of the scoring.
    """

    max_kld: float | None = None
    max_loops: float | None = None

    FIGURES = {"max_kld": "kld_mean", "max_loops": "loop_share"}

    def __bool__(self) -> bool:
        return self.max_kld is not None or self.max_loops is not None

    def outcome(self, obs: Observation) -> str | None:
        """works / fails by the gates, or None when a figure a gate needs is missing."""
        verdicts = []
        for gate, figure in self.FIGURES.items():
            bound = getattr(self, gate)
            if bound is None:
                continue
            value = obs.figures.get(figure)
            if value is None:
                return None
            verdicts.append(value <= bound)
        return "works" if all(verdicts) else "fails"

    def describe(self) -> str:
        parts = [f"mean KLD <= {self.max_kld:g}" if self.max_kld is not None else "",
                 f"loop share <= {self.max_loops:g}" if self.max_loops is not None else ""]
        return "works when " + " and ".join(p for p in parts if p)


def predicted_outcome(verdict: str) -> str | None:
    """fails/risky predict "fails", ok predicts "works", unknown abstains (None)."""
    return {"fails": "fails", "risky": "fails", "ok": "works"}.get(verdict)


@dataclass
class Score:
    predictor: str
    right: int = 0
    wrong: int = 0
    abstained: int = 0
    errors: int = 0  # the predictor raised
    details: list[dict] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.right + self.wrong

    @property
    def accuracy(self) -> float | None:
        return self.right / self.judged if self.judged else None

    def summary(self) -> str:
        total = self.judged + self.abstained + self.errors
        text = f"right {self.right} of {total}, wrong {self.wrong}, abstained {self.abstained}"
        return text + (f", raised {self.errors}" if self.errors else "")

    def to_dict(self) -> dict:
        return {"predictor": self.predictor, "right": self.right, "wrong": self.wrong,
                "abstained": self.abstained, "errors": self.errors, "accuracy": self.accuracy,
                "details": self.details}


def judged(observations: list[Observation], gates: Gates | None = None) -> tuple[list[Observation], int]:
    """The observations to score, their outcomes set by ``gates`` when given, and how many were left
    out for lack of the figures the gates need."""
    if not gates:
        return observations, 0
    out = []
    for obs in observations:
        outcome = gates.outcome(obs)
        if outcome is not None:
            out.append(dataclasses.replace(obs, outcome=outcome))
    return out, len(observations) - len(out)


def score(predictors, observations: list[Observation]) -> dict[str, Score]:
    """Run every predictor on every observation and count right / wrong / abstained.

    ``predictors`` is an iterable of objects with ``name`` and ``predict(facts,
    quant)``. A predictor that raises is counted under ``errors`` and the
    error is kept in its details; the others are still scored. Predictors
    predict stock types, so every one abstains on an observation of a gl plan.
    To score on measured figures rather than recorded outcomes, pass the
    observations through :func:`judged` first.
    """
    from gl_plugins.predict.predictions import Prediction

    predictors = [host.as_entry(p) for p in predictors]
    scores = {p.name: Score(p.name) for p in predictors}
    for obs in observations:
        facts = obs.model_facts()
        for p in predictors:
            s = scores[p.name]
            row = {"model": obs.label, "quant": obs.quant, "outcome": obs.outcome, "line": obs.line}
            if obs.plan:  # made by a gl plan over the base type: a prediction for the stock type says nothing
                s.abstained += 1
                s.details.append({**row, "plan": obs.plan, "verdict": None, "result": "abstained"})
                continue
            try:
                verdict = host.call(p, "predict", facts, obs.quant, returns=Prediction).verdict
            except host.PluginFailed as e:  # raised, or returned no Prediction
                error = e.problem.error
            except GLError as e:  # refused these facts
                error = f"{type(e).__name__}: {e}"
            else:
                error = None
            if error is not None:
                s.errors += 1
                s.details.append({**row, "verdict": None, "result": "error", "error": error})
                continue
            guess = predicted_outcome(verdict)
            result = "abstained" if guess is None else ("right" if guess == obs.outcome else "wrong")
            setattr(s, result, getattr(s, result) + 1)
            s.details.append({**row, "verdict": verdict, "result": result})
    return scores
