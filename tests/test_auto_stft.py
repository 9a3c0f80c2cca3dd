"""The automatic STFT: the frame grows with the recording's length (QUALITY.md, "Frame length")."""

import pytest

from ilrma_cli.settings import AUTO_MIN_FRAMES, auto_stft


@pytest.mark.parametrize(
    ("seconds", "n_fft"),
    [(2.0, 4096), (6.0, 4096), (7.0, 8192), (8.5, 8192), (9.0, 11000), (30.0, 11000)],
)
def test_the_frame_is_the_longest_that_leaves_enough_frames_at_16_khz(seconds, n_fft):
    config = auto_stft(16000, n_samples=int(seconds * 16000))
    assert (config.n_fft, config.hop) == (n_fft, n_fft // 4)
    if n_fft > 4096:
        assert seconds * 16000 / config.hop >= AUTO_MIN_FRAMES


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_frames_keep_their_duration_across_rates_and_stay_fast_to_transform(rate):
    longest = auto_stft(rate, n_samples=60 * rate)
    assert longest.n_fft % 4 == 0 and longest.hop == longest.n_fft // 4
    assert abs(longest.n_fft / rate - 0.6875) < 0.02
    rest = longest.n_fft
    for prime in (2, 3, 5, 7, 11):
        while rest % prime == 0:
            rest //= prime
    assert rest == 1  # only small prime factors: a fast FFT
    assert auto_stft(rate, n_samples=None) == auto_stft(rate, n_samples=rate)  # short: today's


def test_the_rule_is_monotone_in_the_length():
    sizes = [auto_stft(16000, n_samples=n).n_fft for n in range(16000, 40 * 16000, 4000)]
    assert sizes == sorted(sizes)


def test_more_sources_than_channels_take_the_shortest_frame_whatever_the_length():
    from ilrma_cli.settings import SeparationSettings

    long = 60 * 16000
    more = SeparationSettings(n_sources=3).for_rate(16000, long, n_channels=2)
    assert more.stft == auto_stft(16000, n_samples=None)  # 4096/1024
    determined = SeparationSettings(n_sources=2).for_rate(16000, long, n_channels=2)
    assert determined.stft == auto_stft(16000, n_samples=long)  # 11000/2750
    assert determined.stft != more.stft
