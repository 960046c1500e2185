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
predict          gl.toml: a variant whose quant type is predicted to fail
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .errors import GLError
from .findings import Finding

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


def _load_config(path: str | None, *, required: bool):
    """The checked gl.toml, or None when it is optional and absent."""
    from .config import DEFAULT_NAME, load_config

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
    from .facts import load_facts
    from .predictors.derived_tensors import missing_widths, with_tensors

    b = variant.build
    if b is None:
        return load_facts(variant.gguf)
    if b.base_path is None:
        raise GLError(f"{variant.keypath}.build.base: {b.base} is a packaged model; the hooks read a GGUF "
                      f"or config.json file named in gl.toml")
    facts = load_facts(b.base_path)
    full, _ = with_tensors(facts)
    if full is None:
        raise GLError(f"{b.base_path}: the tensor shapes cannot be derived: it lacks "
                      + " and ".join(missing_widths(facts)))
    return full


def variant_plan(variant, facts):
    """The TensorPlan a variant's build describes: a recipe with options, or a map over a base type."""
    from .plan import Rule, stock_plan

    b = variant.build
    if b.recipe:
        from .plugins import collect

        recipe = collect("gl_register_recipes").get(b.recipe)
        if recipe is None:
            raise GLError(f"{variant.keypath}.build.recipe: no recipe named {b.recipe!r} is installed")
        return recipe.plan(facts, **_recipe_kwargs(recipe, b.options))
    plan = stock_plan(b.base_type, imatrix=b.imatrix is not None)
    if b.map is not None:
        from .tensor_map import read_map

        plan.rules = [Rule(r.pattern, r.type) for r in read_map(b.map)]
        plan.recipe = f"map {_display(os.fspath(b.map))}"
    return plan


def _recipe_kwargs(recipe, options: dict) -> dict:
    """gl.toml option names (``type``, ``target-bpw``, ``target_bpw``) as the recipe's parameter names."""
    names = {}
    for opt in getattr(recipe, "options", []):
        for spelling in opt.opts:
            names[spelling.lstrip("-")] = opt.name
            names[spelling.lstrip("-").replace("-", "_")] = opt.name
        names[opt.name] = opt.name
    return {names.get(k, k): v for k, v in options.items()}


# ---------------------------------------------------------------- the hooks

def hook_check(files, args, report: Report) -> None:
    from .config import check_recipes
    from .prepublish import lint_declared

    for f in files:
        try:
            cfg = _load_config(f, required=True)
            check_recipes(cfg)
            report.add(list(cfg.problems) + lint_declared(cfg))
        except GLError as e:
            report.unreadable.append(str(e))


def hook_modelfile_lint(files, args, report: Report) -> None:
    from .modelfile_lint import lint_file

    cfg = _load_config(args.config, required=False)
    built = {_real(v.gguf): v for v in cfg.variants.values() if v.build} if cfg else {}
    for f in files:
        try:
            target, info = _from_target(f)
            findings = lint_file(f, gguf=info)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        if target is not None and _real(target) in built:  # gl publish builds it: FROM is fine as it is
            findings = [x for x in findings if x.code != "modelfile-from-missing"]
        report.add(findings)


def _from_target(path: str):
    """(the file FROM names, its chat facts when it is an existing GGUF), or (None, None)."""
    from . import modelfile as mfmod
    from .errors import InputError
    from .modelfile_lint import chat_info

    try:
        mf = mfmod.parse_file(path, require_from=False)
    except InputError:
        return None, None
    if not mf.from_:
        return None, None
    target = mfmod.expand_from(mf.from_, Path(path).parent)
    if target.is_file():
        with open(target, "rb") as fh:
            if fh.read(4) == b"GGUF":
                return target, chat_info(target)
    return target, None


def hook_plan_lint(files, args, report: Report) -> None:
    from .plan_lint import lint_file

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
            lint = lint_file(v.build.map, facts, base_type=v.build.base_type, imatrix=v.build.imatrix is not None)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        if len(shared[_real(v.build.map)]) > 1:
            for x in lint.findings:
                x.message += f" (variant {v.name})"
        report.add(lint.findings)


def hook_imatrix_audit(files, args, report: Report) -> None:
    from .imatrix import read_imatrix
    from .plan import resolve
    from .plugins import collect

    cfg = _load_config(args.config, required=True)
    variants = [v for v in _touched(cfg, files, "map", "imatrix") if v.build.imatrix is not None]
    auditors = collect("gl_register_auditors") if variants else {}
    for v in variants:
        facts = _facts_or_report(v, report)
        if facts is None:
            continue
        try:
            imx = read_imatrix(v.build.imatrix)
            assignments = resolve(variant_plan(v, facts), facts).assignments
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        for name, auditor in auditors.items():
            for x in auditor.audit(imx, facts, assignments):
                x.source = x.source or name
                x.file = x.file or os.fspath(v.build.imatrix)
                report.add([x])


def hook_predict(files, args, report: Report) -> None:
    from .plugins import collect
    from .predict import run

    cfg = _load_config(args.config, required=True)
    variants = _touched(cfg, files, built_only=False)
    predictors = list(collect("gl_register_predictors").values()) if variants else []
    bad = ("fails",) if args.fail_on == "fails" else ("fails", "risky")
    for v in variants:
        facts = _facts_or_report(v, report)
        if facts is None:
            continue
        try:
            quant = variant_plan(v, facts).base_type if v.build else _file_type(facts)
        except GLError as e:
            report.unreadable.append(str(e))
            continue
        if quant is None:
            continue
        predictions, failures = run(predictors, facts, [quant])
        for fail in failures:
            report.add([Finding("error", "predictor-failed", f"{v.keypath}: {fail}", SOURCE,
                                file=os.fspath(cfg.path), hint="the verdict for this variant is incomplete")])
        combined = predictions[-1]
        if combined.verdict not in bad:
            continue
        deciding = combined.evidence.get("deciding", [])
        why = "; ".join(f"{p.predictor}: {p.reasons[0]}" for p in predictions
                        if p.predictor in deciding and p.reasons)
        model = v.build.base_path if v.build else v.gguf
        report.add([Finding("error", "quant-predicted-fails" if combined.verdict == "fails" else
                            "quant-predicted-risky",
                            f"{v.keypath}: {quant} is predicted "
                            f"{'to fail' if combined.verdict == 'fails' else 'risky'} for {facts.name or v.model}"
                            f" ({why})", SOURCE, file=os.fspath(cfg.path),
                            hint=f"`gl predict {_display(os.fspath(model))} --quant {quant} --explain` shows "
                                 f"the evidence; choose a type the model survives")])


def _file_type(facts) -> str | None:
    """The quantized file type of a GGUF, or None (F16, F32, unknown: nothing to predict)."""
    from .ggml_types import FTYPES, TYPES_BY_NAME

    ft = facts.file_type
    if ft not in FTYPES or not TYPES_BY_NAME[FTYPES[ft][1]].quantized:
        return None
    return ft


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
    args = _parser().parse_args(argv)
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
