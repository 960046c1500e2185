"""One CLI grammar: the model is MODEL or --model, --imatrix is a FILE, --format everywhere, one error prefix.

Story: a user who learnt one command can guess the next. Old spellings still work for this release
and say, on stderr, what to write instead.
"""

from __future__ import annotations

import json

import pytest

import tiny_gguf
from gl_plugins.facts import load_facts
from imatrix_files import forward_pass_entries, write_gguf_imatrix

DEPRECATED = "is deprecated and will be removed in the next release; use"


@pytest.fixture(scope="module")
def imatrix(synthetic_model, tmp_path_factory):
    entries = forward_pass_entries(load_facts(synthetic_model))
    return write_gguf_imatrix(tmp_path_factory.mktemp("imx") / "i.gguf", entries)


@pytest.fixture
def map_file(tmp_path):
    p = tmp_path / "map.txt"
    p.write_text("ffn_up=q4_0\n")
    return p


@pytest.mark.parametrize("command", [
    ["inspect"], ["predict", "-q", "Q4_K_M"], ["plan", "--recipe", "uniform", "--type", "Q8_0"],
    ["validate", "--only", "structure,bpw"],
])
def test_the_model_is_the_positional_argument_or_model_alike(gl, synthetic_model, command):
    by_position = gl(*command[:1], synthetic_model, *command[1:], "--json")
    by_option = gl(*command[:1], "--model", synthetic_model, *command[1:], "--json")
    assert by_position[0] == by_option[0] == 0, by_position[2] + by_option[2]
    assert json.loads(by_position[1]) == json.loads(by_option[1])
    code, _, err = gl(*command[:1], synthetic_model, "--model", synthetic_model, *command[1:])
    assert code == 2 and "gl: error: give the model once: as MODEL" in err


def test_imatrix_audit_takes_the_model_and_imatrix_file_like_every_command(gl, synthetic_model, imatrix):
    new = gl("imatrix", "audit", synthetic_model, "--imatrix", imatrix, "--quant", "Q4_K_M", "--json")
    assert new[0] == 0 and new[2] == ""
    by_option = gl("imatrix", "audit", "--model", synthetic_model, "--imatrix", imatrix, "--quant", "Q4_K_M", "--json")
    assert by_option[1] == new[1]
    code, out, err = gl("imatrix", "audit", imatrix, "--model", synthetic_model, "--quant", "Q4_K_M", "--json")
    assert (code, out) == (0, new[1])
    assert err == (f"gl: warning: `gl imatrix audit FILE --model MODEL` {DEPRECATED} "
                   f"`gl imatrix audit MODEL --imatrix FILE`\n")
    code, _, err = gl("imatrix", "audit", synthetic_model, "--quant", "Q4_K_M")
    assert code == 2 and "gl: error: Missing option '--imatrix FILE'" in err


def test_plan_lint_is_a_subcommand_taking_the_model_and_the_map(gl, synthetic_model, map_file):
    code, out, _ = gl("plan", "lint", "--help")
    assert code == 0 and out.startswith("Usage: gl plan lint [OPTIONS] MODEL\n")
    new = gl("plan", "lint", synthetic_model, "--map", map_file, "--base-type", "Q8_0", "--json")
    assert new[2] == ""
    code, out, err = gl("plan", "lint", map_file, "--model", synthetic_model, "--base-type", "Q8_0", "--json")
    assert (code, out) == (new[0], new[1])
    assert err == f"gl: warning: `gl plan lint MAP --model MODEL` {DEPRECATED} `gl plan lint MODEL --map MAP`\n"


def test_plan_lint_imatrix_names_a_file_and_the_old_flag_still_works(gl, synthetic_model, map_file, imatrix):
    with_file = json.loads(gl("plan", "lint", synthetic_model, "--map", map_file, "--base-type", "IQ2_XS", "--imatrix",
                              imatrix, "--json")[1])
    without = json.loads(gl("plan", "lint", synthetic_model, "--map", map_file, "--base-type", "IQ2_XS", "--json")[1])
    assert "needs-imatrix" in {f["code"] for f in without["findings"]}
    assert "needs-imatrix" not in {f["code"] for f in with_file["findings"]}
    code, out, err = gl("plan", "lint", synthetic_model, "--map", map_file, "--base-type", "IQ2_XS", "--imatrix",
                        "--json")
    assert json.loads(out)["findings"] == with_file["findings"]
    assert err == f"gl: warning: --imatrix without a FILE {DEPRECATED} --imatrix FILE (the importance matrix " \
                  f"llama-quantize will get)\n"


def test_gl_check_takes_the_config_as_gl_publish_does(gl, tmp_path):
    tiny_gguf.write(tmp_path / "tiny.gguf")
    cfg = tmp_path / "gl.toml"
    cfg.write_text('[models.tiny]\nfamily = "qwen2.5"\n\n[models.tiny.variants.q4]\ngguf = "tiny.gguf"\n')
    new = gl("check", "--config", cfg, "--json")
    assert new[0] == 0, new[2]
    code, out, err = gl("check", cfg, "--json")
    assert (code, out) == (0, new[1])
    assert err == f"gl: warning: `gl check GL_TOML` {DEPRECATED} `gl check --config GL_TOML`\n"
    code, out, _ = gl("check", "--config", cfg, "--format", "sarif")
    assert code == 0 and json.loads(out)["version"] == "2.1.0"


def test_modelfile_commands_take_the_model_as_model_and_still_accept_gguf(gl, tmp_path):
    gguf = tiny_gguf.write(tmp_path / "tiny.gguf")
    mf = tmp_path / "Modelfile"
    mf.write_text("FROM ./tiny.gguf\nPARAMETER stop <|im_end|>\n")
    new = gl("modelfile", "lint", mf, "--model", gguf, "--json")
    code, out, err = gl("modelfile", "lint", mf, "--gguf", gguf, "--json")
    assert (code, out) == new[:2]
    assert err.startswith(f"gl: warning: --gguf {DEPRECATED} --model\n")
    assert gl("modelfile", "render", "--model", gguf, "--family", "qwen2.5")[1] == \
        gl("modelfile", "render", "--gguf", gguf, "--family", "qwen2.5")[1]


@pytest.mark.parametrize("command", [["inspect"], ["predict", "-q", "Q2_K"], ["plan", "--recipe", "uniform",
                                                                              "--type", "Q8_0"]])
def test_format_json_and_json_are_one_option(gl, synthetic_model, command):
    assert gl(*command[:1], synthetic_model, *command[1:], "--format", "json")[1] == \
        gl(*command[:1], synthetic_model, *command[1:], "--json")[1]
    code, _, err = gl(*command[:1], synthetic_model, *command[1:], "--json", "--format", "text")
    assert code == 2 and "gl: error: --json and --format text contradict each other; give one" in err


@pytest.mark.parametrize("args", [["plan"], ["inspect", "--nope"], ["nosuch"], ["plan", "lint"]])
def test_every_error_has_one_prefix(gl, args):
    code, _, err = gl(*args)
    assert code == 2
    assert [line for line in err.splitlines() if "rror:" in line][0].startswith("gl: error: ")
    assert "Error:" not in err
