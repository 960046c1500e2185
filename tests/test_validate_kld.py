"""KL divergence against the base, the way the field ranks quantizations, on both real sample models.

Story: a publisher quantizes Qwen2.5-Coder-1.5B (whose 256-aligned widths let
every K- and IQ-type apply) to stock Q2_K and to Q8_0 and runs ``gl validate
QUANT --base F16``. gl makes the base's logits once (they are hundreds of MB,
so they are cached with a size limit), then prints mean, median, p99, p99.9
and max KLD, same-top-p, RMS Δp and the PPL ratio with llama.cpp's ±.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from gl_plugins.plan.resolve import stock_plan
from gl_plugins.quantize.run import quantize

pytestmark = pytest.mark.slow

QUIET = dict(progress=False, echo=lambda m: None)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory, qwen_f16):
    """Stock Q2_K (3.36 bpw, no imatrix), Q4_K_M and Q8_0 of the real Qwen model."""
    work = tmp_path_factory.mktemp("kld")
    return {t: quantize(qwen_f16, work / f"qwen-{t.lower()}.gguf", stock_plan(t), **QUIET).output
            for t in ("Q2_K", "Q4_K_M", "Q8_0")}


def _kld(gl, quant, base):
    code, out, err = gl("validate", quant, "--base", base, "--only", "kld", "--json")
    assert code in (0, 1), err
    doc = json.loads(out)
    return code, doc, [f for f in doc["findings"] if f["validator"] == "kld"]


def test_stock_q2_k_of_qwen_prints_its_kld(gl, qwen, qwen_f16):
    code, out, err = gl("validate", qwen["Q2_K"], "--base", qwen_f16, "--only", "kld")
    assert code == 0, out + err  # high, but inside the gates: a warning
    m = re.search(r"mean KLD (\d\.\d+) ± (\d\.\d+), median (\d\.\d+), p99 (\d\.\d+), p99\.9 (\d\.\d+), "
                  r"max (\d+\.\d+); same top token (\d+\.\d) ± (\d\.\d) %, RMS Δp (\d+\.\d+) ± (\d\.\d+) %, "
                  r"PPL ratio (\d\.\d+) ± (\d\.\d+) \(4 x 512 tokens of the evaluation text\)", out)
    assert m, out
    mean, pm = float(m[1]), float(m[2])
    assert 0.2 < mean < 0.6 and 0 < pm < 0.05  # measured here: 0.283 ± 0.011 on 4 chunks
    assert "kld-high" in out or "mean KLD" in out
    code, doc, found = _kld(gl, qwen["Q2_K"], qwen_f16)
    assert doc["kld"]["mean"] == pytest.approx(mean, abs=1e-4)
    assert 0.5 < doc["kld"]["same_top_p"] < 0.95 and doc["kld"]["ppl_ratio"] > 1.1
    assert [f["code"] for f in found] == ["kld-high"] and found[0]["severity"] == "warning"


def test_q8_0_and_q4_k_m_of_qwen_pass(gl, qwen, qwen_f16):
    _, q8, found = _kld(gl, qwen["Q8_0"], qwen_f16)
    assert q8["passed"] and [f["code"] for f in found] == ["kld-ok"]
    assert q8["kld"]["mean"] < 0.01 and q8["kld"]["same_top_p"] > 0.97
    _, q4, found = _kld(gl, qwen["Q4_K_M"], qwen_f16)
    assert q4["passed"] and [f["code"] for f in found] == ["kld-ok"]
    assert q8["kld"]["mean"] < q4["kld"]["mean"] < 0.05  # measured here: 0.0041


def test_gates_are_settings(gl, qwen, qwen_f16):
    code, out, err = gl("validate", qwen["Q2_K"], "--base", qwen_f16, "--only", "kld", "--set", "kld.max_mean=0.1",
                        "--set", "kld.min_same_top_p=0.9")
    assert code == 1
    assert re.search(r"kld-limit.*mean KLD 0\.\d+ is above 0\.1; the top token stays the same \d+\.\d% of the "
                     r"time, under 90%", out), out


def test_base_logits_are_made_once_and_noted(qwen, qwen_f16):
    from gl_plugins.toolchain.llama_eval import base_logits

    path = base_logits(qwen_f16)  # made by the tests above
    note = json.loads(path.with_suffix(".json").read_text())
    assert note["bytes"] == path.stat().st_size and note["chunks"] == 4 and note["ctx"] == 512
    assert 250 << 20 < note["bytes"] < 350 << 20  # 151936 logits x 256 positions x 4 chunks, 16 bits each
    inode = path.stat().st_ino
    assert base_logits(qwen_f16) == path and path.stat().st_ino == inode


def test_the_logits_cache_keeps_to_its_limit(gemma_f16, tmp_path, monkeypatch):
    from gl_plugins.toolchain import llamacpp
    from gl_plugins.toolchain.llama_eval import base_logits

    tools = llamacpp.cache_root() / "llama.cpp"
    monkeypatch.setenv("GL_CACHE", str(tmp_path))
    (tmp_path / "llama.cpp").symlink_to(tools)
    monkeypatch.setenv("GL_KLD_CACHE_MB", "40")  # one file of 1 x 128 tokens of Gemma's 262144 logits: 32 MiB
    first = base_logits(gemma_f16, ctx=128, chunks=1)
    second = base_logits(gemma_f16, ctx=128, chunks=2)  # 64 MiB: over the limit alone, so only it is kept
    assert second.exists() and not first.exists() and not first.with_suffix(".json").exists()
    assert sorted(p.name for p in second.parent.iterdir()) == sorted([second.name, second.with_suffix(".json").name])


def test_bad_cache_limit_and_foreign_base(gl, qwen, gemma_f16, monkeypatch):
    monkeypatch.setenv("GL_KLD_CACHE_MB", "lots")
    code, _, err = gl("validate", qwen["Q8_0"], "--base", gemma_f16, "--only", "kld")
    assert code == 2 and "GL_KLD_CACHE_MB must be a number of MiB, not 'lots'" in err
    assert "Traceback" not in err
    monkeypatch.delenv("GL_KLD_CACHE_MB")
    # a base of another model: llama-perplexity refuses, and the validator says so
    code, doc, found = _kld(gl, qwen["Q8_0"], gemma_f16)
    assert code == 1 and [f["code"] for f in found] == ["kld-failed"]
    assert "could not measure the KL divergence" in found[0]["message"]
    assert os.path.exists(qwen["Q8_0"])
