"""The Modelfile grammar, as Ollama's parser reads it, and render -> parse round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gl_plugins.modelfile import parse as mf
from gl_plugins.errors import GLError
from gl_plugins.modelfile.templates import FAMILIES, template, template_text


def cmds(text, **kw):
    return [(c.instruction, c.key, c.value) for c in mf.parse(text, **kw).commands]


def test_every_instruction_case_insensitive_with_comments():
    text = """
# a comment line
from ./model.gguf
Parameter stop <end_of_turn>
PARAMETER stop "<eos>"
parameter temperature 0.7
TEMPLATE {{ .Prompt }}
system You are terse.
adapter ./lora.gguf
License MIT
MESSAGE user Hi!
message assistant Hello.
REQUIRES 0.14.0
RENDERER gemma4
PARSER gemma4
DRAFT ./draft.gguf
"""
    assert cmds(text) == [
        ("FROM", "", "./model.gguf"), ("PARAMETER", "stop", "<end_of_turn>"), ("PARAMETER", "stop", "<eos>"),
        ("PARAMETER", "temperature", "0.7"), ("TEMPLATE", "", "{{ .Prompt }}"), ("SYSTEM", "", "You are terse."),
        ("ADAPTER", "", "./lora.gguf"), ("LICENSE", "", "MIT"), ("MESSAGE", "user", "Hi!"),
        ("MESSAGE", "assistant", "Hello."), ("REQUIRES", "", "0.14.0"), ("RENDERER", "", "gemma4"),
        ("PARSER", "", "gemma4"), ("DRAFT", "", "./draft.gguf")]


@pytest.mark.parametrize("text,value", [
    ('FROM "FOO  BAR  "', "FOO  BAR  "),
    ("FROM     FOOO BAR    ", "FOOO BAR"),
    ("FROM /what/is/the path ", "/what/is/the path"),
    ("FROM llama3:7b-instruct-q4_K_M", "llama3:7b-instruct-q4_K_M"),
    ('FROM "     model 1"', "     model 1"),
])
def test_from_values_keep_inner_spaces_and_lose_outer_ones(text, value):
    assert cmds(text) == [("FROM", "", value)]


@pytest.mark.parametrize("body,value", [
    ('"""\nThis is a\nmultiline system.\n"""', "\nThis is a\nmultiline system.\n"),
    ('"""This is a\nmultiline system."""', "This is a\nmultiline system."),
    ('"""\nWith "quotes".\n"""', '\nWith "quotes".\n'),
    ('""""""', ""),
    ('""', ""),
    ('"\'"', "'"),
    ('"""\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
    ('"a" b"', 'a" b'),
    ("hello # not a comment", "hello # not a comment"),
    ("tab\there", "tab\there"),
])
def test_quoted_values(body, value):
    assert cmds(f"FROM foo\nSYSTEM {body}\n")[1] == ("SYSTEM", "", value)


def test_stop_accumulates_and_other_parameters_keep_the_last_value():
    m = mf.parse("FROM x\nPARAMETER stop A\nPARAMETER temperature 1\nPARAMETER stop B\nPARAMETER temperature 0.5\n"
                 "PARAMETER use_mmap false\nPARAMETER num_ctx 4096\nPARAMETER mirostat 1\n")
    assert mf.typed_parameters(m) == {"stop": ["A", "B"], "temperature": 0.5, "use_mmap": False, "num_ctx": 4096}


@pytest.mark.parametrize("line,expected", [
    ("num_ctx 1", 1), ("num_ctx +2048", 2048), ("top_p 1.0", 1.0), ("min_p 0.05", 0.05), ("temperature 1", 1.0),
    ("use_mmap true", True), ("use_mmap T", True), ("use_mmap 0", False), ("seed -1", -1),
])
def test_parameter_types(line, expected):
    name, raw = line.split(" ", 1)
    assert mf.parameter_value(name, raw) == expected


@pytest.mark.parametrize("name,raw,words", [
    ("num_ctx", "4k", "integer"), ("num_ctx", "1.5", "integer"), ("temperature", "warm", "number"),
    ("use_mmap", "yes", "true or false"), ("Temperature", "1", "unknown parameter"),
])
def test_parameter_type_errors(name, raw, words):
    with pytest.raises(ValueError, match=words):
        mf.parameter_value(name, raw)


def test_typed_parameters_names_the_line_of_a_bad_value():
    with pytest.raises(GLError, match=r"Modelfile \(line 3\): top_k takes an integer, not 'many'"):
        mf.typed_parameters(mf.parse("FROM x\nPARAMETER stop a\nPARAMETER top_k many\n"))


@pytest.mark.parametrize("text,line,words", [
    ("FROM foo\nBADCOMMAND param1 value1\n", 2, "'BADCOMMAND' is not an instruction"),
    ("FROM foo\nPARAMETER param1\n", 2, "PARAMETER param1 has no value"),
    ("FROM foo\nPARAMETER top-k 3\n", 2, "may hold only letters, digits and '_'"),
    ("FROM foo\nMESSAGE badguy I'm a bad guy!\n", 2, "MESSAGE role 'badguy' must be one of"),
    ("FROM foo\nMESSAGE system\n", 2, "MESSAGE needs a role and a value"),
    ("\n\nFROM foo\nSYSTEM \"\"\"unterminated\n\n", 4, "never closed"),
    ('FROM foo\nSYSTEM """This is a multiline system.""\n', 2, "never closed"),
    ("FROM\n", 1, "FROM has no value"),
    ("FROM foo\nSYSTEM", 2, "the file ends inside"),
])
def test_syntax_errors_name_the_line(text, line, words):
    with pytest.raises(mf.ModelfileError) as e:
        mf.parse(text)
    assert e.value.line == line
    assert words in str(e.value)


def test_from_is_required():
    for text in ("", "PARAMETER stop x\n", "# only a comment\n"):
        with pytest.raises(mf.ModelfileError, match="no FROM line"):
            mf.parse(text)
    assert cmds("PARAMETER param1 value1\nFROM foo") == [("PARAMETER", "param1", "value1"), ("FROM", "", "foo")]


def test_utf16_and_bom_files_are_read():
    text = "FROM bob\nSYSTEM You are a utf16 file.\n"
    for data in (b"\xff\xfe" + text.encode("utf-16-le"), b"\xfe\xff" + text.encode("utf-16-be"),
                 b"\xef\xbb\xbf" + text.encode()):
        assert cmds(data)[1] == ("SYSTEM", "", "You are a utf16 file.")


def test_crlf_line_numbers_count_once():
    with pytest.raises(mf.ModelfileError) as e:
        mf.parse("FROM a\r\nSYSTEM ok\r\nNOPE x\r\n")
    assert e.value.line == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_family_templates_round_trip(family):
    m = template(family)
    assert m.from_ == "./model.gguf"
    assert (m.template or m.last("RENDERER")) and m.all("PARAMETER")
    again = mf.parse(mf.render(m, header="re-rendered"))
    assert again.same(m)
    assert ("TEMPLATE" if m.template else "RENDERER") in template_text(family)


def test_gemma4_is_rendered_by_ollama_with_the_library_parameters():
    """Ollama renders Gemma 4 itself (server/create.go createModel); a TEMPLATE would go unused."""
    m = template("gemma4")
    assert (m.template, m.last("RENDERER"), m.last("PARSER"), m.last("REQUIRES")) == (None, "gemma4", "gemma4",
                                                                                       "0.20.0")
    assert mf.typed_parameters(m) == {"stop": ["<turn|>"], "temperature": 1.0, "top_k": 64, "top_p": 0.95}


def test_gemma3_template_has_ollamas_library_parameters():
    p = mf.typed_parameters(template("gemma3"))
    assert p == {"stop": ["<end_of_turn>"], "temperature": 1.0, "top_k": 64, "top_p": 0.95}


def test_render_chooses_a_quoting_that_survives():
    assert mf.quote("plain") == "plain"
    assert mf.quote(" lead") == '" lead"'
    assert mf.quote("two\nlines") == '"""two\nlines"""'
    assert mf.quote('"quoted"') == '""""quoted""""'
    assert mf.quote("") == '""'
    with pytest.raises(GLError, match="cannot be written in a Modelfile"):
        mf.quote('say """hi"""\nnow')


_value = st.lists(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Co", "Cn")) | st.sampled_from(
    ["\n", "\t", '"', '"""', " ", "#", "{{ .Prompt }}"]), max_size=20).map("".join)
_command = st.one_of(
    st.builds(lambda v: mf.Command("SYSTEM", v), _value),
    st.builds(lambda v: mf.Command("TEMPLATE", v), _value),
    st.builds(lambda v: mf.Command("LICENSE", v), _value),
    st.builds(lambda k, v: mf.Command("PARAMETER", v, k), st.sampled_from(["stop", "temperature", "x_1"]), _value),
    st.builds(lambda r, v: mf.Command("MESSAGE", v, r), st.sampled_from(mf.ROLES), _value),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_command, max_size=6), _value.filter(lambda v: v.strip() != ""))
def test_render_parse_round_trip(commands, source):
    m = mf.Modelfile([mf.Command("FROM", source), *commands])
    try:
        text = mf.render(m)
    except GLError:
        # only values no quoting can carry are refused: check the claim for each value
        for c in m.commands:
            try:
                mf.quote(c.value, c.instruction, c.key)
            except GLError:
                for candidate in (c.value, f'"{c.value}"', f'"""{c.value}"""'):
                    head = f"{c.instruction} {c.key} " if c.key else f"{c.instruction} "
                    try:
                        got = mf.parse(head + candidate + "\n", require_from=False).commands
                    except GLError:
                        continue
                    assert [x.value for x in got] != [c.value]
        return
    assert mf.parse(text).same(m)
