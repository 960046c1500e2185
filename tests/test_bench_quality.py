"""bench/quality.py: its table and plot from rows of the shape it measures, and its rows file resuming a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quality.py"


def _row(kind, t, bpw, mean, errors=()):
    return {"model": "qwen2.5-coder-1.5b", "kind": kind, "type": t, "bpw": bpw, "bytes": int(bpw * 1e8),
            "kld": {"mean": mean, "median": mean / 2, "p99": mean * 5, "p999": mean * 9, "max": mean * 30,
                    "same_top_p": 0.8, "rms_dp": 0.1, "ppl_ratio": 1.2},
            "loops": 0.5 if errors else 0.0, "imatrix": True, "errors": list(errors), "seconds_run": 1, "seconds": 1}


def test_table_ratio_and_plot_from_json(tmp_path):
    rows = [_row("stock", "Q2_K", 3.36, 0.30, ["generation-collapse"]), _row("budget", "Q2_K", 3.35, 0.15),
            _row("stock", "Q4_K_M", 5.0, 0.004), _row("budget", "Q4_K_M", 4.99, 0.012)]
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    png = tmp_path / "frontier.png"
    r = subprocess.run([sys.executable, BENCH, "--from-json", src, "--plot", png], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith(("Q2_K", "Q4_K_M"))}
    assert lines["Q2_K"].split()[-1] == "0.50" and lines["Q4_K_M"].split()[-1] == "3.00"
    assert "0.50*" in lines["Q2_K"]  # the stock file whose generation check failed is marked
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_measured_plans_get_their_own_columns_and_ratio(tmp_path):
    rows = [_row("stock", "Q2_K", 3.36, 0.30), _row("budget", "Q2_K", 3.35, 0.15), _row("measured", "Q2_K", 3.36, 0.12),
            _row("stock", "Q6_K", 6.6, 0.01), _row("measured", "Q6_K", 6.6, 0.01)]
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    r = subprocess.run([sys.executable, BENCH, "--from-json", src], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (head,) = [ln for ln in r.stdout.splitlines() if ln.startswith("type")]
    assert head.split() == ["type", "stock", "bpw", "stock", "KLD", "p99", "loops", "budget", "bpw", "budget", "KLD",
                            "p99", "loops", "ratio", "measured", "bpw", "measured", "KLD", "p99", "loops", "ratio"]
    q2, q6 = ([ln.split() for ln in r.stdout.splitlines() if ln.startswith(t)][0] for t in ("Q2_K", "Q6_K"))
    assert q2[-1] == "0.40" and q2[9] == "0.50"
    assert q6[-1] == "1.00" and len(q6) == 1 + 4 + 4 + 1  # no budget row at Q6_K: its columns stay empty

def test_markdown_tables_in_order_of_size(tmp_path):
    """--markdown prints the tables docs/plan.md shows: rows in order of the stock file's size whatever
    the rows file's order, the failing generation check marked, and the ratio to stock."""
    rows = [_row("stock", "Q4_K_M", 5.0, 0.004), _row("budget", "Q4_K_M", 4.99, 0.012),
            _row("stock", "Q2_K", 3.36, 0.30, ["generation-collapse"]), _row("budget", "Q2_K", 3.35, 0.15)]
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    r = subprocess.run([sys.executable, BENCH, "--from-json", src, "--markdown"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "#### qwen2.5-coder-1.5b"
    assert lines[2].startswith("| stock type | stock imatrix | stock bpw | stock mean KLD |") and lines[2].endswith("| ratio |")
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[4:6]]
    assert [b[0] for b in body] == ["Q2_K", "Q4_K_M"]
    assert body[0][6] == "0.50 ✗" and body[0][-1] == "0.50" and body[1][-1] == "3.00"
    assert body[0][5] == "80.0 %" and len(body[0]) == len(lines[2].strip("|").split("|"))


@pytest.mark.slow
def test_the_rows_file_resumes_and_keeps_other_rows(tmp_path, gemma_f16):
    """A run measures what its rows file lacks, rewrites the file with the other rows kept (a row of the
    same model, kind and type, from a plan since changed, is superseded), and a second run measures
    nothing; a file that is not rows is refused in one sentence."""
    rows = tmp_path / "rows.json"
    other = _row("stock", "Q2_K", 3.36, 0.30) | {"key": "from-another-run"}
    stale = _row("stock", "Q8_0", 8.5, 0.002) | {"model": "gemma3-270m", "key": "an-older-plan"}
    rows.write_text(json.dumps([other, stale]))
    cmd = [sys.executable, BENCH, "--model", "gemma3-270m", "--types", "Q8_0", "--kinds", "stock", "--chunks", "1",
           "--json", rows]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    got = json.loads(rows.read_text())
    assert got[0] == other and len(got) == 2 and "an-older-plan" not in {r["key"] for r in got}
    new = got[1]
    assert (new["model"], new["kind"], new["type"], new["imatrix"]) == ("gemma3-270m", "stock", "Q8_0", False)
    assert 8 < new["bpw"] < 9 and 0 <= new["kld"]["mean"] < 0.01 and new["loops"] is not None and new["key"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "gemma3-270m stock Q8_0" in again.stdout and f"in {rows}" in again.stdout
    assert json.loads(rows.read_text()) == got
    rows.write_text("[{")
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and bad.stderr.startswith(f"{rows}: not the JSON rows of an earlier run")
    assert rows.read_text() == "[{"
