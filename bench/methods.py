"""The separators under test, behind one signature.

``separate(name, obs, n_iter, seed) -> images`` takes the mixture spectrogram
``(n_channels, n_freq, n_frames)`` (complex128, from :func:`ilrma_cli.stft.stft`)
and returns the separated sources at mic 0 ``(n_sources, n_freq, n_frames)``.
All use 2 NMF bases, normalisation on, no loss recording, projection back to mic 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ilrma_cli.engine import ILRMAConfig, project_back, run

N_BASIS = 2


def _ilrma(update: str, precision: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def separate(obs: np.ndarray, n_iter: int, seed: int) -> np.ndarray:
        if precision == "single":
            obs = obs.astype(np.complex64, copy=False)
        config = ILRMAConfig(
            n_basis=N_BASIS, n_iter=n_iter, update=update, record_loss=False, precision=precision
        )
        result = run(obs, config, seed=seed)
        return project_back(result.separated, result.demix, 0)

    return separate


def _pyroomacoustics(obs: np.ndarray, n_iter: int, seed: int) -> np.ndarray:
    import pyroomacoustics as pra

    np.random.seed(seed)  # noqa: NPY002  (pra draws its initialisation from the global generator)
    out = pra.bss.ilrma(obs.transpose(2, 1, 0), n_iter=n_iter, n_components=N_BASIS)
    return out.transpose(2, 1, 0)


def _ssspy(algorithm: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def separate(obs: np.ndarray, n_iter: int, seed: int) -> np.ndarray:
        from ssspy.bss.ilrma import GaussILRMA

        model = GaussILRMA(
            N_BASIS,
            spatial_algorithm=algorithm,
            record_loss=False,
            rng=np.random.default_rng(seed),
        )
        return model(obs, n_iter=n_iter)

    return separate


METHODS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "ilrma ip (double)": _ilrma("ip", "double"),
    "ilrma iss (double)": _ilrma("iss", "double"),
    "ilrma ip2 (double)": _ilrma("ip2", "double"),
    "ilrma ip (single)": _ilrma("ip", "single"),
    "ilrma iss (single)": _ilrma("iss", "single"),
    "ilrma ip2 (single)": _ilrma("ip2", "single"),
    "pyroomacoustics ilrma": _pyroomacoustics,
    "ssspy GaussILRMA IP1": _ssspy("IP"),
    "ssspy GaussILRMA ISS1": _ssspy("ISS"),
}
PEERS = ("pyroomacoustics ilrma", "ssspy GaussILRMA IP1", "ssspy GaussILRMA ISS1")
# Timed and scored: single precision changes only how ilrma stores its spectrograms
# (the Gaussian model iterates in double either way), so it is measured for memory only.
TIMED = tuple(name for name in METHODS if "(single)" not in name)


def separate(name: str, obs: np.ndarray, n_iter: int, seed: int = 0) -> np.ndarray:
    """Run method ``name``; see the module docstring."""
    return METHODS[name](obs, n_iter, seed)
