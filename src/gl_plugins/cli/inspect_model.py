"""``gl inspect MODEL``: what a model is made of."""

import click

from gl_plugins.cli.options import model_input, output_format


@click.command("inspect")
@model_input()
@output_format()
@click.option("--tensors", is_flag=True, help="List every tensor in the text output.")
def inspect_cmd(model, fmt, tensors):
    """Show what MODEL is made of.

    MODEL is a GGUF file (or any part of a split set), a config.json or its
    folder, a Hugging Face repo id (hf:org/name), or pkg:gemma3-270m.
    """
    from gl_plugins.facts import load_facts
    from gl_plugins.findings import dumps
    from gl_plugins.model.report import render_text, report

    facts = load_facts(model)
    if fmt == "json":
        click.echo(dumps(report(facts)))
        return
    click.echo(render_text(facts))
    if tensors:
        for t in facts.tensors:
            shape = "×".join(map(str, t.shape))
            size = f"{t.bytes:,}" if t.bytes is not None else "?"
            click.echo(f"  {t.name:<40} {shape:>16} {t.type:>8} {size:>12} B")
