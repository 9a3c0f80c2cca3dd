"""Find the processes a test started, wherever they ended up (an orphan is re-parented to init).

Each test runs with a unique ``ILRMA_TEST_TAG`` in its environment; every process
started under it (``ilrma``, pool workers, the resource tracker, Dask nannies)
inherits the tag, and ``/proc/<pid>/environ`` shows it for the process's lifetime.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TAG = "ILRMA_TEST_TAG"
PROC = Path("/proc")
BOUND = 180.0  # seconds allowed for an awaited event, however loaded the machine


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends first or after :data:`BOUND` s."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {BOUND:.0f} s")
        time.sleep(0.05)


def tagged(tag: str) -> dict[int, str]:
    """Live processes (not zombies) started with ``TAG=tag``: pid -> command line."""
    wanted = f"{TAG}={tag}".encode()
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def strays(tag: str) -> dict[int, str]:
    """Tagged processes, less the resource tracker this test process keeps for its own pools."""
    return {
        pid: cmd
        for pid, cmd in tagged(tag).items()
        if not ("resource_tracker" in cmd and parent_of(pid) == os.getpid())
    }


def wait_until_gone(tag: str, seconds: float) -> dict[int, str]:
    """Wait up to ``seconds`` for the strays of ``tag`` to end; returns those still alive."""
    deadline = time.monotonic() + seconds
    left = strays(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = strays(tag)
    return left


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
