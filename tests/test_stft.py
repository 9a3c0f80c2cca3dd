import numpy as np
import pytest

from ilrma_cli.stft import WINDOWS, StftConfig, istft, make_window, n_frames, stft


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    ("n_fft", "hop", "n_samples"),
    [(4096, 2048, 20001), (11000, 2750, 33333), (512, 128, 1000), (64, 48, 777)],
)
def test_round_trip_is_exact_and_keeps_length(window, n_fft, hop, n_samples):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, n_samples))
    config = StftConfig(n_fft, hop, window)
    spec = stft(x, config)
    assert spec.shape == (3, n_fft // 2 + 1, n_frames(n_samples, config))
    y = istft(spec, n_samples, config)
    assert y.shape == x.shape
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < 1e-10


@pytest.mark.parametrize("window", ["hann", "sqrt-hann", "blackman"])
def test_a_window_that_leaves_samples_uncovered_is_refused(window):
    with pytest.raises(ValueError) as err:
        StftConfig(1024, 1024, window)
    assert str(err.value) == (
        f"the {window} window with hop 1024 and n_fft 1024 cannot be inverted: "
        "its frames leave samples uncovered; use a smaller hop"
    )
    assert StftConfig(1024, 1024, "hamming").hop == 1024  # never zero: fine


def test_istft_accepts_extra_leading_axes():
    x = np.random.default_rng(0).standard_normal((2, 5000))
    config = StftConfig(256, 64)
    images = np.stack([stft(x, config)] * 3)  # (3 sources, 2 mics, F, T)
    assert istft(images, 5000, config).shape == (3, 2, 5000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_fft": 0}, "n_fft must be an integer >= 2, got 0"),
        ({"n_fft": 256, "hop": 0}, "hop must be an integer in [1, n_fft=256], got 0"),
        ({"n_fft": 256, "hop": 300}, "hop must be an integer in [1, n_fft=256], got 300"),
        (
            {"window": "kaiser"},
            "unknown window 'kaiser'; choose one of hann, hamming, blackman, sqrt-hann",
        ),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        StftConfig(**kwargs)
    assert str(err.value) == message


def test_stft_rejects_one_dimensional_input():
    with pytest.raises(
        ValueError, match=r"x must have shape \(n_channels, n_samples\), got \(100,\)"
    ):
        stft(np.zeros(100))


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman"])
@pytest.mark.parametrize("n_fft", [2, 3, 64, 777, 4096, 11000])
def test_windows_are_scipys_periodic_windows(window, n_fft):
    from scipy.signal import get_window

    assert np.array_equal(make_window(window, n_fft), get_window(window, n_fft, fftbins=True))
    assert np.array_equal(make_window("sqrt-hann", n_fft), np.sqrt(make_window("hann", n_fft)))


def test_fast_lengths_are_scipys():
    from scipy.fft import next_fast_len as scipys

    from ilrma_cli.settings import next_fast_len

    assert [next_fast_len(n) for n in range(1, 20000)] == [scipys(n) for n in range(1, 20000)]


def test_istft_refuses_a_length_its_frames_do_not_cover():
    config = StftConfig(256, 64)
    spec = stft(np.zeros((1, 1000)), config)
    with pytest.raises(ValueError, match="frames give between"):
        istft(spec, 5000, config)
