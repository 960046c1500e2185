"""Interrupts: SIGTERM stops gl the way Ctrl-C does, and child processes stop with it.

Python's default SIGTERM ends the process on the spot, skipping every
``finally`` block, so temporary files would stay behind. :func:`install`
turns SIGTERM into :class:`Terminated` (a ``KeyboardInterrupt``) raised where
gl is, so the same clean-ups run for both signals: temporary outputs are
removed, nothing half-written reaches a destination, and the CLI exits 130
(SIGINT) or 143 (SIGTERM) with one line.

Tools that spawn their own children (cmake → ninja → compilers) are started
in a process group of their own with :func:`popen_group` and stopped as a
whole with :func:`stop_group`, because a signal sent to gl alone (by a
supervisor, a CI runner, ``kill``) never reaches them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C."""

    exit_code = 128 + signal.SIGTERM


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # already stopping: let the clean-up finish
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` (call once, from the main thread)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code(e: BaseException | None) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return getattr(e, "exit_code", 128 + signal.SIGINT)


def popen_group(cmd, **kw) -> subprocess.Popen:
    """``Popen`` in a new process group, so :func:`stop_group` reaches the grandchildren too."""
    return subprocess.Popen(cmd, start_new_session=True, **kw)


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop ``proc`` and every process of its group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while time.monotonic() < end:
            proc.poll()  # reap the leader; the group is gone once no member is left
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.05)
    proc.wait()
