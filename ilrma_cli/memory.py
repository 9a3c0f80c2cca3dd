"""Up-front estimate of the peak memory of one separation, so that a run can be refused early.

A whole ``ilrma separate`` run goes through four phases, each with its own set of
arrays alive (sizes in bytes; ``m`` channels = sources, ``N`` samples, ``B = n_freq
n_frames`` time-frequency bins, ``c`` the complex item size: 8 single, 16 double):

- read: the waveform ``m N 8`` (an upper bound: a file whose samples float32 holds
  exactly is read as float32, see :func:`ilrma_cli.audio.sample_dtype`);
- STFT: the waveform and the mixture spectrogram ``m B c``, filled block by block;
- engine (:func:`engine_bytes`, the only term that depends on the engine): the
  mixture spectrogram and the engine's own arrays; the waveform is gone by then;
- output: the separated spectrogram ``m B c`` and one block of frames and samples
  (the mixture spectrogram is gone; sources are made and written block by block).

The peak is the interpreter with the CLI's modules loaded (``BASELINE``) plus the
largest phase, times a small ``MARGIN``. What ``--refs`` or ``--spectrograms`` hold
on top (the sources at the reference mic, ``m N 8``, and the references), and the
copies of the processes of ``-j``, are not counted. ``--restarts N`` adds a phase that forms
the mean of the runs' images (:func:`restart_bytes`; the finished runs hold only their
matrices and models until then).

Calibration: VmHWM of the real CLI in a fresh process (``bench/peak_memory.py``,
``--n-basis 2 --n-iter 2 --restarts 1``, other options at their defaults, kernels built
ahead of time), 16 kHz float32 WAV, 600 s, measured / estimated MiB (session 10)::

    channels  STFT       double               single
    2         4096/1024  1243 / 1278 (+2.8%)   949 /  979 (+3.1%)
    2         4096/2048   657 /  675 (+2.7%)   509 /  525 (+3.1%)
    3         4096/2048  1171 / 1201 (+2.6%)

(2048/512 has the bins of 4096/1024.) The full-rank default at 4096/2048 (``--n-iter 2
--fullrank-iter 2``, 4 bases): 990 / 1002 (+1.2%), with ``--images`` 1285 / 1300, at
11000/2750 1869 / 1899; with ``--dereverb 4`` (its stage at 4096/1024, the separation at
11000/2750): 1885 / 2035 MiB (+8.0%), the stage being the peak (:func:`dereverb_bytes`
counts the waveform in float64; this file reads as float32). On numba's JIT kernels
(``ILRMA_JIT=1``) the peaks are 116-120 MiB higher (777 and 1106 MiB at 4096/2048,
rank 1 and full rank), which ``JIT_SCRATCH`` counts. For 60 s the estimate is a few %
further above the measured peak (the constants weigh more). After a change of the engine,
refit :func:`engine_bytes` on ``make bench``'s memory table.

The long path (:mod:`ilrma_cli.longform`, taken when this estimate exceeds the limit)
holds the engine on ``fit_frames`` frames, or one streamed span
(:func:`long_phase_bytes`): neither grows with the length, and :func:`long_fit_frames`
chooses the most frames that fit ``LONG_SAFETY`` of the limit (measured:
``bench/long_memory.py``, BENCHMARKS.md "Long inputs").
"""

from __future__ import annotations

import os
import re

from ilrma_cli.consensus import signature_span
from ilrma_cli.engine.observation import BLOCK_BINS
from ilrma_cli.engine.threads import N_CHUNKS
from ilrma_cli.stft import FRAMES_PER_BLOCK, SPAN_SAMPLES, StftConfig, n_frames

BASELINE = 41 * 2**20  # VmRSS after importing the command's modules (numpy, soundfile, click)
JIT_SCRATCH = 118 * 2**20  # numba and LLVM, when the kernels are not built ahead of time
MARGIN = 1.02
ITEMSIZE = {"single": (4, 8), "double": (8, 16)}  # (real, complex)
# The compiled kernels (the ahead-of-time extensions, or numba's JIT ones loaded from its
# cache) and small temporaries, fitted on the calibration runs (the same for every input
# size); the full-rank model adds FULLRANK_SCRATCH (its kernels and the refit's temporaries).
ENGINE_SCRATCH = 30 * 2**20
FULLRANK_SCRATCH = 32 * 2**20
# Float64 arrays of m B values that the reference loop (ilrma_cli.engine.reference) holds at
# its peak beyond the features: powers, variances, weights and the source model's update
# temporaries (t model, the largest), measured with tracemalloc for 2 and 3 channels.
REFERENCE_ARRAYS = 8
# The long path (ilrma_cli.longform): taken above LONG_PATH_CAP (or --max-memory, or the memory
# available); its fit frames fill LONG_SAFETY of that limit, in runs of LONG_RUN_FRAMES
# contiguous frames, and it needs at least MIN_FIT_FRAMES of them.
LONG_PATH_CAP = 2 * 2**30
# Arrays the size of the mean of --restarts counted while it is formed: the mean, one run's
# images and what else the measured peaks showed (with 3 restarts the estimate is 6-11 %
# above them, tests/test_memory.py).
RESTART_MEANS = 3
LONG_SAFETY = 0.9
LONG_RUN_FRAMES = 32
MIN_FIT_FRAMES = 64


def engine_bytes(
    n_channels: int,
    n_freq: int,
    n_frames: int,
    n_basis: int,
    precision: str,
    backend: str = "compiled",
    spatial: str = "rank1",
    taps: int = 0,
    fullrank_basis: int = 16,
    n_sources: int | None = None,
    images: bool = True,
) -> int:
    """Peak bytes alive while the engine runs, the mixture spectrogram included.

    Iterating: the spectrogram ``m B c``, the outer-product features ``m^2 B 8``
    (float64 in either precision) and the NMF factors with their update sums
    ``2 m n_basis (n_freq + n_frames) 8``; the compiled sweeps keep nothing else
    per bin, only each frequency chunk's activation sums ``2 N_CHUNKS m n_basis n_frames 8``
    (whatever the thread count); the reference loop (``backend="reference"``: models
    without a compiled form) ``REFERENCE_ARRAYS`` float64 arrays of ``m B`` values.
    Finishing: the spectrogram and the separated spectrogram made from it, ``2 m B c``.
    Plus ``ENGINE_SCRATCH`` throughout (and ``FULLRANK_SCRATCH`` with the full-rank model).

    ``spatial="fullrank"`` adds the refinement (:mod:`ilrma_cli.engine.fullrank_refine`):
    the spectrogram, the features, the refit of the NMF to ``fullrank_basis`` bases at its
    start (the demixed powers ``m B 8``, its temporaries one block of frequencies at a time)
    and the model of ``n_sources`` (default ``m``) with its chunk sums, the spatial weights
    counted per frequency ``(1 + 2 N_CHUNKS) n m n_freq 8`` (the larger of the two layouts:
    ``--fullrank-weights frequency`` and every other run of ``alternate``); finishing holds the
    Wiener images, at every mic with ``images`` (:func:`fullrank_images_bytes`).

    With ``taps`` L > 0 the compiled sweeps (:mod:`ilrma_cli.engine.taps_compiled`) hold,
    instead of the features, each mic's frames once ``m B 16`` (float64 real and imaginary
    planes, the stack is never formed), the NMF factors and the activation update's two
    sums per frequency chunk, and no per-bin statistics but, with ``tap_refresh`` above 1,
    the outputs from one sweep to the next ``N B 16`` (``N <= m`` sources); finishing adds,
    once they are gone, the complex128 outputs ``m B 16`` and their copy in the output
    precision (single only), so the peak is the finishing one either way.
    The reference loop (:mod:`ilrma_cli.engine.taps`) holds the stacked frames ``K B 16``
    (complex128, ``K = m (1 + L)``) and the extended covariances ``m K^2 n_freq 16``;
    finishing holds the stacked frames and two complex128 copies of the outputs ``2 m B 16``.
    """
    cplx = ITEMSIZE[precision][1]
    m, bins = n_channels, n_freq * n_frames
    spectrogram = m * bins * cplx
    chunk_sums = 2 * min(N_CHUNKS, n_freq) * m * n_basis * n_frames * 8  # engine.threads
    if taps and backend == "compiled":
        frames = m * bins * 16
        nmf = m * n_basis * (n_freq + n_frames) * 8 + chunk_sums  # the factors and their sums
        iterating = spectrogram + frames + nmf
        outputs = m * bins * 16 + (m * bins * cplx if cplx < 16 else 0)
        return ENGINE_SCRATCH + max(iterating, spectrogram + frames + nmf + outputs)
    if taps:
        width = m * (1 + taps)
        stacked = width * bins * 16
        nmf = 2 * m * n_basis * (n_freq + n_frames) * 8
        iterating = spectrogram + stacked + m * width**2 * n_freq * 16 + nmf
        iterating += REFERENCE_ARRAYS * m * bins * 8
        return ENGINE_SCRATCH + max(iterating, spectrogram + stacked + 2 * m * bins * 16)
    iterating = spectrogram + m * m * bins * 8 + 2 * m * n_basis * (n_freq + n_frames) * 8
    if backend == "reference":
        iterating += REFERENCE_ARRAYS * m * bins * 8
    else:
        iterating += chunk_sums
    if spatial == "fullrank":
        n_src = max(m, n_sources or m)
        model = 2 * n_src * fullrank_basis * (n_freq + n_frames) * 8
        model += 2 * min(N_CHUNKS, n_freq) * n_src * fullrank_basis * n_frames * 8
        model += (1 + 2 * min(N_CHUNKS, n_freq)) * n_src * n_freq * m * 8  # weights, chunk sums
        refit = m * bins * 8 + 5 * m * min(bins, BLOCK_BINS) * 8
        iterating = max(iterating, spectrogram + m * m * bins * 8 + refit + model)
    return scratch_bytes(spatial) + max(
        iterating, 2 * spectrogram + fullrank_images_bytes(m, bins, spatial, n_sources, images)
    )


def fullrank_images_bytes(
    n_channels: int, bins: int, spatial: str, n_sources: int | None = None, images: bool = True
) -> int:
    """The full-rank model's Wiener images of ``n_sources`` (default: one per channel),
    complex128, at every mic with ``images``, else at the reference mic (0 for rank 1)."""
    n_src = n_sources or n_channels
    return n_src * (n_channels if images else 1) * bins * 16 if spatial == "fullrank" else 0


def estimate_peak_bytes(
    n_channels: int,
    n_samples: int,
    n_fft: int,
    hop: int,
    n_basis: int,
    precision: str,
    backend: str = "compiled",
    spatial: str = "rank1",
    taps: int = 0,
    fullrank_basis: int = 16,
    n_sources: int | None = None,
    images: bool = True,
    dereverb: tuple[int, int, int] | None = None,
    restarts: int = 1,
) -> int:
    """Estimated peak resident bytes of a whole ``ilrma separate`` run (see the module docstring).

    ``backend`` is the engine's (:func:`ilrma_cli.engine.run.choose_backend`);
    ``dereverb`` is ``(taps, n_fft, hop)`` of a ``--dereverb`` stage (:func:`dereverb_bytes`).
    """
    phases = phase_bytes(
        n_channels, n_samples, n_fft, hop, n_basis, precision, backend, spatial, taps,
        fullrank_basis, n_sources, images, dereverb, restarts,
    )  # fmt: skip
    return int(baseline_bytes() + MARGIN * max(phases.values()))


def scratch_bytes(spatial: str) -> int:
    """``ENGINE_SCRATCH``, plus ``FULLRANK_SCRATCH`` for the full-rank model."""
    return ENGINE_SCRATCH + (FULLRANK_SCRATCH if spatial == "fullrank" else 0)


def baseline_bytes() -> int:
    """``BASELINE``, plus ``JIT_SCRATCH`` when the kernels run on numba's JIT (no build ahead
    of time, or ``ILRMA_JIT=1``: :mod:`ilrma_cli.engine.kernels`)."""
    from ilrma_cli.engine.kernels import AHEAD_OF_TIME  # loads the extensions: only when asked

    return BASELINE + (0 if AHEAD_OF_TIME is not None else JIT_SCRATCH)


def phase_bytes(
    n_channels: int,
    n_samples: int,
    n_fft: int,
    hop: int,
    n_basis: int,
    precision: str,
    backend: str = "compiled",
    spatial: str = "rank1",
    taps: int = 0,
    fullrank_basis: int = 16,
    n_sources: int | None = None,
    images: bool = True,
    dereverb: tuple[int, int, int] | None = None,
    restarts: int = 1,
) -> dict[str, int]:
    """Bytes alive (beyond ``BASELINE``) in each phase: read, stft, engine, output, with
    ``dereverb`` ``(taps, n_fft, hop)`` the dereverberation stage before the STFT, whose
    waveform the STFT then holds too, and with ``restarts`` > 1 the signature of each
    finished run (:func:`signature_bytes`) and the mean of the runs (:func:`restart_bytes`)."""
    if precision not in ITEMSIZE:
        raise ValueError(f"unknown precision {precision!r}; choose one of single, double")
    cplx = ITEMSIZE[precision][1]
    config = StftConfig(n_fft, hop, "hamming")  # the frame count does not depend on the window
    n_freq, frames = config.n_freq, n_frames(n_samples, config)
    m = n_channels
    waveform = m * n_samples * 8
    spectrogram = m * n_freq * frames * cplx
    stft_block = 2 * m * FRAMES_PER_BLOCK * n_freq * 16  # one block of frames and its copy
    span_frames = SPAN_SAMPLES // hop + n_fft // hop + 2
    output_block = m * (span_frames * n_freq * 16 * 2 + SPAN_SAMPLES * 8 * 3)
    phases = {"read": waveform}
    if dereverb is not None and dereverb[0] > 0:
        phases["dereverb"] = dereverb_bytes(m, n_samples, n_basis, precision, *dereverb)
        waveform *= 2  # the caller's and the dereverberated one
    bins = n_freq * frames
    engine = engine_bytes(
        m, n_freq, frames, n_basis, precision, backend, spatial, taps, fullrank_basis,
        n_sources, images,
    )  # fmt: skip
    held, mean, combine = restart_bytes(
        m, bins, precision, restarts, n_sources, images, spatial, taps
    )
    n_src = n_sources or m
    finished = held_run_bytes(n_src, m, n_freq, frames, n_basis, n_fft, hop)
    if restarts > 1:  # the mixture and the mean being formed
        phases["combine"] = scratch_bytes(spatial) + spectrogram + combine
        phases["signature"] = (
            scratch_bytes(spatial) + spectrogram + n_src * bins * cplx
            + (restarts - 1) * (held + finished)
            + signature_bytes(n_src, n_freq, frames, n_fft, hop, restarts)
        )  # fmt: skip
    return phases | {
        "stft": waveform + spectrogram + stft_block,
        "engine": engine + (restarts - 1) * (held + finished),
        "output": spectrogram
        + output_block
        + max(fullrank_images_bytes(m, bins, spatial, n_sources, images), mean),
    }


def restart_bytes(
    n_channels: int,
    bins: int,
    precision: str,
    restarts: int,
    n_sources: int | None = None,
    images: bool = True,
    spatial: str = "rank1",
    taps: int = 0,
) -> tuple[int, int, int]:
    """``(held, mean, combine)``: the bytes of ``--restarts`` beyond one run, all 0 for one run.

    ``held``, per finished run while the others run: nothing but its matrices and model,
    its separated spectrogram ``n B c`` (``n`` sources, default one per channel) being
    formed again from the mixture (:func:`ilrma_cli.pipeline._held_run`), except with taps.
    ``combine``, beyond the mixture while the mean of the images is formed
    (:func:`ilrma_cli.pipeline.mean_images`): the held runs, the kept run's separated
    spectrogram (and, for rank 1, another run's formed again) and :data:`RESTART_MEANS`
    arrays of the ``mean``'s size, complex128 at every mic with ``images``, else at the
    reference mic."""
    if restarts <= 1:
        return 0, 0, 0
    n_src = n_sources or n_channels
    separated = n_src * bins * ITEMSIZE[precision][1]
    mean = n_src * (n_channels if images else 1) * bins * 16
    held = separated if taps else 0
    formed = separated if spatial == "rank1" and not taps else 0
    return held, mean, restarts * held + separated + formed + RESTART_MEANS * mean


def signature_bytes(
    n_sources: int, n_freq: int, n_frames: int, n_fft: int, hop: int, restarts: int
) -> int:
    """Bytes beyond a finished run's mixture and separated spectrograms while its signature is
    made (:func:`ilrma_cli.consensus.signature`; 0 for one run): the sources' images over the
    span :func:`ilrma_cli.consensus.signature_span` (complex128), their inverse STFT and its
    unit-peak copy (8 + 8 bytes a sample) and that copy in float32 (4) (the runs before hold theirs:
    :func:`held_run_bytes`). On the long path's few fit frames the span is all of them: with
    4 channels and 351 fit frames this was the peak, 97 MiB above the fit (session 15)."""
    if restarts <= 1:
        return 0
    span = signature_span(n_frames, StftConfig(n_fft, hop))
    return n_sources * (n_freq * (span.end - span.first) * 16 + (span.stop - span.start) * 20)


def held_run_bytes(
    n_sources: int, n_channels: int, n_freq: int, n_frames: int, n_basis: int, n_fft: int, hop: int
) -> int:
    """What a finished restart holds until all are done, besides :func:`restart_bytes`' ``held``:
    its float32 signature (8 MiB a source at most), demixing matrices and NMF factors."""
    span = signature_span(n_frames, StftConfig(n_fft, hop))
    signature = n_sources * (span.stop - span.start) * 4
    matrices = n_freq * n_sources * n_channels * 16
    return signature + matrices + n_sources * n_basis * (n_freq + n_frames) * 8


def dereverb_bytes(
    n_channels: int, n_samples: int, n_basis: int, precision: str, taps: int, n_fft: int, hop: int
) -> int:
    """Bytes of the ``--dereverb`` stage (:mod:`ilrma_cli.dereverb`) beyond ``BASELINE``.

    The waveform ``m N 8`` throughout; iterating: the compiled taps engine on the stage's
    complex128 spectrogram (:func:`engine_bytes`); finishing: its outputs ``m B c``, the
    dereverberated spectrogram ``m B 16`` and the new waveform ``m N 8``.
    """
    config = StftConfig(n_fft, hop, "hann")
    n_freq, frames = config.n_freq, n_frames(n_samples, config)
    waveform = n_channels * n_samples * 8
    bins = n_channels * n_freq * frames
    engine = engine_bytes(n_channels, n_freq, frames, n_basis, "double", taps=taps)
    finishing = bins * ITEMSIZE[precision][1] + bins * 16 + waveform
    return waveform + max(engine, ENGINE_SCRATCH + finishing)


def long_phase_bytes(
    n_channels: int,
    n_fft: int,
    hop: int,
    n_basis: int,
    precision: str,
    backend: str,
    fit_frames: int,
    restarts: int = 1,
) -> dict[str, int]:
    """Bytes alive (beyond ``BASELINE``) in each phase of the long path (:mod:`ilrma_cli.longform`).

    fit: the engine on ``fit_frames`` frames (:func:`engine_bytes`) and one run of samples
    read for them (finished ``restarts`` hold only their matrices: rank 1 without taps, as
    the long path runs, :func:`restart_bytes`) and signatures (:func:`held_run_bytes`);
    signature: a finished run's fit and separated spectrograms and its signature
    (:func:`signature_bytes`, with ``restarts`` > 1); stream: one span of ``SPAN_SAMPLES`` (its
    samples, the mixture, separated and projected frames in complex128, the sum over the
    restarts' filters, and the inverse's samples, images at worst).
    Neither depends on the length of the file.
    """
    n_freq = n_fft // 2 + 1
    m = n_channels
    span_frames = SPAN_SAMPLES // hop + n_fft // hop + 2
    run = m * ((LONG_RUN_FRAMES - 1) * hop + n_fft) * 8 + m * LONG_RUN_FRAMES * n_freq * 16
    projected = (3 if restarts == 1 else 4) * m * span_frames * n_freq * 16
    fit_spectrogram = m * n_freq * fit_frames * ITEMSIZE[precision][1]
    held = (restarts - 1) * held_run_bytes(m, m, n_freq, fit_frames, n_basis, n_fft, hop)
    signature = signature_bytes(m, n_freq, fit_frames, n_fft, hop, restarts)
    return {
        "fit": engine_bytes(m, n_freq, fit_frames, n_basis, precision, backend) + run + held,
        "signature": ENGINE_SCRATCH + 2 * fit_spectrogram + held + signature,
        "stream": m * (SPAN_SAMPLES + n_fft) * 8 * 4 + projected,
    }


def long_fit_frames(
    n_channels: int,
    n_fft: int,
    hop: int,
    n_basis: int,
    precision: str,
    backend: str,
    limit: int,
    total_frames: int,
    restarts: int = 1,
) -> int:
    """The most frames (at most ``total_frames``) the long path can fit its demixing on within
    ``LONG_SAFETY`` of ``limit`` bytes; 0 when not even one frame fits."""
    baseline = baseline_bytes()

    def peak(frames: int) -> int:
        phases = long_phase_bytes(
            n_channels, n_fft, hop, n_basis, precision, backend, frames, restarts
        )
        return int(baseline + MARGIN * max(phases.values()))

    lo, hi = 0, total_frames  # peak(lo) fits (or lo == 0), the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if peak(mid) <= LONG_SAFETY * limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def available_bytes() -> int | None:
    """Memory the system can give without swapping (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5G"``, ``"123456"`` (bytes) -> bytes; ``ValueError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size such as 8G, 512M or 1.5G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"
