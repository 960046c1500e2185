"""``gl modelfile lint`` and ``gl modelfile render``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gl_plugins.cli.options import config_option, deprecated, model_option, output_format
from gl_plugins.errors import GLError, InputError


@click.group()
def modelfile():
    """Lint and render Ollama Modelfiles."""


def _model(model: str | None, gguf: str | None) -> str | None:
    """--model, or the old --gguf (still accepted, with a note)."""
    if gguf:
        if model:
            raise click.UsageError("give the model once, as --model")
        deprecated("--gguf", "--model")
    return model or gguf


@modelfile.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_option(help="Hold every Modelfile against this GGUF or pkg:NAME (default: its FROM, when that is a "
                   "GGUF file).")
@click.option("--gguf", type=click.Path(dir_okay=False), hidden=True)
@click.option("--template", "templates", is_flag=True,
              help="The files are templates (like modelfiles/*.Modelfile): FROM is a placeholder gl replaces.")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@output_format("text", "json", "sarif")
def lint(files, model_opt, gguf, templates, strict, fmt):
    """Check Modelfiles the way Ollama reads them; exit 1 when any has an error.

    Besides Ollama's grammar and parameter types, a Modelfile is held against
    its GGUF: stop tokens must be in the vocabulary and TEMPLATE must use the
    turn markers of the chat template embedded in the GGUF.
    """
    from gl_plugins.findings import dumps, summary
    from gl_plugins.modelfile.lint import chat_info, from_target, lint_file
    from gl_plugins.toolchain.samples import local_model

    model = _model(model_opt, gguf)
    given = chat_info(_existing(local_model(model))) if model else None
    findings = []
    for f in files:
        if not os.path.exists(f):
            raise InputError(f, "file not found")
        findings += lint_file(f, gguf=given or from_target(f)[1], check_from=not templates)
    if fmt == "sarif":
        from gl_plugins.sarif import dumps as sarif_dumps

        click.echo(sarif_dumps(findings, command="gl modelfile lint", artifact=files[0]))
    elif fmt == "json":
        click.echo(dumps([x.to_dict() for x in findings]))
    else:
        for x in findings:
            click.echo(x.text())
        click.echo(f"{len(files)} Modelfile{'s' if len(files) != 1 else ''}: {summary(findings)}", err=True)
    failing = [x for x in findings if x.severity == "error" or (strict and x.severity == "warning")]
    sys.exit(1 if failing else 0)


@modelfile.command("render")
@click.argument("name", required=False)
@config_option
@model_option(help="Render for this GGUF or pkg:NAME instead of a variant.")
@click.option("--gguf", type=click.Path(dir_okay=False), hidden=True)
@click.option("--family", help="Template family (default: from the GGUF).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (FROM relative to it).")
def render(name, config_path, model_opt, gguf, family, output):
    """Print the Modelfile gl would publish for NAME:TAG, or a family template filled for --model."""
    from gl_plugins.modelfile import parse as mfmod
    from gl_plugins.modelfile.lint import chat_info
    from gl_plugins.modelfile.templates import compose, detect_family, family_name, relative_from, template
    from gl_plugins.project.config import load_config
    from gl_plugins.publish.prepare import variant_modelfile
    from gl_plugins.toolchain.samples import local_model

    gguf = _model(model_opt, gguf)
    if bool(name) == bool(gguf):
        raise click.UsageError("give either NAME:TAG (a gl.toml variant) or --model GGUF")
    if gguf:
        gguf = _existing(local_model(gguf))
    out_dir = Path(output).absolute().parent if output else Path.cwd()
    if name:
        cfg = load_config(config_path or "gl.toml")
        variant = cfg.variant(name)
        if not variant.gguf.is_file():
            raise GLError(f"{variant.keypath}.gguf: {variant.gguf} does not exist yet; build it first "
                          f"(gl publish builds it when the variant declares build)")
        mf, _, _ = variant_modelfile(variant, variant.gguf, chat_info(variant.gguf))
        gguf_path, title = variant.gguf, variant.name
    else:
        info = chat_info(gguf)
        fam = family_name(family) if family else detect_family(info)[0]
        if fam is None:
            raise GLError(f"cannot tell the Modelfile family of {gguf} ({detect_family(info)[1]}); pass --family")
        mf, gguf_path, title = template(fam), Path(gguf), f"{fam} template"
    mf = compose(mf, relative_from(Path(gguf_path).absolute(), out_dir))
    text = mfmod.render(mf, header=f"{title}, rendered by gl modelfile render")
    if output:
        from gl_plugins.atomic import atomic_write

        atomic_write(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _existing(path) -> Path:
    if not Path(path).is_file():
        raise InputError(path, "file not found" if not Path(path).exists() else "is not a GGUF file")
    return Path(path)
