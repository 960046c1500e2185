"""The real pre-commit framework runs gl's hooks on a model repository built from examples/model-repo.

Story: a lab keeps its gl.toml, tensor maps, imatrix and Modelfile in git,
with a clone of gl beside it as the hook source. pre-commit installs gl from
that clone (pip, from the package registries), and every commit is checked:
the example as shipped passes, a real imatrix with the map that needs it
passes, and a commit that shadows a rule, drops FROM, loses imatrix entries
and declares a quant type the model will not survive fails with one line per
problem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gl_plugins import __version__
from imatrix_files import copy_gguf_imatrix, real_imatrix

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "model-repo"
REV = f"v{__version__}"  # the tag examples/model-repo/.pre-commit-config.yaml pins
HOOK_IDS = ["gl-check", "gl-modelfile-lint", "gl-plan-lint", "gl-imatrix-audit", "gl-predict"]
GIT_ENV = {"GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@example.org", "GIT_COMMITTER_NAME": "lab",
           "GIT_COMMITTER_EMAIL": "lab@example.org", "GIT_CONFIG_NOSYSTEM": "1"}
IQ3_MAP = "\n".join([r"token_embd\.weight=q4_0", r"attn_(q|k|v)\.weight=q5_0", r"attn_output\.weight=q4_k",
                      r"ffn_(gate|up)\.weight=q4_0", r"ffn_down\.weight=iq3_xxs"]) + "\n"
IQ3_VARIANT = """
[models.gemma3-270m.variants.iq3-mix]
build = { base = "base/config.json", map = "maps/gemma3-270m-iq3-mix.txt", base_type = "Q4_K_M", imatrix = "imatrix/gemma3-270m.imatrix.gguf" }
"""


def git(*args, cwd, env=None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV, **(env or {})},
                       capture_output=True, text=True)
    assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr}"
    return r.stdout


def snapshot(checkout: Path, dest: Path) -> None:
    """This checkout as a git repository tagged with the package's version (the ``rev`` the example pins):
    HEAD plus uncommitted changes to tracked files, as ``pre-commit try-repo`` itself would use."""
    git("clone", "--quiet", "--no-hardlinks", str(checkout), str(dest), cwd=dest.parent)
    git("checkout", "--quiet", "-B", "main", cwd=dest)
    changed = git("diff", "--name-only", "HEAD", cwd=checkout).split()
    for name in changed:
        src, dst = checkout / name, dest / name
        if src.exists():
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()
    if changed:
        git("add", "-A", cwd=dest)
        git("commit", "--quiet", "-m", "uncommitted changes of the checkout", cwd=dest)
    git("tag", REV, cwd=dest)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding ``gl`` (the hook source) and, beside it, model repositories; one pre-commit home."""
    base = tmp_path_factory.mktemp("precommit")
    snapshot(ROOT, base / "gl")
    return base


def model_repo(workspace: Path, name: str) -> Path:
    repo = workspace / name
    shutil.copytree(EXAMPLE, repo)
    git("init", "--quiet", "-b", "main", cwd=repo)
    commit(repo, "the example as shipped")
    return repo


def commit(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "--allow-empty", "-m", message, cwd=repo)


def pre_commit(workspace: Path, repo: Path, *args, label: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(workspace / "pre-commit-home"),
           "PRE_COMMIT_COLOR": "never"}
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=1800)
    print(f"pre-commit {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return r


def test_the_example_config_and_the_hook_manifest_are_valid(workspace):
    repo = model_repo(workspace, "validate")
    r = pre_commit(workspace, repo, "validate-config", ".pre-commit-config.yaml", label="validate-config")
    assert r.returncode == 0, r.stdout + r.stderr
    r = pre_commit(workspace, repo, "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml"),
                   label="validate-manifest")
    assert r.returncode == 0, r.stdout + r.stderr
    config = (EXAMPLE / ".pre-commit-config.yaml").read_text()
    manifest = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert f"repo: ../gl\n    rev: {REV}\n" in config
    for hook in HOOK_IDS:
        assert f"- id: {hook}" in config and f"- id: {hook}\n" in manifest


def test_the_example_passes_every_hook_as_shipped(workspace):
    repo = model_repo(workspace, "good")
    r = pre_commit(workspace, repo, "run", "--all-files", label="run --all-files (installs gl)")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in ("gl check (gl.toml)", "gl modelfile lint", "gl plan lint (tensor-type files)",
                 "gl imatrix audit", "gl predict (gl.toml variants)"):
        assert any(line.startswith(name) and line.endswith("Passed") for line in out.splitlines()), out


def test_a_real_imatrix_and_the_map_that_needs_it_pass(workspace, gemma_f16):
    repo = model_repo(workspace, "imatrix")
    (repo / "imatrix").mkdir()
    shutil.copy(real_imatrix(gemma_f16, "gguf"), repo / "imatrix" / "gemma3-270m.imatrix.gguf")
    (repo / "maps" / "gemma3-270m-iq3-mix.txt").write_text(IQ3_MAP)
    with open(repo / "gl.toml", "a") as f:
        f.write(IQ3_VARIANT)
    commit(repo, "an IQ3_XXS variant with its imatrix")
    r = pre_commit(workspace, repo, "try-repo", "../gl", "--ref", REV, "--all-files", label="try-repo, good")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gl imatrix audit" in r.stdout and "Failed" not in r.stdout


def test_a_bad_commit_fails_with_one_line_per_problem(workspace, gemma_f16):
    repo = model_repo(workspace, "bad")
    (repo / "imatrix").mkdir()
    ffn_down = [f"blk.{i}.ffn_down.weight" for i in (3, 4, 5)]
    copy_gguf_imatrix(real_imatrix(gemma_f16, "gguf"), repo / "imatrix" / "gemma3-270m.imatrix.gguf",
                      drop=ffn_down)
    (repo / "maps" / "gemma3-270m-iq3-mix.txt").write_text(IQ3_MAP)
    with open(repo / "maps" / "gemma3-270m-q4-mix.txt", "a") as f:
        f.write("blk\\.0\\.ffn_down\\.weight=q8_0\n")  # the general ffn_down rule on line 5 takes it first
    modelfile = repo / "Modelfile"
    modelfile.write_text("".join(x for x in modelfile.read_text().splitlines(True) if not x.startswith("FROM")))
    with open(repo / "gl.toml", "a") as f:
        f.write(IQ3_VARIANT)
        f.write('\n[models.gemma3-270m.variants.q2]\nbuild = { base = "base/config.json", base_type = "Q2_K" }\n')
    commit(repo, "a shadowed rule, no FROM, an imatrix gap, a Q2_K variant")

    r = pre_commit(workspace, repo, "try-repo", "../gl", "--ref", REV, "--all-files", label="try-repo, bad")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    lines = out.splitlines()

    def one(prefix: str) -> str:
        hits = [x for x in lines if x.startswith(prefix)]
        assert len(hits) == 1, f"expected one line starting {prefix!r} in:\n{out}"
        return hits[0]

    shadowed = one("maps/gemma3-270m-q4-mix.txt:6: error: rule-shadowed: ")
    assert "taken by the earlier rule ffn_down\\.weight=q4_k (line 5)" in shadowed
    one("Modelfile: error: modelfile-no-from: no FROM line")
    gap = one("imatrix/gemma3-270m.imatrix.gguf: error: imatrix-missing-absent [blk.3–5.ffn_down.weight]: ")
    assert "IQ3_XXS cannot be made without importance data" in gap
    q2 = one("gl.toml: error: quant-predicted-fails: models.gemma3-270m.variants.q2: Q2_K (build.base_type) is "
             "predicted to fail for gemma3-270m")
    assert "ffn-ratio" in q2
    for name in ("gl modelfile lint", "gl plan lint (tensor-type files)", "gl imatrix audit",
                 "gl predict (gl.toml variants)"):
        assert any(x.startswith(name) and x.endswith("Failed") for x in lines), out
    assert any(x.startswith("gl check (gl.toml)") and x.endswith("Passed") for x in lines), out

