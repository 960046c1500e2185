"""`gl plan errors`: each tensor's quantization error, measured by ggml on the model's own weights."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from gl_plugins.imatrix.formats import OutEntry, write_gguf
from gl_plugins.model.gguf_header import read_header
from interrupting import EXIT, interrupt, start_gl, wait_for
from synth import SynthSpec, write_model


@pytest.fixture
def env(tmp_path, llama_bin):
    """A measurement cache of the test's own; the tools and the digest cache are the usual ones."""
    from gl_plugins.digests import cache_file

    return {"GL_CACHE": str(tmp_path / "cache"), "GL_LLAMA_CPP": str(llama_bin),
            "GL_DIGEST_CACHE": str(cache_file()), "GL_THREADS": "1"}


def cache_files(env) -> list:
    from pathlib import Path

    folder = Path(env["GL_CACHE"]) / "quant-errors"
    return sorted(folder.iterdir()) if folder.exists() else []


def measured(gl, *args, env):
    code, out, err = gl("plan", "errors", *args, "--json", env=env)
    assert code == 0, err
    doc = json.loads(out)
    return doc, {t["name"]: t for t in doc["tensors"]}


def imatrix_for(model, out, seed=3):
    """A GGUF imatrix with log-normal column importances for every block weight of ``model``."""
    rng = np.random.default_rng(seed)
    entries = []
    for t in read_header(model).tensors:
        if len(t.shape) == 2 and t.name.startswith("blk."):
            m = rng.lognormal(0.0, 1.5, t.shape[0]).astype(np.float32)
            entries.append(OutEntry(t.name, 1, t.shape[0], False, lambda m=m: (m[None, :] * 100, [100.0], None)))
    write_gguf(out, entries, datasets=["lognormal"], chunk_count=1, chunk_size=100)
    return out


K_LADDER = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "F16"]


def test_errors_fall_as_bits_rise_and_an_imatrix_weights_them(gl, synthetic_model, env, tmp_path):
    doc, tensors = measured(gl, synthetic_model, "--types", ",".join(K_LADDER + ["IQ2_XXS"]), env=env)
    assert doc["measured"] == len(tensors) == 15  # 2 layers x 7 weights + the token embedding
    for t in tensors.values():
        errs = [t["errors"][ty]["relative"] for ty in K_LADDER]
        assert all(a > b for a, b in zip(errs, errs[1:-1])), (t["name"], errs)
        assert errs[-1] < 1e-6  # F16 of F16 data
        assert 0.02 < errs[0] < 0.2  # Q2_K of Gaussian weights
        assert t["skipped"] == {"IQ2_XXS": "needs-imatrix"}
        assert t["rows_total"] == t["shape"][1] and t["rows"] == min(128, t["rows_total"])
    assert doc["classes"]["ffn_down"]["tensors"] == 2

    imx = imatrix_for(synthetic_model, tmp_path / "imatrix.gguf")
    doc_w, weighted = measured(gl, synthetic_model, "--imatrix", imx, "--types", "Q2_K,Q4_K,IQ2_XXS", env=env)
    assert doc_w["cache"] != doc["cache"]  # another imatrix, another cache file
    for name, t in weighted.items():
        if name == "token_embd.weight":  # no imatrix data: measured unweighted, IQ2_XXS impossible there
            assert not t["weighted"] and t["skipped"] == {"IQ2_XXS": "needs-imatrix"}
            continue
        assert t["weighted"] and not t["skipped"]
        q2 = t["errors"]["Q2_K"]
        # the quantizer spends its precision on the important columns: the weighted error is the lower one
        assert q2["relative"] < q2["relative_unweighted"]
        assert t["errors"]["IQ2_XXS"]["relative"] > t["errors"]["Q4_K"]["relative"]


def test_a_rerun_costs_nothing_and_new_types_measure_only_themselves(gl, synthetic_model, env):
    first, _ = measured(gl, synthetic_model, "--types", "Q4_0,Q8_0", env=env)
    again, tensors = measured(gl, synthetic_model, "--types", "Q4_0,Q8_0", env=env)
    assert first["measured"] == 15 and again["measured"] == 0
    assert again["seconds"] < 1.0
    more, tensors_more = measured(gl, synthetic_model, "--types", "Q4_0,Q8_0,Q5_0", env=env)
    assert more["measured"] == 15 and more["cache"] == first["cache"]
    for name, t in tensors.items():
        assert tensors_more[name]["errors"]["Q4_0"] == t["errors"]["Q4_0"]
    # one record per tensor and run: the meta line, then 15 + 15 records
    assert len(cache_files(env)) == 1
    assert len(cache_files(env)[0].read_text().splitlines()) == 1 + 30


def test_a_record_cut_short_is_dropped_and_measured_again(gl, synthetic_model, env):
    full, tensors = measured(gl, synthetic_model, "--types", "Q4_0", env=env)
    cache = cache_files(env)[0]
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # a run killed in its last write
    again, tensors_again = measured(gl, synthetic_model, "--types", "Q4_0", env=env)
    assert again["measured"] == 1
    assert tensors_again == tensors
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_rows_are_sampled_evenly_and_the_sample_is_recorded(gl, tmp_path, env):
    model = tmp_path / "m.gguf"
    write_model(model, SynthSpec(n_layer=1, hidden=256, ffn=512, vocab=2048))
    doc, tensors = measured(gl, model, "--types", "Q4_K", "--rows", "100", env=env)
    emb = tensors["token_embd.weight"]
    assert (emb["rows"], emb["rows_total"]) == (100, 2048)
    assert tensors["blk.0.attn_k.weight"]["rows"] == 100  # 128 rows, 100 sampled
    assert doc["rows"] == 100
    other, _ = measured(gl, model, "--types", "Q4_K", "--rows", "50", env=env)
    assert other["cache"] != doc["cache"] and other["measured"] == len(tensors)


@pytest.mark.parametrize("case", ["missing", "truncated", "hostile", "imatrix_corrupt", "imatrix_other_model",
                                  "unknown_type", "unproducible_type", "imatrix_missing"])
def test_bad_input_is_one_sentence_exit_2_and_caches_nothing(gl, synthetic_model, env, tmp_path, case):
    from hostile import write_corpus

    args = [synthetic_model]
    if case == "missing":
        args, needle = [tmp_path / "nope.gguf"], "nope.gguf: file not found"
    elif case == "truncated":
        cut = tmp_path / "cut.gguf"
        cut.write_bytes(synthetic_model.read_bytes()[:-5000])
        args, needle = [cut], "truncated"
    elif case == "hostile":
        path, phrase = write_corpus(tmp_path / "hostile")["many_tensors"]
        args, needle = [path], phrase
    elif case == "imatrix_corrupt":
        bad = tmp_path / "bad.dat"
        bad.write_bytes(b"\x05\x00\x00\x00garbage")
        args, needle = [synthetic_model, "--imatrix", bad], "bad.dat"
    elif case == "imatrix_other_model":
        other = tmp_path / "other.gguf"
        write_model(other, SynthSpec(n_layer=2, hidden=512, ffn=1024))
        args, needle = [synthetic_model, "--imatrix", imatrix_for(other, tmp_path / "o.gguf")], "another model"
    elif case == "imatrix_missing":
        args, needle = [synthetic_model, "--imatrix", tmp_path / "none.gguf"], "none.gguf: importance matrix not found"
    elif case == "unknown_type":
        args, needle = [synthetic_model, "--types", "Q4_0,Q9_X"], "unknown ggml type 'Q9_X'"
    else:
        args, needle = [synthetic_model, "--types", "Q8_K"], "cannot produce"
    code, out, err = gl("plan", "errors", *args, env=env)
    assert code == 2, (out, err)
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert cache_files(env) == []


@pytest.mark.slow
def test_the_requantized_original_grid_is_recovered_on_gemma(gl, gemma_f16, gemma_q4, env):
    """The F16 base is a dequantized Q4_K_M: each tensor measures ~0 in the type it had, more below it."""
    original = {t.name: t.type_name for t in read_header(gemma_q4).tensors}
    doc, tensors = measured(gl, gemma_f16, "--types", "Q4_0,Q5_0,Q8_0,Q4_K,Q6_K", "--rows", "64", env=env)
    lower = {"Q8_0": "Q5_0", "Q6_K": "Q4_K", "Q5_0": "Q4_0", "Q4_K": "Q4_0"}
    seen = set()
    for name, t in tensors.items():
        was = original[name]
        e = {ty: f["relative"] for ty, f in t["errors"].items()}
        if was not in lower or was not in e:
            continue
        seen.add(was)
        assert e[was] < 1e-5, (name, was, e)  # the grid again, up to the F16 rounding of the base
        assert e[lower[was]] > 100 * max(e[was], 1e-9), (name, was, e)
    assert seen == {"Q8_0", "Q6_K", "Q5_0", "Q4_K"}
    # 640-wide rows take no K-type: every such tensor reports both as skipped for its row length
    wide640 = [t for t in tensors.values() if t["shape"][0] == 640]
    assert len(wide640) == 91
    assert all(t["skipped"] == {"Q4_K": "row-length", "Q6_K": "row-length"} for t in wide640)
    code, out, err = gl("plan", "errors", gemma_f16, "--types", "Q4_0,Q5_0,Q8_0,Q4_K,Q6_K", "--rows", "64",
                        env=env)
    assert code == 0 and "(0 tensor(s) measured now" in out
    assert "Q4_K on 91 tensor(s)" in out and "the row length is not a multiple of the type's block" in out
    assert "token_embd" in out.splitlines()[5]


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(gemma_f16, env, gl):
    args = ["plan", "errors", gemma_f16, "--types", "Q4_0,Q5_0,Q8_0,Q4_K,Q6_K", "--rows", "512"]

    def records():
        files = cache_files(env)
        return len(files[0].read_text().splitlines()) - 1 >= 5 if files else False

    proc = start_gl(*args, env=env)
    wait_for("five tensors measured", records, proc, timeout=300)
    code, out, err, _ = interrupt(proc, signal.SIGINT)
    assert code == EXIT[signal.SIGINT] and "Traceback" not in err
    done_before = len(cache_files(env)[0].read_text().splitlines()) - 1
    assert 5 <= done_before < 127
    doc, tensors = measured(gl, *args[2:], env=env)
    assert doc["measured"] == 127 - done_before
    whole, whole_tensors = measured(gl, *args[2:], env={**env, "GL_CACHE": env["GL_CACHE"] + "-whole"})
    assert whole["measured"] == 127 and whole_tensors == tensors  # resuming changed no figure


@pytest.mark.slow
def test_qwen_tensors_measure_near_zero_in_their_original_type(gl, qwen_f16, env):
    from gl_plugins.toolchain.samples import provision

    original = {t.name: t.type_name for t in read_header(provision("qwen2.5-coder-1.5b")).tensors}
    doc, tensors = measured(gl, qwen_f16, "--types", "Q3_K,Q4_K,Q6_K", "--rows", "16", env=env)
    assert len(tensors) == 198 and not any(t["skipped"] for t in tensors.values())
    for name, t in tensors.items():
        e = {ty: f["relative"] for ty, f in t["errors"].items()}
        assert e[original[name]] < 1e-4, (name, e)
        if original[name] == "Q4_K":  # its own grid beats two more bits per weight
            assert e["Q4_K"] < e["Q6_K"], (name, e)
        assert e["Q3_K"] > 100 * e[original[name]]
