"""Every hook in hookspecs.py, used by a real third-party plugin.

Each test installs a small distribution (a dist-info with an entry point in
the ``gl`` group, and its module) on a folder put on PYTHONPATH, exactly what
``pip install`` leaves behind, then runs ``gl`` as a process and shows that
the host found the plugin through pluggy and used what it registered.
docs/plugins.md documents each hook; test_docs.py checks both stay in step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gl_plugins.facts import load_facts
from gl_plugins.synth import write_model
from imatrix_files import forward_pass_entries, write_gguf_imatrix


def install(site: Path, dist: str, source: str) -> None:
    """A distribution named ``dist`` whose module registers itself under the entry-point group ``gl``."""
    module = dist.replace("-", "_")
    info = site / f"{module}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[gl]\n{dist} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def run_gl(site: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("GL_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "gl_plugins", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


@pytest.fixture
def tiny(tmp_path):
    return write_model(tmp_path / "tiny.gguf", n_layer=4, hidden=256, ffn=512)[0]


def hooks_of(site: Path, dist: str) -> list[str]:
    r = run_gl(site, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    return {p["name"]: p for p in json.loads(r.stdout)}[dist]["hooks"]


def test_hook_gl_register_predictors(site, tiny):
    install(site, "gl-always-risky", """
        from gl_plugins.hookspecs import hookimpl
        from gl_plugins.predict import Prediction

        class AlwaysRisky:
            name = "always-risky"
            description = "Calls every quant type risky for models under 8 layers."

            def predict(self, facts, quant):
                if facts.n_layer is None:
                    return Prediction(self.name, quant, "unknown", 0.0, ["layer count unknown"])
                if facts.n_layer < 8:
                    return Prediction(self.name, quant, "risky", 0.8, [f"only {facts.n_layer} layers"],
                                      {"n_layer": facts.n_layer})
                return Prediction(self.name, quant, "ok", 0.5, [f"{facts.n_layer} layers"])

        @hookimpl
        def gl_register_predictors(register):
            register(AlwaysRisky())
    """)
    assert hooks_of(site, "gl-always-risky") == ["gl_register_predictors"]
    r = run_gl(site, "predict", tiny, "--quant", "Q8_0", "--json")
    assert r.returncode == 0, r.stderr
    preds = {p["predictor"]: p for p in json.loads(r.stdout)}
    assert preds["always-risky"]["verdict"] == "risky" and preds["always-risky"]["reasons"] == ["only 4 layers"]
    assert preds["combined"]["verdict"] == "risky"
    assert "risky according to always-risky" in preds["combined"]["reasons"][1]


def test_hook_gl_register_recipes(site, tiny):
    install(site, "gl-ffn-low", r"""
        import click
        from gl_plugins.hookspecs import hookimpl
        from gl_plugins.plan import Rule, TensorPlan

        class FfnLow:
            name = "ffn-low"
            description = "The FFN at --ffn-type, every other tensor at Q8_0."
            options = [click.Option(["--ffn-type"], default="Q4_0", show_default=True, help="Type of the FFN.")]

            def plan(self, facts, ffn_type="Q4_0", **_):
                return TensorPlan(base_type="Q8_0", rules=[Rule(r"ffn_(gate|up|down)\.weight", ffn_type.lower())],
                                  recipe=self.name, params={"ffn_type": ffn_type})

        @hookimpl
        def gl_register_recipes(register):
            register(FfnLow())
    """)
    r = run_gl(site, "plan", "--recipe", "ffn-low", "--help")
    assert r.returncode == 0 and "--ffn-type" in r.stdout and "Type of the FFN." in r.stdout
    r = run_gl(site, "plan", tiny, "--recipe", "ffn-low", "--ffn-type", "Q5_0", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    types = {t["name"]: t["type"] for t in doc["tensors"]}
    assert {types[f"blk.{i}.{w}.weight"] for i in range(4) for w in ("ffn_gate", "ffn_up", "ffn_down")} == {"Q5_0"}
    assert types["blk.0.attn_q.weight"] == "Q8_0"
    assert doc["map"].strip() == r"ffn_(gate|up|down)\.weight=q5_0"


def test_hook_gl_register_auditors(site, tiny, tmp_path):
    install(site, "gl-few-chunks", """
        from gl_plugins.findings import Finding
        from gl_plugins.hookspecs import hookimpl

        class FewChunks:
            name = "few-chunks"
            description = "Warns when the imatrix was computed on fewer than 100 chunks."

            def audit(self, imatrix, facts, assignments):
                if imatrix.chunk_count is not None and imatrix.chunk_count < 100:
                    return [Finding("warning", "imatrix-few-chunks",
                                    f"computed on {imatrix.chunk_count} chunks; 100 or more are steadier",
                                    file=imatrix.path, hint="run llama-imatrix on more text")]
                return []

        @hookimpl
        def gl_register_auditors(register):
            register(FewChunks())
    """)
    imx = tmp_path / "tiny.imatrix.gguf"
    write_gguf_imatrix(imx, forward_pass_entries(load_facts(tiny)), chunk_count=4)
    r = run_gl(site, "imatrix", "audit", imx, "--model", tiny, "--quant", "Q4_K_M", "--json")
    assert r.returncode == 0, r.stderr  # a warning does not fail the audit
    found = [f for f in json.loads(r.stdout)["findings"] if f["source"] == "few-chunks"]
    assert found == [{"severity": "warning", "code": "imatrix-few-chunks", "tensor": None,
                      "message": "computed on 4 chunks; 100 or more are steadier",
                      "hint": "run llama-imatrix on more text", "evidence": "", "source": "few-chunks",
                      "file": str(imx)}]


def test_hook_gl_register_commands(site, tiny):
    install(site, "gl-count", """
        import click
        from gl_plugins.hookspecs import hookimpl

        @hookimpl
        def gl_register_commands(cli):
            @cli.command("count-tensors")
            @click.argument("model")
            def count_tensors(model):
                "Count a model's tensors by type."
                from collections import Counter
                from gl_plugins.facts import load_facts

                for type_, n in sorted(Counter(t.type for t in load_facts(model).tensors).items()):
                    click.echo(f"{type_} {n}")
    """)
    r = run_gl(site, "--help")
    assert r.returncode == 0 and "count-tensors" in r.stdout and "Count a model's tensors by type." in r.stdout
    r = run_gl(site, "count-tensors", tiny)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["F16 29", "F32 9"]
