"""``gl modelfile lint`` and ``gl modelfile render``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gl_plugins.errors import GLError, InputError
from gl_plugins.sarif import chosen_format, format_option


@click.group()
def modelfile():
    """Lint and render Ollama Modelfiles."""


def _gguf_for(path: str, gguf: str | None):
    """The GGUF to hold a Modelfile against: --gguf, else its FROM when that names a GGUF file."""
    from gl_plugins.modelfile import parse as mfmod
    from gl_plugins.modelfile.lint import chat_info

    if gguf:
        return chat_info(gguf)
    try:
        mf = mfmod.parse_file(path, require_from=False)
    except InputError:
        return None
    if mf.from_:
        target = mfmod.expand_from(mf.from_, Path(path).parent)
        if target.is_file():
            with open(target, "rb") as f:
                if f.read(4) == b"GGUF":
                    return chat_info(target)
    return None


@modelfile.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False),
              help="Hold every Modelfile against this GGUF (default: its FROM, when that is a GGUF file).")
@click.option("--template", "templates", is_flag=True,
              help="The files are templates (like modelfiles/*.Modelfile): FROM is a placeholder gl replaces.")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@format_option
def lint(files, gguf, templates, strict, as_json, fmt):
    """Check Modelfiles the way Ollama reads them; exit 1 when any has an error.

    Besides Ollama's grammar and parameter types, a Modelfile is held against
    its GGUF: stop tokens must be in the vocabulary and TEMPLATE must use the
    turn markers of the chat template embedded in the GGUF.
    """
    from gl_plugins.findings import dumps, summary
    from gl_plugins.modelfile.lint import lint_file

    fmt = chosen_format(fmt, as_json)
    findings = []
    for f in files:
        if not os.path.exists(f):
            raise InputError(f, "file not found")
        findings += lint_file(f, gguf=_gguf_for(f, gguf), check_from=not templates)
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
@click.option("--config", "config_path", type=click.Path(), default=None, help="gl.toml (default: ./gl.toml).")
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False), help="Render for this GGUF instead of a variant.")
@click.option("--family", help="Template family (default: from the GGUF).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (FROM relative to it).")
def render(name, config_path, gguf, family, output):
    """Print the Modelfile gl would publish for NAME:TAG, or a family template filled for --gguf."""
    from gl_plugins.modelfile import parse as mfmod
    from gl_plugins.project.config import load_config
    from gl_plugins.modelfile.lint import chat_info
    from gl_plugins.modelfile.templates import compose, detect_family, family_name, relative_from, template
    from gl_plugins.publish.prepare import variant_modelfile

    if bool(name) == bool(gguf):
        raise click.UsageError("give either NAME:TAG (a gl.toml variant) or --gguf PATH")
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
