import pytest

from ilrma_cli.engine.threads import N_CHUNKS
from ilrma_cli.memory import (
    ENGINE_SCRATCH,
    MARGIN,
    REFERENCE_ARRAYS,
    baseline_bytes,
    engine_bytes,
    estimate_peak_bytes,
    long_phase_bytes,
    phase_bytes,
)

TEN_MINUTES = 600 * 16000
MIB = 2**20


def test_engine_term_counts_spectrogram_features_nmf_factors_and_the_kernels():
    bins = 2049 * 4689  # 10 minutes at 4096/2048
    nmf = 2 * 2 * 2 * (2049 + 4689) * 8
    chunk_sums = 2 * N_CHUNKS * 2 * 2 * 4689 * 8  # per frequency chunk, any thread count
    for precision, cplx in (("double", 16), ("single", 8)):
        iterating = 2 * bins * cplx + 4 * bins * 8 + nmf + chunk_sums
        assert engine_bytes(2, 2049, 4689, 2, precision) == ENGINE_SCRATCH + iterating
    # The larger of the iterating and finishing (two spectrograms) phases counts.
    assert engine_bytes(2, 1, 10, 1, "double") == ENGINE_SCRATCH + max(
        2 * 10 * 16 + 4 * 10 * 8 + 2 * 2 * 11 * 8 + 2 * 2 * 10 * 8, 2 * 2 * 10 * 16
    )


def test_estimate_is_the_largest_phase_with_its_margin_over_the_baseline():
    phases = phase_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double")
    bins = 2049 * 4689
    assert phases["read"] == 2 * TEN_MINUTES * 8
    assert phases["engine"] == engine_bytes(2, 2049, 4689, 2, "double")
    assert phases["stft"] > phases["read"] + 2 * bins * 16
    assert 2 * bins * 16 < phases["output"] < 2 * bins * 16 * 1.1
    assert max(phases, key=phases.get) == "engine"
    assert estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double") == int(
        baseline_bytes() + MARGIN * phases["engine"]
    )


@pytest.mark.parametrize(
    ("n_fft", "hop", "precision", "measured_mib"),
    [(4096, 1024, "double", 1243), (4096, 1024, "single", 949)]
    + [(4096, 2048, "double", 657), (4096, 2048, "single", 509)],
)
def test_estimate_is_within_a_few_percent_above_the_calibration_runs(
    n_fft, hop, precision, measured_mib
):
    # VmHWM of `ilrma separate` on 10 minutes of 2-channel 16 kHz audio (bench/peak_memory.py).
    estimate = estimate_peak_bytes(2, TEN_MINUTES, n_fft, hop, 2, precision) / MIB
    assert measured_mib <= estimate <= 1.04 * measured_mib


def test_estimate_grows_linearly_and_single_precision_needs_less():
    one, six, eleven = (
        estimate_peak_bytes(2, k * TEN_MINUTES, 4096, 2048, 2, "double") for k in (1, 6, 11)
    )
    assert eleven - six == pytest.approx(six - one, rel=1e-3)
    single = estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "single")
    assert single < one
    assert estimate_peak_bytes(3, TEN_MINUTES, 4096, 2048, 2, "double") > 1.5 * one


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'half'; choose one of single, double"):
        estimate_peak_bytes(2, 1000, 256, 128, 2, "half")


def test_the_reference_loop_counts_its_per_bin_arrays():
    bins = 2049 * 4689
    compiled = engine_bytes(2, 2049, 4689, 2, "double")
    reference = engine_bytes(2, 2049, 4689, 2, "double", backend="reference")
    chunk_sums = 2 * N_CHUNKS * 2 * 2 * 4689 * 8  # the compiled sweeps' only extra
    assert reference - compiled == REFERENCE_ARRAYS * 2 * bins * 8 - chunk_sums
    assert estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double", "reference") == int(
        baseline_bytes() + MARGIN * reference
    )


@pytest.mark.parametrize(
    ("n_fft", "hop", "images", "measured_mib"),
    [(4096, 2048, False, 990), (4096, 2048, True, 1285), (11000, 2750, False, 1869)],
)
def test_the_fullrank_refinement_is_counted_within_a_few_percent_of_calibration_runs(
    n_fft, hop, images, measured_mib
):
    # VmHWM of `ilrma separate --spatial fullrank` (ILRMA's 4 bases, the refinement's 16;
    # --images or not) on 10 minutes of 2-channel 16 kHz audio. The rank-1 terms alone
    # count 680 MiB at 4096/2048.
    estimate = estimate_peak_bytes(
        2, TEN_MINUTES, n_fft, hop, 4, "double", spatial="fullrank", images=images
    )
    assert measured_mib <= estimate / MIB <= 1.04 * measured_mib
    more_bases = estimate_peak_bytes(
        2, TEN_MINUTES, n_fft, hop, 4, "double", spatial="fullrank", fullrank_basis=64,
        images=images,
    )  # fmt: skip
    assert more_bases >= estimate  # more only while iterating is the peak (not the images)


@pytest.mark.parametrize(
    ("spatial", "images", "measured_mib"),
    [("rank1", False, 1819), ("fullrank", False, 1595), ("fullrank", True, 2474)],
)
def test_restarts_are_counted_above_the_calibration_runs(spatial, images, measured_mib):
    # VmHWM of `ilrma separate --restarts 3 --n-fft 4096 --hop 2048 --n-iter 2 --n-basis 2
    # (--fullrank-iter 2) [--images] --max-memory 20G` on 10 minutes of 2-channel 16 kHz
    # float32 audio: the mean of three runs' images (one run: 657 MiB rank 1, 990 full rank).
    one = estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double", spatial=spatial,
                              images=images)  # fmt: skip
    three = estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double", spatial=spatial,
                                images=images, restarts=3)  # fmt: skip
    assert measured_mib <= three / MIB <= 1.15 * measured_mib
    assert three > 1.3 * one  # above one run: this is what picks the long path


@pytest.mark.parametrize(
    ("n_ch", "fit_frames", "measured_mib"),
    [(4, 351, 554), (4, 276, 452), (4, 1702, 1912), (2, 3494, 1520)],
)
def test_the_long_path_counts_the_signatures_of_its_restarts(n_ch, fit_frames, measured_mib):
    # VmHWM of `ilrma separate` (4 restarts) on the long path, 16 kHz audio at 11000/2750:
    # 3 minutes of 4 channels with --max-memory 500M (--n-iter 3 --iva-iter 2), which fitted
    # on 351 frames before the signatures were counted (554 MiB, over the limit: a finished
    # run's signature over every fit frame was the peak) and on 276 after; 10 minutes of 4
    # channels at the default limit (1702 frames), whose peak is the fit of the last run
    # beside the signatures of the three before; 10 minutes of 2 channels, every frame fitted
    # (read a run at a time: read at once, the samples alone held 146 MiB more).
    phases = long_phase_bytes(n_ch, 11000, 2750, 4, "double", "compiled", fit_frames, restarts=4)
    estimate = (baseline_bytes() + MARGIN * max(phases.values())) / MIB
    assert measured_mib <= estimate <= 1.03 * measured_mib
    one_run = long_phase_bytes(n_ch, 11000, 2750, 4, "double", "compiled", fit_frames)
    assert one_run["signature"] < one_run["fit"] < phases["fit"]  # no signatures for one run
