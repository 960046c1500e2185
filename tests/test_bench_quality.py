"""bench/quality.py's table and plot, from rows of the shape it measures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
