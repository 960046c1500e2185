"""The options every command takes the same way: the model, the output format, the imatrix, the config.

- The model is the positional MODEL or ``--model MODEL`` (``-m``), in every command: a GGUF (or
  any part of a split set), a config.json or its folder, ``hf:org/name``, or ``pkg:NAME``.
- ``--format text|json|sarif`` chooses the output; ``--json`` is the same as ``--format json``.
- ``--imatrix FILE`` always names an importance-matrix file.
- ``--config FILE`` names gl.toml (default: ./gl.toml).

A spelling that changed is still accepted for one release; :func:`deprecated` says so on stderr.
"""

from __future__ import annotations

import functools

import click

MODEL_HELP = "The model: a GGUF, config.json (or its folder), hf:org/name or pkg:NAME (also positional)."
FORMATS = ("text", "json", "sarif")


def deprecated(old: str, new: str) -> None:
    """Say on stderr that ``old`` is an old spelling, still accepted in this release."""
    click.echo(f"gl: warning: {old} is deprecated and will be removed in the next release; use {new}", err=True)


class OldArgument(click.Argument):
    """A positional argument kept for one release: accepted, left out of the usage line."""

    def get_usage_pieces(self, ctx):
        return []


def pick_model(positional: str | None, option: str | None, required: bool = True) -> str | None:
    """The model given as MODEL or as --model (not both)."""
    if positional and option:
        raise click.UsageError(f"give the model once: as MODEL ({positional}) or as --model ({option})")
    model = positional or option
    if required and not model:
        raise click.UsageError("Missing argument: give the model as MODEL or --model MODEL.")
    return model


def model_option(help: str = MODEL_HELP, metavar: str = "MODEL", **kw):
    """``--model MODEL`` / ``-m MODEL`` alone, for commands whose positionals are other files."""
    return click.option("--model", "-m", "model_opt", metavar=metavar, help=help, **kw)


def model_input(required: bool = True, help: str = MODEL_HELP, metavar: str = "MODEL"):
    """The positional MODEL or ``--model MODEL``; the command receives ``model``."""
    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, model=None, model_opt=None, **kw):
            return f(*args, model=pick_model(model, model_opt, required), **kw)

        wrapper = model_option(help, metavar=metavar)(wrapper)
        return click.argument("model", required=False, metavar=metavar)(wrapper)
    return deco


def chosen_format(fmt: str | None, as_json: bool) -> str:
    """The format asked for by ``--format`` and ``--json`` together; both given must agree."""
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} contradict each other; give one")
    return fmt or ("json" if as_json else "text")


def output_format(*choices: str):
    """``--format`` (``choices``, text first) and its alias ``--json``; the command receives ``fmt``."""
    choices = choices or ("text", "json")
    kinds = {"text": "text (default)", "json": "json (same as --json)",
             "sarif": "sarif (SARIF 2.1.0 for code scanning)"}

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, fmt=None, as_json=False, **kw):
            return f(*args, fmt=chosen_format(fmt, as_json), **kw)

        wrapper = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(wrapper)
        return click.option("--format", "fmt", type=click.Choice(choices), default=None,
                            help="Output: " + ", ".join(kinds[c] for c in choices) + ".")(wrapper)
    return deco


def imatrix_option(help: str = "Importance matrix to use."):
    """``--imatrix FILE``."""
    return click.option("--imatrix", type=click.Path(dir_okay=False), metavar="FILE", help=help)


def config_option(f):
    """``--config FILE``: gl.toml (default: ./gl.toml)."""
    return click.option("--config", "config_path", type=click.Path(), default=None, metavar="FILE",
                        help="gl.toml (default: ./gl.toml).")(f)
