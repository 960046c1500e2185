"""``gl publish NAME:TAG`` and ``gl check [gl.toml]``."""

from __future__ import annotations

import json
import os
import sys

import click

from gl_plugins.cli.options import OldArgument, config_option, deprecated, output_format
from gl_plugins.errors import GLError


def _echo_err(message: str) -> None:
    from gl_plugins.redaction import redact

    click.echo(redact(message), err=True)


def _config_path(config_path: str | None) -> str:
    return config_path or "gl.toml"


def _refuse_config_problems(cfg, variant) -> None:
    problems = cfg.problems_for(variant)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GLError(f"{cfg.path}: {problems[0].message}{more}; run gl check --config {cfg.path}")


@click.command()
@click.argument("name")
@config_option
@click.option("--to", "to", default=None,
              help="ollama, bundle:DIR or another publisher (default: publish.to in gl.toml, else auto: "
                   "Ollama when a server answers, else a bundle).")
@click.option("--host", default=None, help="Ollama server URL (default: publish.host, $OLLAMA_HOST, 127.0.0.1:11434).")
@click.option("--push", is_flag=True, help="Also copy to publish.namespace/MODEL:TAG and push it.")
@click.option("--dry-run", is_flag=True, help="Print the Modelfile and the exact requests; change nothing.")
@click.option("--force", is_flag=True, help="Publish even when validation or the Modelfile lint reports errors.")
@output_format()
def publish(name, config_path, to, host, push, dry_run, force, fmt):
    """Publish the gl.toml variant NAME:TAG as an Ollama model (or an offline bundle).

    Builds the variant when its GGUF is missing and gl.toml says how, refuses a
    variant whose validation reports errors (unless --force), renders and lints
    its Modelfile, then publishes it and says which publisher ran and why.
    """
    from gl_plugins.findings import dumps
    from gl_plugins.host import call
    from gl_plugins.modelfile import parse as mfmod
    from gl_plugins.project.config import load_config
    from gl_plugins.publish.preflight import ensure_built, validate
    from gl_plugins.publish.prepare import PublishResult, build_request, choose, options_from, refuse_if_errors
    from gl_plugins.redaction import redact

    as_json = fmt == "json"

    cfg = load_config(_config_path(config_path))
    variant = cfg.variant(name)
    _refuse_config_problems(cfg, variant)
    echo = _echo_err
    options = options_from(cfg.publish, host=host, push=push, dry_run=dry_run, progress=not as_json)
    if options.push and not options.namespace:
        raise GLError(f"--push needs publish.namespace in {cfg.path} (the ollama.com account to push to)")

    publisher, reason = choose(to or cfg.publish.to, options)  # first: a missing server is known in a second

    if not variant.gguf.is_file():
        if dry_run:
            plan = ensure_built(variant, echo, dry_run=True)
            out = {"variant": variant.name, "dry_run": True, "build": plan}
            click.echo(dumps(out) if as_json else f"{variant.gguf} does not exist; gl publish would build it: "
                       f"{plan['describe']}")
            return
        ensure_built(variant, echo)

    validation = validate(variant, echo)
    for f in validation:
        if f.severity == "error" or (f.severity == "warning" and not as_json):
            echo(f.text())
    refuse_if_errors(validation, f"{variant.name} ({variant.gguf.name}) validation", force)
    lint = []
    req = build_request(cfg, variant, options, echo=echo, findings_out=lint)
    for f in lint:
        if f.severity != "info":
            echo(f.text())
    refuse_if_errors(lint, f"the Modelfile of {variant.name}", force)

    echo(f"publisher: {publisher.name} ({reason})")
    if req.chat_format is not None:
        echo(f"chat: {req.chat_format.describe()}")
    result = call(publisher, "publish", req, returns=PublishResult)

    if as_json:
        out = {"variant": variant.name, "gguf": os.fspath(variant.gguf), "sha256": req.digest,
               "publisher": publisher.name, "reason": reason, "result": result.to_dict(),
               "seconds": {**req.seconds, **result.seconds},
               "modelfile": mfmod.render(req.modelfile),
               "chat": None if req.chat_format is None else {"kind": req.chat_format.kind,
                                                             "reason": req.chat_format.describe()},
               "findings": [f.to_dict() for f in validation + lint]}
        click.echo(redact(dumps(out)))
        return
    if dry_run:
        for line in result.actions:
            click.echo(f"# {redact(line)}")
        click.echo(f"# Modelfile for {req.name.short()}")
        click.echo(mfmod.render(req.modelfile), nl=False)
        click.echo(f"# {publisher.name}: requests, in order")
        for r in result.requests:
            click.echo(redact(json.dumps(r, ensure_ascii=False)))
        for f, text in result.files.items():
            click.echo(f"# {f}\n{text}", nl=False)
        return
    for line in result.actions:
        click.echo(redact(line))
    done = "unchanged" if result.unchanged else "published"
    where = result.location
    click.echo(f"{req.name.short()} {done} via {publisher.name} ({where})"
               + (f"; pushed as {result.pushed}" if result.pushed else ""))


@click.command()
@click.argument("old_config_path", required=False, type=click.Path(), cls=OldArgument)
@config_option
@output_format("text", "json", "sarif")
def check(old_config_path, config_path, fmt):
    """Check gl.toml (--config FILE, default ./gl.toml): every key, path, file and Modelfile; exit 1
    listing every problem."""
    from gl_plugins.findings import dumps
    from gl_plugins.project.config import check_recipes, load_config
    from gl_plugins.publish.preflight import lint_declared

    if old_config_path:
        if config_path:
            raise click.UsageError("give gl.toml once, as --config FILE")
        deprecated("`gl check GL_TOML`", "`gl check --config GL_TOML`")
        config_path = old_config_path
    cfg = load_config(_config_path(config_path))
    check_recipes(cfg)
    problems = list(cfg.problems) + lint_declared(cfg)
    if fmt == "sarif":
        from gl_plugins.sarif import dumps as sarif_dumps

        click.echo(sarif_dumps(problems, command="gl check", artifact=cfg.path))
    elif fmt == "json":
        click.echo(dumps({"config": os.fspath(cfg.path), "variants": sorted(cfg.variants),
                          "problems": [p.to_dict() for p in problems]}))
    else:
        for p in problems:
            click.echo(p.text())
        n = len(cfg.variants)
        errors = sum(1 for p in problems if p.severity == "error")
        click.echo(f"{cfg.path}: {n} variant{'s' if n != 1 else ''}, "
                   f"{errors} problem{'s' if errors != 1 else ''}", err=True)
    sys.exit(1 if any(p.severity == "error" for p in problems) else 0)
