"""A picture of one recording: spectrogram with detection boxes, probability traces.

Drawn with matplotlib's Agg renderer on a bare :class:`~matplotlib.figure.Figure`
(no pyplot, no display, no global state), so it runs on servers and in worker
processes.

Authors
 * speechbrain-rfcx contributors
"""

import io
import math
import os

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx.data.annotations import species_name
from speechbrain_rfcx.data.audio import audio_info, read_segment
from speechbrain_rfcx.features import LogMelFeatures

_DYNAMIC_RANGE_DB = 80.0
_HZ_TICKS = (0, 250, 500, 1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 48000)


def _hz_to_mel(hz):
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as the features."""
    hz = np.asarray(hz, dtype=float)
    linear = hz / (200.0 / 3.0)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz < 1000.0, linear, logarithmic)


def _stft_size(sample_rate):
    n_fft = 2 ** max(6, round(math.log2(sample_rate * 0.0427)))  # ~43 ms
    return n_fft, n_fft // 4


def _file_spectrogram(path, sample_rate, n_mels, fmax, max_columns, chunk_seconds=60.0):
    """:func:`_spectrogram` of an audio file, read one chunk at a time and
    max-pooled in time to at most about ``max_columns`` columns, so that memory
    does not grow with the recording's length. Returns it and the duration."""
    duration = audio_info(path)["duration"]
    _, hop = _stft_size(sample_rate)
    frames = int(duration * sample_rate) // hop + 1
    pool = max(1, math.ceil(frames / max_columns))
    chunk = max(1, int(chunk_seconds * sample_rate) // (hop * pool)) * hop * pool
    images, start = [], 0
    while start == 0 or start < duration * sample_rate:
        wav = read_segment(path, start / sample_rate, chunk / sample_rate, sample_rate)
        if wav.numel() == 0:
            break
        image, _, extent, to_axis = _spectrogram(wav, sample_rate, n_mels, fmax)
        image = image[:, : chunk // hop]  # the frame past the chunk is the next's
        columns = math.ceil(image.shape[1] / pool) * pool
        padded = np.pad(image, ((0, 0), (0, columns - image.shape[1])), mode="edge")
        images.append(padded.reshape(image.shape[0], -1, pool).max(axis=2))
        start += chunk
    return (np.concatenate(images, axis=1), hop * pool, extent, to_axis), duration


def _spectrogram(wav, sample_rate, n_mels, fmax):
    """``(F, T)`` dB image, its frequency extent and a Hz -> axis-unit mapping."""
    n_fft, hop = _stft_size(sample_rate)
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.shape[0] <= n_fft // 2:
        wav = torch.nn.functional.pad(wav, (0, n_fft // 2 + 1 - wav.shape[0]))
    if n_mels is None:
        window = torch.hann_window(n_fft)
        power = (
            torch.stft(
                wav, n_fft, hop, window=window, center=True, return_complex=True
            ).abs()
            ** 2
        )
        image = 10 * torch.log10(torch.clamp(power, min=1e-10)).numpy()
        keep = np.arange(image.shape[0]) * sample_rate / n_fft <= fmax
        image = image[keep]
        bin_hz = sample_rate / n_fft
        extent = (-bin_hz / 2, (image.shape[0] - 0.5) * bin_hz)
        return image, hop, extent, lambda hz: np.asarray(hz, dtype=float)
    features = LogMelFeatures(sample_rate, n_fft, hop, n_mels, f_min=0.0, f_max=fmax)
    with torch.no_grad():
        image = features.log_mel(wav[None])[0].T.numpy()
    mel_min, mel_max = _hz_to_mel(0.0), _hz_to_mel(features.f_max)
    half_band = (mel_max - mel_min) / (n_mels + 1) / 2
    return image, hop, (mel_min + half_band, mel_max - half_band), _hz_to_mel


def _species_colour(species_id):
    from matplotlib import colormaps

    return colormaps["tab10"](species_id % 10)


def plot_detections(
    path_png,
    wav,
    sample_rate=None,
    detections=(),
    frame_probs=None,
    frame_times=None,
    species_names=None,
    top_k=5,
    n_mels=128,
    fmax=None,
    title=None,
    figsize=(12.0, 6.0),
    dpi=100,
):
    """Draw a recording's spectrogram, its detections and probability traces.

    Top panel: the log-mel spectrogram (``n_mels=None``: linear STFT) with one
    box per detection (its time span by its band; the full height when the
    band is unknown) labelled with the species and score. Bottom panel (when
    ``frame_probs`` is given): the framewise probabilities of the ``top_k``
    species with the highest maximum. The image is exactly
    ``figsize * dpi`` pixels.

    Arguments
    ---------
    path_png : str
        Output PNG file (written atomically).
    wav : array_like, torch.Tensor or str
        ``(samples,)`` mono audio, or the path of an audio file.
    sample_rate : int, optional
        Sampling rate of ``wav``; for a file, the rate it is read at (default:
        the file's own rate).
    detections : list of Detection
        The detections to draw.
    frame_probs : array_like, optional
        ``(T, C)`` framewise probabilities.
    frame_times : array_like, optional
        ``(T,)`` frame-centre times in seconds; default: frames tiling the
        recording evenly.
    species_names : list or dict, optional
        ``species_id -> name`` for labels (default ``s<id>``).
    top_k : int
        Number of probability traces.
    n_mels : int or None
        Mel bins of the spectrogram; None for a linear frequency axis.
    fmax : float, optional
        Highest frequency shown (default: the Nyquist frequency).
    title : str, optional
        Figure title (default: the file name when ``wav`` is a path).
    figsize : tuple of float
        Figure size in inches.
    dpi : int
        Pixels per inch.

    Returns
    -------
    str
        ``path_png``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_rfcx.detections.events import Detection
    >>> path = os.path.join(tempfile.mkdtemp(), "plot.png")
    >>> wav = np.random.default_rng(0).normal(size=8000)
    >>> plot_detections(path, wav, 8000, [Detection(0, 0.2, 0.6, 0.9, 500.0, 1500.0)],
    ...                 frame_probs=np.full((10, 3), 0.5), n_mels=32,
    ...                 figsize=(4, 3)) == path
    True
    >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if title is None and isinstance(wav, (str, os.PathLike)):
        title = os.path.basename(os.fspath(wav))
    from_file = isinstance(wav, (str, os.PathLike))
    if from_file and sample_rate is None:
        sample_rate = audio_info(wav)["sample_rate"]
    if sample_rate is None or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    if not from_file:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(
                f"wav must be a non-empty (samples,) array, got {wav.shape}"
            )
        if not np.isfinite(wav).all():
            raise ValueError("wav holds non-finite samples")
    if not (isinstance(top_k, int) and top_k >= 0):
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else float(fmax)
    if not 0 < fmax <= nyquist:
        raise ValueError(f"fmax must lie in (0, {nyquist}] Hz, got {fmax}")
    if from_file:  # streamed: a recording is never decoded whole
        spectrogram, duration = _file_spectrogram(
            os.fspath(wav), sample_rate, n_mels, fmax, max_columns=2 * figsize[0] * dpi
        )
    else:
        spectrogram = _spectrogram(wav, sample_rate, n_mels, fmax)
        duration = wav.size / sample_rate
    if frame_probs is not None:
        frame_probs = np.asarray(frame_probs, dtype=float)
        if frame_probs.ndim != 2:
            raise ValueError(
                f"frame_probs must have shape (T, C), got {frame_probs.shape}"
            )
        n_frames = frame_probs.shape[0]
        if frame_times is None:
            frame_times = (np.arange(n_frames) + 0.5) * duration / n_frames
        frame_times = np.asarray(frame_times, dtype=float)
        if frame_times.shape != (n_frames,):
            raise ValueError(
                f"frame_times must have shape ({n_frames},) to match frame_probs, "
                f"got {frame_times.shape}"
            )

    figure = Figure(figsize=figsize, dpi=dpi)
    if frame_probs is None:
        spec_axes = figure.subplots()
        trace_axes = None
    else:
        spec_axes, trace_axes = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]}
        )

    image, hop, (y_low, y_high), to_axis = spectrogram
    half_frame = hop / sample_rate / 2
    vmax = float(image.max())
    spec_axes.imshow(
        image,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(-half_frame, (image.shape[1] - 0.5) * hop / sample_rate, y_low, y_high),
        vmin=vmax - _DYNAMIC_RANGE_DB,
        vmax=vmax,
        interpolation="nearest",
    )
    if n_mels is None:
        spec_axes.yaxis.set_major_locator(MaxNLocator(nbins=8))
        spec_axes.yaxis.set_major_formatter(
            FuncFormatter(lambda hz, _: f"{hz / 1000:g}")
        )
    else:
        ticks = [hz for hz in _HZ_TICKS if hz <= fmax]
        spec_axes.yaxis.set_major_locator(FixedLocator(to_axis(ticks)))
        spec_axes.set_yticklabels([f"{hz / 1000:g}" for hz in ticks])
    y_top = float(to_axis(fmax))
    spec_axes.set_ylim(float(to_axis(0.0)), y_top)
    spec_axes.set_ylabel("Frequency (kHz)" + (", mel scale" if n_mels else ""))
    for d in detections:
        if d.has_band:
            bottom, top = to_axis([d.f_min, min(d.f_max, fmax)])
        else:
            bottom, top = to_axis([0.0, fmax])
        colour = _species_colour(d.species_id)
        spec_axes.add_patch(
            Rectangle(
                (d.t_min, bottom),
                d.t_max - d.t_min,
                top - bottom,
                fill=False,
                edgecolor=colour,
                linewidth=1.5,
            )
        )
        spec_axes.text(
            d.t_min,
            top,
            f"{species_name(d.species_id, species_names)} {d.score:.2f}",
            fontsize=7,
            color="black",
            va="top" if top > 0.95 * y_top else "bottom",
            clip_on=True,
            bbox=dict(facecolor=colour, edgecolor="none", alpha=0.8, pad=1),
        )
    spec_axes.set_xlim(0.0, duration)
    if title:
        spec_axes.set_title(title)

    if trace_axes is None:
        spec_axes.set_xlabel("Time (s)")
    else:
        peaks = frame_probs.max(axis=0) if frame_probs.shape[0] else np.zeros(0)
        for species in np.argsort(-peaks, kind="stable")[:top_k]:
            species = int(species)
            trace_axes.plot(
                frame_times,
                frame_probs[:, species],
                color=_species_colour(species),
                linewidth=1.2,
                label=f"{species_name(species, species_names)} "
                f"(max {peaks[species]:.2f})",
            )
        trace_axes.set_ylim(-0.02, 1.02)
        trace_axes.set_ylabel("Probability")
        trace_axes.set_xlabel("Time (s)")
        if top_k and frame_probs.shape[1]:
            trace_axes.legend(loc="upper right", fontsize=7, ncol=min(top_k, 5))
        trace_axes.grid(alpha=0.3)
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_atomically(path_png, buffer.getvalue())
    return path_png
