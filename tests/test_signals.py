"""``load_signals``: the signals to score, read from files (library level, no click)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from ilrma_cli.errors import InputError
from ilrma_cli.signals import load_signals


@pytest.fixture
def ilrma_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """Records of the ``ilrma`` logger, caught at the logger (the command line stops it
    from propagating)."""
    logger = logging.getLogger("ilrma")
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="ilrma")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_images_are_read_at_the_reference_mic_and_trimmed_with_a_logged_warning(
    tmp_path, ilrma_log, capsys
):
    rng = np.random.default_rng(0)
    image, mono = rng.standard_normal((1000, 2)), rng.standard_normal(900)
    sf.write(tmp_path / "image.wav", image, 8000, subtype="DOUBLE")
    sf.write(tmp_path / "mono.wav", mono, 8000, subtype="DOUBLE")
    signals, rate = load_signals([tmp_path / "image.wav", tmp_path / "mono.wav"], ref_mic=1)
    assert rate == 8000 and signals.shape == (2, 900)
    np.testing.assert_array_equal(signals, [image[:900, 1], mono])
    assert [(r.name, r.levelname, r.getMessage()) for r in ilrma_log.records] == [
        ("ilrma", "WARNING",
         f"lengths differ: {tmp_path / 'mono.wav'} has 900 samples, {tmp_path / 'image.wav'} "
         "has 1000; every signal is trimmed to 900 samples"),
    ]  # fmt: skip
    assert capsys.readouterr().err == ""  # nothing printed: the logger's handler decides


def test_equal_lengths_log_nothing_and_a_missing_channel_names_the_file(tmp_path, ilrma_log):
    sf.write(tmp_path / "a.wav", np.ones((10, 2)), 8000)
    load_signals([tmp_path / "a.wav", tmp_path / "a.wav"])
    assert ilrma_log.records == []
    with pytest.raises(InputError, match=r"a\.wav: has 2 channels: --ref-mic 2 does not exist"):
        load_signals([tmp_path / "a.wav"], ref_mic=2)
