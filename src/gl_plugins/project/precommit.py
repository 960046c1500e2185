"""gl's pre-commit hooks: ``gl-hook HOOK [--config gl.toml] [--strict] FILE...``.

Each hook looks only at the files pre-commit hands it and at what gl.toml says
about them. Models are read header-only: a variant's ``build.base`` may be a
GGUF (its header) or a ``config.json`` (tensor shapes derived from its widths),
so a model repository needs no weights in its clone and the hooks need neither
network nor llama.cpp. Every problem is one line starting with the file it is
in; the exit status is 0 when clean (warnings are shown but pass, unless
``--strict``), 1 on problems, 2 when an input cannot be read (one sentence
naming the file).

Hooks (the ids in ``.pre-commit-hooks.yaml`` are ``gl-`` + these names):

check            gl.toml files: every key, path and declared Modelfile (as ``gl check``)
modelfile-lint   Modelfiles, held against the GGUF their FROM names when it exists
plan-lint        tensor-type files a variant names in ``build.map``, against its base
imatrix-audit    imatrix files a variant names in ``build.imatrix``, against its base and plan
predict          gl.toml (or a base): a variant whose declared type, or a type its plan gives
                 the layers, is predicted to fail (or be risky, with --fail-on risky)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from gl_plugins.errors import GLError
from gl_plugins.findings import Finding

SOURCE = "gl-hook"


@dataclasses.dataclass
class Report:
    findings: list[Finding] = dataclasses.field(default_factory=list)
    unreadable: list[str] = dataclasses.field(default_factory=list)  # one sentence per bad input

    def add(self, findings) -> None:
        self.findings.extend(f for f in findings if f.severity != "info")


# ---------------------------------------------------------------- files and gl.toml

def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _display(path: str | None) -> str:
    if not path:
        return ""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def _rel(path) -> str:
    """A path as it is best shown and opened here: relative to the current folder when inside it."""
    return _display(os.fspath(path))


def _load_config(path: str | None, *, required: bool):
    """The checked gl.toml, or None when it is optional and absent."""
    from gl_plugins.project.config import DEFAULT_NAME, load_config

    p = path or DEFAULT_NAME
    if not required and not os.path.exists(p):
        return None
    return load_config(p)


def _touched(cfg, files: list[str], *keys: str, built_only: bool = True) -> list:
    """Variants whose gl.toml, model (build.base, or gguf without a build) or ``keys`` are among ``files``.

    ``keys`` name build paths (``map``, ``imatrix``); with ``built_only`` variants without a build
    are left out.
    """
    given = {_real(f) for f in files}
    whole = _real(cfg.path) in given
    out = []
    for v in cfg.variants.values():
        b = v.build
        if b is None:
            if built_only or not v.gguf.is_file():
                continue
            paths = [v.gguf]
        else:
            paths = [b.base_path] + [getattr(b, k) for k in keys]
        if whole or any(p is not None and _real(p) in given for p in paths):
            out.append(v)
    return out


def model_facts(variant):
    """Header-only facts of a variant's model: its build.base (a GGUF header, or a config.json with
    tensor shapes derived from its widths), or its own GGUF when it has no build."""
    from gl_plugins.facts import load_facts
    from gl_plugins.model.derived_tensors import missing_widths, with_tensors

    b = variant.build
    if b is None:
        return load_facts(_rel(variant.gguf))
    if b.base_path is None:
        raise GLError(f"{variant.keypath}.build.base: {b.base} is a packaged model; the hooks read a GGUF "
                      f"or config.json file named in gl.toml")
    facts = load_facts(_rel(b.base_path))
    full, _ = with_tensors(facts)
    if full is None:
        raise GLError(f"{b.base_path}: the tensor shapes cannot be derived: it lacks "
                      + " and ".join(missing_widths(facts)))
    return full


def variant_plan(variant, facts):
    """The TensorPlan a variant's build describes (as ``gl publish`` builds it)."""
    from gl_plugins.plan.sources import plan_for

    b = variant.build
    return plan_for(facts, recipe=b.recipe, options=b.options, map_path=_rel(b.map) if b.map else None,
                    base_type=b.base_type, imatrix=_rel(b.imatrix) if b.imatrix else None,
                    where=f"{variant.keypath}.build")


# ---------------------------------------------------------------- the hooks

def hook_check(files, args, report: Report) -> None:
    from gl_plugins.project.config import check_recipes
    from gl_plugins.publish.preflight import lint_declared

    for f in files:
        try:
            cfg = _load_config(f, required=True)
            check_recipes(cfg)
            report.add(list(cfg.problems) + lint_declared(cfg))
        except GLError as e:
            report.unreadable.append(str(e))


def hook_modelfile_lint(files, args, report: Report) -> None:
    from gl_plugins.modelfile.lint import from_target, lint_file

    cfg = _load_config(args.config, required=False)
    built = {_real(v.gguf): v for v in cfg.variants.values() if v.build} if cfg else {}
    for f in files:
        try:
            target, info = from_target(f)
            findings = lint_file(f, gguf=info)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        if target is not None and _real(target) in built:  # gl publish builds it: FROM is fine as it is
            findings = [x for x in findings if x.code != "modelfile-from-missing"]
        report.add(findings)


def hook_plan_lint(files, args, report: Report) -> None:
    from gl_plugins.plan.lint import lint_file

    cfg = _load_config(args.config, required=True)
    variants = [v for v in _touched(cfg, files, "map") if v.build.map is not None]
    shared = {}
    for v in variants:
        shared.setdefault(_real(v.build.map), []).append(v)
    for v in variants:
        facts = _facts_or_report(v, report)
        if facts is None:
            continue
        try:
            lint = lint_file(_rel(v.build.map), facts, base_type=v.build.base_type, imatrix=v.build.imatrix is not None)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        if len(shared[_real(v.build.map)]) > 1:
            for x in lint.findings:
                x.message += f" (variant {v.name})"
        report.add(lint.findings)


def hook_imatrix_audit(files, args, report: Report) -> None:
    from gl_plugins import host
    from gl_plugins.imatrix.formats import read_imatrix
    from gl_plugins.plan.resolve import resolve

    cfg = _load_config(args.config, required=True)
    variants = [v for v in _touched(cfg, files, "map", "imatrix") if v.build.imatrix is not None]
    auditors = host.collect("gl_register_auditors") if variants else {}
    for v in variants:
        facts = _facts_or_report(v, report)
        if facts is None:
            continue
        try:
            imx = read_imatrix(_rel(v.build.imatrix))
            assignments = resolve(variant_plan(v, facts), facts).assignments
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        for name, auditor in auditors.items():
            try:
                found = host.call(auditor, "audit", imx, facts, assignments, items=Finding)
            except host.PluginFailed as e:
                report.add([Finding("error", "auditor-failed", f"{v.keypath}: {e}", SOURCE,
                                    file=os.fspath(cfg.path), hint="the audit of this variant is incomplete")])
                continue
            for x in found:
                x.source = x.source or name
                x.file = x.file or imx.path
                report.add([x])


def hook_predict(files, args, report: Report) -> None:
    from gl_plugins.host import collect
    from gl_plugins.predict.predictions import run

    cfg = _load_config(args.config, required=True)
    variants = _touched(cfg, files, built_only=False)
    predictors = list(collect("gl_register_predictors").values()) if variants else []
    bad = ("fails",) if args.fail_on == "fails" else ("fails", "risky")
    for v in variants:
        facts = _facts_or_report(v, report)
        if facts is None:
            continue
        try:
            quants = variant_quants(v, facts)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        predictions, failures = run(predictors, facts, list(quants))
        for fail in failures:
            report.add([Finding("error", "predictor-failed", f"{v.keypath}: {fail}", SOURCE,
                                file=os.fspath(cfg.path), hint="the verdict for this variant is incomplete")])
        model = _rel(v.build.base_path if v.build else v.gguf)
        for combined in (p for p in predictions if p.predictor == "combined" and p.verdict in bad):
            quant = combined.quant
            deciding = combined.evidence.get("deciding", [])
            why = "; ".join(f"{p.predictor}: {p.reasons[0]}" for p in predictions
                            if p.quant == quant and p.predictor in deciding and p.reasons)
            code = "quant-predicted-fails" if combined.verdict == "fails" else "quant-predicted-risky"
            verdict = "to fail" if combined.verdict == "fails" else "risky"
            report.add([Finding("error", code, f"{v.keypath}: {quant} ({quants[quant]}) is predicted {verdict} "
                                f"for {facts.name or v.model} ({why})", SOURCE, file=os.fspath(cfg.path),
                                hint=f"`gl predict {model} --quant {quant} --explain` shows the evidence; "
                                     f"choose a type the model survives")])


def variant_quants(variant, facts) -> dict[str, str]:
    """The llama-quantize file types to predict for a variant -> what in the variant has that type.

    The declared file type (``build.base_type``, or the GGUF's own when there is no build), and the
    type of every layer weight after the plan is resolved as llama-quantize resolves it (rules,
    heuristics, row-length fallbacks), each as the file type built on it: a map that puts the FFN at
    IQ2_S is judged as IQ2_M even when its base type is Q4_K_M.
    """
    from gl_plugins.ggml_types import FTYPES, TYPES_BY_NAME
    from gl_plugins.plan.resolve import FTYPE_FOR_TYPE, resolve

    out: dict[str, str] = {}
    if variant.build is None:
        typed = [(t.name, t.type) for t in facts.tensors]
        declared, label = facts.file_type, "the GGUF's file type"
    else:
        typed = [(a.name, a.type) for a in resolve(variant_plan(variant, facts), facts).assignments
                 if a.reason != "not quantizable"]
        declared, label = variant.build.base_type, "build.base_type"
    if declared in FTYPES and TYPES_BY_NAME[FTYPES[declared][1]].quantized:
        out[declared] = label
    groups: dict[str, list[str]] = {}
    for name, type_ in typed:
        t = TYPES_BY_NAME.get(type_)
        if name.startswith("blk.") and t is not None and t.quantized and type_ in FTYPE_FOR_TYPE:
            groups.setdefault(type_, []).append(name)
    for type_, names in groups.items():
        what = f"{type_} on {len(names)} tensor(s), e.g. {names[0]}"
        ft = FTYPE_FOR_TYPE[type_]
        out[ft] = f"{out[ft]}; {what}" if ft in out else what
    return out


def _facts_or_report(variant, report: Report):
    try:
        return model_facts(variant)
    except GLError as e:
        report.unreadable.append(str(e))
        return None


HOOKS = {
    "check": hook_check,
    "modelfile-lint": hook_modelfile_lint,
    "plan-lint": hook_plan_lint,
    "imatrix-audit": hook_imatrix_audit,
    "predict": hook_predict,
}


# ---------------------------------------------------------------- entry point

def line(f: Finding) -> str:
    """One line for a finding, starting with the file it is in."""
    head = dataclasses.replace(f, file=_display(f.file) or None, hint="", evidence="").text()
    return head + (f" (hint: {f.hint})" if f.hint else "")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gl-hook", description="gl's pre-commit hooks.")
    p.add_argument("hook", choices=sorted(HOOKS))
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--config", metavar="GL_TOML", help="gl.toml to read (default: ./gl.toml)")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument("--fail-on", choices=["fails", "risky"], default="fails",
                   help="predict: the verdict that fails the hook (default: fails)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    report = Report()
    try:
        HOOKS[args.hook](list(args.files), args, report)
    except GLError as e:
        report.unreadable.append(str(e))
    for f in report.findings:
        print(line(f))
    for sentence in report.unreadable:
        print(sentence)
    if report.unreadable:
        return 2
    failing = ("error", "warning") if args.strict else ("error",)
    return 1 if any(f.severity in failing for f in report.findings) else 0


if __name__ == "__main__":
    sys.exit(main())
