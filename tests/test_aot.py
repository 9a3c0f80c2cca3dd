"""The kernels compiled ahead of time (ilrma_cli.engine.aot) against numba's JIT.

The extensions hold one specialisation per kernel: the engine must call each kernel
with those argument types only (checked in a JIT process, which compiles whatever the
engine calls), and the extensions must give the JIT's bits. ``make install`` builds them;
without them the comparisons are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ilrma_cli.engine import ILRMAConfig, kernels, run
from ilrma_cli.engine.aot import JIT_ENV, main
from ilrma_cli.engine.images import source_images
from tests.test_taps import reverberant

REPO = Path(__file__).resolve().parents[1]

# name: (config, mics, sources): every kernel, every demixing rule, 2 and 3 mics
CASES = {
    "ip": (ILRMAConfig(n_iter=4, iva_iter=3), 2, None),
    "iss": (ILRMAConfig(n_iter=4, iva_iter=3, update="iss"), 2, None),
    "ip2": (ILRMAConfig(n_iter=4, iva_iter=3, update="ip2"), 3, None),
    "three_mics": (ILRMAConfig(n_iter=4, iva_iter=3), 3, None),
    "subspace": (ILRMAConfig(n_iter=4, iva_iter=3), 3, 2),
    "fullrank": (ILRMAConfig(n_iter=4, spatial="fullrank", fullrank_iter=3, fullrank_basis=3), 2, None),
    "more_sources": (ILRMAConfig(n_iter=4, spatial="fullrank", fullrank_iter=3), 2, 3),
    "taps": (ILRMAConfig(n_iter=4, iva_iter=3, taps=2, delay=1), 2, None),
}  # fmt: skip

JIT_SCRIPT = """
import json, sys
import numpy as np
from ilrma_cli.engine import aot, kernels
from tests.test_aot import separations

np.savez(sys.argv[1], **separations())
called = sorted(name for name, entry in kernels.JIT_ENTRIES.items() if entry.nopython_signatures)
for module in kernels.KERNEL_MODULES:
    aot.warm_up(module)  # the calls the extensions are built for
counts = {name: len(entry.nopython_signatures) for name, entry in kernels.JIT_ENTRIES.items()}
print(json.dumps({"called": called, "signatures": counts}))
"""


def separations() -> dict[str, np.ndarray]:
    """The separated spectrograms of :data:`CASES`, and the full-rank ones' Wiener images at
    every mic (whichever kernels this process has)."""
    found = {}
    for name, (config, n_ch, n_src) in CASES.items():
        mix, _ = reverberant(n_ch, n_freq=9, n_frames=60, seed=n_ch)
        result = run(mix, config, seed=3, n_sources=n_src)
        found[name] = result.separated
        if result.fullrank is not None:
            found[f"{name}_images"] = source_images(mix, result, None)
    return found


@pytest.fixture(scope="module")
def jit_run(tmp_path_factory):
    """:func:`separations` and the kernels' signatures in a JIT process."""
    path = tmp_path_factory.mktemp("jit") / "separations.npz"
    result = subprocess.run(
        [sys.executable, "-c", JIT_SCRIPT, str(path)],
        capture_output=True, text=True, check=True, cwd=REPO, env={**os.environ, **JIT_ENV},
    )  # fmt: skip
    with np.load(path) as saved:
        return dict(saved), json.loads(result.stdout)


def test_the_engine_calls_every_kernel_with_the_types_it_is_built_for(jit_run):
    _, found = jit_run
    entries = {
        f"{module}.{name}"
        for module, names in [
            ("compiled", ["sweep", "iva_sweep"]),
            ("fullrank_compiled", ["weights_pass", "diagonaliser_pass", "nmf_pass", "wiener_pass"]),
            ("taps_compiled", ["sweep", "iva_sweep", "apply"]),
        ]
        for name in names
    }
    assert set(found["called"]) == entries
    assert found["signatures"] == dict.fromkeys(entries, 1)


needs_extension = pytest.mark.skipif(
    kernels.AHEAD_OF_TIME is None, reason="no ahead-of-time kernels: `make install` builds them"
)


@needs_extension
def test_ahead_of_time_kernels_give_the_bits_of_the_jit(jit_run):
    jit, _ = jit_run
    ours = separations()
    assert ours.keys() == jit.keys()
    for name in ours:
        assert np.array_equal(ours[name], jit[name]), name


@needs_extension
def test_a_separate_command_with_the_extension_never_imports_numba_nor_scipy_linalg(tmp_path):
    command = [sys.executable, "-X", "importtime", "-m", "ilrma_cli", "separate", "-o", str(tmp_path),
               str(REPO / "sample_data" / "mix.wav"), "--n-iter", "3", "--fullrank-iter", "2",
               "-j", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    imported = [line.rpartition("|")[2].strip() for line in result.stderr.splitlines()]
    assert "ilrma_cli.engine.kernels" in imported  # the kernels ran, and without numba:
    assert not [name for name in imported if name.startswith("numba")]
    # their BLAS came from scipy's extension alone, not through the package scipy.linalg
    assert "scipy.linalg" not in imported


@needs_extension
def test_scipy_linalg_imported_after_the_kernels_keeps_their_blas():
    code = ("from ilrma_cli.engine import kernels; import sys; blas = sys.modules["
            "'scipy.linalg.cython_blas']; import scipy.linalg; "
            "from scipy.linalg import cython_blas; assert cython_blas is blas; "
            "import numpy as np; a = np.ones((3, 3)); assert scipy.linalg.solve(a + 3 * np.eye(3), "
            "np.ones(3)).shape == (3,)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_the_extension_is_ignored_when_built_from_other_sources(monkeypatch):
    if kernels.AHEAD_OF_TIME is not None:
        assert kernels._load_ahead_of_time() is not None
    monkeypatch.setattr(kernels, "source_digest", lambda: -1)
    assert kernels._load_ahead_of_time() is None


def test_ilrma_jit_turns_the_extension_off(monkeypatch):
    monkeypatch.setenv("ILRMA_JIT", "1")
    assert kernels._load_ahead_of_time() is None


@needs_extension
def test_up_to_date_extensions_are_not_rebuilt(capsys):
    extensions = [module.__file__ for module in kernels.AHEAD_OF_TIME.values()]
    before = [os.stat(path).st_mtime_ns for path in extensions]
    assert main([]) == 0
    assert [os.stat(path).st_mtime_ns for path in extensions] == before
    assert capsys.readouterr().err == ""


def test_a_failed_build_says_why_and_leaves_the_jit_in_charge(monkeypatch, capsys):
    from ilrma_cli.engine import aot

    def no_compiler(kernel_module, directory=None):
        raise OSError("gcc: not found")

    warmed = []
    monkeypatch.setattr(aot, "build", no_compiler)
    monkeypatch.setattr(aot, "warm_up", warmed.append)
    assert main(["--module", "taps_compiled"]) == aot.NOT_BUILT
    assert warmed == ["taps_compiled"]
    assert capsys.readouterr().err == (
        "ilrma: ahead-of-time kernels of taps_compiled not built (OSError: gcc: not found); runs "
        "load numba's JIT cache instead (about 0.5 s more per process)\n"
    )
