"""Our demixing rules against ssspy's, from the same initial state (``make bench``).

Both libraries start from the identity demixing matrices and the same random NMF factors
(drawn by :class:`ilrma_cli.engine.source_models.GaussNMF`), on the mixture scaled to unit
mean power (our working scale, so that the floors agree), with power normalisation, and
run the same iterations of IP, ISS or IP2. Printed per case, rule and seed: the SDR of
each library's output (projection back to mic 0, best permutation) and their difference.
Usage: ``python bench/crosscheck_ssspy.py [--n-iter 50] [--seeds 0,1,2]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from ilrma_cli.engine import ILRMAConfig, InitialState, project_back, run
from ilrma_cli.engine.source_models import GaussNMF
from ilrma_cli.metrics import score
from ilrma_cli.stft import StftConfig, istft, stft

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
CASES = ("arctic_2src_rt250", "arctic_2src_rt500", "arctic_4mic_2src_rt600")
SSSPY_RULES = {"ip": "IP", "iss": "ISS", "ip2": "IP2"}
N_BASIS = 2
STFT = StftConfig(4096, 2048)


def _sdr(obs: np.ndarray, separated: np.ndarray, demix: np.ndarray, refs: np.ndarray) -> float:
    at_mic = project_back(separated, demix, 0)
    estimates = istft(at_mic, refs.shape[1], STFT)
    return float(np.mean(score(refs, estimates).sdr))


def _implied_demix(obs: np.ndarray, separated: np.ndarray) -> np.ndarray:
    """``W_f = Y_f X_f^H (X_f X_f^H)^{-1}`` ``(n_freq, n_src, n_ch)``: ssspy's ISS keeps outputs only."""
    x, y = obs.transpose(1, 0, 2), separated.transpose(1, 0, 2)
    return (
        np.linalg.solve(x @ x.conj().transpose(0, 2, 1), x @ y.conj().transpose(0, 2, 1))
        .conj()
        .transpose(0, 2, 1)
    )


def crosscheck(case: str, rule: str, seed: int, n_iter: int) -> tuple[float, float]:
    """``(ours, ssspy)`` mean SDR in dB from the same start."""
    from ssspy.bss.ilrma import GaussILRMA

    mix, rate = sf.read(DEV / case / "mix.wav", dtype="float64", always_2d=True)
    mix = mix.T[:2]  # determined: two sources, two mics
    refs = np.stack([sf.read(DEV / case / f"src{k}.wav", always_2d=True)[0][:, 0] for k in (1, 2)])
    obs = stft(mix, STFT, np.complex128)
    obs /= np.sqrt(np.mean(obs.real**2 + obs.imag**2))
    n_ch, n_freq, n_frames = obs.shape
    start = GaussNMF.random(n_ch, n_freq, n_frames, N_BASIS, np.random.default_rng(seed), 1e-12)
    demix = np.tile(np.eye(n_ch, dtype=np.complex128), (n_freq, 1, 1))
    init = InitialState(demix=demix, basis=start.basis, activation=start.activation)
    ours = run(
        obs, ILRMAConfig(n_basis=N_BASIS, n_iter=n_iter, update=rule, record_loss=False), init=init
    )
    model = GaussILRMA(
        N_BASIS,
        spatial_algorithm=SSSPY_RULES[rule],
        normalization="power",
        scale_restoration=False,
        record_loss=False,
    )
    theirs = model(
        obs,
        n_iter=n_iter,
        demix_filter=demix.copy(),
        basis=start.basis.copy(),
        activation=start.activation.copy(),
    )
    return (
        _sdr(obs, ours.separated, ours.demix, refs),
        _sdr(obs, theirs, _implied_demix(obs, theirs), refs),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-iter", type=int, default=50)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| case | rule | seed | ilrma SDR dB | ssspy SDR dB | difference |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for case in CASES:
        for rule in SSSPY_RULES:
            for seed in seeds:
                ours, theirs = crosscheck(case, rule, seed, args.n_iter)
                worst = max(worst, abs(ours - theirs))
                print(
                    f"| {case} | {rule} | {seed} | {ours:.3f} | {theirs:.3f} | {ours - theirs:+.3f} |",
                    flush=True,
                )
    print(
        f"\nlargest difference: {worst:.3f} dB ({args.n_iter} iterations, {N_BASIS} bases, 4096/2048)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
