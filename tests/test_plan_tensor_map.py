"""Reading tensor-type maps as llama-quantize does, and writing maps that match exactly what they name."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gl_plugins.plan.tensor_map import (MapSyntaxError, PatternError, compile_pattern, escape_name, match_sets,
                                   parse_map_bytes, read_map, render, required_literal, rules_for, write_map)


def test_tokens_are_whitespace_separated_and_patterns_lowercased(tmp_path):
    p = tmp_path / "map.txt"
    p.write_bytes(b"  BLK\\.1\\.Attn_V=Q4_K\tffn_up=q5_k\n\n\r\nx=IQ4_xs\x0bffn_down=F16\n")
    rules = read_map(p)
    assert [(r.written, r.pattern, r.type, r.line, r.index) for r in rules] == [
        ("BLK\\.1\\.Attn_V", "blk\\.1\\.attn_v", "Q4_K", 1, 1), ("ffn_up", "ffn_up", "Q5_K", 1, 2),
        ("x", "x", "IQ4_XS", 4, 3), ("ffn_down", "ffn_down", "F16", 4, 4)]


def test_type_after_first_equals_must_be_a_type(tmp_path):
    p = tmp_path / "map.txt"
    p.write_text("a=b=q8_0\n")
    with pytest.raises(MapSyntaxError) as e:
        read_map(p)
    assert e.value.line == 1 and "invalid ggml type 'b=q8_0'" in str(e.value)


@pytest.mark.parametrize("text,line,needle", [
    ("blk.0=q4_k\n# protect attention\n", 2, "'#'"),
    ("ffn_up = q4_k\n", 1, "malformed tensor type"),   # spaces split the rule into three tokens
    ("=q4_k\n", 1, "missing tensor name"),
    ("blk.0.\n", 1, "malformed tensor type"),
    ("a=q4_k\nffn=\n", 2, "missing quantization type"),
    ("a=q4_k\n\n\nffn=q9_k\n", 4, "invalid ggml type 'q9_k'"),
])
def test_rejected_tokens_name_token_and_line(tmp_path, text, line, needle):
    p = tmp_path / "map.txt"
    p.write_text(text)
    with pytest.raises(MapSyntaxError) as e:
        read_map(p)
    assert e.value.line == line
    msg = str(e.value)
    assert needle in msg and str(p) in msg and f"line {line}" in msg
    assert "\n" not in msg


def test_missing_map_file_is_one_sentence(tmp_path):
    from gl_plugins.errors import InputError

    with pytest.raises(InputError) as e:
        read_map(tmp_path / "nope.txt")
    assert "nope.txt" in str(e.value) and "not found" in str(e.value)


@pytest.mark.parametrize("pattern,reason", [
    ("(?p<x>blk)", "groups"), ("(?<=blk)x", "groups"), ("(?i)blk", "groups"), ("a*+", "possessive"),
    ("blk\\", "backslash"), ("[abc", "unterminated"), ("*a", "repeat"), ("\\z", "escape"), ("(ab", "missing"),
])
def test_python_only_or_broken_regex_is_refused(pattern, reason):
    with pytest.raises(PatternError) as e:
        compile_pattern(pattern)
    assert reason in str(e.value)


@pytest.mark.parametrize("pattern", [r"^blk\.(?:0|1)\.attn_v\.weight$", r"ffn_(up|gate)", r"\d+", r"[^a-z]",
                                     r"attn_(?!k)", r"blk\.1\b", r"x{2,3}"])
def test_ecmascript_regex_is_accepted(pattern):
    compile_pattern(pattern)


NAME = st.from_regex(r"(blk\.[0-9]{1,3}\.)?[a-z_]{1,12}(\.[a-z0-9_]{1,6})?\.weight", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(NAME, st.sampled_from(["Q4_K", "Q6_K", "Q8_0", "IQ4_XS"]), min_size=1, max_size=40),
       st.lists(NAME, max_size=20))
def test_written_rules_match_exactly_the_named_tensors(types, others):
    names = sorted(set(types) | set(others))
    rules = rules_for(types)
    hits = match_sets([p.lower() for p, _ in rules], names)
    owner = {}
    for (pattern, t), idx in zip(rules, hits):
        for i in idx:
            assert names[i] not in owner, f"{names[i]} matched by two rules"
            owner[names[i]] = t
    assert owner == types


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30))
def test_escaped_names_survive_lowercasing_and_match_only_themselves(name):
    rx = compile_pattern(f"^{escape_name(name)}$".lower())
    assert rx.search(name)
    assert not rx.search(name + "x") and not rx.search("x" + name)


PAT = st.sampled_from([r"blk.1", r"blk\.1\.", r"ffn_(up|down)", r"^blk\.(?:0|5)\.ffn_up\.weight$", r"attn_v?\.w",
                       r"\d+\.ffn", "up|down", "n.", r"_[a-z]+\.w", "x*", "$", "^", "(?!a)", "[^a]+", r"\s*",
                       r"weight$", "^o", r"t\b", "(?=.)", r".*k\.w", r"\bw", "a{0}", r"(ab)+", "e{2}", "^$"])


@settings(max_examples=100, deadline=None)
@given(st.lists(PAT, min_size=1, max_size=8), st.lists(NAME, min_size=1, max_size=40))
def test_fast_matching_equals_searching_every_name(patterns, names):
    got = match_sets(patterns, names)
    want = [[i for i, n in enumerate(names) if re.search(p, n)] for p in patterns]
    assert got == want


def test_required_literal_is_contained_in_every_match():
    assert required_literal(r"^blk\.5\.attn_v\.weight$") == "blk.5.attn_v.weight"
    assert required_literal(r"^blk\.(?:0|5)\.ffn_up\.weight$") == ".ffn_up.weight"
    assert required_literal("up|down") == ""
    assert required_literal(r"attn_v?\.w") == "attn_"


def test_render_and_write_produce_a_map_llama_quantize_parses(tmp_path):
    rules = rules_for({"blk.0.attn_v.weight": "Q6_K", "blk.1.attn_v.weight": "Q6_K", "output.weight": "Q8_0",
                       "Token_Embd.weight": "Q8_0"})
    text = render(rules)
    assert "#" not in text and " " not in text
    assert text.splitlines() == [r"^\x54oken_\x45mbd\.weight$=q8_0", r"^output\.weight$=q8_0",
                                 r"^blk\.(?:0|1)\.attn_v\.weight$=q6_k"]
    p = tmp_path / "sub" / "map.txt"
    p.parent.mkdir()
    write_map(p, rules)
    assert [(r.pattern, r.type) for r in read_map(p)] == [(pt.lower(), t) for pt, t in rules]
    assert parse_map_bytes(p.read_bytes(), "x")[0].line == 1
    assert list(p.parent.iterdir()) == [p]  # no temporary file left behind
