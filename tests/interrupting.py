"""Running ``gl`` as a real process and stopping it with a real signal at a chosen moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches the process as in a terminal, even when the suite itself was started in the
    background by a shell without job control (which starts its children with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_gl(*args, env=None, cwd=None) -> subprocess.Popen:
    """``gl ARGS`` as a real process (text stdout/stderr captured)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "gl_plugins", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, cwd=cwd,
                            preexec_fn=_as_in_a_terminal)


def wait_for(what: str, predicate, proc: subprocess.Popen, timeout: float = 120.0, poll: float = 0.01):
    """Wait until ``predicate()`` is truthy while ``proc`` runs; fails naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"gl ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(poll)
    proc.kill()
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def interrupt(proc: subprocess.Popen, sig: int, timeout: float = 60.0) -> tuple[int, str, str, float]:
    """Send ``sig``; (exit status, stdout, stderr, seconds until gl ended)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"gl did not stop within {timeout:.0f} s of signal {sig}:\n{err[-3000:]}")
    return proc.returncode, out, err, time.monotonic() - t0


def files_under(folder: Path) -> list[str]:
    """Every file and folder below ``folder``, as sorted relative paths."""
    return sorted(os.fspath(p.relative_to(folder)) for p in folder.rglob("*"))


def temporaries(folder: Path) -> list[str]:
    """Files below ``folder`` named as gl's temporary or partial outputs are named.

    gl writes ``.NAME.XXXX.tmp`` beside a target and renames it; builds happen in ``.build-*``.
    """
    return [p for p in files_under(folder)
            if any(part.endswith((".tmp", "-partial", ".part")) or part.startswith(".build-")
                   for part in Path(p).parts)]
