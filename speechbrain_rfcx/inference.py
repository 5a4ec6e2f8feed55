"""Whole-recording inference: sliding windows, max over windows.

The same code scores the held-out fold during training and the test set or
field recordings afterwards, so validation measures what users get.

Frame-local models (convolutional encoders, ``SEDModel.frame_hop``) score a
whole recording in one pass and pool the windows on its frame outputs
(:func:`pool_windows`): no audio is computed twice (a time-shift
augmentation only moves the pooled windows). Other models run every window.
For files of any length, :func:`score_file` streams a recording in chunks
(only one chunk is ever decoded), stitches the framewise probabilities on
the model's frame grid (``frame_hop`` samples per frame in one pass, window
seconds / T' frames otherwise; overlapping estimates are averaged), takes
the max over windows for clip probabilities, and averages test-time
augmentations (time shift, speed). :func:`average_results` averages the
results of several models (an ensemble of folds)."""

import math

import numpy as np
import torch

from speechbrain_rfcx.augment import change_speed
from speechbrain_rfcx.data.audio import audio_info, read_segment
from speechbrain_rfcx.models._base import frame_mask


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


def split_windows(wav, window, hop):
    """Cut one recording ``(samples,)`` into ``(W, window)`` windows.

    Returns the windows and their relative valid lengths (< 1 only for a
    recording shorter than a window).

    Example
    -------
    >>> windows, lens = split_windows(torch.arange(10.0), 4, 3)
    >>> windows[:, 0].tolist(), lens.tolist()
    ([0.0, 3.0, 6.0], [1.0, 1.0, 1.0])
    >>> split_windows(torch.ones(3), 4, 3)[1].tolist()
    [0.75]
    """
    n = wav.shape[0]
    if n < window:
        padded = torch.nn.functional.pad(wav, (0, window - n))
        return padded.unsqueeze(0), torch.tensor([n / window])
    starts = window_starts(n, window, hop)
    windows = torch.stack([wav[s : s + window] for s in starts])
    return windows, torch.ones(len(starts))


@torch.no_grad()
def score_recordings(model, wavs, lens, window, hop, batch_size=16, full_pass=True):
    """Clip logits of whole recordings: the max over sliding windows.

    A frame-local model (``SEDModel.frame_hop`` not None) scores each
    recording in one pass and its windows are pooled on the frame outputs
    (:func:`pool_windows`) when ``full_pass`` is True; other models run
    every window.

    Arguments
    ---------
    model : torch.nn.Module
        Keeps the model contract (``clip_logits`` in its output dict).
    wavs : torch.Tensor
        ``(B, samples)`` padded batch of recordings.
    lens : torch.Tensor
        ``(B,)`` relative lengths.
    window, hop : int
        Window and hop in samples.
    batch_size : int
        Windows per forward pass.
    full_pass : bool
        Score frame-local models in one pass per batch of recordings.

    Returns
    -------
    dict
        ``clip_logits`` (B, C): max over each recording's windows;
        ``window_logits``: list of (W_b, C) tensors.

    Example
    -------
    >>> class Loudness(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return {"clip_logits": wavs.abs().amax(1, keepdim=True)}
    >>> wavs = torch.zeros(2, 100)
    >>> wavs[0, 90] = 5.0
    >>> out = score_recordings(Loudness(), wavs, torch.tensor([1.0, 0.5]), 40, 30)
    >>> out["clip_logits"].flatten().tolist()
    [5.0, 0.0]
    >>> [w.shape[0] for w in out["window_logits"]]
    [3, 2]
    """
    frame_hop = getattr(model, "frame_hop", None) if full_pass else None
    if frame_hop:
        n_samples = wavs.shape[1]
        padded = _one_pass_length(n_samples, window, frame_hop)
        wavs = torch.nn.functional.pad(wavs, (0, padded - n_samples))
        lens = lens * n_samples / padded
        outputs = model(wavs, lens)
        n_valid = frame_mask(lens, outputs["frame_logits"].shape[1]).sum(1)
        attention = outputs.get("attention_logits")
        per_recording = []
        for b, n in enumerate(n_valid.tolist()):
            per_recording.append(
                pool_windows(
                    model.head,
                    outputs["frame_logits"][b, :n].float(),
                    None if attention is None else attention[b, :n].float(),
                    *_pooling_frames(window, hop, frame_hop),
                )
            )
        return {
            "clip_logits": torch.stack([w.amax(0) for w in per_recording]),
            "window_logits": per_recording,
        }
    windows, window_lens, owners = [], [], []
    for b in range(wavs.shape[0]):
        n_valid = max(1, int(round(float(lens[b]) * wavs.shape[1])))
        w, wl = split_windows(wavs[b, :n_valid], window, hop)
        windows.append(w)
        window_lens.append(wl)
        owners.extend([b] * w.shape[0])
    windows = torch.cat(windows)
    window_lens = torch.cat(window_lens).to(wavs.device)
    logits = torch.cat(
        [
            model(windows[i : i + batch_size], window_lens[i : i + batch_size])[
                "clip_logits"
            ].float()
            for i in range(0, windows.shape[0], batch_size)
        ]
    )
    owners = torch.tensor(owners, device=logits.device)
    per_recording = [logits[owners == b] for b in range(wavs.shape[0])]
    return {
        "clip_logits": torch.stack([w.amax(0) for w in per_recording]),
        "window_logits": per_recording,
    }


def iter_window_batches(path, sample_rate, window, hop, batch_size=16, offset=0.0):
    """Sliding windows of an audio file, read chunk by chunk.

    Each chunk of ``batch_size`` windows is read with one
    :func:`~speechbrain_rfcx.data.audio.read_segment` call covering just those
    windows, so an hour-long file never sits decoded in memory.

    Arguments
    ---------
    path : str
        Audio file (downmixed to mono, resampled to ``sample_rate``).
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
    window_n = int(round(window * sample_rate))
    hop_n = int(round(hop * sample_rate))
    if window_n <= 0 or hop_n <= 0:
        raise ValueError(
            f"window ({window} s) and hop ({hop} s) must be positive and "
            f"at least one sample at {sample_rate} Hz"
        )
    n_samples = int(round(audio_info(path)["duration"] * sample_rate))
    offset_n = int(round(offset * sample_rate))
    if offset_n > 0 and n_samples - offset_n < window_n:
        return
    starts = [
        offset_n + s for s in window_starts(n_samples - offset_n, window_n, hop_n)
    ]
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        first, span = chunk[0], chunk[-1] + window_n - chunk[0]
        span = min(span, n_samples - first)
        segment = read_segment(
            path,
            start=first / sample_rate,
            duration=span / sample_rate,
            sample_rate=sample_rate,
        )
        windows = torch.zeros(len(chunk), window_n)
        lens = torch.ones(len(chunk))
        for row, start in enumerate(chunk):
            piece = segment[start - first : start - first + window_n]
            windows[row, : piece.shape[0]] = piece
            lens[row] = max(piece.shape[0], 1) / window_n
        yield torch.tensor(chunk, dtype=torch.float64) / sample_rate, windows, lens


@torch.no_grad()
def window_outputs(model, windows, lens, speed=1.0):
    """Clip and frame probabilities of a batch of windows, optionally sped up.

    With ``speed != 1`` the windows are played faster or slower
    (:func:`~speechbrain_rfcx.augment.change_speed`) and the frame outputs
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
        ``clip_probs`` (B, C), ``frame_probs`` (B, T', C), ``frame_valid``
        (B, T') bool, and the mapped ``frame_logits`` and
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
    return {
        "clip_probs": torch.sigmoid(outputs["clip_logits"].float()),
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


def _windowed_pieces(
    model, path, sample_rate, window, hop, batch_size, variant, device
):
    """Per batch of windows: frame seconds, first frame of each window on
    the frame grid, frame probabilities, their validity, window clip probs."""
    speed, offset = variant
    for starts, windows, lens in iter_window_batches(
        path, sample_rate, window, hop, batch_size, offset
    ):
        out = window_outputs(model, windows.to(device), lens.to(device), speed)
        frame_seconds = window / out["frame_probs"].shape[1]
        first = np.rint(starts.numpy() / frame_seconds).astype(int)
        yield (
            frame_seconds,
            first,
            out["frame_probs"],
            out["frame_valid"],
            out["clip_probs"],
        )


def _full_pass_frames(
    model, path, n_samples, sample_rate, window, chunk_seconds, speed, device
):
    """Frame and attention logits (T, C) of a whole file on the model's frame
    grid, and their validity (T,), from one pass of a frame-local model per
    chunk of ``chunk_seconds`` (each read with half a window of context on
    both sides). Slowed-down passes (``speed < 1``) are zero padded first, so
    that no audio is cropped away."""
    frame_hop = model.frame_hop
    window_n = int(round(window * sample_rate))
    n_frames = max(1, math.ceil(n_samples / frame_hop))
    chunk = _in_frames(chunk_seconds * sample_rate, frame_hop)
    context = math.ceil(window_n / 2 / frame_hop)
    logits = attention = valid = None
    for first in range(0, n_frames, chunk):
        last = min(first + chunk, n_frames)
        read_first = max(0, first - context)
        start = read_first * frame_hop
        end = min((last + context) * frame_hop, n_samples)
        segment = read_segment(
            path,
            start=start / sample_rate,
            duration=(end - start) / sample_rate,
            sample_rate=sample_rate,
        )
        covered = max(segment.shape[0], (last - read_first) * frame_hop)
        padded = _one_pass_length(covered, window_n, frame_hop, speed)
        lens = torch.tensor([max(segment.shape[0], 1) / padded], device=device)
        segment = torch.nn.functional.pad(segment, (0, padded - segment.shape[0]))
        out = window_outputs(model, segment[None].to(device), lens, speed)
        frames = out["frame_logits"][0]
        if logits is None:
            logits = frames.new_zeros(n_frames, frames.shape[1])
            valid = torch.zeros(n_frames, dtype=torch.bool, device=frames.device)
            if out["attention_logits"] is not None:
                attention = torch.zeros_like(logits)
        keep = slice(first - read_first, min(last - read_first, frames.shape[0]))
        target = slice(first, first + keep.stop - keep.start)
        logits[target] = frames[keep]
        has_audio = frame_mask(lens, frames.shape[0])[0]
        valid[target] = (out["frame_valid"][0] & has_audio)[keep]
        if attention is not None:
            attention[target] = out["attention_logits"][0, keep]
    return logits, attention, valid


def _full_pass_pieces(
    model,
    path,
    n_samples,
    sample_rate,
    window,
    hop,
    chunk_seconds,
    variant,
    device,
    passes,
):
    """The same as :func:`_windowed_pieces` for a frame-local model: the
    windows are pooled on the frame outputs of one pass over the file
    (:func:`_full_pass_frames`). Passes are kept in ``passes`` by speed: a
    time shift only moves the pooled windows, so it reuses the pass of its
    speed, and its frames, already counted, are not given again (None)."""
    speed, offset = variant
    new_pass = speed not in passes
    if new_pass:
        passes[speed] = _full_pass_frames(
            model, path, n_samples, sample_rate, window, chunk_seconds, speed, device
        )
    logits, attention, valid = passes[speed]
    frame_hop = model.frame_hop
    window_frames, hop_frames = _pooling_frames(
        window * sample_rate, hop * sample_rate, frame_hop
    )
    first = int(round(offset * sample_rate / frame_hop))
    if first > 0 and logits.shape[0] - first < window_frames:
        return
    if not bool(valid[first:].any()):
        return
    clip_logits = pool_windows(
        model.head,
        logits[first:],
        None if attention is None else attention[first:],
        window_frames,
        hop_frames,
        valid[first:],
    )
    yield (
        frame_hop / sample_rate,
        np.array([0]),
        torch.sigmoid(logits)[None] if new_pass else None,
        valid[None],
        torch.sigmoid(clip_logits),
    )


def score_file(
    model,
    path,
    sample_rate,
    window,
    hop,
    tta=(),
    batch_size=16,
    device="cpu",
    full_pass=True,
    chunk_seconds=60.0,
):
    """Clip and framewise probabilities of a whole audio file, streamed.

    Windows of ``window`` seconds every ``hop`` seconds cover the recording
    (the last one ends at its end; a recording shorter than a window is one
    zero-padded window). A frame-local model (``SEDModel.frame_hop``) scores
    the recording in one pass per ``chunk_seconds`` and its windows are
    pooled on the frame outputs (:func:`pool_windows`); other models (or
    ``full_pass=False``) run every window, ``batch_size`` at a time.
    Framewise probabilities are stitched on the model's frame grid (frame
    ``i`` centred at ``(i + 0.5)`` frame durations): each frame is the mean
    of every estimate that covers it (overlapping windows and
    augmentations). Clip probabilities are the max over windows, averaged
    over augmentations. Only one chunk of audio is decoded at a time.

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
    tta : sequence
        Test-time augmentations besides the plain pass: ``"shift"`` (windows
        offset by half a hop) and speeds such as ``0.9``, ``1.1``.
    batch_size : int
        Windows per forward pass (and per read) when windows are run.
    device : str
        Device of the model.
    full_pass : bool
        Score frame-local models in one pass per chunk.
    chunk_seconds : float
        Audio per pass of a frame-local model.

    Returns
    -------
    dict
        ``clip_probs`` (C,), ``frame_probs`` (T, C), ``frame_times`` (T,)
        frame centres in seconds (all numpy), ``duration`` in seconds.

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
    >>> out["frame_probs"].shape, out["frame_times"][:2].tolist()
    ((10, 1), [0.5, 1.5])
    """
    one_pass = full_pass and getattr(model, "frame_hop", None)
    if one_pass and chunk_seconds < window:
        raise ValueError(
            f"chunk_seconds ({chunk_seconds}) must be at least the window ({window})"
        )
    duration = audio_info(path)["duration"]
    clip_per_variant = []
    sums = counts = frame_seconds = None
    passes = {}
    with torch.no_grad():
        for variant in tta_variants(tta, hop):
            if one_pass:
                pieces = _full_pass_pieces(
                    model,
                    path,
                    int(round(duration * sample_rate)),
                    sample_rate,
                    window,
                    hop,
                    chunk_seconds,
                    variant,
                    device,
                    passes,
                )
            else:
                pieces = _windowed_pieces(
                    model, path, sample_rate, window, hop, batch_size, variant, device
                )
            clip_max = None
            for frame_seconds, first, frames, valid, clips in pieces:
                best = clips.amax(0).cpu()
                clip_max = best if clip_max is None else torch.maximum(clip_max, best)
                if frames is None:  # already counted
                    continue
                frames = frames.cpu().double().numpy()
                valid = valid.cpu().numpy()
                if sums is None:
                    n_total = max(1, math.ceil(duration / frame_seconds - 0.5))
                    sums = np.zeros((n_total, frames.shape[2]))
                    counts = np.zeros(n_total)
                index = first[:, None] + np.arange(frames.shape[1])[None, :]
                keep = valid & (index < len(counts))
                np.add.at(sums, index[keep], frames[keep])
                np.add.at(counts, index[keep], 1)
            if clip_max is not None:
                clip_per_variant.append(clip_max)
    frame_probs = sums / np.maximum(counts, 1)[:, None]
    frame_times = (np.arange(len(counts)) + 0.5) * frame_seconds
    if len(counts) == 1:  # a recording shorter than half a frame: its middle
        frame_times = np.minimum(frame_times, duration / 2)
    return {
        "clip_probs": torch.stack(clip_per_variant).mean(0).double().numpy(),
        "frame_probs": frame_probs,
        "frame_times": frame_times,
        "duration": duration,
    }


def average_results(results):
    """Average the :func:`score_file` results of several models (an ensemble).

    Clip probabilities are averaged; framewise probabilities are averaged on
    the frame grid of the first result (others are linearly interpolated to
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
    ...      "frame_times": np.array([0.5, 1.5]), "duration": 2.0}
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
        "duration": first["duration"],
    }
