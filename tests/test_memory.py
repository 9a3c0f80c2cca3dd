import pytest

from ilrma_cli.memory import BASELINE, estimate_peak_bytes

TEN_MINUTES = 600 * 16000


def test_estimate_matches_the_calibration_in_the_docstring():
    # 2 channels, 10 minutes, 4096/2048, double: spectrogram + features + 3 per-bin arrays.
    bins = 2049 * 4689
    model = 2 * bins * 16 + 4 * bins * 8 + 3 * 2 * bins * 8 + 2 * 2 * (2049 + 4689) * 8
    assert estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double") == int(
        BASELINE + 1.1 * model
    )


def test_estimate_grows_linearly_and_single_precision_needs_less():
    one = estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double") - BASELINE
    six = estimate_peak_bytes(2, 6 * TEN_MINUTES, 4096, 2048, 2, "double") - BASELINE
    assert six == pytest.approx(6 * one, rel=1e-3)
    single = estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "single")
    assert single < estimate_peak_bytes(2, TEN_MINUTES, 4096, 2048, 2, "double")
    assert estimate_peak_bytes(3, TEN_MINUTES, 4096, 2048, 2, "double") > one + BASELINE


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'half'; choose one of single, double"):
        estimate_peak_bytes(2, 1000, 256, 128, 2, "half")
