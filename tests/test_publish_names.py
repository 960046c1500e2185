"""Ollama model names: parts, defaults and the rules of FACTS.md."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ollama_fake
import tiny_gguf
from gl_plugins.publish.names import ModelName, NameError_, is_valid, parse_name


@pytest.mark.parametrize("text,parts", [
    ("gemma3", ("registry.ollama.ai", "library", "gemma3", "latest")),
    ("gemma3-270m:q4", ("registry.ollama.ai", "library", "gemma3-270m", "q4")),
    ("lab/gemma4-turbo:e4b", ("registry.ollama.ai", "lab", "gemma4-turbo", "e4b")),
    ("ollama.com/lab/m:1.0", ("ollama.com", "lab", "m", "1.0")),
    ("localhost:5000/team/model", ("localhost:5000", "team", "model", "latest")),
    ("https://example.com/ns/m:t", ("example.com", "ns", "m", "t")),
    ("_under/_score:_tag", ("registry.ollama.ai", "_under", "_score", "_tag")),
    ("qwen2.5:7b-instruct-q4_K_M", ("registry.ollama.ai", "library", "qwen2.5", "7b-instruct-q4_K_M")),
])
def test_valid_names_and_defaults(text, parts):
    n = parse_name(text)
    assert (n.host, n.namespace, n.model, n.tag) == parts


@pytest.mark.parametrize("text,words", [
    ("", "is empty"),
    ("model:", "tag '' is empty"),
    ("-model", "model '-model' must start with a letter, a digit or '_'"),
    ("my.team/model", "namespace 'my.team' contains '.'"),
    ("model:tag!", "tag 'tag!' contains '!'"),
    ("mo del", "model 'mo del' contains ' '"),
    ("a" * 81, "is 81 characters long; at most 80"),
    ("ns/" + "b" * 81 + ":t", "model"),
    ("m:" + "t" * 81, "tag"),
    ("x/y/z/w", "host 'x/y' contains '/'"),
    ("model@sha256:abc", "a digest"),
    ("/model", "namespace '' is empty"),
])
def test_invalid_names_say_which_part_and_why(text, words):
    with pytest.raises(NameError_) as e:
        parse_name(text)
    assert words in str(e.value)


def test_short_and_full_spellings():
    n = parse_name("gemma3-270m:q4")
    assert (n.short(), n.full()) == ("gemma3-270m:q4", "registry.ollama.ai/library/gemma3-270m:q4")
    assert n.with_namespace("lab").short() == "lab/gemma3-270m:q4"
    assert parse_name("host.io/ns/m:t").short() == "host.io/ns/m:t"
    assert parse_name("Gemma:Q4").same(parse_name("gemma:q4"))
    with pytest.raises(NameError_, match="namespace 'la.b'"):
        n.with_namespace("la.b")


_names = st.text(st.sampled_from("aZ9_-.:/ !@é"), min_size=0, max_size=12)


@settings(max_examples=500, deadline=None)
@given(_names)
def test_gl_and_the_fake_server_agree_on_validity(text):
    """Two independent readings of the FACTS.md rules: gl's parser and the test server's."""
    if "@" in text:
        return  # digests are outside gl's names
    assert is_valid(text) == (ollama_fake.parse_name(text) is not None), text


def test_model_name_is_frozen():
    n = ModelName("h", "n", "m", "t")
    with pytest.raises(AttributeError):
        n.tag = "x"


@pytest.mark.parametrize("tag", ["cloud", "CLOUD", "7b-cloud", "local", "Local"])
def test_tags_ollama_sends_elsewhere_are_refused(tag):
    """internal/modelref parseSourceSuffix: NAME:cloud and NAME:TAG-cloud go to ollama.com, NAME:local is latest."""
    from gl_plugins.publish.names import publishable

    with pytest.raises(NameError_, match=rf"model name 'm:{tag}': tag '{tag}' is reserved: Ollama "):
        publishable(parse_name(f"m:{tag}"))
    assert publishable(parse_name("m:cloudy")).tag == "cloudy"


def test_a_reserved_tag_in_gl_toml_is_one_clear_error(gl, tmp_path):
    (tmp_path / "gl.toml").write_text('[models.m]\n[models.m.variants."7b-cloud"]\ngguf = "m.gguf"\n')
    tiny_gguf.write(tmp_path / "m.gguf")
    code, out, err = gl("check", "--config", tmp_path / "gl.toml")
    assert code == 1 and "Traceback" not in err
    assert ("models.m.variants.7b-cloud: tag '7b-cloud' is reserved: Ollama sends NAME:cloud and NAME:TAG-cloud "
            "to ollama.com, not to a local model") in out + err
