"""Workers never outlive a killed ``ilrma``, and a killed run writes nothing more (issue 18).

Each test runs the real command in its own session and waits for events (files
appearing, processes ending) with generous bounds; nothing depends on speed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import leftovers
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, SAMPLE

pytestmark = pytest.mark.skipif(not leftovers.PROC.is_dir(), reason="needs Linux /proc")

RATE = 16000


def _inputs(folder: Path) -> tuple[Path, Path]:
    """A 0.5-s mixture that finishes at once and a 64-s one that runs for a long time."""
    data, _ = sf.read(SAMPLE / "mix.wav")
    folder.mkdir()
    short, long = folder / "a.wav", folder / "b.wav"
    sf.write(short, data[RATE : RATE + RATE // 2], RATE, subtype="FLOAT")
    sf.write(long, np.tile(data[RATE : 9 * RATE], (8, 1)), RATE, subtype="FLOAT")
    return short, long


def _start(tmp_path: Path, *executor: str) -> tuple[subprocess.Popen[bytes], Path]:
    short, long = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ilrma_cli", "separate", str(short), str(long), "-o",
               str(out), "--n-iter", "1000", "--n-fft", "512", "--hop", "256", "--no-progress",
               *executor]  # fmt: skip
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    return proc, out


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def _kill_parent_mid_run(tmp_path: Path, *executor: str) -> None:
    """Start a 2-mixture run, SIGKILL ``ilrma`` once the short one is written, check the aftermath."""
    tag = os.environ[leftovers.TAG]
    proc, out = _start(tmp_path, *executor)
    try:
        leftovers.wait_for(lambda: (out / "a" / "source2.wav").exists(), "output of a.wav", proc)
        children = {pid: cmd for pid, cmd in leftovers.tagged(tag).items() if pid != proc.pid}
        assert children, "no worker process found"
        proc.kill()
        proc.wait(timeout=leftovers.BOUND)
        left = leftovers.wait_until_gone(tag, seconds=leftovers.BOUND)
        assert not left, f"still running after the parent was killed: {left}"
        # No process of the run is left, so nothing can be written any more.
        assert _files(out) == ["a/source1.wav", "a/source2.wav"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        leftovers.kill_all(leftovers.tagged(tag))


def test_sigkill_of_the_parent_ends_every_pool_worker_and_writes_nothing_more(tmp_path):
    _kill_parent_mid_run(tmp_path, "-j", "2")


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="dask.distributed is not installed"
)
def test_sigkill_of_the_parent_ends_the_local_dask_cluster_and_writes_nothing_more(tmp_path):
    _kill_parent_mid_run(tmp_path, "--scheduler", "local:2")


def test_a_worker_killed_from_outside_ends_the_run_instead_of_hanging(tmp_path):
    tag = os.environ[leftovers.TAG]
    proc, out = _start(tmp_path, "-j", "2")
    try:
        leftovers.wait_for(lambda: (out / "a" / "source2.wav").exists(), "output of a.wav", proc)
        workers = [pid for pid, cmd in leftovers.tagged(tag).items() if "spawn_main" in cmd]
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
        assert proc.wait(timeout=leftovers.BOUND) == 1
        stderr = (tmp_path / "stderr.txt").read_text()
        assert stderr.endswith("Error: a worker process ended abruptly (killed by a signal, or "
                               "by the system for lack of memory); its work was not saved\n")  # fmt: skip
        assert not (out / "b").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        leftovers.kill_all(leftovers.tagged(tag))


ORPHAN_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from ilrma_cli import execute


def start(parent, watchdog):
    if watchdog:  # the watchdog alone, as on a system without PR_SET_PDEATHSIG
        execute._ask_kernel_for_parent_death_signal = lambda signum: None
    execute._init_worker(parent, False)


def task(marker):
    try:
        print(os.getpid(), flush=True)
        while True:
            time.sleep(0.05)
    finally:
        Path(marker).write_text("unwound")  # what AtomicWriter's rollback stands for


if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, get_context("spawn"), start, (os.getpid(), sys.argv[1] == "watchdog"))
    pool.submit(execute._call, (task, sys.argv[2]))
    time.sleep(3600)
"""


@pytest.mark.parametrize("how", ["kernel", "watchdog"])
def test_a_busy_worker_unwinds_when_its_parent_is_killed(tmp_path, how):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT)
    marker = tmp_path / "unwound.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), how, str(marker)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())  # the task is running
        proc.kill()
        proc.wait(timeout=leftovers.BOUND)
        left = leftovers.wait_until_gone(os.environ[leftovers.TAG], seconds=leftovers.BOUND)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert worker not in left and not left
    assert marker.read_text() == "unwound"
