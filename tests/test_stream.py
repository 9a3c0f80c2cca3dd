"""Bounded memory through a whole run: block-by-block STFT, inverse, projection and writing
give the numbers and bytes of the whole-signal path; the waveform and the mixture
spectrogram are released as soon as they are no longer needed."""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import SAMPLE
from scipy.signal import ShortTimeFFT

from ilrma_cli import pipeline
from ilrma_cli.audio import (
    AudioWriter,
    _clear_peak_timestamp,
    plan_mixtures,
    read_audio,
    read_mixture,
)
from ilrma_cli.batch import job as batch
from ilrma_cli.cli import cli
from ilrma_cli.engine import ILRMAConfig, project_back, run
from ilrma_cli.pipeline import SourceSignals
from ilrma_cli.stft import StftConfig, istft, istft_span, make_window, spans, stft


def scipy_stft(config: StftConfig) -> ShortTimeFFT:
    """scipy's transform with the same window and hop: the reference of :mod:`ilrma_cli.stft`."""
    return ShortTimeFFT(make_window(config.window, config.n_fft), config.hop, fs=1.0)


CONFIGS = [
    (4096, 1024, "hann", 40000),
    (1000, 250, "sqrt-hann", 33333),
    (511, 100, "hamming", 20000),  # odd frame, hop not dividing it
    (64, 48, "blackman", 777),
    (256, 256, "hamming", 5000),  # no overlap
]
FAST = ["--n-iter", "3", "--n-fft", "1024", "--hop", "512", "--iva-iter", "2"]


@pytest.mark.parametrize(("n_fft", "hop", "window", "n_samples"), CONFIGS)
def test_block_stft_equals_scipys_whole_signal_transform(n_fft, hop, window, n_samples):
    config = StftConfig(n_fft, hop, window)
    x = np.random.default_rng(0).standard_normal((2, n_samples))
    whole = scipy_stft(config).stft(x, axis=-1)
    assert np.array_equal(stft(x, config), whole)
    single = stft(x.astype(np.float32), config, np.complex64)
    assert single.dtype == np.complex64
    assert np.array_equal(
        single, scipy_stft(config).stft(x.astype(np.float32)).astype(np.complex64)
    )


@pytest.mark.parametrize(("n_fft", "hop", "window", "n_samples"), CONFIGS)
@pytest.mark.parametrize("length", [1, 3000, 10**6])
def test_inverse_span_by_span_equals_the_whole_signal_inverse(
    n_fft, hop, window, n_samples, length
):
    config = StftConfig(n_fft, hop, window)
    rng = np.random.default_rng(1)
    shape = stft(np.zeros((2, n_samples)), config).shape
    spec = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)  # not a consistent STFT
    whole = istft(spec, n_samples, config)
    pieces = spans(n_samples, shape[-1], config, length)
    assert pieces[0].start == 0 and pieces[-1].stop == n_samples
    for before, after in zip(pieces[:-1], pieces[1:], strict=True):
        assert before.stop == after.start and after.start % hop == 0
        assert after.stop - after.start >= n_fft
    blocks = [istft_span(spec[..., s.first : s.end], s, config) for s in pieces]
    assert np.array_equal(np.concatenate(blocks, axis=-1), whole)
    reference = scipy_stft(config).istft(spec, k1=n_samples, f_axis=-2, t_axis=-1)
    assert np.allclose(whole, reference, rtol=0, atol=1e-12 * np.abs(reference).max())


@pytest.mark.parametrize("ref_mic", [1, None])
@pytest.mark.parametrize("precision", ["single", "double"])
def test_source_signals_equal_projection_back_then_inverse(ref_mic, precision):
    config = StftConfig(512, 128)
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((3, 20000))
    result = run(stft(mix, config), ILRMAConfig(n_iter=2, precision=precision))
    mixing = np.linalg.inv(result.demix)
    signals = SourceSignals(result.separated, mixing, ref_mic, 20000, config)
    expected = istft(project_back(result.separated, result.demix, ref_mic), 20000, config)
    assert np.array_equal(signals.full(), expected)
    blocks = [block for _, block in signals.blocks(2, length=1000)]
    assert len(blocks) > 10
    assert np.array_equal(np.concatenate(blocks, axis=-1), np.atleast_2d(expected[2]))


@pytest.mark.parametrize(
    ("name", "subtype"),
    [("a.wav", "FLOAT"), ("a.wav", "PCM_16"), ("a.wav", "PCM_24"), ("a.flac", "PCM_16")],
)
def test_writing_block_by_block_gives_the_bytes_of_one_write(tmp_path, name, subtype):
    data = np.random.default_rng(3).uniform(-0.9, 0.9, (2, 50001))
    short = {"FLOAT": "float", "PCM_16": "pcm16", "PCM_24": "pcm24"}[subtype]
    with AudioWriter() as writer:
        writer.write(tmp_path / "one" / name, data, 16000, short)
        with writer.stream(tmp_path / "blocks" / name, 16000, 2, short) as sink:
            for start in range(0, data.shape[1], 7000):
                sink.write(data[:, start : start + 7000])
        writer.commit()
    one = (tmp_path / "one" / name).read_bytes()
    assert (tmp_path / "blocks" / name).read_bytes() == one
    plain = tmp_path / name  # what soundfile writes in one call, time stamp cleared
    sf.write(plain, data.T, 16000, subtype)
    _clear_peak_timestamp(plain)
    assert plain.read_bytes() == one


@pytest.mark.parametrize(
    ("subtype", "dtype"),
    [("PCM_16", np.float32), ("PCM_24", np.float32), ("FLOAT", np.float32), ("PCM_32", np.float64)]
    + [("DOUBLE", np.float64)],
)
def test_narrow_reading_is_float32_only_where_exact(tmp_path, subtype, dtype):
    path = tmp_path / "x.wav"
    data = np.random.default_rng(4).uniform(-1, 1, (70001, 3)) * 0.9
    sf.write(path, data, 16000, subtype=subtype)
    narrow, wide = read_audio(path, narrow=True), read_audio(path)
    assert (narrow.data.dtype, wide.data.dtype) == (dtype, np.float64)
    assert narrow.data.shape == (3, 70001)
    assert np.array_equal(narrow.data.astype(np.float64), wide.data)
    assert np.array_equal(wide.data, sf.read(path, always_2d=True)[0].T)


def test_mono_microphones_are_read_into_one_array(tmp_path):
    (mixture,) = plan_mixtures([SAMPLE / "mic1.wav", SAMPLE / "mic2.wav"])
    stacked = read_mixture(mixture, narrow=True)
    whole = read_audio(SAMPLE / "mix.wav", narrow=True)
    assert stacked.data.dtype == whole.data.dtype == np.float32
    assert np.array_equal(stacked.data, whole.data)


def test_waveform_is_released_before_the_engine_and_spectrogram_before_writing(
    tmp_path, monkeypatch
):
    alive: dict[str, weakref.ref] = {}
    seen: dict[str, bool] = {}
    real_read, real_run, real_write = batch.read_mixture, pipeline.run, batch.write_sources

    def reading(*args, **kwargs):
        audio = real_read(*args, **kwargs)
        alive["waveform"] = weakref.ref(audio.data)
        return audio

    def engine(obs, *args, **kwargs):
        seen["waveform alive in the engine"] = alive["waveform"]() is not None
        alive["spectrogram"] = weakref.ref(obs)
        return real_run(obs, *args, **kwargs)

    def writing(*args, **kwargs):
        seen["spectrogram alive while writing"] = alive["spectrogram"]() is not None
        return real_write(*args, **kwargs)

    monkeypatch.setattr(batch, "read_mixture", reading)
    monkeypatch.setattr(pipeline, "run", engine)
    monkeypatch.setattr(batch, "write_sources", writing)
    result = CliRunner().invoke(
        cli, ["separate", str(SAMPLE / "mix.wav"), "-o", str(tmp_path), *FAST, "-j", "1"]
    )  # in this process, where the spies are
    assert result.exit_code == 0, result.output
    assert seen == {"waveform alive in the engine": False, "spectrogram alive while writing": False}


def test_a_source_too_quiet_for_pcm_is_refused_not_written_as_silence(tmp_path):
    data, rate = sf.read(SAMPLE / "mix.wav")
    quiet = tmp_path / "in" / "quiet.wav"
    quiet.parent.mkdir()
    sf.write(quiet, data[: 3 * rate] * 1e-6 / np.abs(data).max(), rate, subtype="FLOAT")
    out = tmp_path / "out"
    args = ["separate", str(quiet), "-o", str(out), "--filename", "{track}_{index}.flac", *FAST]
    result = CliRunner().invoke(cli, [*args, "--subtype", "pcm16"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {quiet}: separated source(s) [1, 2] are too quiet for pcm16 (peak "
    )
    assert result.stderr.endswith(
        "and would be stored as silence: use --subtype float; nothing written\n"
    )
    assert not out.exists()
    fine = CliRunner().invoke(cli, [*args, "--subtype", "pcm24"])
    assert fine.exit_code == 0, fine.output
    stored = [sf.read(out / f"quiet_{i}.flac", dtype="int32")[0] for i in (1, 2)]
    assert all(np.any(s) for s in stored)


def test_a_source_too_loud_for_float_is_refused_not_written_as_infinity(tmp_path):
    """A float64 file at 1e150 separates (the restarts still pair their runs), but float
    files hold float32: refused; PCM rescales it."""
    data, rate = sf.read(SAMPLE / "mix.wav")
    loud = tmp_path / "in" / "loud.wav"
    loud.parent.mkdir()
    sf.write(loud, data[: 3 * rate] * 1e150, rate, subtype="DOUBLE")
    out = tmp_path / "out"
    args = ["separate", str(loud), "-o", str(out), *FAST, "--restarts", "2", "-j", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {loud}: separated source(s) [1, 2] are too loud for float (peak "
    )
    assert result.stderr.endswith("and would be stored as infinity; nothing written\n")
    assert not out.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow in the runs' pairing
        fine = CliRunner().invoke(cli, [*args, "--subtype", "pcm24"])
    assert fine.exit_code == 0, fine.output
    stored = [sf.read(out / "loud" / f"source{i}.wav")[0] for i in (1, 2)]
    assert all(np.all(np.isfinite(s)) and np.max(np.abs(s)) > 0.5 for s in stored)


def test_an_all_zero_float_source_is_still_called_silent(tmp_path, monkeypatch):
    real_blocks = SourceSignals.blocks

    def second_source_silent(self, source, length=2**18):
        for start, block in real_blocks(self, source, length):
            yield start, block * (source == 0)

    monkeypatch.setattr(SourceSignals, "blocks", second_source_silent)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["separate", str(SAMPLE / "mix.wav"), "-o", str(out), *FAST])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {SAMPLE / 'mix.wav'}: separated source(s) [2] are silent; nothing written\n"
    )
    assert not out.exists()
