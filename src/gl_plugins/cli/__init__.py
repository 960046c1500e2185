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
    "publish": ("gl_plugins.cli.publish:publish", "Publish a gl.toml variant to Ollama or a bundle."),
    "check": ("gl_plugins.cli.publish:check", "Validate a gl.toml file."),
    "modelfile": ("gl_plugins.cli.modelfile:modelfile", "Lint and render Ollama Modelfiles."),
    "plugins": ("gl_plugins.cli.plugins:plugins_cmd", "List loaded plugins and their hooks."),
    "toolchain": ("gl_plugins.cli.toolchain:toolchain", "Find or build the llama.cpp tools."),
    "doctor": ("gl_plugins.cli.toolchain:doctor", "Show tools, versions, and run a quantized model."),
    "sample-model": ("gl_plugins.cli.toolchain:sample_model", "Provision a real sample model (Gemma 3 270M, Qwen2.5-Coder-1.5B)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self._plugin_commands()))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr = COMMANDS[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return self._plugin_commands().get(name)

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n][1]) for n in sorted(COMMANDS)]
        extra = self._plugin_commands()
        rows += [(n, extra[n].get_short_help_str(60)) for n in sorted(extra)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    _extra: dict | None = None

    def _plugin_commands(self) -> dict:
        if LazyGroup._extra is None:
            from importlib.metadata import entry_points

            if not entry_points(group="gl"):  # only built-ins: they add no commands
                LazyGroup._extra = {}
                return LazyGroup._extra
            from gl_plugins.host import get_manager

            collector = click.Group()
            pm = get_manager()
            for impl in reversed(pm.hook.gl_register_commands.get_hookimpls()):
                try:
                    impl.function(cli=collector)
                except Exception as e:
                    click.echo(f"gl: warning: plugin {impl.plugin_name!r} failed in hook "
                               f"gl_register_commands: {type(e).__name__}: {e}", err=True)
            LazyGroup._extra = {n: c for n, c in collector.commands.items() if n not in COMMANDS}
        return LazyGroup._extra

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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gl")
def cli():
    """gl: quantize open LLMs to very few bits with llama.cpp, check the result, ship it through Ollama.

    The workflow: inspect -> predict -> plan -> imatrix audit -> quantize -> validate -> publish.
    """


def main(argv=None) -> int:
    from gl_plugins.interrupts import exit_code, install

    install()
    try:
        rv = cli.main(args=argv, prog_name="gl", standalone_mode=False)
    except click.exceptions.Abort as e:
        click.echo("gl: interrupted", err=True)
        return exit_code(e.__context__)
    except click.ClickException as e:
        e.show()
        return 2 if isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except GLError as e:
        from gl_plugins.redaction import redact

        click.echo(f"gl: error: {redact(str(e))}", err=True)
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
