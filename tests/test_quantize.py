"""gl quantize on the real Gemma 3 270M: the plan is what llama-quantize does, and the file says so.

Story: a user quantizes the F16 base with a recipe, a hand-written map, or a
stock type. gl prints the plan's prediction and the exact llama-quantize
command, writes the file only when llama-quantize succeeded, and leaves
OUT.gl.json beside it: the source and imatrix digests, the plan, the
command, the llama.cpp version and the predicted bits per weight.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from gl_plugins.model.gguf_header import read_header

pytestmark = pytest.mark.slow


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def types_of(path) -> dict[str, str]:
    return {t.name: t.type_name for t in read_header(path).tensors}


def test_recipe_quantize_writes_the_file_and_its_provenance(gl, gemma_f16, tmp_path):
    out = tmp_path / "gemma-u4.gguf"
    code, stdout, stderr = gl("quantize", gemma_f16, out, "--recipe", "uniform", "--type", "Q4_K")
    assert code == 0, stderr
    assert "plan: 236 tensors" in stdout and "bits per weight predicted" in stdout
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("running: ")]
    assert "llama-quantize" in line and "--tensor-type-file" in line and line.endswith(" Q5_0 2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gemma-u4.gguf", "gemma-u4.gguf.gl.json"]

    record = json.loads((tmp_path / "gemma-u4.gguf.gl.json").read_text())
    assert record["source"]["sha256"] == sha256(gemma_f16)
    assert record["output"]["sha256"] == sha256(out) and record["output"]["bytes"] == out.stat().st_size
    assert record["imatrix"] is None
    assert record["plan"]["recipe"] == "uniform" and record["plan"]["base_type"] == "Q5_0"
    assert record["command"][0].endswith("llama-quantize") and record["command"][-2:] == ["Q5_0", "2"]
    assert "commit" in record["llama_cpp"]  # the build that made the file
    assert "=q4_k" in record["tensor_map"] and "=q5_0" in record["tensor_map"]
    # the prediction is what llama-quantize measured, and every tensor has its planned type
    assert abs(record["predicted"]["bpw"] - record["measured"]["bpw"]) < 0.006
    assert record["predicted"]["bpw"] == pytest.approx(5.374, abs=0.01)
    planned = {n: a["type"] for n, a in record["assignments"].items()}
    assert planned == types_of(out)
    assert planned["blk.0.ffn_down.weight"] == "Q4_K" and planned["blk.0.ffn_up.weight"] == "Q5_0"


def test_map_over_base_type_gives_exactly_the_mapped_types(gl, gemma_f16, tmp_path):
    mp = tmp_path / "types.txt"
    mp.write_text("^blk\\.\\d+\\.ffn_down\\.weight$=q4_k\nattn_output=q8_0\n")
    out = tmp_path / "mapped.gguf"
    code, stdout, stderr = gl("quantize", gemma_f16, out, "--map", mp, "--base-type", "Q8_0", "--json")
    assert code == 0, stderr
    record = json.loads(stdout)
    assert record["plan"]["rules"] == [{"pattern": "^blk\\.\\d+\\.ffn_down\\.weight$", "type": "q4_k"},
                                       {"pattern": "attn_output", "type": "q8_0"}]
    assert "--tensor-type-file" in record["command"] and record["command"][-2] == "Q8_0"
    types = types_of(out)
    assert {types[f"blk.{i}.ffn_down.weight"] for i in range(18)} == {"Q4_K"}
    assert {types[f"blk.{i}.attn_output.weight"] for i in range(18)} == {"Q8_0"}
    assert types["blk.0.ffn_up.weight"] == "Q8_0"  # the base type, for tensors the map does not name


@pytest.mark.parametrize("source", ["path", "pkg"])
def test_stock_type_alone_is_a_plain_llama_quantize_run(gl, gemma_f16, tmp_path, source):
    out = tmp_path / "stock.gguf"
    model = gemma_f16 if source == "path" else "pkg:gemma3-270m-f16"
    code, stdout, stderr = gl("quantize", model, out, "--base-type", "q8_0")
    assert code == 0, stderr
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("running: ")]
    assert "--tensor-type" not in line and f" {gemma_f16} {tmp_path}/.stock.gguf." in line
    assert line.endswith(".gl-partial Q8_0 2")  # written under a temporary name, renamed on success
    assert set(types_of(out).values()) == {"Q8_0", "F32"}


# ---------------------------------------------------------------- bad input: one sentence, exit 2, nothing written

def test_existing_output_is_not_replaced_without_force(gl, gemma_f16, tmp_path):
    out = tmp_path / "taken.gguf"
    out.write_bytes(b"precious")
    code, stdout, stderr = gl("quantize", gemma_f16, out, "--base-type", "Q8_0")
    assert code == 2
    assert stderr.strip() == f"gl: error: {out}: already exists; pass --force to replace it"
    assert out.read_bytes() == b"precious"


def test_missing_model_and_bad_map_name_the_file(gl, gemma_f16, tmp_path):
    code, _, stderr = gl("quantize", tmp_path / "nope.gguf", tmp_path / "o.gguf", "--base-type", "Q8_0")
    assert code == 2 and stderr.strip() == f"gl: error: {tmp_path / 'nope.gguf'}: file not found"

    mp = tmp_path / "commented.txt"
    mp.write_text("ffn_down=q4_k\n# protect attention\nattn_v=q8_0\n")
    code, _, stderr = gl("quantize", gemma_f16, tmp_path / "o.gguf", "--map", mp, "--base-type", "Q8_0")
    assert code == 2 and f"{mp} (line 2)" in stderr and "comment" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [mp]


def test_a_truncated_model_is_refused_before_llama_quantize_runs(gl, gemma_f16, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(gemma_f16, "rb") as f:
        cut.write_bytes(f.read(4 << 20))
    code, _, stderr = gl("quantize", cut, tmp_path / "o.gguf", "--base-type", "Q8_0")
    assert code == 2 and stderr.startswith(f"gl: error: {cut}") and "truncated" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf"]


def test_types_that_need_an_imatrix_are_refused_up_front(gl, gemma_f16, tmp_path):
    out = tmp_path / "iq2.gguf"
    code, _, stderr = gl("quantize", gemma_f16, out, "--base-type", "IQ2_XS")
    assert code == 2
    assert stderr.startswith(f"gl: error: {gemma_f16}: 34 tensors get types llama-quantize makes only with an "
                             "importance matrix (e.g. blk.0.attn_output.weight -> IQ2_XS); give --imatrix FILE")
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(gl, gemma_f16, tmp_path):
    out = tmp_path / "o.gguf"
    for args, text in [((), "say how to quantize"), (("--map", "m.txt"), "--map needs --base-type"),
                       (("--recipe", "uniform", "--type", "Q4_K", "--base-type", "Q8_0"), "a recipe chooses"),
                       (("--recipe", "nope"), "unknown recipe 'nope'")]:
        code, _, stderr = gl("quantize", gemma_f16, out, *args)
        assert code == 2 and text in stderr, (args, stderr)
    assert not out.exists()


def test_build_variant_for_gl_toml_takes_recipe_options_by_key(gemma_f16, tmp_path, llama_bin):
    from gl_plugins.errors import GLError
    from gl_plugins.quantize.run import build_variant

    out = tmp_path / "variant.gguf"
    result = build_variant(gemma_f16, out, recipe="uniform", options={"type": "Q8_0"}, echo=lambda m: None)
    assert result.output == out and set(types_of(out).values()) == {"Q8_0", "F32"}
    with pytest.raises(GLError, match=r"recipe uniform has no option 'typo'; its options: --type"):
        build_variant(gemma_f16, tmp_path / "x.gguf", recipe="uniform", options={"typo": "Q8_0"})
    assert not (tmp_path / "x.gguf").exists()


def test_imatrix_is_used_and_its_digest_recorded(gl, gemma_f16, tmp_path):
    from imatrix_files import real_imatrix

    imx = real_imatrix(gemma_f16, "gguf")  # made by the real llama-imatrix (cached)
    out = tmp_path / "iq2.gguf"
    code, stdout, stderr = gl("quantize", gemma_f16, out, "--base-type", "IQ2_XS", "--imatrix", imx, "--json")
    assert code == 0, stderr
    record = json.loads(stdout)
    assert record["imatrix"] == {"path": str(imx.resolve()), "sha256": sha256(imx)}
    i = record["command"].index("--imatrix")
    assert record["command"][i + 1] == str(imx) and record["plan"]["imatrix"] is True
    types = types_of(out)
    assignments = json.loads((tmp_path / "iq2.gguf.gl.json").read_text())["assignments"]
    assert types == {n: a["type"] for n, a in assignments.items()}
    assert types["blk.0.attn_output.weight"] == "IQ2_XS"  # 1024-wide rows: the type holds
    assert types["blk.0.ffn_up.weight"] == "IQ4_NL"  # 640-wide rows fall back
    code, stdout, _ = gl("validate", out, "--only", "plan-match,bpw")
    assert code == 0 and "all 236 tensors have the planned type" in stdout
