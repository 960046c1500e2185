import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json):
    """List loaded plugins: name, version, hooks. Exit 1 if a plugin failed to load."""
    from gl_plugins.findings import dumps
    from gl_plugins.host import plugin_list, problems

    rows = plugin_list()
    if as_json:
        click.echo(dumps(rows))
    else:
        for r in rows:
            kind = "built-in" if r["builtin"] else r["distribution"]
            click.echo(f"{r['name']}  {r['version']}  ({kind})")
            for h in r["hooks"]:
                click.echo(f"    {h}")
    if problems:
        click.get_current_context().exit(1)
