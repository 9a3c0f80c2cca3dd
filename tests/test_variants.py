"""Source-model variants, restarts, PCA reduction and the automatic STFT."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import sdr_improvement
from scipy.signal import fftconvolve

from ilrma_cli.engine import ILRMAConfig, run
from ilrma_cli.engine.init import iva_start
from ilrma_cli.pipeline import separate
from ilrma_cli.settings import SeparationSettings, auto_stft
from ilrma_cli.stft import StftConfig


def laplace_mixture(
    seed: int = 0, n_ch: int = 2, n_freq: int = 33, n_frames: int = 60
) -> np.ndarray:
    """Heavy-tailed complex sources mixed by a random matrix per frequency ``(n_ch, n_freq, n_frames)``."""
    rng = np.random.default_rng(seed)
    scale = rng.exponential(1.0, (n_ch, n_freq, n_frames))
    src = np.sqrt(scale) * (
        rng.standard_normal(scale.shape) + 1j * rng.standard_normal(scale.shape)
    )
    mixing = rng.standard_normal((n_freq, n_ch, n_ch)) + 1j * rng.standard_normal(
        (n_freq, n_ch, n_ch)
    )
    return np.einsum("fmn,nft->mft", mixing, src)


@pytest.mark.parametrize("update", ["ip", "iss", "ip2"])
@pytest.mark.parametrize(("model", "dof"), [("t", 1.0), ("t", 5.0), ("partition", 1.0)])
def test_loss_never_increases_without_normalisation(model, dof, update):
    obs = laplace_mixture(n_ch=3 if update == "ip2" else 2)
    config = ILRMAConfig(n_basis=2, n_iter=25, update=update, normalize=False, model=model, dof=dof)
    loss = run(obs, config, seed=1).loss
    assert loss.shape == (26,)
    assert np.all(np.diff(loss) <= 1e-9 * np.abs(loss[:-1])), np.diff(loss).max()
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("update", ["ip", "iss", "ip2"])
def test_iva_start_never_raises_its_loss_and_seeds_the_ilrma_run(update):
    obs = laplace_mixture(n_ch=3)
    demix, loss = iva_start(obs, 15, update)
    assert loss.shape == (16,)
    assert np.all(np.diff(loss) <= 1e-9 * np.abs(loss[:-1])) and loss[-1] < loss[0]
    started = run(obs, ILRMAConfig(n_iter=0, update=update, iva_iter=15), seed=0)
    np.testing.assert_allclose(started.demix, demix)


def test_normalisation_keeps_the_t_loss_comparable():
    obs = laplace_mixture()
    plain = run(obs, ILRMAConfig(n_iter=20, model="t", dof=2.0, normalize=False), seed=0).loss
    scaled = run(obs, ILRMAConfig(n_iter=20, model="t", dof=2.0, normalize=True), seed=0).loss
    assert plain[0] == pytest.approx(scaled[0])
    assert scaled[-1] < scaled[0]


def test_the_general_loop_reproduces_gaussian_ilrma():
    obs = laplace_mixture(n_ch=3)
    config = ILRMAConfig(n_basis=3, n_iter=10, update="iss")
    fast = run(obs, config, seed=4)
    general = run(obs, config, seed=4, backend="reference")
    assert (fast.backend, general.backend) == ("compiled", "reference")
    np.testing.assert_allclose(general.loss, fast.loss, rtol=1e-9)
    np.testing.assert_allclose(general.separated, fast.separated, rtol=1e-6, atol=1e-9)


def test_unknown_model_and_bad_dof_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        ILRMAConfig(model="laplace")
    with pytest.raises(ValueError, match="dof"):
        ILRMAConfig(model="t", dof=0.0)


def _paired_mean(runs: list, kept: int, signatures: list) -> np.ndarray:
    """The mean of the runs' sources, each run's reordered to pair with the kept run's."""
    from ilrma_cli.consensus import pairing

    orders = [pairing(signatures[kept], other)[1] for other in signatures]
    return np.mean([r.sources[order] for r, order in zip(runs, orders, strict=True)], axis=0)


@pytest.mark.parametrize("spatial", ["rank1", "fullrank"])
def test_restarts_give_the_mean_of_the_runs_paired_with_the_medoid(dev_case, spatial):
    from ilrma_cli.consensus import medoid, signature
    from ilrma_cli.pipeline import restart_steps
    from ilrma_cli.stft import stft

    mix, _, rate = dev_case("arctic_2src_rt250")
    mix = mix[:, : 4 * rate]
    config = ILRMAConfig(n_basis=2, n_iter=12, iva_iter=3, spatial=spatial, fullrank_iter=4)
    base = SeparationSettings(stft=StftConfig(1024, 256), ilrma=config, restarts=1)
    single = [separate(mix, replace(base, seed=5 + k)) for k in range(3)]
    calls: list[int] = []
    mean = separate(mix, replace(base, seed=5, restarts=3), callback=lambda i, v: calls.append(i))
    assert mean.final_losses == pytest.approx([s.result.loss[-1] for s in single])
    assert len(calls) == restart_steps(replace(base, restarts=3)) == 3 * config.total_iter
    obs = stft(mix, base.stft)
    signatures = [signature(obs, s.result, 0, base.stft) for s in single]
    kept = medoid(signatures)
    assert mean.seed == 5 + kept
    np.testing.assert_array_equal(mean.result.loss, single[kept].result.loss)
    expected = _paired_mean(single, kept, signatures)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(mean.sources - expected)) <= 1e-9 * scale
    # it is the mean, not one of the runs
    assert min(np.max(np.abs(mean.sources - s.sources)) for s in single) > 1e-3 * scale
    in_workers: list[int] = []
    parallel = separate(
        mix, replace(base, seed=5, restarts=3), lambda i, v: in_workers.append(i), workers=2
    )
    assert sorted(in_workers) == sorted(calls)  # every run's iterations, from the workers
    assert parallel.seed == mean.seed
    np.testing.assert_array_equal(parallel.sources, mean.sources)
    again = separate(mix, replace(base, seed=5, restarts=3))
    np.testing.assert_array_equal(again.sources, mean.sources)


def test_alternate_weights_take_turns_over_the_restarts(dev_case):
    """``fullrank_weights="alternate"``: restart k runs with shared weights for even k, per
    frequency for odd k, and the output is their paired mean, in processes or not; a run
    alone is the shared model."""
    from ilrma_cli.consensus import medoid, signature
    from ilrma_cli.pipeline import restart_config
    from ilrma_cli.stft import stft

    mix, _, rate = dev_case("music_bass_pad_rt450")
    mix = mix[:, : 4 * rate]
    config = ILRMAConfig(n_basis=2, n_iter=12, iva_iter=3, spatial="fullrank", fullrank_iter=4,
                         fullrank_weights="alternate")  # fmt: skip
    base = SeparationSettings(stft=StftConfig(1024, 256), ilrma=config, restarts=1)
    kinds = ("shared", "frequency", "shared")
    single = [
        separate(mix, replace(base, seed=5 + k, ilrma=replace(config, fullrank_weights=kind)))
        for k, kind in enumerate(kinds)
    ]
    assert [s.result.fullrank.spatial_weights.ndim for s in single] == [2, 3, 2]
    obs = stft(mix, base.stft)
    signatures = [signature(obs, s.result, 0, base.stft) for s in single]
    expected = _paired_mean(single, medoid(signatures), signatures)
    scale = np.max(np.abs(expected))
    for workers in (1, 2):
        mean = separate(mix, replace(base, seed=5, restarts=3), workers=workers)
        assert np.max(np.abs(mean.sources - expected)) <= 1e-9 * scale
    alone = separate(mix, replace(base, seed=6))
    np.testing.assert_array_equal(alone.sources, separate(mix, replace(
        base, seed=6, ilrma=replace(config, fullrank_weights="shared"))).sources)  # fmt: skip
    assert np.max(np.abs(alone.sources - single[1].sources)) > 1e-3 * scale  # not per frequency
    assert [restart_config(config, k).fullrank_weights for k in range(3)] == list(kinds)


@pytest.mark.parametrize(
    ("n_ch", "n_sources", "extra"),
    [(2, None, {}), (3, 2, {}), (2, None, {"spatial": "fullrank", "fullrank_iter": 3}),
     (2, None, {"taps": 1, "update": "iss"})],
)  # fmt: skip
def test_a_held_restart_forms_its_separated_spectrogram_again_from_the_mixture(
    n_ch, n_sources, extra
):
    """The restarts drop each run's separated spectrogram while the others run (memory);
    ``demix @ obs`` gives it back (with taps it is not that, so it is kept)."""
    from ilrma_cli.consensus import signature
    from ilrma_cli.engine.images import separated_spectrogram
    from ilrma_cli.pipeline import _held_run

    obs = laplace_mixture(seed=3, n_ch=n_ch)
    config = ILRMAConfig(n_basis=2, n_iter=6, **extra)
    stft_config = StftConfig(64, 16)
    whole = run(obs, config, seed=2, n_sources=n_sources)
    held, sig = _held_run(obs, n_sources, 0, stft_config, (2, config))
    assert held.separated.shape[-1] == (obs.shape[-1] if "taps" in extra else 0)
    np.testing.assert_array_equal(held.demix, whole.demix)
    np.testing.assert_array_equal(held.loss, whole.loss)
    formed = separated_spectrogram(obs, held)
    scale = np.max(np.abs(whole.separated))
    assert np.max(np.abs(formed - whole.separated)) <= 1e-10 * scale
    np.testing.assert_array_equal(sig, signature(obs, whole, 0, stft_config))


def test_two_restarts_pair_with_the_run_of_lower_loss(dev_case):
    from ilrma_cli.consensus import signature
    from ilrma_cli.stft import stft

    mix, _, rate = dev_case("arctic_2src_rt250")
    mix = mix[:, : 4 * rate]
    base = SeparationSettings(
        stft=StftConfig(1024, 256), ilrma=ILRMAConfig(n_basis=2, n_iter=15), restarts=1
    )
    single = [separate(mix, replace(base, seed=5 + k)) for k in range(2)]
    mean = separate(mix, replace(base, seed=5, restarts=2, images=True))
    kept = int(np.argmin([s.result.loss[-1] for s in single]))
    assert mean.seed == 5 + kept
    obs = stft(mix, base.stft)
    signatures = [signature(obs, s.result, 0, base.stft) for s in single]
    images = [separate(mix, replace(base, seed=5 + k, images=True)) for k in range(2)]
    expected = _paired_mean(images, kept, signatures)  # (n_src, n_mics, n_samples)
    assert mean.sources.shape == expected.shape == (2, 2, mix.shape[1])
    assert np.max(np.abs(mean.sources - expected)) <= 1e-9 * np.max(np.abs(expected))


def test_pca_reduction_separates_two_sources_at_three_mics(dev_case):
    mix, refs, rate = dev_case("arctic_2src_rt250")
    n = 5 * rate
    refs = refs[:, :n]
    # Third microphone: each source's image at mic 0 through a short, different filter.
    third = sum(
        fftconvolve(image, taps)[:n]
        for image, taps in zip(refs, ([0, 0, 0.9, 0.2], [0.8, -0.3, 0.1]), strict=True)
    )
    mix3 = np.vstack([mix[:, :n], third])
    settings = SeparationSettings(
        stft=StftConfig(2048, 512), ilrma=ILRMAConfig(n_basis=2, n_iter=40), n_sources=2
    )
    separation = separate(mix3, settings)
    assert separation.sources.shape == (2, n)
    assert sdr_improvement(refs, separation.sources, mix3[0]) > 8.0
    images = separate(mix3, replace(settings, images=True))
    assert images.sources.shape == (2, 3, n)


def test_n_sources_above_the_channels_is_refused_with_the_rank1_model():
    rank1 = SeparationSettings(n_sources=3, ilrma=ILRMAConfig(spatial="rank1"))
    with pytest.raises(ValueError, match="n-sources 3 needs .* or --spatial fullrank"):
        separate(np.ones((2, 8000)), rank1, rate=16000)


@pytest.mark.parametrize(
    ("rate", "n_fft"), [(8000, 2048), (16000, 4096), (22050, 4096), (44100, 8192), (48000, 8192)]
)
def test_auto_stft_scales_with_the_sample_rate(rate, n_fft):
    config = auto_stft(rate)
    assert (config.n_fft, config.hop) == (n_fft, n_fft // 4)
    with pytest.raises(ValueError, match="sample rate"):
        separate(np.ones((2, 8000)), SeparationSettings())
