"""``gl plugins``: what is loaded, and what each plugin registered."""

import click

from gl_plugins.cli.options import output_format

_OUTCOME = {"replaces a built-in": "replaces the built-in of {other}", "replaced": "replaced by {other}",
            "ignored": "ignored: {other} registered this name first", "refused": "refused: see the warning on stderr"}


@click.command("plugins")
@output_format()
def plugins_cmd(fmt):
    """List loaded plugins: name, version, hooks and what each registered through them.

    Every registry hook is called, so a plugin that fails to load, raises in a hook or registers an
    object gl refuses is reported on stderr; then the exit status is 1.
    """
    from gl_plugins.cli import COMMANDS
    from gl_plugins.findings import dumps
    from gl_plugins.host import plugin_list, problems

    rows = plugin_list(reserved=COMMANDS)
    if fmt == "json":
        click.echo(dumps(rows))
    else:
        for r in rows:
            kind = "built-in" if r["builtin"] else (r["distribution"] or "registered in process")
            click.echo(f"{r['name']}  " + (f"{r['version']}  " if r["version"] else "") + f"({kind})")
            for hook in r["hooks"]:
                names = [x["name"] + (f" ({_OUTCOME[x['outcome']].format(other=x.get('other'))})"
                                      if x["outcome"] != "registered" else "")
                         for x in r["registered"].get(hook, []) if x["name"]]
                click.echo(f"    {hook}" + (f": {', '.join(names)}" if names else ""))
    if problems:
        click.get_current_context().exit(1)
