"""A generated corpus of hostile and unusual inputs, run through the real CLI.

Every error: exit 1 (2 for usage), one line ``Error: <file>: <problem>``, no
traceback, no output files. Every success: finite, non-silent outputs of the
input's length and rate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import leftovers
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import REPO, SAMPLE

from ilrma_cli.cli import cli

FAST = ["--n-iter", "3", "--n-fft", "512", "--hop", "256", "--no-progress"]
RATE = 16000


def speech(seconds: float = 1.0, channels: int = 2, rate: int = RATE) -> np.ndarray:
    """A real 2-source mixture (from the sample), resampled by decimation/repetition."""
    data, _ = sf.read(SAMPLE / "mix.wav")
    data = data[RATE : RATE + int(seconds * RATE)]
    if rate != RATE:
        idx = (np.arange(int(seconds * rate)) * RATE / rate).astype(int)
        data = data[idx]
    cols = [data[:, c % 2] * (1 + 0.3 * c) for c in range(channels)]
    return np.stack(cols, axis=1)


def wav(folder: Path, name: str, data: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, **kwargs)
    return path


def truncated(folder: Path) -> Path:
    path = wav(folder, "full.wav", speech(), subtype="PCM_16")
    cut = folder / "truncated.wav"
    cut.write_bytes(path.read_bytes()[:30000])
    return cut


def corrupt_header(folder: Path) -> Path:
    body = wav(folder, "ok.wav", speech(), subtype="PCM_16").read_bytes()
    path = folder / "corrupt.wav"
    path.write_bytes(b"RIFF" + bytes(40) + body[44:])
    return path


def with_value(value: float) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        data = speech()
        data[100, 1] = value
        return wav(folder, "bad.wav", data, subtype="FLOAT")

    return make


def flac_named_wav(folder: Path) -> Path:
    return wav(folder, "flac.wav", speech(), format="FLAC", subtype="PCM_16")


def text_file(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "text.wav"
    path.write_text("not audio at all\n" * 50)
    return path


def empty_file(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return path


ERROR_CASES = {
    "empty file": (empty_file, "empty file (0 bytes)"),
    "text named .wav": (text_file, "not a readable audio file (Format not recognised.)"),
    "corrupt header": (corrupt_header, "not a readable audio file"),
    "truncated data": (truncated, "truncated: header promises 16000 samples, file holds 7489"),
    "zero samples": (lambda f: wav(f, "zero.wav", np.zeros((0, 2))), "contains no audio samples"),
    "NaN sample": (with_value(np.nan), "contains NaN or infinite samples"),
    "inf sample": (with_value(np.inf), "contains NaN or infinite samples"),
    "digital silence": (
        lambda f: wav(f, "silence.wav", np.zeros((RATE, 2))),
        "the input is digital silence: there is nothing to separate",
    ),
    "single mono file": (
        lambda f: wav(f, "mono.wav", speech()[:, 0]),
        "is mono: ILRMA needs at least 2 channels (a multichannel file or 2+ mono mics)",
    ),
    "shorter than one frame": (
        lambda f: wav(f, "tiny.wav", speech()[:300]),
        "signal of 300 samples is shorter than one STFT frame (n_fft = 512)",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, case):
    make, message = ERROR_CASES[case]
    path = make(tmp_path / "in")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["separate", str(path), "-o", str(out), *FAST])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {path}: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not out.exists()


def _formats(folder: Path) -> dict[str, Path]:
    data = speech()
    return {
        "pcm_u8": wav(folder, "u8.wav", data, subtype="PCM_U8"),
        "pcm16": wav(folder, "p16.wav", data, subtype="PCM_16"),
        "pcm24": wav(folder, "p24.wav", data, subtype="PCM_24"),
        "pcm32": wav(folder, "p32.wav", data, subtype="PCM_32"),
        "float32": wav(folder, "f32.wav", data, subtype="FLOAT"),
        "float64": wav(folder, "f64.wav", data, subtype="DOUBLE"),
        "wavex": wav(folder, "wx.wav", data, format="WAVEX", subtype="PCM_16"),
        "rf64": wav(folder, "rf.wav", data, format="RF64", subtype="PCM_24"),
        "flac": wav(folder, "f.flac", data, subtype="PCM_16"),
        "ogg": wav(folder, "o.ogg", data, subtype="VORBIS"),
        "flac named .wav": flac_named_wav(folder),
        "8 channels": wav(folder, "eight.wav", speech(channels=8), subtype="FLOAT"),
        "loud float peak 4": wav(
            folder, "loud.wav", data / np.abs(data).max() * 4, subtype="FLOAT"
        ),
        "quiet -60 dBFS": wav(
            folder, "quiet.wav", data / np.abs(data).max() * 1e-3, subtype="FLOAT"
        ),
        "8 kHz": wav(folder, "r8k.wav", speech(rate=8000), rate=8000),
        "48 kHz": wav(folder, "r48k.wav", speech(rate=48000), rate=48000),
        "spaces and non-ASCII name": wav(folder, "mé lange ünï.wav", data, subtype="PCM_16"),
    }


@pytest.fixture(scope="module")
def format_files(tmp_path_factory) -> dict[str, Path]:
    return _formats(tmp_path_factory.mktemp("formats"))


@pytest.mark.parametrize(
    "case",
    [
        "pcm_u8", "pcm16", "pcm24", "pcm32", "float32", "float64", "wavex", "rf64", "flac",
        "ogg", "flac named .wav", "8 channels", "loud float peak 4", "quiet -60 dBFS", "8 kHz",
        "48 kHz", "spaces and non-ASCII name",
    ],
)  # fmt: skip
def test_valid_inputs_separate_into_finite_non_silent_files(tmp_path, format_files, case):
    path = format_files[case]
    info = sf.info(path)
    out = tmp_path / "sortie é"
    result = CliRunner().invoke(cli, ["separate", str(path), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    outputs = sorted((out / path.stem).glob("source*.wav"))
    assert len(outputs) == info.channels
    for output in outputs:
        data, rate = sf.read(output)
        assert rate == info.samplerate and len(data) == info.frames
        assert np.all(np.isfinite(data)) and np.max(np.abs(data)) > 0


def test_same_file_twice_as_two_mics_warns_and_stays_finite(tmp_path):
    mono = wav(tmp_path / "in", "m.wav", speech()[:, 0])
    result = CliRunner().invoke(
        cli, ["separate", str(mono), str(mono), "-o", str(tmp_path / "o"), *FAST]
    )
    assert "channels 0 and 1 are identical" in result.stderr
    assert result.exit_code == 0
    for output in (tmp_path / "o" / "m").glob("*.wav"):
        data, _ = sf.read(output)
        assert np.all(np.isfinite(data)) and np.any(data)


def test_input_inside_out_dir_is_never_overwritten(tmp_path):
    folder = tmp_path / "work"
    path = wav(folder, "source1.wav", speech(), subtype="FLOAT")
    before = path.read_bytes()
    result = CliRunner().invoke(
        cli,
        ["separate", str(path), "-o", str(folder), "--filename", "source{index}.wav", "-f", *FAST],
    )
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: {path}: would overwrite the input file; choose another --out-dir\n"
    )
    assert path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_out_dir_is_refused(tmp_path):
    path = wav(tmp_path / "in", "x.wav", speech())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(cli, ["separate", str(path), "-o", str(locked / "o"), *FAST])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1 and "is not writable" in result.stderr


def test_full_disk_while_writing_leaves_no_half_written_file(tmp_path, monkeypatch):
    path = wav(tmp_path / "in", "x.wav", speech())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    real_write = sf.SoundFile.write

    def failing_write(handle, data):
        real_write(handle, data)
        if Path(handle.name).name.startswith(".source2.wav."):  # the second file, half written
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    result = CliRunner().invoke(cli, ["separate", str(path), "-o", str(out), *FAST])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {out / 'x' / 'source2.wav'}: cannot write (")
    assert sorted(p.name for p in out.rglob("*")) == ["keep.txt"]


def test_interrupt_while_writing_removes_everything_of_that_mixture(tmp_path, monkeypatch):
    path = wav(tmp_path / "in", "x.wav", speech())
    out = tmp_path / "out"
    real_write = sf.SoundFile.write

    def interrupted_write(handle, data):
        if str(handle.name).startswith(str(out / "x" / ".source2")):
            raise KeyboardInterrupt
        return real_write(handle, data)

    monkeypatch.setattr(sf.SoundFile, "write", interrupted_write)
    result = CliRunner().invoke(cli, ["separate", str(path), "-o", str(out), *FAST])
    assert result.exit_code == 130
    assert (
        result.stderr == "Error: interrupted by SIGINT: the mixture in progress was not written\n"
    )
    assert not out.exists()


def _default_signals() -> None:
    """A child started from a background job inherits an ignored SIGINT; restore the default."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_signal_mid_run_keeps_finished_mixtures_and_leaves_no_partial_file(
    tmp_path, signum, code, jobs
):
    first = wav(tmp_path / "in", "a.wav", speech(seconds=0.5), subtype="FLOAT")
    second = wav(tmp_path / "in", "b.wav", np.tile(speech(seconds=8), (8, 1)), subtype="FLOAT")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ilrma_cli", "separate", str(first), str(second), "-o", str(out),
         "--n-iter", "1000", "-j", jobs, "--no-progress", "--n-fft", "512", "--hop", "256"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        preexec_fn=_default_signals,
    )  # fmt: skip
    try:
        # The short mixture is written long before the long one can finish: signal then.
        leftovers.wait_for(lambda: (out / "a" / "source2.wav").exists(), "output of a.wav", proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=leftovers.BOUND)
    finally:
        proc.kill()
    name = signal.Signals(signum).name
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.endswith(
        f"Error: interrupted by {name}: the mixture in progress was not written\n"
    )
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["a/source1.wav", "a/source2.wav"]
    assert not (out / "b").exists()
