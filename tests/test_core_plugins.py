"""The plugin host: built-ins, third-party entry points, broken plugins, GL_PLUGINS, lazy --help."""

import json
import os
import subprocess
import sys
import textwrap


def _install_dist(site, dist, module, source, ep_name=None):
    """An installed distribution (dist-info + module) that importlib.metadata finds on sys.path."""
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[gl]\n{ep_name or dist} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


GOOD = """
    from gl_plugins.hookspecs import hookimpl

    from gl_plugins import Prediction

    class Flag:
        name = "hidden-256"
        description = "flags hidden sizes that are not a multiple of 256"

        def predict(self, facts, quant):
            return Prediction(self.name, quant, "ok" if (facts.hidden_size or 0) % 256 == 0 else "risky", 0.5)

    @hookimpl
    def gl_register_predictors(register):
        register(Flag())
"""


def _gl(site, *args, **env):
    e = {**os.environ, "PYTHONPATH": str(site)}
    e.pop("GL_PLUGINS", None)
    e.update(env)
    return subprocess.run([sys.executable, "-m", "gl_plugins", *args], capture_output=True, text=True, env=e)


def test_builtins_listed_with_hooks(gl):
    code, out, err = gl("plugins", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert "gl_plugins.predict.ffn_ratio" in rows
    assert all(r["builtin"] and r["distribution"] == "gl-plugins" for r in rows.values())


def test_third_party_plugin_is_loaded_and_listed(tmp_path):
    _install_dist(tmp_path, "gl-good", "gl_good", GOOD)
    r = _gl(tmp_path, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert rows["gl-good"]["version"] == "1.2.3"
    assert rows["gl-good"]["hooks"] == ["gl_register_predictors"]
    assert rows["gl-good"]["distribution"] == "gl-good"


def test_plugin_that_raises_on_import_does_not_take_the_cli_down(tmp_path, gemma_q4):
    _install_dist(tmp_path, "gl-broken", "gl_broken", "raise RuntimeError('boom at import')\n")
    r = _gl(tmp_path, "plugins")
    assert r.returncode == 1
    assert "plugin 'gl-broken' (distribution gl-broken 1.2.3) failed while loading: RuntimeError: boom at import" \
        in r.stderr
    assert "gl_plugins.predict.ffn_ratio" in r.stdout
    r = _gl(tmp_path, "inspect", str(gemma_q4))
    assert r.returncode == 0 and "gemma3" in r.stdout
    r = _gl(tmp_path, "--help")
    assert r.returncode == 0 and "inspect" in r.stdout


def test_misspelt_hook_is_an_error_not_silence(tmp_path):
    _install_dist(tmp_path, "gl-typo", "gl_typo", """
        from gl_plugins.hookspecs import hookimpl

        @hookimpl
        def gl_register_predictorz(register):
            pass
    """)
    r = _gl(tmp_path, "plugins", "--json")
    assert r.returncode == 1
    assert "gl-typo" in r.stderr and "unknown hook" in r.stderr and "gl_register_predictorz" in r.stderr
    assert "gl-typo" not in r.stdout


def test_gl_plugins_env_restricts_loading(tmp_path):
    _install_dist(tmp_path, "gl-good", "gl_good", GOOD)
    _install_dist(tmp_path, "gl-other", "gl_other", GOOD.replace("hidden-256", "other"))
    names = lambda r: {x["name"] for x in json.loads(r.stdout)}  # noqa: E731
    assert {"gl-good", "gl-other"} <= names(_gl(tmp_path, "plugins", "--json"))
    only = names(_gl(tmp_path, "plugins", "--json", GL_PLUGINS="gl-other"))
    assert "gl-other" in only and "gl-good" not in only
    builtin_only = names(_gl(tmp_path, "plugins", "--json", GL_PLUGINS=""))
    assert not {"gl-good", "gl-other"} & builtin_only
    assert "gl_plugins.plan.recipes" in builtin_only


def test_plugin_raising_inside_a_hook_is_reported_and_others_still_count(tmp_path):
    _install_dist(tmp_path, "gl-good", "gl_good", GOOD)
    _install_dist(tmp_path, "gl-crash", "gl_crash", """
        from gl_plugins.hookspecs import hookimpl

        @hookimpl
        def gl_register_predictors(register):
            raise ValueError("bad predictor table")
    """)
    code = ("from gl_plugins import host; found = host.collect('gl_register_predictors'); "
            "print(sorted(found)); print([str(p) for p in host.problems])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "hidden-256" in r.stdout
    assert "plugin 'gl-crash' (distribution gl-crash 1.2.3) failed in hook gl_register_predictors: " \
           "ValueError: bad predictor table" in r.stdout


def test_help_imports_no_plugins_and_no_numpy():
    code = ("import sys\nfrom gl_plugins.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "from gl_plugins.host.manager import DEFAULT_PLUGINS\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'gguf', 'ollama', 'huggingface_hub')"
            " or m in DEFAULT_PLUGINS or m.startswith('gl_plugins.cli.'))\nprint('IMPORTED', bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "IMPORTED []" in r.stdout
    for cmd in ("inspect", "predict", "plan", "imatrix", "quantize", "validate", "publish", "doctor"):
        assert cmd in r.stdout


def test_plugin_commands_hook_adds_a_subcommand(tmp_path):
    _install_dist(tmp_path, "gl-hello", "gl_hello", """
        import click
        from gl_plugins.hookspecs import hookimpl

        @hookimpl
        def gl_register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from a plugin")
    """)
    r = _gl(tmp_path, "hello")
    assert r.returncode == 0 and "hello from a plugin" in r.stdout
    assert "Say hello." in _gl(tmp_path, "--help").stdout
