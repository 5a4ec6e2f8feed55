"""Whole-recording inference: sliding windows, max over windows.

The same code scores the held-out fold during training and the test set or
field recordings afterwards, so validation measures what users get.
"""

import torch


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
def score_recordings(model, wavs, lens, window, hop, batch_size=16):
    """Clip logits of whole recordings: the max over sliding windows.

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
