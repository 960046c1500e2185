"""The plugin contract in code: objects are checked when registered, never written to, and touched one way.

Story: a plugin author gets the contract wrong in every way there is. Each misbehaviour
(a method that raises or returns the wrong thing, a property that raises, a missing attribute,
a hook that raises, a misspelt hook, a command that crashes) ends in one sentence naming the
plugin and what it did, never a traceback; the built-ins keep working, and the exit status says
the run is incomplete. The plugins are registered in this process, through the same manager as
installed ones (test_core_plugins.py covers real entry points and distributions).
"""

from __future__ import annotations

import dataclasses
import json

import click
import pytest

import tiny_gguf
from gl_plugins import Finding, Prediction, PublishResult, Rule, TensorPlan, hookimpl
from gl_plugins.host import protocols

PLUGIN = "gl-careless"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A model repository whose variant is a tiny GGUF (it does not run; --force publishes it)."""
    tiny_gguf.write(tmp_path / "tiny.gguf")
    (tmp_path / "gl.toml").write_text('[models.tiny.variants.q4]\ngguf = "tiny.gguf"\n')
    monkeypatch.setenv("GL_DIGEST_CACHE", str(tmp_path / "c" / "d.json"))
    monkeypatch.setenv("GL_VALIDATION_CACHE", str(tmp_path / "c" / "v"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def registering(hook: str, *objects):
    """A plugin whose registry hook ``hook`` registers ``objects``."""
    def impl(self, register):
        for obj in objects:
            register(obj)

    impl.__name__ = hook
    return type("Plugin", (), {hook: hookimpl(impl)})()


def assert_clean(err: str, *needles: str):
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# ---------------------------------------------------------------- registration

@dataclasses.dataclass(frozen=True)
class FrozenPredictor:
    name: str = "frozen"
    description: str = "a frozen dataclass"

    def predict(self, facts, quant):
        return Prediction(self.name, quant, "ok", 0.5, [f"{facts.n_layer} layers"])


def test_a_frozen_dataclass_registers_and_is_never_written_to(gl, synthetic_model):
    frozen = FrozenPredictor()
    code, out, err = gl("predict", synthetic_model, "-q", "Q4_K_M", "--json",
                        plugins=[(PLUGIN, registering("gl_register_predictors", frozen))])
    assert code == 0, err
    rows = {p["predictor"]: p for p in json.loads(out)}
    assert rows["frozen"]["reasons"] == ["2 layers"] and "ffn-ratio" in rows
    assert vars(frozen) == {"name": "frozen", "description": "a frozen dataclass"}


def test_the_registry_knows_who_registered_what_and_what_replaced_a_built_in():
    from gl_plugins import host

    class Coverage:
        name, description = "coverage", "a replacement"

        def audit(self, imatrix, facts, assignments):
            return []

    host.reset()
    try:
        host.register(registering("gl_register_auditors", Coverage()), PLUGIN)
        entry = host.collect("gl_register_auditors")["coverage"]
        assert (entry.plugin, entry.kind, entry.replaced) == (PLUGIN, "auditor", "gl_plugins.imatrix.coverage")
        assert isinstance(entry.obj, Coverage) and not entry.builtin
        assert [(r.plugin, r.outcome) for r in host.registrations("gl_register_auditors")] == [
            (PLUGIN, "replaces a built-in"), ("gl_plugins.imatrix.coverage", "replaced")]
    finally:
        host.reset()


def test_every_protocol_is_exported_and_names_what_gl_uses():
    import gl_plugins

    assert {"Predictor", "Recipe", "Auditor", "Validator", "Publisher"} <= set(gl_plugins.__all__)
    assert protocols.members(gl_plugins.Recipe) == ["name", "description", "options", "plan"]
    assert protocols.members(gl_plugins.Publisher) == ["name", "description", "available", "publish"]
    assert protocols.missing(FrozenPredictor(), gl_plugins.Predictor) == []
    assert protocols.missing(FrozenPredictor(), gl_plugins.Recipe) == ["options", "plan"]


class NoOptions:
    name, description = "nooptions", "a recipe without options"

    def plan(self, facts, **options):
        return TensorPlan("Q8_0", [])


def test_a_recipe_without_options_is_refused_at_registration_and_help_still_works(gl, synthetic_model):
    plugins = [(PLUGIN, registering("gl_register_recipes", NoOptions()))]
    refused = (f"plugin '{PLUGIN}' registered recipe 'nooptions' without options (a recipe has name, description, "
               f"options, plan), so it is left out")
    code, out, err = gl("plan", "--recipe", "nooptions", "--help", plugins=plugins)
    assert code == 0 and "Usage: gl plan [OPTIONS] MODEL" in out
    assert_clean(err, refused)
    code, out, err = gl("plan", synthetic_model, "--recipe", "nooptions", plugins=plugins)
    assert code == 2 and out == ""
    assert_clean(err, refused, "gl: error: unknown recipe 'nooptions'; installed recipes: budget, protect, uniform")


class Nameless:
    description = "no name"

    def predict(self, facts, quant):
        return Prediction("x", quant, "ok", 0.5)


class NameRaises(Nameless):
    @property
    def name(self):
        raise KeyError("name")


@pytest.mark.parametrize("obj,problem", [
    (Nameless(), "registered a predictor without a name (Nameless), so it is left out"),
    (NameRaises(), "registered a predictor whose name raised KeyError: 'name', so it is left out"),
    (type("NoPredict", (), {"name": "np", "description": ""})(),
     "registered predictor 'np' without predict (a predictor has name, description, predict)"),
])
def test_an_object_gl_cannot_use_is_refused_with_one_sentence(gl, synthetic_model, obj, problem):
    code, out, err = gl("predict", synthetic_model, "-q", "Q4_K_M", "--json",
                        plugins=[(PLUGIN, registering("gl_register_predictors", obj))])
    assert code == 1  # the set of predictors is incomplete
    assert_clean(err, f"gl: warning: plugin '{PLUGIN}' {problem}")
    assert {p["predictor"] for p in json.loads(out)} >= {"ffn-ratio", "combined"}


def test_a_raising_registry_hook_leaves_its_other_registrations_and_the_built_ins():
    from gl_plugins import host

    class Plugin:
        @hookimpl
        def gl_register_predictors(self, register):
            register(FrozenPredictor())
            raise ValueError("half-way")

    host.reset()
    try:
        host.register(Plugin(), PLUGIN)
        found = host.collect("gl_register_predictors")
        assert {"frozen", "ffn-ratio", "shape-fallback"} <= set(found)
        assert [str(p) for p in host.problems] == [
            f"plugin '{PLUGIN}' failed in hook gl_register_predictors: ValueError: half-way"]
    finally:
        host.reset()


def test_a_misspelt_hook_and_a_hook_with_wrong_arguments_are_errors_not_silence(gl):
    class Misspelt:
        @hookimpl
        def gl_register_predictorz(self, register):
            pass

    class WrongArgs:
        @hookimpl
        def gl_register_predictors(self, reg):
            pass

    code, out, err = gl("plugins", plugins=[("gl-misspelt", Misspelt()), ("gl-wrong-args", WrongArgs())])
    assert code == 1
    assert_clean(err, "plugin 'gl-misspelt' failed while loading: implements an unknown hook",
                 "gl_register_predictorz", "plugin 'gl-wrong-args' failed while loading: PluginValidationError")
    assert "gl-misspelt" not in out and "gl-wrong-args" not in out


# ---------------------------------------------------------------- gl plugins

def test_gl_plugins_lists_what_each_plugin_registered_and_what_replaced_a_built_in(gl):
    class FfnRatio(FrozenPredictor):
        pass

    mine = registering("gl_register_predictors", FfnRatio(name="ffn-ratio"), FrozenPredictor())
    code, out, err = gl("plugins", plugins=[(PLUGIN, mine)])
    assert code == 0, err
    assert (f"{PLUGIN}  (registered in process)\n"
            f"    gl_register_predictors: ffn-ratio (replaces the built-in of gl_plugins.predict.ffn_ratio), frozen\n"
            in out)
    assert ("gl_plugins.predict.ffn_ratio  0.1.0  (built-in)\n"
            f"    gl_register_predictors: ffn-ratio (replaced by {PLUGIN})\n" in out)
    code, out, _ = gl("plugins", "--format", "json", plugins=[(PLUGIN, mine)])
    row = {r["name"]: r for r in json.loads(out)}[PLUGIN]
    assert row["registered"]["gl_register_predictors"] == [
        {"name": "ffn-ratio", "outcome": "replaces a built-in", "other": "gl_plugins.predict.ffn_ratio"},
        {"name": "frozen", "outcome": "registered"}]


def test_gl_plugins_exits_1_when_a_registration_was_refused(gl):
    code, out, err = gl("plugins", plugins=[(PLUGIN, registering("gl_register_recipes", NoOptions()))])
    assert code == 1
    assert "gl_register_recipes: nooptions (refused: see the warning on stderr)" in out
    assert_clean(err, "registered recipe 'nooptions' without options")


# ---------------------------------------------------------------- misbehaving at work

class Careless:
    """Every kind of object at once; ``how`` says what goes wrong."""

    name = "careless"
    description = "gets the contract wrong"

    def __init__(self, how: str):
        self.how = how

    def _work(self, method, good):
        if self.how == f"{method} raises":
            raise RuntimeError(f"{method} exploded")
        if self.how == f"{method} returns junk":
            return {"not": "it"}
        return good

    @property
    def options(self):
        if self.how == "options raises":
            raise RuntimeError("options exploded")
        if self.how == "options returns junk":
            return ["--type"]
        return []

    @property
    def defaults(self):
        if self.how == "defaults raises":
            raise RuntimeError("defaults exploded")
        return {"limit": 1}

    def predict(self, facts, quant):
        return self._work("predict", Prediction(self.name, quant, "ok", 0.5))

    def plan(self, facts, **options):
        return self._work("plan", TensorPlan("Q8_0", [Rule(r"ffn_up\.weight", "q4_0")]))

    def audit(self, imatrix, facts, assignments):
        return self._work("audit", [])

    def validate(self, context):
        return self._work("validate", [Finding("info", "careless-ok", "fine")])

    def available(self, options):
        return self._work("available", None)

    def publish(self, request):
        return self._work("publish", PublishResult(self.name, request.name.short(), "nowhere"))


def careless(how: str):
    class Plugin:
        def __init__(self):
            self.obj = Careless(how)

        @hookimpl
        def gl_register_predictors(self, register):
            register(self.obj)

        @hookimpl
        def gl_register_recipes(self, register):
            register(self.obj)

        @hookimpl
        def gl_register_validators(self, register):
            register(self.obj)

        @hookimpl
        def gl_register_publishers(self, register):
            register(self.obj)

    return [(PLUGIN, Plugin())]


WHO = f"plugin '{PLUGIN}' failed in"


@pytest.mark.parametrize("how,message", [
    ("predict raises", "RuntimeError: predict exploded"),
    ("predict returns junk", "returned dict, not Prediction"),
])
def test_a_predictor_misbehaving_is_left_out_and_the_others_answer(gl, synthetic_model, how, message):
    code, out, err = gl("predict", synthetic_model, "-q", "Q2_K", "--json", plugins=careless(how))
    assert code == 1
    assert_clean(err, f"predictor 'careless' (plugin {PLUGIN}) failed on Q2_K: {message}")
    rows = {p["predictor"]: p for p in json.loads(out)}
    assert rows["careless"]["verdict"] == "unknown" and rows["ffn-ratio"]["verdict"] != "unknown"


@pytest.mark.parametrize("args,how,message", [
    ([], "plan raises", "recipe 'careless'.plan: RuntimeError: plan exploded"),
    ([], "plan returns junk", "recipe 'careless'.plan: returned dict, not TensorPlan"),
    (["--help"], "options raises", "recipe 'careless'.options: RuntimeError: options exploded"),
    ([], "options returns junk", "recipe 'careless'.options: holds str, not click.Option"),
])
def test_a_recipe_misbehaving_is_one_sentence_exit_1(gl, synthetic_model, args, how, message):
    code, out, err = gl("plan", synthetic_model, "--recipe", "careless", *args, plugins=careless(how))
    assert code == 1 and out == ""
    assert err == f"gl: error: {WHO} {message}\n"


def test_a_predictor_whose_options_raise_is_reported_and_the_prediction_goes_on(gl, synthetic_model):
    code, out, err = gl("predict", synthetic_model, "-q", "Q2_K", plugins=careless("options raises"))
    assert code == 1
    assert_clean(err, f"gl: error: {WHO} predictor 'careless'.options: RuntimeError: options exploded")
    assert "ffn-ratio" in out and "combined" in out


@pytest.mark.parametrize("how,message", [
    ("validate raises", "RuntimeError: validate exploded"),
    ("validate returns junk", "returned dict, not a list of Finding"),
])
def test_a_validator_misbehaving_fails_the_file(gl, synthetic_model, how, message):
    code, out, err = gl("validate", synthetic_model, "--only", "structure,careless", "--json", plugins=careless(how))
    assert code == 1
    assert_clean(err, f"{WHO} validator 'careless'.validate: {message}")
    (failed,) = [f for f in json.loads(out)["findings"] if f["validator"] == "careless"]
    assert failed["code"] == "validator-failed" and failed["severity"] == "error"


def test_a_validator_whose_defaults_raise_is_one_sentence(gl, synthetic_model):
    code, out, err = gl("validate", synthetic_model, "--only", "careless", "--set", "careless.limit=2",
                        plugins=careless("defaults raises"))
    assert code == 1
    assert err == f"gl: error: {WHO} validator 'careless'.defaults: RuntimeError: defaults exploded\n"


@pytest.mark.parametrize("how,message", [
    ("available raises", "publisher 'careless'.available: RuntimeError: available exploded"),
    ("available returns junk", "publisher 'careless'.available: returned dict, not str or None"),
    ("publish raises", "publisher 'careless'.publish: RuntimeError: publish exploded"),
    ("publish returns junk", "publisher 'careless'.publish: returned dict, not PublishResult"),
])
def test_a_publisher_misbehaving_publishes_nothing(gl, repo, how, message):
    code, out, err = gl("publish", "tiny:q4", "--to", "careless", "--force", plugins=careless(how))
    assert code == 1 and "published" not in out
    assert_clean(err)
    assert err.splitlines()[-1] == f"gl: error: {WHO} {message}"


def test_an_auditor_returning_junk_leaves_the_coverage_audit(gl, synthetic_model, tmp_path):
    from gl_plugins.facts import load_facts
    from imatrix_files import forward_pass_entries, write_gguf_imatrix

    class Junk:
        name, description = "junk", "returns a string"

        def audit(self, imatrix, facts, assignments):
            return "nothing to report"

    imx = write_gguf_imatrix(tmp_path / "i.gguf", forward_pass_entries(load_facts(synthetic_model)))
    code, out, err = gl("imatrix", "audit", synthetic_model, "--imatrix", imx, "--quant", "Q4_K_M", "--json",
                        plugins=[(PLUGIN, registering("gl_register_auditors", Junk()))])
    assert code == 1
    assert_clean(err, f"{WHO} auditor 'junk'.audit: returned str, not a list of Finding; its results are left out")
    assert json.loads(out)["coverage"]["percent"] == 100.0


# ---------------------------------------------------------------- commands

def test_a_command_hook_that_raises_is_reported_like_every_plugin_failure(gl, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf-secret-value-1234")

    class Plugin:
        @hookimpl
        def gl_register_commands(self, cli):
            raise RuntimeError("no commands today (token hf-secret-value-1234)")

    code, out, err = gl("--help", plugins=[(PLUGIN, Plugin())])
    assert code == 0 and "inspect" in out
    assert_clean(err, f"gl: warning: plugin '{PLUGIN}' failed in hook gl_register_commands: "
                      f"RuntimeError: no commands today (token <HF_TOKEN>)")
    code, out, err = gl("plugins", plugins=[(PLUGIN, Plugin())])
    assert code == 1 and f"{PLUGIN}  (registered in process)\n    gl_register_commands\n" in out


def test_a_plugin_command_that_crashes_is_one_sentence_exit_1(gl):
    class Plugin:
        @hookimpl
        def gl_register_commands(self, cli):
            @cli.command()
            def crash():
                "Crash."
                raise ZeroDivisionError("division by zero")

            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello")

    code, out, err = gl("crash", plugins=[(PLUGIN, Plugin())])
    assert code == 1
    assert err == f"gl: error: {WHO} command 'crash': ZeroDivisionError: division by zero\n"
    code, out, err = gl("hello", plugins=[(PLUGIN, Plugin())])
    assert (code, out) == (0, "hello\n")
    code, out, _ = gl("plugins", plugins=[(PLUGIN, Plugin())])
    assert "    gl_register_commands: crash, hello\n" in out
