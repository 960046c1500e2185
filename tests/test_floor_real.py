"""gl floor on the real Gemma 3 270M: every candidate quantized by llama-quantize and measured by
llama-perplexity and llama-completion against the F16 base; the rerun comes from the cache."""

from __future__ import annotations

import json
import os

import pytest

from gl_plugins.predict.evidence import read_evidence

pytestmark = pytest.mark.slow

ARGS = ("--range", "6-9")  # gates: mean KLD <= 0.3 and loops <= 0.5 (the defaults); tolerance 0.1 bpw


@pytest.fixture(scope="module")
def searched(gemma_f16, tmp_path_factory):
    """One search with its report, its evidence and the kept file (the module's tests read it)."""
    from conftest import GL

    tmp = tmp_path_factory.mktemp("floor")
    code, out, err = GL()("floor", gemma_f16, *ARGS, "--json", "--report", tmp / "report",
                          "--evidence", tmp / "evidence.jsonl", "--keep", tmp / "floor.gguf")
    assert code == 0, err
    return tmp, json.loads(out), err


def test_the_floor_passes_and_the_stock_type_below_it_fails(searched):
    _, doc, err = searched
    cands = {(c["kind"], c["name"]): c for c in doc["candidates"]}
    stock = doc["floor"]["stock"]
    assert stock is not None and cands[("stock", stock["type"])]["verdict"] == "pass"
    assert stock["kld_mean"] <= 0.3 and 6 <= stock["bpw"] <= 9
    below = [c for c in doc["candidates"] if c["kind"] == "stock" and c["bpw"] < stock["bpw"]]
    assert all(c["verdict"] == "fail" for c in below)
    for c in doc["candidates"]:
        passes = c["kld"]["mean"] <= 0.3 and (c["loops"] or 0) <= 0.5 and not c["why"]
        assert c["verdict"] == ("pass" if passes else "fail")
        assert set(c["kld"]) >= {"mean", "p99", "same_top_p"} and c["bytes"] > 0
    # one progress line per measured candidate, with the verdict
    assert sum(1 for line in err.splitlines() if line.startswith("[")) == len(doc["candidates"])


def test_the_budget_floor_is_found_to_within_the_tolerance(searched):
    _, doc, _ = searched
    budget = doc["floor"]["budget"]
    assert budget is not None and budget["kld_mean"] <= 0.3
    below = [c["target"] for c in doc["candidates"] if c["kind"] == "budget" and c["target"] < budget["target"]]
    # measured: on this model budget passes down to the bottom of the range, so the floor lies within
    # the tolerance of it (else within the tolerance of a failing target)
    assert budget["target"] - max(below + [6.0]) <= 0.1 + 1e-9
    if doc["floor"]["stock"]:
        assert doc["gain_bytes"] == doc["floor"]["stock"]["bytes"] - budget["bytes"]


def test_the_kept_file_is_the_smallest_passing_one(searched, gl):
    tmp, doc, _ = searched
    floors = [f for f in doc["floor"].values() if f]
    smallest = min(floors, key=lambda f: f["bytes"])
    kept = tmp / "floor.gguf"
    assert doc["kept"] == os.fspath(kept) and kept.stat().st_size == smallest["bytes"]
    code, _, err = gl("validate", kept, "--only", "plan-match,bpw")
    assert code == 0, err


def test_the_report_has_its_picture_table_and_commands(searched):
    tmp, doc, _ = searched
    md = (tmp / "report" / "report.md").read_text()
    assert (tmp / "report" / "floor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![mean KLD against bits per weight](floor.png)" in md and "| candidate | bpw |" in md
    for c in doc["candidates"]:
        assert f"| {c['kind']} {c['name']} | {c['bpw']:.3f} |" in md
    assert "gl floor " in md and "--range 6-9" in md and "gl quantize " in md and "gl validate " in md


def test_evidence_lines_read_back_and_plans_are_told_apart(searched):
    tmp, doc, _ = searched
    obs = read_evidence(tmp / "evidence.jsonl")
    assert len(obs) == len(doc["candidates"])
    for o, c in zip(obs, doc["candidates"]):
        assert o.outcome == ("works" if c["verdict"] == "pass" else "fails")
        assert o.figures["kld_mean"] == c["kld"]["mean"] and o.figures["bpw"] == pytest.approx(c["bpw"], abs=1e-4)
        assert (o.plan is None) == (c["kind"] == "stock" and not c["remedy"])
        assert o.note.startswith("gl floor (mean KLD <= 0.3, loops <= 0.5): ")


def test_a_rerun_comes_from_the_cache_and_impossible_gates_exit_1(searched, gl, gemma_f16):
    _, doc, _ = searched
    code, out, err = gl("floor", gemma_f16, *ARGS, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["floor"] == doc["floor"] and all(c["cached"] for c in again["candidates"])
    assert again["seconds"] < 30
    code, out, err = gl("floor", gemma_f16, "--range", "6.9-7.03", "--max-kld", "1e-9", "--candidates", "stock",
                        "--json")
    assert code == 1
    missed = json.loads(out)  # what was measured is still reported
    assert missed["floor"] == {"stock": None, "budget": None} and missed["candidates"]
    assert all(c["verdict"] == "fail" for c in missed["candidates"])
    assert "no candidate in 6.9-7.03 bpw passes mean KLD <= 1e-09, loops <= 0.5; the best measured was stock " in err


def test_a_gl_toml_floor_build_writes_the_floor_file(searched, gemma_f16, tmp_path):
    """What gl publish runs for build = { base = …, floor = { range = "6-9" } }: the search (cached here)
    and the smallest passing file, with its provenance."""
    from gl_plugins.quantize.run import build_variant

    _, doc, _ = searched
    out = tmp_path / "v.gguf"
    said = []
    result = build_variant(gemma_f16, out, floor={"low": 6.0, "high": 9.0}, echo=said.append)
    smallest = min((f for f in doc["floor"].values() if f), key=lambda f: f["bytes"])
    assert result.output == out and out.stat().st_size == smallest["bytes"]
    assert result.record["output"]["sha256"] and abs(result.resolution.bpw - smallest["bpw"]) < 0.01
    assert any(m.startswith("floor: kept ") for m in said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gguf", "v.gguf.gl.json"]


def test_guided_the_search_starts_at_the_estimates_and_still_measures_its_floor(searched, gl, gemma_f16):
    """--guide estimates every stock candidate's mean KLD from measured tensor errors first; the floor it
    reports is measured to pass, with the stock type below it measured to fail."""
    code, out, err = gl("floor", gemma_f16, *ARGS, "--guide", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert "floor: guide: predicted mean KLD: " in err
    stock = doc["floor"]["stock"]
    measured = [c for c in doc["candidates"] if c["kind"] == "stock" and "kld" in c]
    assert all(c["predicted_kld"] > 0 for c in measured)
    (floor_c,) = [c for c in measured if c["name"] == stock["type"]]
    assert floor_c["verdict"] == "pass"
    below = max((c for c in measured if c["bpw"] < stock["bpw"]), key=lambda c: c["bpw"])
    assert below["verdict"] == "fail"
    assert doc["floor"]["budget"] is not None and doc["floor"]["budget"]["kld_mean"] <= 0.3
