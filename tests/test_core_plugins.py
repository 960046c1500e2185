"""The plugin host: built-ins, third-party entry points, broken plugins, GL_PLUGINS, lazy --help.

The third-party plugins here are real distributions (a dist-info with an entry point in the
group ``gl``) on a folder this process has on sys.path, so gl finds them exactly as after
``pip install``; one test runs them in a separate gl process.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import install_dist

GOOD = """
    from gl_plugins import Prediction, hookimpl

    class Flag:
        name = "hidden-256"
        description = "flags hidden sizes that are not a multiple of 256"

        def predict(self, facts, quant):
            return Prediction(self.name, quant, "ok" if (facts.hidden_size or 0) % 256 == 0 else "risky", 0.5)

    @hookimpl
    def gl_register_predictors(register):
        register(Flag())
"""


def test_builtins_listed_with_hooks(gl):
    code, out, err = gl("plugins", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert "gl_plugins.predict.ffn_ratio" in rows
    assert all(r["builtin"] and r["distribution"] == "gl-plugins" for r in rows.values())
    assert rows["gl_plugins.plan.recipes"]["registered"]["gl_register_recipes"] == [
        {"name": n, "outcome": "registered"} for n in ("uniform", "protect", "budget")]


def test_third_party_plugin_is_loaded_and_listed(gl, plugin_site):
    install_dist(plugin_site, "gl-good", "gl_good", GOOD)
    code, out, err = gl("plugins", "--json")
    assert code == 0, err
    rows = {x["name"]: x for x in json.loads(out)}
    assert rows["gl-good"]["version"] == "1.2.3" and rows["gl-good"]["distribution"] == "gl-good"
    assert rows["gl-good"]["hooks"] == ["gl_register_predictors"]
    assert rows["gl-good"]["registered"] == {"gl_register_predictors": [{"name": "hidden-256",
                                                                         "outcome": "registered"}]}
    code, out, _ = gl("plugins")
    assert "gl-good  1.2.3  (gl-good)\n    gl_register_predictors: hidden-256\n" in out


def test_plugin_that_raises_on_import_does_not_take_the_cli_down(gl, plugin_site, gemma_q4):
    install_dist(plugin_site, "gl-broken", "gl_broken", "raise RuntimeError('boom at import')\n")
    code, out, err = gl("plugins")
    assert code == 1
    assert "plugin 'gl-broken' (distribution gl-broken 1.2.3) failed while loading: RuntimeError: boom at import" \
        in err
    assert "gl_plugins.predict.ffn_ratio" in out
    code, out, _ = gl("inspect", gemma_q4)
    assert code == 0 and "gemma3" in out
    code, out, _ = gl("--help")
    assert code == 0 and "inspect" in out


def test_an_entry_point_naming_a_missing_module_or_attribute_is_a_loading_failure(gl, plugin_site):
    install_dist(plugin_site, "gl-gone", "gl_gone_module_that_is_not_there", "", ep_name="gl-gone")
    (plugin_site / "gl_gone_module_that_is_not_there.py").unlink()
    install_dist(plugin_site, "gl-attr", "gl_attr", "", ep_name="gl-attr")
    (plugin_site / "gl_attr-1.2.3.dist-info" / "entry_points.txt").write_text("[gl]\ngl-attr = gl_attr:nothing\n")
    code, _, err = gl("plugins")
    assert code == 1 and "Traceback" not in err
    assert ("plugin 'gl-gone' (distribution gl-gone 1.2.3) failed while loading: ModuleNotFoundError: "
            "No module named 'gl_gone_module_that_is_not_there'") in err
    assert "plugin 'gl-attr' (distribution gl-attr 1.2.3) failed while loading: AttributeError:" in err


def test_misspelt_hook_is_an_error_not_silence(gl, plugin_site):
    install_dist(plugin_site, "gl-typo", "gl_typo", """
        from gl_plugins import hookimpl

        @hookimpl
        def gl_register_predictorz(register):
            pass
    """)
    code, out, err = gl("plugins", "--json")
    assert code == 1
    assert "gl-typo" in err and "unknown hook" in err and "gl_register_predictorz" in err
    assert "gl-typo" not in out


def test_gl_plugins_env_restricts_loading_and_names_are_normalised(gl, plugin_site):
    install_dist(plugin_site, "gl-good", "gl_good", GOOD)
    install_dist(plugin_site, "gl-other", "gl_other", GOOD.replace("hidden-256", "other"))

    def names(*env):
        code, out, err = gl("plugins", "--json", env=dict(env))
        return {x["name"] for x in json.loads(out)}, err

    assert {"gl-good", "gl-other"} <= names()[0]
    only, err = names(("GL_PLUGINS", "gl-other"))
    assert "gl-other" in only and "gl-good" not in only and err == ""
    only, _ = names(("GL_PLUGINS", "GL_Other"))  # entry-point and distribution names compare as packaging does
    assert "gl-other" in only and "gl-good" not in only
    builtin_only, _ = names(("GL_PLUGINS", ""))
    assert not {"gl-good", "gl-other"} & builtin_only and "gl_plugins.plan.recipes" in builtin_only


def test_gl_plugins_naming_no_installed_plugin_is_a_warning(gl, plugin_site):
    install_dist(plugin_site, "gl-good", "gl_good", GOOD)
    code, out, err = gl("plugins", "--json", env={"GL_PLUGINS": "gl_good,gl-typo"})
    assert code == 0
    assert "gl-good" in {x["name"] for x in json.loads(out)}
    assert err == ("gl: warning: GL_PLUGINS names 'gl-typo', which no installed plugin is called "
                   "(installed: gl-good)\n")


def test_plugin_raising_inside_a_hook_is_reported_and_others_still_count(gl, plugin_site):
    install_dist(plugin_site, "gl-good", "gl_good", GOOD)
    install_dist(plugin_site, "gl-crash", "gl_crash", """
        from gl_plugins import hookimpl

        @hookimpl
        def gl_register_predictors(register):
            raise ValueError("bad predictor table")
    """)
    from gl_plugins import host

    host.reset()
    found = host.collect("gl_register_predictors")
    assert "hidden-256" in found and found["hidden-256"].plugin == "gl-good"
    assert [str(p) for p in host.problems] == ["plugin 'gl-crash' (distribution gl-crash 1.2.3) failed in hook "
                                               "gl_register_predictors: ValueError: bad predictor table"]


def test_plugin_commands_hook_adds_a_subcommand(gl, plugin_site):
    install_dist(plugin_site, "gl-hello", "gl_hello", """
        import click
        from gl_plugins import hookimpl

        @hookimpl
        def gl_register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from a plugin")
    """)
    code, out, _ = gl("hello")
    assert code == 0 and "hello from a plugin" in out
    assert "Say hello." in gl("--help")[1]


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


@pytest.mark.slow
def test_a_real_gl_process_with_a_broken_and_a_good_plugin(tmp_path):
    """The same as above, end to end: PYTHONPATH, entry points, a separate process."""
    install_dist(tmp_path, "gl-good", "gl_good", GOOD)
    install_dist(tmp_path, "gl-broken", "gl_broken", "raise RuntimeError('boom at import')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("GL_PLUGINS", None)
    r = subprocess.run([sys.executable, "-m", "gl_plugins", "plugins"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "plugin 'gl-broken' (distribution gl-broken 1.2.3) failed while loading" in r.stderr
    assert "gl-good  1.2.3  (gl-good)\n    gl_register_predictors: hidden-256\n" in r.stdout
