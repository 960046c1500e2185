"""The ``gl`` command line: parses options, calls plain functions, prints.

Each subcommand lives in its own module of this package and is imported only when used,
so ``gl --help`` imports neither plugins nor numpy.
"""

from __future__ import annotations

import importlib
import sys

import click

from gl_plugins import __version__
from gl_plugins.errors import GLError

# name -> "module:attribute" of the click command
COMMANDS = {
    "inspect": ("gl_plugins.cli.inspect_model:inspect_cmd", "Show what a model is made of."),
    "predict": ("gl_plugins.cli.predict:predict", "Predict whether a model survives a quant type."),
    "plan": ("gl_plugins.cli.plan:plan", "Make or lint a llama.cpp tensor-type map."),
    "imatrix": ("gl_plugins.cli.imatrix:imatrix", "Read, audit and convert importance matrices."),
    "quantize": ("gl_plugins.cli.quantize:quantize", "Run llama-quantize with an explicit plan."),
    "validate": ("gl_plugins.cli.validate:validate", "Check a quantized GGUF before publishing it."),
    "experiment": ("gl_plugins.cli.validate:experiment", "Quantize, validate, record the outcome."),
    "floor": ("gl_plugins.cli.floor:floor", "Find the smallest file that passes the quality gates."),
    "publish": ("gl_plugins.cli.publish:publish", "Publish a gl.toml variant to Ollama or a bundle."),
    "check": ("gl_plugins.cli.publish:check", "Validate a gl.toml file."),
    "modelfile": ("gl_plugins.cli.modelfile:modelfile", "Lint and render Ollama Modelfiles."),
    "plugins": ("gl_plugins.cli.plugins:plugins_cmd", "List loaded plugins and their hooks."),
    "toolchain": ("gl_plugins.cli.toolchain:toolchain", "Find or build the llama.cpp tools."),
    "doctor": ("gl_plugins.cli.toolchain:doctor", "Show tools, versions, and run a quantized model."),
    "sample-model": ("gl_plugins.cli.toolchain:sample_model", "Provision a real sample model (Gemma 3 270M, Qwen2.5-Coder-1.5B)."),
}


class LazyGroup(click.Group):
    """gl's commands, imported when used, and the commands plugins add; one way to end in an error."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(_plugin_commands()))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr = COMMANDS[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        found = _plugin_commands().get(name)
        return found[0] if found else None

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n][1]) for n in sorted(COMMANDS)]
        extra = _plugin_commands()
        rows += [(n, extra[n][0].get_short_help_str(60)) for n in sorted(extra)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GLError as e:
            from gl_plugins.redaction import redact

            click.echo(f"gl: error: {redact(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (see interrupts.py); clean-ups have run
            from gl_plugins.interrupts import exit_code

            click.echo("gl: interrupted", err=True)
            ctx.exit(exit_code(e))
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - a plugin's command is reported like every plugin failure
            found = _plugin_commands().get(ctx.invoked_subcommand or "")
            if found is None:
                raise
            from gl_plugins.host.manager import PluginProblem, distribution, problems
            from gl_plugins.redaction import redact

            problem = PluginProblem(found[1], distribution(found[1]), "gl_register_commands",
                                    f"{type(e).__name__}: {e}", work=f"command {ctx.invoked_subcommand!r}")
            problems.append(problem)
            click.echo(redact(f"gl: error: {problem}"), err=True)
            ctx.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run gl; every error ends in one line ``gl: error: ...`` (usage errors after the usage)."""
        code = _run(self, args, **extra)
        if standalone_mode:
            sys.exit(code)
        return code


def _plugin_commands() -> dict:
    from gl_plugins.host import commands

    return commands(reserved=COMMANDS)


def _run(group: click.Group, args, **extra) -> int:
    from gl_plugins.interrupts import exit_code
    from gl_plugins.redaction import redact

    try:
        rv = click.Group.main(group, args=args, prog_name="gl", standalone_mode=False, **extra)
    except click.exceptions.Abort as e:
        click.echo("gl: interrupted", err=True)
        return exit_code(e.__context__)
    except click.UsageError as e:
        if e.ctx is not None:
            hint = f"Try '{e.ctx.command_path} -h' for help.\n" if e.ctx.command.get_help_option(e.ctx) else ""
            click.echo(f"{e.ctx.get_usage()}\n{hint}", err=True)
        click.echo(f"gl: error: {e.format_message()}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"gl: error: {redact(e.format_message())}", err=True)
        return e.exit_code
    except GLError as e:
        click.echo(f"gl: error: {redact(str(e))}", err=True)
        return e.exit_code
    return rv if isinstance(rv, int) else 0


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gl")
def cli():
    """gl: quantize open LLMs to very few bits with llama.cpp, check the result, ship it through Ollama.

    The workflow: inspect -> predict -> plan -> imatrix audit -> quantize -> validate -> publish.
    """


def main(argv=None) -> int:
    from gl_plugins.interrupts import install

    install()
    return cli.main(args=argv, standalone_mode=False)


if __name__ == "__main__":
    sys.exit(main())
