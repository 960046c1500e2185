"""gl.toml: loading, every problem with its key path, paths kept inside the folder, and gl check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tiny_gguf
from gl_plugins.project.config import load_config
from gl_plugins.errors import GLError, InputError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gl.toml"
    p.write_text(text)
    return p


def messages(cfg):
    return [p.message for p in cfg.problems]


def test_a_clean_config(tmp_path):
    tiny_gguf.write(tmp_path / "m.gguf")
    (tmp_path / "LICENSE").write_text("MIT\n")
    cfg = load_config(write(tmp_path, """
[publish]
host = "http://127.0.0.1:9"
namespace = "lab"
to = "bundle"
retry_seconds = 5

[models.tiny]
family = "chatml"
system = "Be brief."
parameters = { temperature = 0.7, stop = "<|im_end|>" }
license = { file = "LICENSE" }

[models.tiny.variants.q4]
gguf = "m.gguf"
parameters = { num_ctx = 2048, temperature = 1 }
messages = [ { role = "user", content = "hi" }, { role = "assistant", content = "hello" } ]

[models.tiny.variants.other]
tag = "f32"
gguf = "./m.gguf"
system = "Be verbose."
"""))
    assert cfg.problems == []
    v = cfg.variant("tiny:q4")
    assert v.gguf == tmp_path / "m.gguf"
    assert v.family == "qwen2.5" and v.system == "Be brief." and v.license == ["MIT\n"]
    assert v.parameters == {"temperature": 1.0, "stop": ["<|im_end|>"], "num_ctx": 2048}
    assert v.messages[1] == {"role": "assistant", "content": "hello"}
    assert cfg.variant("tiny:f32").system == "Be verbose."
    assert (cfg.publish.host, cfg.publish.namespace, cfg.publish.to, cfg.publish.retry_seconds) == (
        "http://127.0.0.1:9", "lab", "bundle", 5.0)
    with pytest.raises(GLError, match="declares no variant 'tiny:q8'; declared: tiny:f32, tiny:q4"):
        cfg.variant("tiny:q8")


def test_every_problem_is_reported_with_its_key_path(tmp_path):
    (tmp_path / "notgguf.gguf").write_text("hello")
    (tmp_path / "bad.Modelfile").write_text("FROM x\nMESSAGE robot hi\n")
    outside = tmp_path.parent / "outside.gguf"
    cfg = load_config(write(tmp_path, f"""
colour = "blue"
[publish]
namespace = "my.team"
retry_seconds = -1

[models.gemma4-turbo]
family = "vicuna"
parameters = {{ Temperature = 1, top_k = "many", stop = [] }}

[models.gemma4-turbo.variants.e4b]
gguf = "gguf/gemma-4-e4b-it-IQ4_XS.gguf"

[models.gemma4-turbo.variants.abs]
gguf = "{outside}"

[models.gemma4-turbo.variants.up]
gguf = "../outside.gguf"

[models.gemma4-turbo.variants.junk]
gguf = "notgguf.gguf"
modelfile = "bad.Modelfile"
messages = [ {{ role = "robot", content = "x" }} ]
ggfu = "typo"

[models.gemma4-turbo.variants.tagged]
tag = "-bad"
gguf = "notgguf.gguf"

[models.gemma4-turbo.variants.built]
build = {{ base = "pkg:gemma9-1b", recipe = "uniform", map = "m.txt" }}

[models."bad name!".variants.x]
gguf = "x.gguf"
"""))
    got = messages(cfg)
    expect = [
        "colour: unknown key",
        "publish.namespace: 'my.team' contains '.'; only letters, digits and '_' '-' are allowed",
        "publish.retry_seconds: must be a number of seconds, 0 or more",
        "models.gemma4-turbo.family: unknown Modelfile family 'vicuna'",
        "models.gemma4-turbo.parameters.Temperature: unknown Ollama parameter",
        "models.gemma4-turbo.parameters.top_k: must be an integer, not a string 'many'",
        "models.gemma4-turbo.parameters.stop: must be a string or an array of strings",
        "models.gemma4-turbo.variants.e4b.gguf: file not found",
        f"models.gemma4-turbo.variants.abs.gguf: {outside} is not relative",
        "models.gemma4-turbo.variants.up.gguf: ../outside.gguf leaves the folder of gl.toml",
        "models.gemma4-turbo.variants.junk.ggfu: unknown key",
        "models.gemma4-turbo.variants.junk.gguf:",
        "models.gemma4-turbo.variants.junk.modelfile:",
        "models.gemma4-turbo.variants.junk.messages[0].role: 'robot' is not one of system, user, assistant",
        "models.gemma4-turbo.variants.tagged.tag: tag '-bad' must start with a letter, a digit or '_'",
        "models.gemma4-turbo.variants.built.build.base: unknown packaged model 'pkg:gemma9-1b'",
        "models.gemma4-turbo.variants.built.build.map: file not found",
        "models.gemma4-turbo.variants.built.build: give either recipe (with options) or map",
        "models.bad name!: model name 'bad name!' contains ' '",
    ]
    for e in expect:
        assert any(m.startswith(e) for m in got), (e, got)
    junk = [m for m in got if m.startswith("models.gemma4-turbo.variants.junk.gguf:")][0]
    assert "is not a GGUF file" in junk
    mf = [m for m in got if m.startswith("models.gemma4-turbo.variants.junk.modelfile:")][0]
    assert "bad.Modelfile (line 2): MESSAGE role 'robot'" in mf
    typo = [p for p in cfg.problems if "ggfu" in p.message][0]
    assert typo.hint == "did you mean gguf?"
    assert all(p.file == str(tmp_path / "gl.toml") for p in cfg.problems)


def test_problems_for_one_variant(tmp_path):
    tiny_gguf.write(tmp_path / "m.gguf")
    cfg = load_config(write(tmp_path, """
[models.a.variants.ok]
gguf = "m.gguf"
[models.a.variants.missing]
gguf = "nope.gguf"
[models.b.variants.ok]
gguf = "m.gguf"
parameters = { seed = 1.5 }
"""))
    assert [p.message for p in cfg.problems_for(cfg.variant("a:ok"))] == []
    assert len(cfg.problems_for(cfg.variant("b:ok"))) == 1


@pytest.mark.parametrize("text,line", [("[models\n", 1), ("a = 1\na = 2\n", 2), ('x = "unterminated\n', 1)])
def test_unparsable_toml_is_an_input_error_with_its_line(tmp_path, text, line):
    with pytest.raises(InputError) as e:
        load_config(write(tmp_path, text))
    assert e.value.line == line and "is not valid TOML" in str(e.value)


def test_gl_check_exit_codes(gl, tmp_path):
    tiny_gguf.write(tmp_path / "m.gguf")
    good = write(tmp_path, '[models.tiny.variants.q4]\ngguf = "m.gguf"\n')
    code, out, err = gl("check", "--config", good)
    assert code == 0, out + err
    assert "1 variant, 0 problems" in err
    bad = tmp_path / "bad" / "gl.toml"
    bad.parent.mkdir()
    bad.write_text('[models.tiny.variants.q4]\ngguf = "m.gguf"\n[models.tiny.variants.q8]\ngguf = "q8.gguf"\n')
    code, out, err = gl("check", "--config", bad)
    assert code == 1
    assert "models.tiny.variants.q4.gguf: file not found" in out
    assert "models.tiny.variants.q8.gguf: file not found" in out
    assert "2 problems" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[models\n")
    code, out, err = gl("check", "--config", broken)
    assert code == 2 and f"{broken} (line 1): is not valid TOML" in err
    code, out, err = gl("check", "--config", tmp_path / "absent.toml")
    assert code == 2 and "absent.toml: file not found" in err


def test_gl_check_lints_the_modelfile_each_present_variant_would_get(gl, tmp_path):
    tiny_gguf.write(tmp_path / "m.gguf")  # a ChatML vocabulary and chat template
    p = write(tmp_path, '[models.tiny.variants.q4]\ngguf = "m.gguf"\nfamily = "gemma3"\n')
    code, out, _ = gl("check", "--config", p)
    assert code == 1
    assert "models.tiny.variants.q4: Modelfile (gemma3): stop <end_of_turn> is not a token of m.gguf" in out


def test_the_gemma4_turbo_example_reports_its_missing_files(gl, tmp_path):
    shutil.copy(REPO / "examples" / "gemma4-turbo" / "gl.toml", tmp_path / "gl.toml")
    code, out, err = gl("check", "--config", tmp_path / "gl.toml")
    assert code == 1
    assert "models.gemma4-turbo.variants.e2b.gguf: file not found" in out
    assert "models.gemma4-turbo.variants.e4b.gguf: file not found" in out
    assert "2 variants, 2 problems" in err


def test_unknown_recipe_is_a_problem(gl, tmp_path):
    p = write(tmp_path, '[models.t.variants.q]\nbuild = { base = "pkg:gemma3-270m-f16", recipe = "magic" }\n')
    code, out, _ = gl("check", "--config", p)
    assert code == 1 and "models.t.variants.q.build.recipe: unknown recipe 'magic'; installed recipes: budget, protect, uniform" in out


def test_a_build_can_be_guarded_and_says_so(tmp_path):
    from gl_plugins.publish.preflight import describe_build

    cfg = load_config(write(tmp_path, '[models.t.variants.q]\nbuild = { base = "pkg:gemma3-270m-f16", '
                                      'recipe = "budget", options = { target_bpw = 6.88 }, guard = true }\n'))
    assert messages(cfg) == []
    v = cfg.variants["t:q"]
    assert v.build.guard is True
    assert describe_build(v).endswith("by recipe budget {\"target_bpw\": 6.88}, guarded by the stock type of "
                                      "nearest size")


@pytest.mark.parametrize("build, problem", [
    ('{ base = "pkg:gemma3-270m-f16", base_type = "Q4_K_M", guard = true }',
     "models.t.variants.q.build.guard: compares a plan with llama.cpp's stock type of nearest size; it needs "
     "recipe or map"),
    ('{ base = "pkg:gemma3-270m-f16", recipe = "budget", guard = "yes" }',
     "models.t.variants.q.build.guard: must be true or false, not a string"),
])
def test_a_guard_without_a_plan_or_not_a_boolean_is_a_problem(tmp_path, build, problem):
    cfg = load_config(write(tmp_path, f"[models.t.variants.q]\nbuild = {build}\n"))
    assert problem in messages(cfg)


def test_a_build_can_be_the_floor_and_says_so(tmp_path):
    from gl_plugins.publish.preflight import describe_build

    cfg = load_config(write(tmp_path, '[models.t.variants.q]\nbuild = { base = "pkg:gemma3-270m-f16", floor = { '
                                      'max_kld = 0.3, max_loops = 0.5, range = "6-9", candidates = "budget" } }\n'))
    assert messages(cfg) == []
    b = cfg.variants["t:q"].build
    assert b.floor == {"max_kld": 0.3, "max_loops": 0.5, "low": 6.0, "high": 9.0, "kinds": ("budget",)}
    assert "by its floor (gl floor {" in describe_build(cfg.variants["t:q"])


@pytest.mark.parametrize("floor, problem", [
    ('"yes"', "build.floor: must be a table of gl floor settings"),
    ('{ max_kld = -1 }', "build.floor.max_kld: must be a number above 0, not -1"),
    ('{ max_loops = 2 }', "build.floor.max_loops: must be a number above 0 and at most 1, not 2"),
    ('{ range = "5-2" }', "build.floor.range: must be \"LOW-HIGH\" bits per weight with 0 < LOW < HIGH <= 32, not '5-2'"),
    ('{ candidates = "magic" }', "build.floor.candidates: must be \"stock\", \"budget\" or \"stock,budget\", not 'magic'"),
    ('{ calibrate = 1 }', "build.floor.calibrate: must be true or false, not an integer"),
    ('{ chunks = 0 }', "build.floor.chunks: must be a whole number of chunks, 1 or more, not 0"),
    ('{ gates = 1 }', "build.floor.gates"),
])
def test_a_bad_floor_build_is_a_problem(tmp_path, floor, problem):
    cfg = load_config(write(tmp_path, f'[models.t.variants.q]\nbuild = {{ base = "pkg:gemma3-270m-f16", floor = {floor} }}\n'))
    assert any(problem in m for m in messages(cfg)), messages(cfg)


def test_a_floor_build_takes_no_recipe(tmp_path):
    cfg = load_config(write(tmp_path, '[models.t.variants.q]\nbuild = { base = "pkg:gemma3-270m-f16", '
                                      'recipe = "budget", floor = {} }\n'))
    assert ("models.t.variants.q.build.floor: chooses the file by measurement; give it without recipe, map, "
            "base_type and guard") in messages(cfg)
