"""gl-hook, the pre-commit hooks' entry point, on copies of examples/model-repo.

Story: a model repository changes one file at a time; each hook looks only at
what it is handed and at what gl.toml says about it, prints one line per
problem starting with the file, and exits 0, 1, or 2 for input it cannot read.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gl_plugins.project import precommit
from gl_plugins.imatrix.formats import OutEntry, write_gguf
from synth import write_model
from imatrix_files import forward_pass_entries

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "model-repo"
MAP = "maps/gemma3-270m-q4-mix.txt"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    dest = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE, dest)
    monkeypatch.chdir(dest)
    return dest


def hook(capsys, *argv) -> tuple[int, list[str]]:
    status = precommit.main([str(a) for a in argv])
    out = capsys.readouterr().out
    return status, out.splitlines()


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_every_hook_passes_the_example_silently(repo, capsys):
    for argv in (["check", "gl.toml"], ["modelfile-lint", "Modelfile"], ["plan-lint", MAP, "gl.toml"],
                 ["imatrix-audit", MAP, "gl.toml"], ["predict", "--fail-on", "fails", "gl.toml"]):
        assert hook(capsys, *argv) == (0, []), argv


def test_a_shadowed_rule_is_one_line_with_its_position(repo, capsys):
    append(repo / MAP, "blk\\.0\\.ffn_down\\.weight=q8_0\n")
    status, lines = hook(capsys, "plan-lint", MAP)
    assert status == 1
    assert len(lines) == 1 and lines[0].startswith(f"{MAP}:6: error: rule-shadowed: blk\\.0\\.ffn_down\\.weight=q8_0")
    # files gl.toml does not name as a map are not this hook's business
    assert hook(capsys, "plan-lint", "README.md", "Modelfile") == (0, [])


def test_the_map_is_linted_again_when_its_base_model_changes(repo, capsys):
    config = repo / "base" / "config.json"
    config.write_text(config.read_text().replace('"head_dim": 256', '"head_dim": 160'))
    status, lines = hook(capsys, "plan-lint", "base/config.json")
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith(f"{MAP}:3: error: shape-fallback: attn_output\\.weight=q4_k: Q4_K needs rows "
                               "divisible by 256; 18 tensor(s) with rows of 640 become Q5_0 instead")


def test_a_modelfile_without_from_fails_and_a_from_gl_publish_builds_does_not(repo, capsys):
    # FROM names build/gemma3-270m-q4-mix.gguf, which does not exist yet: gl.toml says how it is built
    assert hook(capsys, "modelfile-lint", "Modelfile") == (0, [])
    mf = repo / "Modelfile"
    mf.write_text(mf.read_text().replace("./build/gemma3-270m-q4-mix.gguf", "./build/other.gguf"))
    status, lines = hook(capsys, "modelfile-lint", "Modelfile")
    assert status == 1 and lines[0].startswith("Modelfile:3: error: modelfile-from-missing: FROM ./build/other.gguf")
    mf.write_text("".join(x for x in mf.read_text().splitlines(True) if not x.startswith("FROM")))
    status, lines = hook(capsys, "modelfile-lint", "Modelfile")
    assert (status, len(lines)) == (1, 1) and lines[0].startswith("Modelfile: error: modelfile-no-from: no FROM line")


def test_warnings_pass_unless_strict(repo, capsys):
    mf = repo / "Modelfile"
    mf.write_text("".join(x for x in mf.read_text().splitlines(True) if not x.startswith("PARAMETER stop")))
    status, lines = hook(capsys, "modelfile-lint", "Modelfile")
    assert status == 0 and lines == ["Modelfile: warning: modelfile-no-stop: no PARAMETER stop (hint: a model "
                                     "imported without stop parameters often never stops; add the family's "
                                     "end-of-turn token)"]
    assert hook(capsys, "modelfile-lint", "--strict", "Modelfile")[0] == 1


def test_gl_check_reports_every_key_path_in_gl_toml(repo, capsys):
    append(repo / "gl.toml", '\n[models.gemma3-270m.variants.q3]\nbuild = { base = "base/missing.json", '
                             'base_typ = "Q3_K_M" }\n')
    status, lines = hook(capsys, "check", "gl.toml")
    assert status == 1
    assert all(x.startswith("gl.toml: error: config-") for x in lines)
    joined = "\n".join(lines)
    assert "models.gemma3-270m.variants.q3.build.base: file not found" in joined
    assert "models.gemma3-270m.variants.q3.build.base_typ: unknown key (hint: did you mean base_type?)" in joined


def write_imatrix(path: Path, facts, skip=()) -> None:
    entries = forward_pass_entries(facts, skip=lambda name: name in skip)
    write_gguf(path, [OutEntry(n, s.shape[0], s.shape[1], False, (lambda s=s, c=c: (s, c, None)))
                      for n, (s, c) in entries.items()], datasets=["calibration.txt"], chunk_count=4, chunk_size=128)


def test_imatrix_audit_holds_the_file_against_the_planned_types(repo, capsys):
    (repo / "maps" / "iq2s.txt").write_text((repo / MAP).read_text().replace("ffn_down\\.weight=q4_k",
                                                                                "ffn_down\\.weight=iq2_s"))
    append(repo / "gl.toml", '\n[models.gemma3-270m.variants.iq2s]\nbuild = { base = "base/config.json", '
                             'map = "maps/iq2s.txt", base_type = "Q4_K_M", imatrix = "imatrix.gguf" }\n')
    variant = precommit._load_config("gl.toml", required=True).variant("gemma3-270m:iq2s")
    facts = precommit.model_facts(variant)
    write_imatrix(repo / "imatrix.gguf", facts)
    assert hook(capsys, "imatrix-audit", "imatrix.gguf") == (0, [])
    write_imatrix(repo / "imatrix.gguf", facts, skip={"blk.7.ffn_down.weight", "blk.8.ffn_down.weight"})
    status, lines = hook(capsys, "imatrix-audit", "imatrix.gguf")
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith("imatrix.gguf: error: imatrix-missing-absent [blk.7–8.ffn_down.weight]: ")
    # the same gap is found when the map changes, not the imatrix
    assert hook(capsys, "imatrix-audit", "maps/iq2s.txt")[1] == lines
    # a corrupt imatrix: one sentence naming the file, exit 2
    (repo / "imatrix.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    status, lines = hook(capsys, "imatrix-audit", "imatrix.gguf")
    assert status == 2 and len(lines) == 1 and lines[0].startswith("imatrix.gguf")


def test_predict_fails_a_variant_the_model_will_not_survive(repo, capsys):
    assert hook(capsys, "predict", "base/config.json") == (0, [])
    append(repo / "gl.toml", '\n[models.gemma3-270m.variants.q2]\nbuild = { base = "base/config.json", '
                             'recipe = "uniform", options = { type = "Q2_K" } }\n')
    status, lines = hook(capsys, "predict", "base/config.json")
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith("gl.toml: error: quant-predicted-fails: models.gemma3-270m.variants.q2: Q2_K (Q2_K on "
                               "36 tensor(s), e.g. blk.0.attn_output.weight) is predicted to fail for gemma3-270m "
                               "(ffn-ratio: FFN ratio 3.20× (2048/640) on all 18 layers")
    # the recipe fits the 640-wide rows to Q4_0; --fail-on risky reports those too, and the example's types
    status, lines = hook(capsys, "predict", "--fail-on", "risky", "gl.toml")
    found = [(x.split(": ")[3], x.split(": ")[2], x.split(": ")[4].split(" (")[0]) for x in lines]
    assert ("models.gemma3-270m.variants.q2", "quant-predicted-fails", "Q2_K") in found
    assert ("models.gemma3-270m.variants.q2", "quant-predicted-risky", "Q4_0") in found
    assert ("models.gemma3-270m.variants.q4-mix", "quant-predicted-risky", "Q4_K_M") in found


def test_a_gguf_base_is_read_from_its_header(repo, capsys):
    write_model(repo / "base" / "tiny.gguf", n_layer=12, hidden=256, ffn=512)
    (repo / "maps" / "tiny.txt").write_text("blk\\.1=q8_0\n.*=q4_k\n")
    append(repo / "gl.toml", '\n[models.tiny.variants.q4]\nbuild = { base = "base/tiny.gguf", '
                             'map = "maps/tiny.txt", base_type = "Q4_K_M" }\n')
    status, lines = hook(capsys, "plan-lint", "base/tiny.gguf")
    assert status == 1
    assert [x.split(": ")[:3] for x in lines] == [["maps/tiny.txt:1", "error", "pattern-overreach"],
                                                  ["maps/tiny.txt:2", "warning", "rule-partly-shadowed"],
                                                  ["maps/tiny.txt:2", "warning", "unescaped-dot"]]
    assert "blk\\.1=q8_0: also matches 14 tensor(s) its text does not name: blk.10." in lines[0]


def test_missing_gl_toml_is_one_sentence_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "map.txt").write_text("ffn_down\\.weight=q4_k\n")
    assert hook(capsys, "plan-lint", "map.txt") == (2, ["gl.toml: file not found"])
    # a Modelfile needs no gl.toml
    (tmp_path / "Modelfile").write_text("FROM llama3.2\nPARAMETER stop <|eot_id|>\nTEMPLATE {{ .Prompt }}\n")
    assert hook(capsys, "modelfile-lint", "Modelfile") == (0, [])


def test_each_hook_needs_well_under_two_seconds_of_cpu_on_the_example(repo):
    """CPU time (user + system) of a fresh gl-hook process, so a busy machine does not make it flaky."""
    runs = {"check": ["gl.toml"], "modelfile-lint": ["Modelfile"], "plan-lint": [MAP, "gl.toml"],
            "imatrix-audit": [MAP, "gl.toml"], "predict": ["gl.toml"]}
    for name, files in runs.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-c", "import sys; from gl_plugins.project.precommit import main; "
                            "sys.exit(main())", name, *files], cwd=repo, capture_output=True, text=True,
                           env={**os.environ, "GL_PLUGINS": ""})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"gl-hook {name}: {cpu:.2f} s CPU", file=sys.stderr)
        assert cpu < 2.0, f"gl-hook {name} took {cpu:.2f} s of CPU"
