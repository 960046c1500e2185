"""gl floor without llama.cpp runs: the gates, the search's steps, and every bad input it refuses.

The search tests give the searcher a measurement of their own (a KL divergence that falls with the
bits per weight, as measured files do); what llama.cpp measures is tested on the real Gemma in
test_floor_real.py.
"""

from __future__ import annotations

import math
import os
import shutil

import pytest

from gl_plugins.floor.search import Candidate, Gates, _curve, _Search
from gl_plugins.validate.candidates import Outcome


def outcome(mean, p99=1.0, loops=0.0, errors=(), bpw=3.0):
    return Outcome(key="k", label="x", bpw=bpw, bytes=int(bpw * 1e6), kld={"mean": mean, "p99": p99,
                                                                         "same_top_p": 0.8},
                   loops=loops, errors=list(errors))


def test_gates_judge_every_figure_and_ignore_the_kld_validators_own_limits():
    g = Gates(max_kld=0.3, max_p99=2.0, max_loops=0.5)
    assert g.judge(outcome(0.2, errors=["kld-limit", "generation-loop"])) == []
    assert g.judge(outcome(0.31)) == ["mean KLD 0.3100 > 0.3"]
    assert g.judge(outcome(0.1, p99=2.5)) == ["p99 KLD 2.500 > 2"]
    assert g.judge(outcome(0.1, loops=0.75)) == ["loops 0.75 > 0.5"]
    assert g.judge(outcome(0.1, errors=["plan-mismatch"])) == ["invalid file: plan-mismatch"]
    assert g.judge(outcome(float("nan"))) == ["no KL divergence measured"]
    assert Gates(max_loops=None).judge(outcome(0.1, loops=1.0)) == []
    assert g.describe() == "mean KLD <= 0.3, p99 KLD <= 2, loops <= 0.5"


def test_the_stock_curve_is_log_linear_and_extends_from_its_ends():
    pts = [(2.0, 1.0), (3.0, 0.1), (4.0, 0.01)]
    assert _curve(pts, 2.5) == pytest.approx(math.sqrt(0.1))
    assert _curve(pts, 3.0) == pytest.approx(0.1)
    assert _curve(pts, 5.0) == pytest.approx(0.001)
    assert _curve(pts, 1.0) == pytest.approx(10.0)


class Measured(_Search):
    """The searcher with a measurement of its own: mean KLD = 10 ** (1.5 - bpw) (0.3 at 2.02 bpw),
    with the file's bpw 0.02 below the target, as budget plans land."""

    def __init__(self, gates=Gates()):
        super().__init__(None, None, None, None, gates, chunks=4, threads=None, requantize=False,
                         budget_options={}, echo=lambda m: None)
        self.targets = []

    def budget(self, target):
        self.targets.append(target)
        c = Candidate("budget", f"budget@{target:.2f}", plan=None, bpw=target - 0.02, bytes=0, target=target)
        c.outcome = outcome(10 ** (1.5 - (target - 0.02)), bpw=target - 0.02)
        c.why = self.gates.judge(c.outcome)
        self.candidates.append(c)
        return c

    def add_stock(self, bpw):
        c = Candidate("stock", f"S{bpw}", plan=None, bpw=bpw, bytes=0)
        c.outcome = outcome(1.4 * 10 ** (1.5 - bpw), bpw=bpw)  # stock: 1.4x the budget's KLD
        c.why = self.gates.judge(c.outcome)
        self.candidates.append(c)
        return c


def test_the_budget_search_converges_to_the_gate_within_the_tolerance():
    s = Measured()
    for bpw in (1.8, 2.4, 3.0):
        s.add_stock(bpw)
    found = s.budget_floor(1.5, 5.0, start=2.4, tolerance=0.1)
    crossing = 1.5 - math.log10(0.3) + 0.02  # the target whose file measures exactly the gate
    assert found.passed and crossing <= found.target < crossing + 0.1
    assert any(not c.passed and c.target > crossing - 0.1 for c in s.candidates if c.kind == "budget")
    assert len(s.targets) <= 5, s.targets  # the stock curve and the checks keep it short


def test_the_budget_search_starts_at_the_top_when_the_stock_floor_fails_it_and_gives_up_above():
    s = Measured(Gates(max_kld=1e-6))
    assert s.budget_floor(1.5, 5.0, start=3.0, tolerance=0.1) is None
    assert s.targets == [3.0, 5.0]


def test_the_budget_search_without_a_stock_curve_bisects():
    s = Measured()
    found = s.budget_floor(1.5, 5.0, start=5.0, tolerance=0.1)
    crossing = 1.5 - math.log10(0.3) + 0.02
    assert found.passed and crossing <= found.target < crossing + 0.1 and len(s.targets) <= 9, s.targets


def measured_ladder(s):
    """14 stock types 0.25 bpw apart whose mean KLD is 10 ** (1.5 - bpw), and the names ``s`` measures."""
    ladder = [Candidate("stock", f"T{i}", plan=None, bpw=1.5 + 0.25 * i, bytes=0) for i in range(14)]
    seen = []

    def run(c):
        seen.append(c.name)
        c.outcome = outcome(10 ** (1.5 - c.bpw), bpw=c.bpw)
        c.why = s.gates.judge(c.outcome)
        return c

    s.run = run
    return ladder, seen


def test_the_stock_ladder_is_bisected_and_the_floor_and_the_type_below_are_measured():
    s = Measured(Gates(max_kld=0.3))
    ladder, seen = measured_ladder(s)
    found = s.stock_floor(ladder, walk=False)
    first = next(c for c in ladder if 10 ** (1.5 - c.bpw) <= 0.3)
    assert found is first and first.name in seen and len(seen) <= 4
    assert ladder[ladder.index(first) - 1].name in seen  # the type below was measured to fail
    seen.clear()
    for c in ladder:
        c.outcome = None
    assert s.stock_floor(ladder, walk=True) is first and seen == [c.name for c in ladder[:ladder.index(first) + 1]]


class Guided(Measured):
    """--guide with an estimate that is ``factor`` times the measured mean KLD."""

    def __init__(self, factor, gates=Gates()):
        super().__init__(gates)
        self.guide, self.factor = True, factor

    def predict(self, c):
        c.predicted = self.factor * 10 ** (1.5 - c.bpw)
        return c.predicted

    def budget_candidate(self, target):
        return Candidate("budget", f"budget@{target:.2f}", plan=None, bpw=target - 0.02, bytes=0, target=target)


@pytest.mark.parametrize("factor, most", [(1.0, 2), (1.3, 3), (0.7, 3)])
def test_the_guided_stock_search_starts_at_the_estimated_floor_and_checks_the_type_below(factor, most):
    s = Guided(factor, Gates(max_kld=0.3))
    ladder, seen = measured_ladder(s)
    found = s.stock_floor(ladder, walk=False)
    first = next(c for c in ladder if 10 ** (1.5 - c.bpw) <= 0.3)
    assert found is first and len(seen) <= most, seen
    assert ladder[ladder.index(first) - 1].name in seen  # the type below was measured to fail
    assert all(c.predicted is not None for c in ladder)


@pytest.mark.parametrize("factor", [1.0, 1.2, 0.8])
def test_the_guided_budget_search_measures_around_the_estimated_crossing(factor):
    s = Guided(factor)
    start = s.guided_start(1.5, 5.0, 0.1)
    found = s.budget_floor(1.5, 5.0, start=start, tolerance=0.1)
    crossing = 1.5 - math.log10(0.3) + 0.02
    assert found.passed and crossing <= found.target < crossing + 0.1
    assert len(s.targets) <= (2 if factor == 1.0 else 4), s.targets


def test_a_guided_start_that_fails_falls_back_to_the_stock_floors_size_before_the_top():
    """An estimate that is too hopeful (half the measured KLD) fails at the start and one tolerance above
    it; the next target is the stock floor's size, where a budget plan should pass too, not the top of
    the range, and the crossing is interpolated from there."""
    s = Guided(0.5)
    start = s.guided_start(1.5, 5.0, 0.1)
    found = s.budget_floor(1.5, 5.0, start=start, tolerance=0.1, stock_size=3.0)
    crossing = 1.5 - math.log10(0.3) + 0.02
    assert found.passed and crossing <= found.target < crossing + 0.1
    assert s.targets[2] == 3.0 and max(s.targets) == 3.0 and len(s.targets) <= 5, s.targets
    s = Guided(0.5, Gates(max_kld=1e-6))  # nothing passes: the stock floor's size, then the top, then give up
    assert s.budget_floor(1.5, 5.0, start=2.0, tolerance=0.1, stock_size=3.0) is None
    assert s.targets == [2.0, 2.1, 3.0, 5.0]


# ------------------------------------------------------------------ bad input: one sentence, exit 2

def test_a_quantized_base_needs_allow_requantized(gl, gemma_q4, tmp_path):
    code, out, err = gl("floor", gemma_q4, "--candidates", "stock")
    assert code == 2 and out == ""
    assert err.startswith(f"gl: error: {gemma_q4}: is already quantized (")
    assert "a floor found from it is relative to it" in err and "--allow-requantized" in err
    assert len(err.strip().splitlines()) == 1


def test_an_imatrix_of_another_model_is_refused(gl, gemma_f16, synthetic_model, tmp_path):
    from imatrix_files import forward_pass_entries, write_gguf_imatrix

    from gl_plugins.facts import facts_from_gguf

    other = write_gguf_imatrix(tmp_path / "other.imatrix.gguf", forward_pass_entries(facts_from_gguf(synthetic_model)))
    code, _, err = gl("floor", gemma_f16, "--imatrix", other)
    assert code == 2 and err.startswith(f"gl: error: {other}: is an importance matrix of another model")
    broken = tmp_path / "broken.imatrix"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    code, _, err = gl("floor", gemma_f16, "--imatrix", broken)
    assert code == 2 and err.startswith(f"gl: error: {broken}") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--range", "5-2"), "--range must be LOW-HIGH bits per weight with 0 < LOW < HIGH <= 32, not 5-2"),
    (("--range", "two-four"), "give LOW-HIGH bits per weight, e.g. 1.5-5, not 'two-four'"),
    (("--candidates", "stock,magic"), "--candidates must be a comma-separated subset of stock,budget"),
    (("--tolerance", "9"), "--tolerance must be above 0 and below the range's width, not 9"),
    (("--calibrate", "--imatrix", "x.gguf"), "give --imatrix FILE or --calibrate, not both"),
])
def test_bad_options_are_one_sentence(gl, gemma_f16, args, message):
    code, _, err = gl("floor", gemma_f16, *args)
    assert code == 2 and message in err, err


def test_a_disk_too_small_for_the_candidates_is_said_before_any_work(gl, gemma_f16, monkeypatch):
    from gl_plugins.toolchain.llamacpp import cache_root

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=100 << 20))
    code, out, err = gl("floor", gemma_f16, "--candidates", "stock")
    assert code == 2 and out == ""
    assert err.startswith(f"gl: error: {cache_root()}: has 100 MiB free and the largest candidate takes ")
    assert "point GL_CACHE elsewhere" in err and len(err.strip().splitlines()) == 1


def test_keep_refuses_an_existing_file_and_a_missing_folder(gl, gemma_f16, tmp_path):
    there = tmp_path / "there.gguf"
    there.write_bytes(b"mine")
    code, _, err = gl("floor", gemma_f16, "--keep", there)
    assert code == 2 and f"{there}: already exists; pass --force to replace it" in err and there.read_bytes() == b"mine"
    code, _, err = gl("floor", gemma_f16, "--keep", tmp_path / "no" / "x.gguf")
    assert code == 2 and f"{tmp_path / 'no'}: folder not found" in err


def test_an_outcome_in_which_a_llama_cpp_run_stopped_is_not_remembered(synthetic_model, llama_bin, tmp_path,
                                                                       monkeypatch):
    """A generation that timed out on a busy machine says nothing lasting about the file: the next run
    measures it again. A file that failed a check (a collapse) is remembered as failed."""
    import json

    from gl_plugins.plan.resolve import stock_plan
    from gl_plugins.validate.candidates import RUN_FAILURES, _cache_dir, cache_key, cached

    monkeypatch.setenv("GL_CACHE", str(tmp_path))
    monkeypatch.setenv("GL_LLAMA_CPP", str(llama_bin))
    plan = stock_plan("Q8_0")
    path = _cache_dir() / f"{cache_key(synthetic_model, plan, None, 4, 512)}.json"
    path.parent.mkdir(parents=True)
    for errors, kept in ((["generation-collapse"], True), (["generation-failed"], False), ([], True)):
        o = outcome(0.1, errors=errors)
        path.write_text(json.dumps(o.to_dict()))
        assert o.lasting is kept
        assert (cached(synthetic_model, plan, None, 4, 512) == o) is kept
    assert all(not outcome(0.1, errors=[code]).lasting for code in RUN_FAILURES)
