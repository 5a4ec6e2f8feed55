"""Audio I/O through soundfile: headers, seeked segment reads, mono, resampling.

Only the requested span of a file is decoded (soundfile seeks inside FLAC
and WAV), so a 10 s crop of a 60 s recording, or of an hour-long one, costs
a 10 s read.
"""

import math
import threading
from concurrent.futures import Future
from fractions import Fraction

import soundfile as sf

# what libsndfile (soundfile) reads, the one list of preparation and detection
AUDIO_EXTENSIONS = (
    ".flac",
    ".wav",
    ".wave",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)
# torchaudio's resampler builds a filter of about orig x new taps for the
# reduced ratio new / orig: rates whose ratio has larger terms go through
# resample_any_ratio instead, whose cost does not depend on the ratio's terms
MAX_RESAMPLING_TERM = 1000


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


def resample(wav, file_rate, sample_rate):
    """``wav`` at ``file_rate`` -> ``sample_rate``, with memory that stays
    flat for any pair of rates.

    When the reduced ratio ``sample_rate / file_rate`` has terms of at most
    ``MAX_RESAMPLING_TERM`` (44.1 -> 48 kHz: 147 / 160), torchaudio's
    resampler (windowed sinc, Hann window) is used; otherwise (22,254 ->
    16,000 Hz reduces to 11,127 -> 8,000, for which torchaudio builds a 2 GB
    filter) :func:`resample_any_ratio`, the same filter evaluated per output
    sample.

    Example
    -------
    >>> import torch
    >>> resample(torch.ones(22254), 22254, 16000).shape
    torch.Size([16000])
    """
    import torchaudio.functional

    ratio = Fraction(int(sample_rate), int(file_rate))
    if max(ratio.numerator, ratio.denominator) <= MAX_RESAMPLING_TERM:
        return torchaudio.functional.resample(wav, file_rate, sample_rate)
    return resample_any_ratio(wav, file_rate, sample_rate)


def resample_any_ratio(wav, file_rate, sample_rate, zero_crossings=6, block=8192):
    """Band-limited resampling at any ratio: each output sample is a windowed
    sinc (Hann window, cut-off 0.99 x the lower Nyquist rate, ``zero_crossings``
    on each side, as torchaudio's default) of the input around its position.

    Memory is ``block`` x taps floats whatever the rates; the taps grow only
    with the downsampling factor.

    Example
    -------
    >>> import math, torch
    >>> t = torch.arange(22254) / 22254
    >>> out = resample_any_ratio(torch.sin(2 * math.pi * 440 * t), 22254, 16000)
    >>> expected = torch.sin(2 * math.pi * 440 * torch.arange(16000) / 16000)
    >>> out.shape, bool((out[100:-100] - expected[100:-100]).abs().max() < 1e-2)
    (torch.Size([16000]), True)
    """
    import torch

    scale = min(file_rate, sample_rate) * 0.99 / file_rate  # cut-off, input units
    half = math.ceil(zero_crossings / scale)  # taps on each side
    n_out = math.ceil(len(wav) * sample_rate / file_rate)
    padded = torch.nn.functional.pad(wav.float()[None, None], (half, half + 1))[0, 0]
    offsets = torch.arange(-half + 1, half + 1)
    pieces = []
    for begin in range(0, n_out, block):
        outputs = torch.arange(begin, min(begin + block, n_out), dtype=torch.float64)
        position = outputs * file_rate / sample_rate  # in input samples
        first = torch.floor(position).long()
        taps = first[:, None] + offsets  # (block, 2 * half) input indices
        distance = ((position[:, None] - taps) * scale).float()
        window = torch.cos(distance * (math.pi / (2 * zero_crossings))) ** 2
        weights = torch.sinc(distance) * window * scale
        weights[distance.abs() > zero_crossings] = 0.0
        pieces.append((padded[taps + half] * weights).sum(1))
    return torch.cat(pieces) if pieces else wav.new_zeros(0)


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

    try:
        ahead = _decoded_ahead
        decoded = ahead.take(path) if ahead is not None and start == 0 else None
        if decoded is not None:  # the samples f.read below would give
            file_rate, data = decoded
            if duration is not None:
                data = data[: int(math.ceil(duration * file_rate))]
        else:
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
        wav = resample(wav, file_rate, sample_rate)
        if duration is not None:
            wav = wav[: int(round(duration * sample_rate))]
    elif duration is not None:
        wav = wav[: int(round(duration * file_rate))]
    return wav.contiguous()


class DecodedAhead:
    """Audio files decoded in a background thread before they are read.

    The console commands start one on their first files while they import
    torch and load the model, a few seconds in which one core would be
    idle. :func:`read_segment` then takes a file's samples from it when it
    reads that file from its start (the same samples it would decode) and
    decodes any other read itself; a file is never decoded twice at once.
    ``max_bytes`` bounds the samples decoded ahead, in all. Errors are
    raised by ``read_segment`` as if it had read the file.

    Example
    -------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> sf.write(path, np.linspace(-0.5, 0.5, 8000, dtype="float32"), 8000)
    >>> ahead = DecodedAhead([path], max_bytes=1 << 20)
    >>> ahead.wait()  # else take may find it not started yet: None
    >>> rate, data = ahead.take(path)
    >>> rate, data.shape, ahead.take(path) is None  # taken once
    (8000, (8000, 1), True)
    """

    def __init__(self, paths, max_bytes):
        self._lock = threading.Lock()
        self._pending = {}  # path -> Future of (rate, samples)
        self._taken = set()
        self._closed = False
        self._thread = threading.Thread(
            target=self._decode, args=(list(paths), max_bytes), daemon=True
        )
        self._thread.start()

    def _decode(self, paths, max_bytes):
        budget = max_bytes
        for path in paths:
            try:
                info = sf.info(path)
            except Exception:  # noqa: BLE001 - its reader will say why
                continue
            budget -= info.frames * info.channels * 4
            if budget < 0:
                return
            with self._lock:
                if self._closed:
                    return
                if path in self._taken:
                    continue
                future = self._pending[path] = Future()
            try:
                with sf.SoundFile(path) as f:
                    data = f.read(dtype="float32", always_2d=True)
                future.set_result((f.samplerate, data))
            except Exception as e:  # noqa: BLE001 - raised where it is taken
                future.set_exception(e)

    def take(self, path):
        """``(sample rate, (frames, channels) float32)`` of ``path`` if it is
        decoded or being decoded (then waits for it), else None: the caller
        reads the file. Either way ``path`` is never decoded ahead again."""
        with self._lock:
            self._taken.add(path)
            future = self._pending.pop(path, None)
        return None if future is None else future.result()

    def wait(self):
        """Block until every file this one will decode is decoded."""
        self._thread.join()

    def close(self):
        """Stop decoding ahead and let go of what was not taken."""
        with self._lock:
            self._closed = True
            self._pending.clear()


_decoded_ahead = None  # the DecodedAhead read_segment takes from, if any


def decode_ahead(paths, max_bytes):
    """Start decoding ``paths`` ahead for :func:`read_segment` (see
    :class:`DecodedAhead`), in place of any earlier ones; returns it."""
    global _decoded_ahead
    stop_decoding_ahead()
    _decoded_ahead = DecodedAhead(paths, max_bytes)
    return _decoded_ahead


def stop_decoding_ahead():
    """Forget the files being decoded ahead (their memory is freed)."""
    global _decoded_ahead
    if _decoded_ahead is not None:
        _decoded_ahead.close()
    _decoded_ahead = None
