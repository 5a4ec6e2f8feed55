"""Audio I/O through soundfile: headers, seeked segment reads, mono, resampling.

Only the requested span of a file is decoded (soundfile seeks inside FLAC
and WAV), so a 10 s crop of a 60 s recording, or of an hour-long one, costs
a 10 s read.
"""

import math

import soundfile as sf

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3")  # what soundfile reads


class AudioError(ValueError):
    """An audio file is missing or cannot be read; the message names it."""


def audio_info(path):
    """Duration, sample rate and channel count of an audio file.

    Reads the header and the last frame (so a truncated file is caught here,
    not halfway through training).

    Example
    -------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> sf.write(path, np.zeros(16000, dtype="float32"), 8000)
    >>> audio_info(path)
    {'duration': 2.0, 'sample_rate': 8000, 'channels': 1}
    """
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: audio file holds no samples")
    try:  # the header of a truncated file still promises every frame
        with sf.SoundFile(path) as f:
            f.seek(info.frames - 1)
            last = f.read(1)
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise AudioError(f"{path}: truncated or corrupt audio ({e})") from e
    if len(last) != 1:
        raise AudioError(f"{path}: truncated audio (the last frame cannot be read)")
    return {
        "duration": info.frames / info.samplerate,
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
    }


def read_segment(path, start=0.0, duration=None, sample_rate=None):
    """Read ``duration`` seconds from ``start`` as a mono float32 tensor.

    Multi-channel audio is averaged to mono; audio at another rate than
    ``sample_rate`` is resampled. Non-finite samples are set to zero. The
    result is not padded: it is shorter than asked for near the end.

    Arguments
    ---------
    path : str
        Audio file (FLAC, WAV, anything libsndfile reads).
    start : float
        Start time in seconds.
    duration : float, optional
        Seconds to read; the rest of the file when None.
    sample_rate : int, optional
        Output rate; the file's rate when None.

    Returns
    -------
    torch.Tensor
        ``(samples,)`` float32.

    Example
    -------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.flac")
    >>> sf.write(path, np.linspace(-0.5, 0.5, 8000, dtype="float32"), 8000)
    >>> read_segment(path, start=0.5, duration=0.25).shape
    torch.Size([2000])
    >>> read_segment(path, start=0.5, duration=0.25, sample_rate=16000).shape
    torch.Size([4000])
    """
    # imported here: listing audio files (the console commands do it before
    # anything else) needs no torch
    import torch
    import torchaudio.functional

    try:
        with sf.SoundFile(path) as f:
            file_rate = f.samplerate
            first = int(round(start * file_rate))
            count = -1 if duration is None else int(math.ceil(duration * file_rate))
            if first > 0:
                f.seek(min(first, f.frames))
            data = f.read(count, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    wav = torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate is not None and sample_rate != file_rate:
        wav = torchaudio.functional.resample(wav, file_rate, sample_rate)
        if duration is not None:
            wav = wav[: int(round(duration * sample_rate))]
    elif duration is not None:
        wav = wav[: int(round(duration * file_rate))]
    return wav.contiguous()
