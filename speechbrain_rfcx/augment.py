"""Batch augmentations that keep SED targets consistent with the audio.

Every augmentation acts on a training batch ``(wavs, targets)`` where
``wavs`` is ``(B, samples)`` and ``targets`` the dictionary of the target
contract declared in ``speechbrain_rfcx.data.crops``, the relative valid
lengths included::

    clip_target (B, C), frame_target (B, T, C), frame_mask (B, T),
    label_mask (B, C), frame_label_mask (B, T, C), lens (B,)

Any subset of these keys may be present; other keys are passed through
unchanged (they stay attached to their own example). Inputs are never
modified in place; a new ``targets`` dictionary is returned.

The signal processing itself comes from ``speechbrain.augment``
(``Resample`` for speed changes, in ``speechbrain_rfcx.speed``, which the
scorer's test-time augmentation shares; ``SpectrogramDrop`` for SpecAugment,
``AddNoise`` for noise files); this module adds the target bookkeeping.

All randomness goes through an optional ``torch.Generator`` (``generator``
arguments) or, when none is given, torch's global RNG, so seeding either makes
the augmentations deterministic. Random numbers are drawn on the generator's
device and then moved, so a CPU generator works with tensors on any device.

Authors
-------
* speechbrain-rfcx contributors
"""

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.augment.time_domain import AddNoise

from speechbrain_rfcx.data.crops import (
    FRAME_KEYS,
    KNOWN_MASK_KEYS,
    SOFT_KEYS,
    check_targets,
    check_wavs,
)
from speechbrain_rfcx.speed import change_speed, speed_ratio


# ----------------------------------------------------------------------------
# Small private helpers
# ----------------------------------------------------------------------------
def _generator_device(generator):
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(size, low, high, generator, device):
    """Uniform samples in [low, high], drawn on the generator's device."""
    draw = torch.rand(size, generator=generator, device=_generator_device(generator))
    return (low + (high - low) * draw).to(device)


def _randint(high, size, generator):
    """Integers in [0, high) as a CPU tensor."""
    return torch.randint(
        high, size, generator=generator, device=_generator_device(generator)
    ).cpu()


def _coin(prob, generator):
    """True with probability ``prob``."""
    if prob <= 0.0:
        return False
    if prob >= 1.0:
        return True
    draw = torch.rand(1, generator=generator, device=_generator_device(generator))
    return bool(draw.item() < prob)


def _sample_beta(alpha, size, generator=None):
    """Samples of Beta(alpha, alpha), reproducible under ``generator``.

    ``torch.distributions.Beta`` has no generator argument, so when one is
    given a seed drawn from it drives a forked copy of the global RNG.
    """
    beta = torch.distributions.Beta(
        torch.tensor(float(alpha)), torch.tensor(float(alpha))
    )
    if generator is None:
        return beta.sample((size,))
    seed = int(
        torch.randint(
            2**62, (1,), generator=generator, device=_generator_device(generator)
        ).item()
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return beta.sample((size,))


# ----------------------------------------------------------------------------
# Public augmentations
# ----------------------------------------------------------------------------
def mixup(wavs, targets, alpha=0.1, generator=None):
    """Mix every example of the batch with another one (batch mixup).

    Example ``i`` is mixed with example ``perm[i]`` for a random permutation
    ``perm`` of the batch, with its own weight ``lam[i] ~ Beta(alpha, alpha)``
    (one lambda per example, so a batch mixes with varied strengths):
    ``x = lam * x_i + (1 - lam) * x_perm[i]`` for the audio and the soft
    targets (``clip_target``, ``frame_target``, ``frame_mask``). The known-cell
    masks (``label_mask``, ``frame_label_mask``) are merged with max: a cell
    known in either input stays known. ``targets['lens']`` becomes the max of
    the two lengths.

    Arguments
    ---------
    wavs : torch.Tensor
        Audio batch, shape ``(B, samples)``.
    targets : dict
        Targets of the contract (any subset of its keys).
    alpha : float
        Beta distribution parameter (> 0). Small values keep ``lam`` near 0 or 1.
    generator : torch.Generator, optional
        Source of randomness (global RNG if None).

    Returns
    -------
    wavs : torch.Tensor
        Mixed audio, same shape.
    targets : dict
        New dictionary with mixed targets.

    Example
    -------
    >>> wavs = torch.eye(4)
    >>> targets = {"clip_target": torch.eye(4), "label_mask": torch.eye(4)}
    >>> g = torch.Generator().manual_seed(0)
    >>> mixed, new_targets = mixup(wavs, targets, alpha=0.4, generator=g)
    >>> torch.allclose(mixed, new_targets["clip_target"])
    True
    >>> bool((new_targets["label_mask"] >= targets["label_mask"]).all())
    True
    """
    check_wavs(wavs)
    check_targets(targets, wavs.shape[0])
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha}")
    batch_size = wavs.shape[0]
    perm = torch.randperm(
        batch_size, generator=generator, device=_generator_device(generator)
    ).to(wavs.device)
    lam = _sample_beta(alpha, batch_size, generator).to(wavs.device, wavs.dtype)

    def mix(x):
        weight = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return weight * x + (1 - weight) * x[perm]

    mixed_targets = dict(targets)
    for key, value in targets.items():
        if key in SOFT_KEYS:
            mixed_targets[key] = mix(value)
        elif key in KNOWN_MASK_KEYS or key == "lens":
            mixed_targets[key] = torch.maximum(value, value[perm])
    return mix(wavs), mixed_targets


def speed_perturb(wavs, lens, targets=None, speeds=(0.9, 1.0, 1.1), generator=None):
    """Play the whole batch at one speed chosen at random from ``speeds``.

    See :func:`change_speed` for how the audio, ``lens`` and the targets are
    transformed (crop length unchanged, events move to ``t / speed``).

    Arguments
    ---------
    wavs : torch.Tensor
        Audio batch, shape ``(B, samples)``.
    lens : torch.Tensor
        Relative valid lengths, shape ``(B,)``.
    targets : dict, optional
        Targets of the contract (any subset of its keys), or None.
    speeds : sequence of float
        Candidate speed factors, one drawn uniformly per batch.
    generator : torch.Generator, optional
        Source of randomness (global RNG if None).

    Returns
    -------
    wavs, lens, targets
        As returned by :func:`change_speed`.

    Example
    -------
    >>> wavs = torch.randn(2, 4800)
    >>> out, lens, _ = speed_perturb(wavs, torch.ones(2), speeds=[1.25])
    >>> out.shape, lens
    (torch.Size([2, 4800]), tensor([0.8000, 0.8000]))
    """
    speeds = list(speeds)
    if not speeds:
        raise ValueError("speeds must contain at least one speed factor")
    for speed in speeds:
        speed_ratio(speed)
    speed = speeds[int(_randint(len(speeds), (1,), generator))]
    return change_speed(wavs, lens, targets, speed)


def random_gain(wavs, min_db=-6.0, max_db=6.0, generator=None):
    """Scale each example by a random gain drawn uniformly in decibels.

    Arguments
    ---------
    wavs : torch.Tensor
        Audio batch, shape ``(B, samples)``.
    min_db, max_db : float
        Range of the gain in dB (amplitude factor ``10 ** (db / 20)``).
    generator : torch.Generator, optional
        Source of randomness (global RNG if None).

    Returns
    -------
    torch.Tensor
        Scaled audio, same shape.

    Example
    -------
    >>> wavs = torch.ones(3, 10)
    >>> out = random_gain(wavs, min_db=-20.0, max_db=-20.0)
    >>> torch.allclose(out, torch.full((3, 10), 0.1))
    True
    """
    check_wavs(wavs)
    if min_db > max_db:
        raise ValueError(f"min_db ({min_db}) must not exceed max_db ({max_db})")
    gain_db = _uniform((wavs.shape[0], 1), min_db, max_db, generator, wavs.device)
    return wavs * 10.0 ** (gain_db.to(wavs.dtype) / 20.0)


def csv_noise(csv_file, snr_low=0.0, snr_high=20.0, sample_rate=48000, **kwargs):
    """Speechbrain ``AddNoise`` reading noise files from a CSV, set for RFCX.

    The CSV uses SpeechBrain's extended format
    (``ID,duration,wav,wav_format,wav_opts``). Noise files are assumed to be
    at ``sample_rate`` (pass ``noise_sample_rate`` to resample them) and are
    tiled when shorter than the audio. Note ``AddNoise``'s SNR convention: it
    scales the clean signal by ``1 - a`` and the noise to ``a`` times the
    clean RMS, with ``a = 1 / (1 + 10 ** (snr / 20))``; it uses torch's global
    RNG.

    Arguments
    ---------
    csv_file : str
        Path to the noise CSV.
    snr_low, snr_high : float
        SNR range in dB.
    sample_rate : int
        Sample rate of the clean audio.
    **kwargs
        Other ``speechbrain.augment.time_domain.AddNoise`` arguments.

    Returns
    -------
    speechbrain.augment.time_domain.AddNoise
        Callable as ``noise(wavs, lens)``.

    Example
    -------
    >>> add_noise = csv_noise("noise.csv", snr_low=5, snr_high=15)
    >>> add_noise.clean_sample_rate, add_noise.pad_noise
    (48000, True)
    """
    options = dict(
        csv_file=csv_file,
        snr_low=snr_low,
        snr_high=snr_high,
        pad_noise=True,
        noise_sample_rate=sample_rate,
        clean_sample_rate=sample_rate,
    )
    options.update(kwargs)
    return AddNoise(**options)


def time_shift(wavs, targets, max_shift=0.5, generator=None):
    """Circularly roll each example's audio and frame targets by one amount.

    Each example gets its own shift, a whole number of target frames ``k``
    drawn uniformly in ``[-max_shift * T, max_shift * T]``; the audio rolls by
    ``round(k * samples / T)`` samples, so events and targets stay aligned
    (without frame targets the shift is drawn in samples). Clip-level targets
    do not change. Rolling moves any padding inside the crop, where it acts as
    silence with zero targets, so ``targets['lens']`` becomes 1 for every
    shifted example.

    Arguments
    ---------
    wavs : torch.Tensor
        Audio batch, shape ``(B, samples)``.
    targets : dict
        Targets of the contract (any subset of its keys).
    max_shift : float
        Largest shift as a fraction of the crop, in [0, 1].
    generator : torch.Generator, optional
        Source of randomness (global RNG if None).

    Returns
    -------
    wavs : torch.Tensor
        Rolled audio.
    targets : dict
        New dictionary with rolled frame targets.

    Example
    -------
    >>> wavs = torch.arange(8.0).repeat(2, 1)
    >>> targets = {"frame_mask": torch.tensor([[1.0, 0, 0, 0]] * 2)}
    >>> out, new = time_shift(wavs, targets, max_shift=0.5)
    >>> shift = new["frame_mask"].argmax(dim=1, keepdim=True)  # frame 0 moved here
    >>> torch.equal(out[:, ::2] // 2, (torch.arange(4) - shift) % 4)
    True
    """
    check_wavs(wavs)
    batch_size, n_samples = wavs.shape
    n_frames = check_targets(targets, batch_size)
    if not 0.0 <= max_shift <= 1.0:
        raise ValueError(f"max_shift must be a fraction in [0, 1], got {max_shift}")
    resolution = n_frames if n_frames is not None else n_samples
    max_steps = int(max_shift * resolution)
    steps = _randint(2 * max_steps + 1, (batch_size,), generator) - max_steps
    sample_shifts = torch.round(steps * n_samples / resolution).long()

    rolled = torch.stack(
        [torch.roll(w, s) for w, s in zip(wavs, sample_shifts.tolist())]
    )
    new_targets = dict(targets)
    for key in FRAME_KEYS:
        if key in targets:
            new_targets[key] = torch.stack(
                [torch.roll(x, s, dims=0) for x, s in zip(targets[key], steps.tolist())]
            )
    if "lens" in targets:
        shifted = (sample_shifts != 0).to(targets["lens"].device)
        new_targets["lens"] = targets["lens"].masked_fill(shifted, 1.0)
    return rolled, new_targets


# ----------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------
class SpecAugment(torch.nn.Module):
    """Time and frequency masking of features (SpecAugment), training only.

    Built on speechbrain's ``SpectrogramDrop``: ``time_masks`` masks of
    ``0..time_width`` frames and ``freq_masks`` masks of ``0..freq_width``
    bins are drawn per example and filled with ``replace`` (default the mean
    of the batch features, a neutral value for log-mel features). Identity in
    eval mode. Uses torch's global RNG. Models take it as ``feature_augment``.

    Arguments
    ---------
    time_masks : int
        Number of time masks (0 disables).
    time_width : int
        Largest time mask, in frames.
    freq_masks : int
        Number of frequency masks (0 disables).
    freq_width : int
        Largest frequency mask, in bins.
    replace : str
        Fill value, one of ``SpectrogramDrop``'s options ("mean", "zeros", ...).

    Example
    -------
    >>> augment = SpecAugment(time_masks=1, time_width=5, freq_masks=1, freq_width=3)
    >>> feats = torch.rand(2, 20, 8)
    >>> augment(feats).shape
    torch.Size([2, 20, 8])
    >>> torch.equal(augment.eval()(feats), feats)
    True
    """

    def __init__(
        self, time_masks=2, time_width=40, freq_masks=2, freq_width=16, replace="mean"
    ):
        super().__init__()
        for name, value in (
            ("time_masks", time_masks),
            ("time_width", time_width),
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
        ):
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value}")
        self.drops = torch.nn.ModuleList()
        for dim, count, width in (
            (1, time_masks, time_width),
            (2, freq_masks, freq_width),
        ):
            if count > 0 and width > 0:
                self.drops.append(
                    SpectrogramDrop(
                        drop_length_low=0,
                        drop_length_high=int(width) + 1,
                        drop_count_low=int(count),
                        drop_count_high=int(count),
                        replace=replace,
                        dim=dim,
                    )
                )

    def forward(self, features):
        """Mask ``features`` of shape ``(B, T, F)`` when training.

        Arguments
        ---------
        features : torch.Tensor
            Features, shape ``(B, T, F)``.

        Returns
        -------
        torch.Tensor
            Masked features (a new tensor), same shape.
        """
        if features.dim() != 3:
            raise ValueError(
                f"SpecAugment expects features of shape (B, T, F), got "
                f"{tuple(features.shape)}"
            )
        if not self.training or len(self.drops) == 0:
            return features
        features = features.clone()  # SpectrogramDrop fills in place
        for drop in self.drops:
            features = drop(features)
        return features


class BatchAugment(torch.nn.Module):
    """Training-batch augmentation composed from hyperparameters.

    Applies, in this order and each to the whole batch with its probability:
    speed perturbation (:func:`speed_perturb`), circular time shift
    (:func:`time_shift`), random gain (:func:`random_gain`, in
    ``[-gain_db, gain_db]``, always on when ``gain_db > 0``), background noise
    from a CSV (:func:`csv_noise`) and mixup (:func:`mixup`, last so that it
    mixes augmented examples). Identity in eval mode.

    Arguments
    ---------
    mixup_alpha : float
        Beta parameter of mixup.
    mixup_prob : float
        Probability of mixing a batch.
    speeds : sequence of float
        Candidate speed factors.
    speed_prob : float
        Probability of speed-perturbing a batch.
    gain_db : float
        Largest gain in dB (0 disables).
    shift_prob : float
        Probability of time-shifting a batch.
    max_shift : float
        Largest time shift, fraction of the crop.
    noise_csv : str, optional
        SpeechBrain CSV of noise files (None disables noise).
    noise_prob : float
        Probability of adding noise to a batch.
    snr_low, snr_high : float
        Noise SNR range in dB.
    sample_rate : int
        Sample rate of the audio (and of the noise files).

    Example
    -------
    >>> augment = BatchAugment(mixup_alpha=0.4, mixup_prob=1.0)
    >>> wavs = torch.randn(4, 480)
    >>> targets = {"clip_target": torch.eye(4), "lens": torch.ones(4)}
    >>> out, out_targets = augment(wavs, targets)
    >>> out.shape, out_targets["clip_target"].shape
    (torch.Size([4, 480]), torch.Size([4, 4]))
    >>> augment.eval()(wavs, targets)[0] is wavs
    True
    """

    def __init__(
        self,
        mixup_alpha=0.1,
        mixup_prob=1.0,
        speeds=(0.9, 1.0, 1.1),
        speed_prob=0.0,
        gain_db=0.0,
        shift_prob=0.0,
        max_shift=0.5,
        noise_csv=None,
        noise_prob=0.0,
        snr_low=0.0,
        snr_high=20.0,
        sample_rate=48000,
    ):
        super().__init__()
        for name, prob in (
            ("mixup_prob", mixup_prob),
            ("speed_prob", speed_prob),
            ("shift_prob", shift_prob),
            ("noise_prob", noise_prob),
        ):
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {prob}")
        if mixup_prob > 0 and not mixup_alpha > 0:
            raise ValueError(f"mixup_alpha must be positive, got {mixup_alpha}")
        if gain_db < 0:
            raise ValueError(f"gain_db must be non-negative, got {gain_db}")
        if not 0.0 <= max_shift <= 1.0:
            raise ValueError(f"max_shift must be a fraction in [0, 1], got {max_shift}")
        self.speeds = [float(s) for s in speeds]
        if speed_prob > 0:
            if not self.speeds:
                raise ValueError("speeds must contain at least one speed factor")
            for speed in self.speeds:
                speed_ratio(speed)
        self.mixup_alpha = mixup_alpha
        self.mixup_prob = mixup_prob
        self.speed_prob = speed_prob
        self.gain_db = gain_db
        self.shift_prob = shift_prob
        self.max_shift = max_shift
        self.noise_prob = noise_prob if noise_csv is not None else 0.0
        self.noise = (
            csv_noise(noise_csv, snr_low, snr_high, sample_rate)
            if noise_csv is not None
            else None
        )

    def forward(self, wavs, targets, generator=None):
        """Augment a training batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Audio batch, shape ``(B, samples)``.
        targets : dict
            Targets of the contract, with ``lens`` (B,), the relative valid
            lengths (the only copy of them: the model reads the returned
            ``targets['lens']``).
        generator : torch.Generator, optional
            Source of randomness (global RNG if None; the CSV noise always
            uses the global RNG).

        Returns
        -------
        wavs, targets
            The augmented batch.
        """
        if "lens" not in targets:
            raise ValueError(
                f"BatchAugment needs targets['lens'] (got keys {sorted(targets)})"
            )
        if not self.training:
            return wavs, targets
        if _coin(self.speed_prob, generator):
            wavs, _, targets = speed_perturb(
                wavs, targets["lens"], targets, self.speeds, generator=generator
            )
        if _coin(self.shift_prob, generator):
            wavs, targets = time_shift(wavs, targets, self.max_shift, generator)
        if self.gain_db > 0:
            wavs = random_gain(wavs, -self.gain_db, self.gain_db, generator)
        if self.noise is not None and _coin(self.noise_prob, generator):
            wavs = self.noise(wavs, targets["lens"])
        if _coin(self.mixup_prob, generator):
            wavs, targets = mixup(wavs, targets, self.mixup_alpha, generator)
        return wavs, targets
