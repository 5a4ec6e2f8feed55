"""Whole-recording inference: one scorer for validation and for users.

:func:`score_audio` scores recordings of any length given as audio sources
(:class:`AudioFile`: a file read segment by segment; :class:`AudioTensor`: a
recording already in memory) with the options of a :class:`ScoringSettings`.
:func:`score_file` (``SpeciesDetector.detect_file``, ``rfcx-detect``) calls
it with one file, :func:`score_recordings` (validation in ``SEDBrain``) with
a padded batch of recordings, so validation measures what users get.

A convolutional model (``SEDModel.frame_hop``: its frames depend on nearby
audio only) scores a recording in one pass per ``chunk_seconds`` and its
sliding windows are pooled on the frame outputs (:func:`pool_windows`): no
audio is computed twice (a time-shift augmentation only moves the pooled
windows). With ``windowed=True``, or for the other models, every window is
run, ``batch_size`` at a time. Framewise probabilities are stitched on the
model's frame grid (``frame_hop`` samples per frame in one pass, window
seconds / T' otherwise; overlapping estimates are averaged), clip
probabilities are the max over windows, and test-time augmentations (time
shift, speed) are averaged. Only one chunk of audio is decoded at a time.
:func:`average_results` averages the results of several models (an
ensemble of folds)."""

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

from speechbrain_rfcx.data.audio import audio_info, read_segment
from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.speed import change_speed


class ScoringSettings(NamedTuple):
    """How recordings are scored.

    Attributes
    ----------
    window, hop : float
        Window and hop in seconds (in samples for an :class:`AudioTensor`
        at rate 1, as :func:`score_recordings` uses).
    tta : tuple
        Test-time augmentations besides the plain pass: ``"shift"``
        (windows offset by half a hop) and speeds such as ``0.9``, ``1.1``.
    batch_size : int
        Windows per forward pass when every window is run.
    windowed : bool
        Run every window even with a convolutional model (``--windowed`` of
        ``rfcx-detect``; ``valid_full_pass: False`` in the recipes), which
        otherwise scores each recording in one pass and pools its windows.
    chunk_seconds : float
        Audio per pass of a convolutional model (at least a window).

    Example
    -------
    >>> ScoringSettings(4.0, 2.0, tta=("shift",))
    ScoringSettings(window=4.0, hop=2.0, tta=('shift',), batch_size=16, windowed=False, chunk_seconds=60.0)
    """

    window: float
    hop: float
    tta: tuple = ()
    batch_size: int = 16
    windowed: bool = False
    chunk_seconds: float = 60.0

    def checked(self, sample_rate=None):
        """These settings, validated (the one check of the console commands
        and of the Python API); a ValueError names the first bad field.

        With ``sample_rate``, windows and hops must also hold a sample.

        Example
        -------
        >>> ScoringSettings(4.0, 2.0, tta=["shift"]).checked().tta
        ('shift',)
        >>> ScoringSettings(4.0, 2.0, tta="shift").checked()
        Traceback (most recent call last):
        ...
        ValueError: tta must be a list of items such as ['shift', 0.9], got 'shift'
        """
        for name in ("window", "hop", "chunk_seconds"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(
                    f"{name} must be a positive, finite number of seconds, got {value!r}"
                )
        if isinstance(self.tta, str) or not isinstance(self.tta, (list, tuple)):
            raise ValueError(
                f"tta must be a list of items such as ['shift', 0.9], got {self.tta!r}"
            )
        if self.window > self.chunk_seconds:  # also bounds a window's memory
            raise ValueError(
                f"chunk_seconds ({self.chunk_seconds}) must be at least the "
                f"window ({self.window})"
            )
        tta_variants(self.tta, self.hop)  # names a bad item
        batch = self.batch_size
        if (
            isinstance(batch, bool)
            or not isinstance(batch, numbers.Integral)
            or batch < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch!r}")
        if not isinstance(self.windowed, bool):
            raise ValueError(f"windowed must be True or False, got {self.windowed!r}")
        if sample_rate is not None:
            _check_windows(self.window, self.hop, sample_rate)
        return self._replace(
            window=float(self.window),
            hop=float(self.hop),
            tta=tuple(self.tta),
            chunk_seconds=float(self.chunk_seconds),
        )


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class AudioFile:
    """A recording on disk, read segment by segment at ``sample_rate``.

    Segments are read with :func:`~speechbrain_rfcx.data.audio.read_segment`
    (downmixed to mono, resampled); the header is read once.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.arange(10, dtype="float32") / 8, 10, subtype="FLOAT")
    >>> audio = AudioFile(path, 10)
    >>> audio.n_samples, audio.read(2, 3).tolist()
    (10, [0.25, 0.375, 0.5])
    """

    def __init__(self, path, sample_rate):
        self.path = str(path)
        self.sample_rate = int(sample_rate)
        self.duration = audio_info(self.path)["duration"]
        self.n_samples = int(round(self.duration * self.sample_rate))

    def read(self, start, n):
        """Samples ``start`` to ``start + n`` (fewer at the end), a 1-D tensor."""
        rate = self.sample_rate
        return read_segment(
            self.path, start=start / rate, duration=n / rate, sample_rate=rate
        )


class AudioTensor:
    """A recording already in memory: ``(samples,)`` at ``sample_rate``.

    Example
    -------
    >>> audio = AudioTensor(torch.arange(5.0), sample_rate=1)
    >>> audio.duration, audio.read(3, 4).tolist()
    (5.0, [3.0, 4.0])
    """

    def __init__(self, wav, sample_rate):
        self.wav = wav
        self.sample_rate = sample_rate
        self.n_samples = int(wav.shape[0])
        self.duration = self.n_samples / sample_rate

    def read(self, start, n):
        """Samples ``start`` to ``start + n`` (fewer at the end)."""
        return self.wav[start : start + n]


def window_starts(n_samples, window, hop):
    """Start samples of windows covering ``n_samples`` (the last ends at the end).

    A recording shorter than one window gives one window at 0 (zero padded).

    Example
    -------
    >>> window_starts(100, 40, 30)
    [0, 30, 60]
    >>> window_starts(100, 40, 25)
    [0, 25, 50, 60]
    >>> window_starts(10, 40, 30)
    [0]
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive")
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def _in_frames(samples, frame_hop):
    """A span in samples as a whole number of frames (at least one)."""
    return max(1, int(round(samples / frame_hop)))


def _pooling_frames(window, hop, frame_hop):
    """Window (rounded up, as the model frames a window) and hop (rounded) in
    frames, from samples: the windows that one-pass scoring pools."""
    return math.ceil(window / frame_hop - 1e-6), _in_frames(hop, frame_hop)


def _one_pass_length(n_samples, window, frame_hop, speed=1.0):
    """Samples a one-pass input is zero padded to: at least a window, whole
    frames (models whose pooling rounds down would otherwise drop the last
    partial frame), and room for a slowed-down pass (``speed < 1``) to keep
    all of its audio."""
    return math.ceil(max(n_samples, window) / frame_hop / min(speed, 1.0)) * frame_hop


def _window_batches(sources, window_n, hop_n, batch_size, offset_n=0):
    """Batches of sliding windows over several sources, ``batch_size`` at a
    time (a batch may span sources); each source is read once per batch,
    over just its windows. A source with less than a window after a positive
    offset gives no window.

    Yields ``(owners, starts, windows, lens)``: the source index and start
    sample of each window, ``(B, window_n)`` audio zero padded past the end,
    and relative valid lengths."""
    todo = []
    for index, audio in enumerate(sources):
        n = audio.n_samples
        if offset_n > 0 and n - offset_n < window_n:
            continue
        starts = window_starts(n - offset_n, window_n, hop_n)
        todo.extend((index, offset_n + s) for s in starts)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        pieces = []
        for index in dict.fromkeys(owner for owner, _ in chunk):
            starts = [s for owner, s in chunk if owner == index]
            audio = sources[index]
            first = starts[0]
            span = min(starts[-1] + window_n - first, audio.n_samples - first)
            segment = audio.read(first, span)
            pieces.extend(segment[s - first : s - first + window_n] for s in starts)
        windows = pieces[0].new_zeros(len(chunk), window_n)
        lens = torch.ones(len(chunk))
        for row, piece in enumerate(pieces):
            windows[row, : piece.shape[0]] = piece
            lens[row] = max(piece.shape[0], 1) / window_n
        owners = [owner for owner, _ in chunk]
        yield owners, [s for _, s in chunk], windows, lens


def as_audio(audio, sample_rate):
    """An audio source: ``audio`` itself, or an :class:`AudioFile` of a path."""
    if isinstance(audio, (AudioFile, AudioTensor)):
        return audio
    return AudioFile(audio, sample_rate)


def _samples(seconds, sample_rate):
    return int(round(seconds * sample_rate))


def _check_windows(window, hop, sample_rate):
    window_n, hop_n = _samples(window, sample_rate), _samples(hop, sample_rate)
    if window_n <= 0 or hop_n <= 0:
        raise ValueError(
            f"window ({window} s) and hop ({hop} s) must be positive and "
            f"at least one sample at {sample_rate} Hz"
        )
    return window_n, hop_n


def iter_window_batches(path, sample_rate, window, hop, batch_size=16, offset=0.0):
    """Sliding windows of an audio file, read chunk by chunk.

    Each chunk of ``batch_size`` windows is read with one
    :func:`~speechbrain_rfcx.data.audio.read_segment` call covering just those
    windows, so an hour-long file never sits decoded in memory.

    Arguments
    ---------
    path : str or AudioFile or AudioTensor
        Audio file (downmixed to mono, resampled to ``sample_rate``) or
        audio source.
    sample_rate : int
        Rate the windows are read at.
    window, hop : float
        Window length and hop in seconds.
    batch_size : int
        Windows per chunk.
    offset : float
        Seconds skipped before the first window (time-shift augmentation);
        nothing is yielded when less than a window remains after it (unless
        ``offset`` is 0: a short recording gives one zero-padded window).

    Yields
    ------
    starts : torch.Tensor
        ``(B,)`` window start times in seconds.
    windows : torch.Tensor
        ``(B, window * sample_rate)`` audio, zero padded past the end.
    lens : torch.Tensor
        ``(B,)`` relative valid lengths.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(1000, dtype="float32"), 100)  # 10 s
    >>> chunks = list(iter_window_batches(path, 100, window=4.0, hop=2.0, batch_size=3))
    >>> [c[0].tolist() for c in chunks]
    [[0.0, 2.0, 4.0], [6.0]]
    >>> chunks[0][1].shape
    torch.Size([3, 400])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    window_n, hop_n = _check_windows(window, hop, sample_rate)
    audio = as_audio(path, sample_rate)
    for _, starts, windows, lens in _window_batches(
        [audio], window_n, hop_n, batch_size, _samples(offset, sample_rate)
    ):
        yield torch.tensor(starts, dtype=torch.float64) / sample_rate, windows, lens


def window_embeddings(
    model, path, sample_rate, window, hop, batch_size=16, device="cpu"
):
    """The model's ``embedding`` of every sliding window of an audio file.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract (an ``embedding`` output, (B, D)).
    path : str or AudioFile or AudioTensor
        The recording.
    sample_rate : int
        The model's rate.
    window, hop : float
        Seconds.
    batch_size : int
        Windows per forward.
    device : str
        Where the model runs.

    Returns
    -------
    dict
        ``starts`` (W,) window starts in seconds and ``embeddings`` (W, D),
        float32 numpy arrays, and ``duration``: the recording's length in
        seconds (the last window may run past it, zero padded).

    Example
    -------
    >>> class Energy(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return {"embedding": wavs.pow(2).mean(1, keepdim=True)}
    >>> audio = AudioTensor(torch.ones(1000), 100)  # 10 s
    >>> out = window_embeddings(Energy(), audio, 100, window=4.0, hop=3.0)
    >>> out["starts"].tolist(), out["embeddings"].shape, out["duration"]
    ([0.0, 3.0, 6.0], (3, 1), 10.0)
    """
    audio = as_audio(path, sample_rate)
    starts, embeddings = [], []
    with torch.no_grad():
        for batch_starts, windows, lens in iter_window_batches(
            audio, sample_rate, window, hop, batch_size
        ):
            out = model(windows.to(device), lens.to(device))
            embeddings.append(out["embedding"].float().cpu().numpy())
            starts.append(batch_starts.numpy())
    return {
        "starts": np.concatenate(starts),
        "embeddings": np.concatenate(embeddings).astype(np.float32),
        "duration": float(audio.duration),
    }


class _Piece(NamedTuple):
    """Scores of some windows of one source, for :func:`score_audio`."""

    source: int  # index of the source
    frame_seconds: float  # frame spacing of ``frames``
    first: np.ndarray  # (W,) first frame of each window on the frame grid
    frames: torch.Tensor  # (W, T', C) frame probabilities; None: already counted
    valid: torch.Tensor  # (W, T') bool: frames with an estimate
    window_logits: torch.Tensor  # (W, C) clip logits of the windows


def _windowed_pieces(model, sources, settings, variant, device):
    """Every window run, ``batch_size`` at a time over all sources."""
    speed, offset = variant
    rate = sources[0].sample_rate
    window_n, hop_n = _check_windows(settings.window, settings.hop, rate)
    for owners, starts, windows, lens in _window_batches(
        sources, window_n, hop_n, settings.batch_size, _samples(offset, rate)
    ):
        out = window_outputs(model, windows.to(device), lens.to(device), speed)
        clip_logits = out["clip_logits"]
        frame_seconds = settings.window / out["frame_probs"].shape[1]
        first = np.rint(np.asarray(starts) / rate / frame_seconds).astype(int)
        owners = np.asarray(owners)
        for index in dict.fromkeys(owners.tolist()):
            rows = np.flatnonzero(owners == index)
            picked = torch.as_tensor(rows, device=clip_logits.device)
            yield _Piece(
                index,
                frame_seconds,
                first[rows],
                out["frame_probs"][picked],
                out["frame_valid"][picked],
                clip_logits[picked],
            )


def _one_pass_frames(model, sources, window_n, chunk_n, speed, device):
    """Frame and attention logits (T, C) of each source on the model's frame
    grid, and their validity (T,), from one pass of a convolutional model per
    chunk of ``chunk_n`` samples (each read with half a window of context on
    both sides; the chunks of all sources at the same place form one padded
    batch). Slowed-down passes (``speed < 1``) are zero padded first, so that
    no audio is cropped away."""
    frame_hop = model.frame_hop
    n_frames = [max(1, math.ceil(a.n_samples / frame_hop)) for a in sources]
    chunk = _in_frames(chunk_n, frame_hop)
    context = math.ceil(window_n / 2 / frame_hop)
    results = [[None, None, None] for _ in sources]
    for first in range(0, max(n_frames), chunk):
        active = [i for i, n in enumerate(n_frames) if first < n]
        segments, spans = [], []
        for i in active:
            last = min(first + chunk, n_frames[i])
            read_first = max(0, first - context)
            start = read_first * frame_hop
            end = min((last + context) * frame_hop, sources[i].n_samples)
            segments.append(sources[i].read(start, end - start))
            spans.append((read_first, last))
        covered = max(
            max(s.shape[0], (last - read_first) * frame_hop)
            for s, (read_first, last) in zip(segments, spans)
        )
        padded = _one_pass_length(covered, window_n, frame_hop, speed)
        lens = torch.tensor([max(s.shape[0], 1) / padded for s in segments])
        batch = torch.stack(
            [torch.nn.functional.pad(s, (0, padded - s.shape[0])) for s in segments]
        )
        lens = lens.to(device)
        out = window_outputs(model, batch.to(device), lens, speed)
        has_audio = frame_mask(lens, out["frame_logits"].shape[1])
        for row, i in enumerate(active):
            frames = out["frame_logits"][row]
            logits, attention, valid = results[i]
            if logits is None:
                logits = frames.new_zeros(n_frames[i], frames.shape[1])
                valid = torch.zeros(n_frames[i], dtype=torch.bool, device=frames.device)
                if out["attention_logits"] is not None:
                    attention = torch.zeros_like(logits)
            read_first, last = spans[row]
            keep = slice(first - read_first, min(last - read_first, frames.shape[0]))
            target = slice(first, first + keep.stop - keep.start)
            logits[target] = frames[keep]
            valid[target] = (out["frame_valid"][row] & has_audio[row])[keep]
            if attention is not None:
                attention[target] = out["attention_logits"][row, keep]
            results[i] = [logits, attention, valid]
    return [tuple(r) for r in results]


def _one_pass_pieces(model, sources, settings, variant, device, passes):
    """The same as :func:`_windowed_pieces` for a convolutional model: the
    windows are pooled on the frame outputs of one pass over each source
    (:func:`_one_pass_frames`). Passes are kept in ``passes`` by speed: a
    time shift only moves the pooled windows, so it reuses the pass of its
    speed, and its frames, already counted, are not given again (None)."""
    speed, offset = variant
    rate = sources[0].sample_rate
    frame_hop = model.frame_hop
    window_n = _samples(settings.window, rate)
    new_pass = speed not in passes
    if new_pass:
        passes[speed] = _one_pass_frames(
            model,
            sources,
            window_n,
            settings.chunk_seconds * rate,
            speed,
            device,
        )
    window_frames, hop_frames = _pooling_frames(
        settings.window * rate, settings.hop * rate, frame_hop
    )
    first = int(round(offset * rate / frame_hop))
    for index, (logits, attention, valid) in enumerate(passes[speed]):
        if first > 0 and logits.shape[0] - first < window_frames:
            continue
        if not bool(valid[first:].any()):
            continue
        window_logits = pool_windows(
            model.head,
            logits[first:],
            None if attention is None else attention[first:],
            window_frames,
            hop_frames,
            valid[first:],
        )
        yield _Piece(
            index,
            frame_hop / rate,
            np.array([0]),
            torch.sigmoid(logits)[None] if new_pass else None,
            valid[None],
            window_logits,
        )


class _Stitch:
    """Accumulates the pieces of one source: frame sums and counts on the
    frame grid, the clip max of each augmentation, the plain pass's windows."""

    def __init__(self, duration):
        self.duration = duration
        self.sums = self.counts = self.frame_seconds = None
        self.clip_per_variant = []
        self.window_logits = []

    def add_frames(self, piece):
        frames = piece.frames.cpu().double().numpy()
        valid = piece.valid.cpu().numpy()
        if self.sums is None:
            self.frame_seconds = piece.frame_seconds
            n_total = max(1, math.ceil(self.duration / piece.frame_seconds - 0.5))
            self.sums = np.zeros((n_total, frames.shape[2]))
            self.counts = np.zeros(n_total)
        index = piece.first[:, None] + np.arange(frames.shape[1])[None, :]
        keep = valid & (index < len(self.counts))
        np.add.at(self.sums, index[keep], frames[keep])
        np.add.at(self.counts, index[keep], 1)

    def result(self):
        n_frames = len(self.counts)
        # one frame only: it spans the recording when that is shorter
        frame_hop = self.frame_seconds
        if n_frames == 1:
            frame_hop = min(frame_hop, self.duration)
        return {
            "clip_probs": torch.stack(self.clip_per_variant).mean(0).double().numpy(),
            "frame_probs": self.sums / np.maximum(self.counts, 1)[:, None],
            "frame_times": (np.arange(n_frames) + 0.5) * frame_hop,
            "frame_hop": frame_hop,
            "duration": self.duration,
            "window_logits": torch.cat(self.window_logits),
        }


@torch.no_grad()
def score_audio(model, sources, settings, device="cpu"):
    """Clip and framewise probabilities of whole recordings: the one scorer.

    Windows of ``settings.window`` seconds every ``settings.hop`` seconds
    cover each recording (the last one ends at its end; a recording shorter
    than a window is one zero-padded window). A convolutional model
    (``SEDModel.frame_hop``) scores the recordings in one pass per
    ``chunk_seconds`` (the chunks of all sources batched) and its windows are
    pooled on the frame outputs (:func:`pool_windows`); other models (or
    ``settings.windowed``) run every window, ``batch_size`` at a time across
    sources. Framewise probabilities are stitched on the model's frame grid
    (frame ``i`` centred at ``(i + 0.5) * frame_hop``): each frame is the
    mean of every estimate that covers it (overlapping windows and
    augmentations). Clip probabilities are the max over windows, averaged
    over augmentations.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract, in eval mode, on ``device``.
    sources : list of AudioFile or AudioTensor
        The recordings, at the model's rate (all at the same rate).
    settings : ScoringSettings
        Windows, augmentations, batch and chunk sizes, ``windowed``.
    device : str or torch.device
        Device of the model.

    Returns
    -------
    list of dict
        Per source: ``clip_probs`` (C,), ``frame_probs`` (T, C),
        ``frame_times`` (T,) frame centres in seconds (all numpy),
        ``frame_hop`` (seconds between frame centres; a recording shorter
        than its one frame: the recording's length), ``duration`` in seconds,
        ``window_logits`` (W, C) clip logits of the plain pass's windows.

    Example
    -------
    >>> class Samples(torch.nn.Module):  # a frame per sample, logit = sample
    ...     def forward(self, wavs, lens):
    ...         return {"clip_logits": wavs.amax(1, keepdim=True), "frame_logits": wavs[..., None]}
    >>> wav = torch.zeros(10)
    >>> wav[9] = 5.0
    >>> settings = ScoringSettings(window=4.0, hop=2.0)
    >>> (out,) = score_audio(Samples(), [AudioTensor(wav, 1)], settings)
    >>> out["frame_probs"].shape, out["frame_hop"], out["window_logits"].flatten().tolist()
    ((10, 1), 1.0, [0.0, 0.0, 0.0, 5.0])
    """
    settings = settings.checked()
    if not sources:
        return []
    one_pass = not settings.windowed and getattr(model, "frame_hop", None)
    stitches = [_Stitch(audio.duration) for audio in sources]
    passes = {}
    for variant in tta_variants(settings.tta, settings.hop):
        if one_pass:
            pieces = _one_pass_pieces(model, sources, settings, variant, device, passes)
        else:
            pieces = _windowed_pieces(model, sources, settings, variant, device)
        clip_max = [None] * len(sources)
        for piece in pieces:
            stitch = stitches[piece.source]
            if variant == (1.0, 0.0):
                stitch.window_logits.append(piece.window_logits.float())
            best = piece.window_logits.amax(0)
            previous = clip_max[piece.source]
            clip_max[piece.source] = (
                best if previous is None else torch.maximum(previous, best)
            )
            if piece.frames is not None:
                stitch.add_frames(piece)
        for stitch, best in zip(stitches, clip_max):
            if best is not None:
                stitch.clip_per_variant.append(torch.sigmoid(best.float()).cpu())
    return [stitch.result() for stitch in stitches]


def score_file(model, path, sample_rate, window, hop, device="cpu", **options):
    """Clip and framewise probabilities of a whole audio file, streamed.

    :func:`score_audio` of one :class:`AudioFile`: only one chunk of audio
    is decoded at a time.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract, in eval mode, on ``device``.
    path : str
        Audio file.
    sample_rate : int
        The model's sample rate.
    window, hop : float
        Window and hop in seconds.
    device : str
        Device of the model.
    **options
        The other fields of :class:`ScoringSettings`: ``tta``,
        ``batch_size``, ``windowed``, ``chunk_seconds``.

    Returns
    -------
    dict
        ``clip_probs`` (C,), ``frame_probs`` (T, C), ``frame_times`` (T,)
        frame centres in seconds (all numpy), ``frame_hop`` and
        ``duration`` in seconds.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> class Loudness(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         frames = wavs.reshape(wavs.shape[0], 4, -1).abs().amax(2, keepdim=True)
    ...         return {"clip_logits": frames.amax(1), "frame_logits": frames}
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(1000, dtype="float32"), 100)  # 10 s
    >>> out = score_file(Loudness(), path, 100, window=4.0, hop=2.0)
    >>> out["frame_probs"].shape, out["frame_times"][:2].tolist(), out["frame_hop"]
    ((10, 1), [0.5, 1.5], 1.0)
    """
    settings = ScoringSettings(float(window), float(hop), **options)
    (result,) = score_audio(model, [AudioFile(path, sample_rate)], settings, device)
    del result["window_logits"]
    return result


def score_recordings(model, wavs, lens, window, hop, batch_size=16, windowed=False):
    """Clip logits of a padded batch of recordings: the max over sliding windows.

    :func:`score_audio` of one :class:`AudioTensor` per recording (window,
    hop and times in samples), each scored in one pass by a convolutional
    model (the recordings batched) unless ``windowed``; other models run
    every window, ``batch_size`` at a time across recordings. This is how
    ``SEDBrain`` validates: the code users run.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract (``clip_logits``, ``frame_logits``).
    wavs : torch.Tensor
        ``(B, samples)`` padded batch of recordings.
    lens : torch.Tensor
        ``(B,)`` relative lengths.
    window, hop : int
        Window and hop in samples.
    batch_size : int
        Windows per forward pass.
    windowed : bool
        Run every window of convolutional models too.

    Returns
    -------
    dict
        ``clip_logits`` (B, C): max over each recording's windows;
        ``window_logits``: list of (W_b, C) tensors.

    Example
    -------
    >>> class Peak(torch.nn.Module):  # one frame a window: its peak
    ...     def forward(self, wavs, lens):
    ...         peak = wavs.abs().amax(1, keepdim=True)
    ...         return {"clip_logits": peak, "frame_logits": peak[:, None]}
    >>> wavs = torch.zeros(2, 100)
    >>> wavs[0, 90] = 5.0
    >>> out = score_recordings(Peak(), wavs, torch.tensor([1.0, 0.5]), 40, 30)
    >>> out["clip_logits"].flatten().tolist()
    [5.0, 0.0]
    >>> [w.shape[0] for w in out["window_logits"]]
    [3, 2]
    """
    n_valid = [max(1, int(round(float(n) * wavs.shape[1]))) for n in lens]
    sources = [AudioTensor(wav[:n], 1) for wav, n in zip(wavs, n_valid)]
    settings = ScoringSettings(
        window,
        hop,
        batch_size=batch_size,
        windowed=windowed,
        chunk_seconds=max(wavs.shape[1], window),  # one pass per recording
    )
    results = score_audio(model, sources, settings, device=wavs.device)
    per_recording = [r["window_logits"] for r in results]
    return {
        "clip_logits": torch.stack([w.amax(0) for w in per_recording]),
        "window_logits": per_recording,
    }


@torch.no_grad()
def window_outputs(model, windows, lens, speed=1.0):
    """Clip and frame probabilities of a batch of windows, optionally sped up.

    With ``speed != 1`` the windows are played faster or slower
    (:func:`~speechbrain_rfcx.speed.change_speed`) and the frame outputs
    are mapped back to the original time axis (linear interpolation); frames
    whose audio was cropped away (``speed < 1``) are marked invalid.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract (``clip_logits``, ``frame_logits``).
    windows : torch.Tensor
        ``(B, samples)`` windows.
    lens : torch.Tensor
        ``(B,)`` relative valid lengths.
    speed : float
        Playback speed of the augmentation (1.0: none).

    Returns
    -------
    dict
        ``clip_logits`` and ``clip_probs`` (B, C), ``frame_probs`` (B, T', C),
        ``frame_valid`` (B, T') bool, and the mapped ``frame_logits`` and
        ``attention_logits`` (B, T', C; the latter None if the model gives
        none).

    Example
    -------
    >>> class Loudness(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         frames = wavs.reshape(wavs.shape[0], 4, -1).abs().amax(2, keepdim=True)
    ...         return {"clip_logits": frames.amax(1), "frame_logits": frames}
    >>> out = window_outputs(Loudness(), torch.zeros(2, 40), torch.ones(2))
    >>> out["clip_probs"].shape, out["frame_probs"].shape, out["frame_valid"].shape
    (torch.Size([2, 1]), torch.Size([2, 4, 1]), torch.Size([2, 4]))
    """
    if speed != 1.0:
        windows, lens, _ = change_speed(windows, lens, speed=speed)
    outputs = model(windows, lens)
    frames = outputs["frame_logits"].float()
    attention = outputs.get("attention_logits")
    attention = None if attention is None else attention.float()
    n_frames = frames.shape[1]
    valid = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
    if speed != 1.0:
        # Original frame i (centre i + 0.5) is heard at (i + 0.5) / speed.
        centres = (torch.arange(n_frames, device=frames.device) + 0.5) / speed
        position = (centres - 0.5).clamp(0, n_frames - 1)
        low = position.floor().long()
        high = (low + 1).clamp(max=n_frames - 1)
        weight = (position - low).view(1, -1, 1)

        def remap(x):
            return x[:, low] * (1 - weight) + x[:, high] * weight

        frames = remap(frames)
        attention = None if attention is None else remap(attention)
        valid = valid & (centres <= n_frames).unsqueeze(0)
    clip_logits = outputs["clip_logits"].float()
    return {
        "clip_logits": clip_logits,
        "clip_probs": torch.sigmoid(clip_logits),
        "frame_probs": torch.sigmoid(frames),
        "frame_valid": valid,
        "frame_logits": frames,
        "attention_logits": attention,
    }


def pool_windows(head, frame_logits, attention_logits, window, hop, valid=None):
    """Clip logits of sliding windows pooled on one recording's frame outputs.

    For a frame-local model (``SEDModel.frame_hop``) this approximates
    running the model on each window at the cost of one pass over the
    recording: frames near a window's edges see real audio instead of zero
    padding, squeeze-and-excitation gates (EfficientNet, MobileNetV3) average
    over the whole pass, and windows are whole numbers of frames (callers
    round the window up, the hop to the nearest frame).

    Arguments
    ---------
    head : speechbrain_rfcx.models.heads.AttentionSEDHead
        The model's head (its ``pool`` is applied to every window).
    frame_logits, attention_logits : torch.Tensor
        ``(T, C)`` frame and attention logits (attention None if the head
        pools without attention).
    window, hop : int
        Window and hop in frames (the last window ends at the last frame; a
        recording shorter than a window is one window).
    valid : torch.Tensor, optional
        ``(T,)`` bool, False on frames without an estimate (windows with no
        valid frame are dropped).

    Returns
    -------
    torch.Tensor
        ``(W, C)`` clip logits, one row per window.

    Example
    -------
    >>> from speechbrain_rfcx.models.heads import AttentionSEDHead
    >>> head = AttentionSEDHead(4, 1, pooling="max")
    >>> frames = torch.tensor([[0.0], [5.0], [1.0], [2.0], [3.0]])
    >>> pool_windows(head, frames, None, window=2, hop=2).flatten().tolist()
    [5.0, 2.0, 3.0]
    """
    n_frames = frame_logits.shape[0]
    starts = torch.tensor(
        window_starts(n_frames, window, hop), device=frame_logits.device
    )
    index = starts[:, None] + torch.arange(window, device=starts.device)[None, :]
    inside = index < n_frames
    index = index.clamp(max=n_frames - 1)
    if valid is not None:
        inside = inside & valid[index]
        keep = inside.any(1)
        index, inside = index[keep], inside[keep]
    attention = None if attention_logits is None else attention_logits[index]
    return head.pool(frame_logits[index], attention, inside)


def tta_variants(tta, hop):
    """``(speed, offset)`` of the plain pass and of each augmentation in ``tta``.

    ``"shift"`` offsets the windows by half a hop; a number (or numeric
    string) is a playback speed in ``[0.5, 2]``.

    Example
    -------
    >>> tta_variants(["shift", 0.9, "1.1"], hop=2.0)
    [(1.0, 0.0), (1.0, 1.0), (0.9, 0.0), (1.1, 0.0)]
    """
    variants = [(1.0, 0.0)]
    for item in tta:
        if item == "shift":
            variants.append((1.0, hop / 2))
            continue
        try:
            speed = float(item)
        except (TypeError, ValueError):
            speed = -1.0
        if not 0.5 <= speed <= 2.0:
            raise ValueError(
                f"tta item {item!r}: expected 'shift' or a speed in [0.5, 2] "
                "(e.g. 0.9, 1.1)"
            )
        variants.append((speed, 0.0))
    return variants


def average_results(results):
    """Average the :func:`score_file` results of several models (an ensemble).

    Clip probabilities are averaged; framewise probabilities are averaged on
    the frame grid (``frame_times``, ``frame_hop``) of the first result (others are linearly interpolated to
    it when their frame rate differs).

    Arguments
    ---------
    results : list of dict
        :func:`score_file` outputs for the same recording.

    Returns
    -------
    dict
        Same keys as one result.

    Example
    -------
    >>> a = {"clip_probs": np.array([0.2]), "frame_probs": np.array([[0.0], [1.0]]),
    ...      "frame_times": np.array([0.5, 1.5]), "frame_hop": 1.0, "duration": 2.0}
    >>> b = dict(a, clip_probs=np.array([0.4]), frame_probs=np.array([[1.0], [1.0]]))
    >>> out = average_results([a, b])
    >>> out["clip_probs"].round(6).tolist(), out["frame_probs"].ravel().tolist()
    ([0.3], [0.5, 1.0])
    """
    if not results:
        raise ValueError("results is empty: nothing to average")
    first = results[0]
    times = first["frame_times"]
    frames = []
    for result in results:
        probs = np.asarray(result["frame_probs"])
        if result["clip_probs"].shape != first["clip_probs"].shape:
            raise ValueError(
                "clip_probs shapes differ across models: "
                f"{first['clip_probs'].shape} vs {result['clip_probs'].shape}"
            )
        if len(result["frame_times"]) != len(times) or not np.allclose(
            result["frame_times"], times
        ):
            probs = np.stack(
                [
                    np.interp(times, result["frame_times"], probs[:, c])
                    for c in range(probs.shape[1])
                ],
                axis=1,
            )
        frames.append(probs)
    return {
        "clip_probs": np.mean([r["clip_probs"] for r in results], axis=0),
        "frame_probs": np.mean(frames, axis=0),
        "frame_times": times,
        "frame_hop": first["frame_hop"],
        "duration": first["duration"],
    }
