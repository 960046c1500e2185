"""``--format sarif``: findings for CI code scanning, valid against the official SARIF 2.1.0 schema.

Story: CI runs gl's linters and auditors with ``--format sarif`` and uploads
the log; every finding must arrive as a result with its rule (the finding
code), its level, and where it is: the file and line, or the tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gl_plugins.facts import load_facts
from gl_plugins.findings import Finding
from gl_plugins.sarif import to_sarif
from synth import write_model
from imatrix_files import forward_pass_entries, write_gguf_imatrix

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def valid(doc: dict) -> dict:
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return doc


def results(doc: dict) -> list[dict]:
    (run,) = doc["runs"]
    return run["results"]


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_model(tmp_path / "tiny.gguf", n_layer=12, hidden=256, ffn=512)
    return tmp_path / "tiny.gguf"


def test_the_schema_is_the_official_one():
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert SCHEMA["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    # it rejects what it should: a result without a message, an unknown level
    bad = to_sarif([Finding("error", "x-code", "m", file="gl.toml")], command="gl check")
    del bad["runs"][0]["results"][0]["message"]
    assert list(VALIDATOR.iter_errors(bad))
    bad = to_sarif([Finding("error", "x-code", "m")], command="gl check")
    bad["runs"][0]["results"][0]["level"] = "fatal"
    assert list(VALIDATOR.iter_errors(bad))


def test_plan_lint_findings_carry_their_line(gl, model):
    Path("map.txt").write_text("ffn_down\\.weight=q4_k\nblk\\.1=q8_0\nffn_down\\.weight=q8_0\n")
    code, out, _ = gl("plan", "lint", model, "--map", "map.txt", "--base-type", "Q4_K_M", "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 1  # the exit status does not depend on the format
    by_rule = {r["ruleId"]: r for r in results(doc)}
    assert {"pattern-overreach", "rule-shadowed"} <= set(by_rule)
    shadowed = by_rule["rule-shadowed"]
    assert shadowed["level"] == "error"
    assert shadowed["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "map.txt", "uriBaseId": "%SRCROOT%"}, "region": {"startLine": 3}}
    assert by_rule["pattern-overreach"]["locations"][0]["physicalLocation"]["region"] == {"startLine": 2}
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(dict.fromkeys(r["ruleId"] for r in results(doc)))
    for r in results(doc):
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    # --json is unchanged, and contradicting formats are refused
    code, out, _ = gl("plan", "lint", model, "--map", "map.txt", "--base-type", "Q4_K_M", "--json")
    assert code == 1 and "findings" in json.loads(out)
    code, _, err = gl("plan", "lint", model, "--map", "map.txt", "--json", "--format", "sarif")
    assert code == 2 and "--json and --format sarif contradict each other" in err


def test_imatrix_audit_findings_name_their_tensors(gl, model):
    facts = load_facts(model)
    write_gguf_imatrix("tiny.imatrix.gguf", forward_pass_entries(facts, skip=lambda n: n.startswith("blk.7.")))
    code, out, _ = gl("imatrix", "audit", model, "--imatrix", "tiny.imatrix.gguf", "--quant", "IQ2_XS",
                      "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 1
    gaps = [r for r in results(doc) if r["ruleId"].startswith("imatrix-missing")]
    assert gaps and all(r["level"] == "error" for r in gaps)
    named = {loc["logicalLocations"][0]["name"] for r in gaps for loc in r["locations"]}
    assert any(n.startswith("blk.7.") for n in named)
    for r in gaps:  # code scanning needs a file: the imatrix the audit read
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "tiny.imatrix.gguf"
        assert "IQ2_XS cannot be made without importance data" in r["message"]["text"]


def test_modelfile_lint_levels_and_a_clean_run(gl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("Modelfile").write_text("PARAMETER temperature hot\nPARAMETER Top_k 40\n")
    code, out, _ = gl("modelfile", "lint", "Modelfile", "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 1
    levels = {r["ruleId"]: r["level"] for r in results(doc)}
    assert levels["modelfile-no-from"] == "error" and levels["modelfile-no-stop"] == "warning"
    lines = {r["ruleId"]: r["locations"][0]["physicalLocation"].get("region") for r in results(doc)}
    assert lines["modelfile-parameter-type"] == {"startLine": 1} and lines["modelfile-unknown-parameter"] == {
        "startLine": 2}
    Path("Modelfile").write_text("FROM llama3.2\nTEMPLATE {{ .Prompt }}\nPARAMETER stop <|eot_id|>\n")
    code, out, _ = gl("modelfile", "lint", "Modelfile", "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 0 and results(doc) == [] and doc["runs"][0]["tool"]["driver"]["rules"] == []


def test_files_outside_the_folder_are_absolute_uris_and_info_is_a_note(tmp_path):
    (tmp_path / "a b ü.txt").write_text("four\nlines\nof\ntext\n")
    doc = valid(to_sarif([Finding("info", "base-type-assumed", "assuming Q4_K_M", "plan-lint", file="/etc/hosts"),
                          Finding("warning", "odd name", "a space and ü", file=str(tmp_path / "a b ü.txt"), line=4,
                                  tensor="blk.0.attn_q.weight", evidence="x", hint="y")],
                         command="gl plan lint", base=tmp_path / "sub"))
    first, second = results(doc)
    assert first["level"] == "note"
    assert first["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file:///etc/hosts"}
    loc = second["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == (tmp_path / "a b ü.txt").as_uri()
    assert loc["logicalLocations"] == [{"name": "blk.0.attn_q.weight", "fullyQualifiedName": "blk.0.attn_q.weight",
                                        "kind": "object"}]
    assert second["properties"] == {"tensor": "blk.0.attn_q.weight", "hint": "y", "evidence": "x"}


def test_a_rule_takes_the_most_severe_level_of_its_findings():
    doc = valid(to_sarif([Finding("warning", "pattern-lowercased", "a"), Finding("error", "pattern-lowercased", "b")],
                         command="gl plan lint"))
    (rule,) = doc["runs"][0]["tool"]["driver"]["rules"]
    assert rule["defaultConfiguration"]["level"] == "error"
    assert [r["level"] for r in results(doc)] == ["warning", "error"]


def test_validate_findings_for_code_scanning(gl, model):
    # a truncated GGUF: structure reports it, the other validators cannot judge it
    data = model.read_bytes()
    Path("cut.gguf").write_bytes(data[: len(data) // 2])
    code, out, _ = gl("validate", "cut.gguf", "--only", "structure,bpw", "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 1
    by_rule = {r["ruleId"]: r for r in results(doc)}
    assert by_rule["structure-unreadable"]["level"] == "error"
    assert by_rule["validator-skipped"]["level"] == "note"
    for r in results(doc):  # every result sits on the file validated
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "cut.gguf"
    code, out, _ = gl("validate", model, "--only", "structure", "--format", "sarif")
    doc = valid(json.loads(out))
    assert code == 0 and [r["ruleId"] for r in results(doc)] == ["structure-ok"]
