"""SpeciesDetector: a trained SED model ready to score recordings, offline.

A detector is a folder that holds everything it needs; it loads from either

* a **training fold folder** (``<output_root>/<experiment>/<seed>/fold<K>/``):
  the model block of its ``hyperparams.yaml`` (saved resolved by SpeechBrain,
  command-line overrides applied) is built, the weights of the checkpoint
  with the best validation lwlrap are loaded, and the inference settings
  (rate, classes, windows, class names, species bands from the training
  boxes) are read from the ``detector_settings.yaml`` that training writes
  there (:class:`DetectorSettings`); the training data is never read, so the
  folder keeps working when the data is moved or deleted;
* an **exported folder** (:meth:`SpeciesDetector.export`): ``detector.yaml``
  (the model block and the same settings) and ``model.ckpt`` (the state
  dict), nothing else needed.

Audio is read with :func:`~speechbrain_rfcx.data.audio.read_segment` at the
model's own rate (mono, resampled), not with ``Pretrained.load_audio``, which
would resample to 16 kHz.
"""

import io
import logging
import math
import os
from dataclasses import dataclass

import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.autocast import AMPConfig, TorchAutocast
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx.inference import average_results, score_file, window_embeddings
from speechbrain_rfcx.models.fusion import fold_batch_norms

EXPORT_YAML = "detector.yaml"
EXPORT_WEIGHTS = "model.ckpt"
TRAINING_YAML = "hyperparams.yaml"
SETTINGS_FILE = "detector_settings.yaml"
FOLD_PROBE_SECONDS = 1.0
TIMM_SED_TAG = "!new:speechbrain_rfcx.models.timm_sed.TimmSED"
logger = logging.getLogger(__name__)


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or not a detector folder."""


def _yaml_text(document):
    stream = io.StringIO()
    YAML().dump(document, stream)
    return stream.getvalue()


def _model_node(document, path):
    """The ``model`` block of a resolved yaml, without local pretrained paths."""
    node = document.get("model")
    tag = getattr(getattr(node, "tag", None), "value", None)
    if not str(tag).startswith("!new:"):
        raise ModelFolderError(f"{path}: no 'model: !new:...' block")
    if isinstance(node, dict) and "pretrained_path" in node:
        node["pretrained_path"] = None  # the checkpoint holds every weight
    return node


@dataclass(frozen=True)
class DetectorSettings:
    """What a detector needs besides its model: rate, classes, windows, names, bands.

    Training writes them into the fold folder (:meth:`write`), an export
    into ``detector.yaml`` (next to the model block), so that a detector
    folder never needs the data it was trained on.

    Arguments
    ---------
    sample_rate : int
        The model's rate in Hz.
    n_classes : int
        Number of species.
    window, hop : float
        Default scoring windows in seconds (training's validation windows).
    class_names : list of str, optional
        Species names (None: ``s<id>``).
    species_bands : dict, optional
        ``{species_id: (f_min, f_max)}`` in Hz, from the training boxes.

    Example
    -------
    >>> import tempfile
    >>> settings = DetectorSettings(16000, 2, 4.0, 2.0, species_bands={1: (5.0, 9.0)})
    >>> folder = tempfile.mkdtemp()
    >>> DetectorSettings.read(settings.write(folder)) == settings
    True
    >>> sorted(settings.to_document())[:3]
    ['class_names', 'hop', 'n_classes']
    """

    sample_rate: int
    n_classes: int
    window: float
    hop: float
    class_names: tuple = None
    species_bands: dict = None

    REQUIRED = ("sample_rate", "window", "hop", "n_classes")

    def __post_init__(self):
        for name, kind in (("sample_rate", int), ("n_classes", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("window", "hop"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.species_bands is not None:
            bands = {
                int(s): (float(lo), float(hi))
                for s, (lo, hi) in self.species_bands.items()
            }
            object.__setattr__(self, "species_bands", bands or None)

    def to_document(self):
        """Plain types, as written in the yaml files (and given to
        ``SpeciesDetector`` as hparams)."""
        bands = self.species_bands
        return {
            "sample_rate": self.sample_rate,
            "n_classes": self.n_classes,
            "window": self.window,
            "hop": self.hop,
            "class_names": list(self.class_names) if self.class_names else None,
            "species_bands": (
                {s: [lo, hi] for s, (lo, hi) in bands.items()} if bands else None
            ),
        }

    @classmethod
    def from_document(cls, document, path):
        """Settings of a loaded yaml document; ``path`` names it in errors."""
        for key in cls.REQUIRED:
            if key not in document:
                raise ModelFolderError(f"{path}: no {key!r}")
        for key in ("sample_rate", "n_classes"):
            value = document[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelFolderError(
                    f"{path}: {key} must be a positive integer, got {value!r}"
                )
        for key in ("window", "hop"):
            value = document[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ModelFolderError(
                    f"{path}: {key} must be a positive number of seconds, got {value!r}"
                )
        try:
            return cls(
                **{key: document[key] for key in cls.REQUIRED},
                class_names=document.get("class_names"),
                species_bands=document.get("species_bands"),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise ModelFolderError(f"{path}: {e}") from e

    def write(self, folder):
        """Write ``detector_settings.yaml`` into ``folder`` (atomically); returns it."""
        os.makedirs(folder, exist_ok=True)
        write_atomically(
            os.path.join(folder, SETTINGS_FILE), _yaml_text(self.to_document())
        )
        return folder

    @classmethod
    def read(cls, folder):
        """The settings a training run wrote into ``folder``."""
        path = os.path.join(folder, SETTINGS_FILE)
        with open(path, encoding="utf-8") as f:
            document = _load_yaml(f.read(), path)
        return cls.from_document(document, path)


def _load_yaml(text, path):
    try:
        document = YAML().load(text)
    except YAMLError as e:
        raise ModelFolderError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(document, dict):
        raise ModelFolderError(f"{path}: not a detector description (empty?)")
    return document


def training_settings(hparams, species_bands=None):
    """The :class:`DetectorSettings` of a training run's (resolved) hparams.

    Windows are the validation windows (``valid_window``, else
    ``crop_seconds``; ``valid_hop``, else half the window).

    Example
    -------
    >>> training_settings({"sample_rate": 16000, "n_classes": 24, "crop_seconds": 4.0})
    DetectorSettings(sample_rate=16000, n_classes=24, window=4.0, hop=2.0, class_names=None, species_bands=None)
    """
    window = hparams.get("valid_window", hparams.get("crop_seconds"))
    if window is None:
        raise ModelFolderError("neither 'valid_window' nor 'crop_seconds'")
    return DetectorSettings(
        sample_rate=hparams["sample_rate"],
        n_classes=hparams["n_classes"],
        window=window,
        hop=hparams.get("valid_hop", float(window) / 2),
        class_names=hparams.get("class_names"),
        species_bands=species_bands,
    )


def _training_settings(document, path):
    for key in ("sample_rate", "n_classes"):
        if key not in document:
            raise ModelFolderError(f"{path}: no {key!r}")
    try:
        return training_settings(document)
    except ModelFolderError as e:
        raise ModelFolderError(f"{path}: {e}") from None


def _build_model(model_yaml, path):
    """The model of a ``model:`` yaml block; errors name the file."""
    try:
        return load_hyperpyyaml(model_yaml)["model"]
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as e:
        raise ModelFolderError(
            f"{path}: cannot build its model ({type(e).__name__}: {e})"
        ) from e


def _load_weights(model, weights):
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    except Exception as e:  # torch raises many types on a corrupt or foreign file
        raise ModelFolderError(
            f"{weights}: cannot load the model weights ({type(e).__name__}: {e})"
        ) from e


def _model_with_weights(model_yaml, path, weights, torchscript=False, bf16=False):
    """The model block of ``path`` with the ``weights`` file loaded.

    With ``torchscript`` a ``TimmSED`` runs a frozen TorchScript backbone
    (:mod:`~speechbrain_rfcx.models.torchscript`; in bfloat16 with
    ``bf16``): from the cache when it holds one for these weights (timm is
    then never imported), else frozen now and cached. Anything that goes
    wrong there is logged and the model runs eagerly.
    """
    if not (torchscript and TIMM_SED_TAG in model_yaml):
        model = _build_model(model_yaml, path)
        _load_weights(model, weights)
        return model
    from speechbrain_rfcx.models import torchscript as frozen_backbones

    cached = frozen_backbones.cached_path(weights, model_yaml, bf16)
    if os.path.isfile(cached):
        try:
            overrides = {"model": {"torchscript_backbone": cached}}
            model = load_hyperpyyaml(model_yaml, overrides=overrides)["model"]
            _load_weights(model, weights)
            return model
        except Exception as e:  # a stale or broken cache file: make it again
            logger.warning("%s: cannot use the cached TorchScript backbone %s "
                           "(%s: %s); freezing it again", path, cached,
                           type(e).__name__, e)  # fmt: skip
    model = _build_model(model_yaml, path)
    _load_weights(model, weights)
    try:
        frozen = model.eval().freeze_backbone(bf16)
    except Exception as e:  # a backbone TorchScript cannot script
        logger.warning("%s: running the backbone eagerly, TorchScript failed "
                       "(%s: %s)", path, type(e).__name__, e)  # fmt: skip
        return model
    try:
        frozen_backbones.save_frozen(frozen, cached)
    except OSError as e:
        logger.warning("cannot cache the TorchScript backbone in %s (%s): the "
                       "next start freezes it again", cached, e)  # fmt: skip
    return model


def check_device(device):
    """Raise a ValueError unless ``device`` names a device this machine has.

    Example
    -------
    >>> check_device("cpu")
    >>> check_device("banana")
    Traceback (most recent call last):
    ...
    ValueError: device 'banana' is not a device name (cpu, cuda, cuda:1, ...)
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device {device!r} is not a device name (cpu, cuda, cuda:1, ...)"
        ) from e
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: no CUDA GPU is available here")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} GPU(s)")


class SpeciesDetector(Pretrained):
    """Scores recordings with a trained SED model (SpeechBrain ``Pretrained``).

    The ``Pretrained`` base provides device placement, ``eval()`` and frozen
    parameters, run options and the inference precision context. Its
    ``from_hparams`` is replaced: a training folder's yaml builds a whole
    training setup (loggers, checkpointer, seeds) and has no ``pretrainer``,
    so this class builds only the model block and loads the weights itself.

    Arguments
    ---------
    modules : dict
        ``{"model": module}`` keeping the model contract.
    hparams : dict
        ``sample_rate``, ``window`` and ``hop`` (seconds), ``n_classes``;
        optional ``species_bands`` (``{species: [f_min, f_max]}``),
        ``class_names`` and ``model_yaml`` (the model block, for export).
    run_opts : dict, optional
        SpeechBrain run options, e.g. ``{"device": "cpu"}``.

    Example
    -------
    >>> class Loudness(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         frames = wavs.reshape(wavs.shape[0], 4, -1).abs().amax(2, keepdim=True)
    ...         return {"clip_logits": frames.amax(1), "frame_logits": frames}
    >>> detector = SpeciesDetector(
    ...     modules={"model": Loudness()},
    ...     hparams={"sample_rate": 100, "window": 4.0, "hop": 2.0, "n_classes": 1},
    ...     run_opts={"device": "cpu"})
    >>> out = detector.detect_batch(torch.zeros(2, 400))
    >>> out["clip_probs"].shape, out["frame_probs"].shape
    (torch.Size([2, 1]), torch.Size([2, 4, 1]))
    """

    HPARAMS_NEEDED = ["sample_rate", "window", "hop", "n_classes"]
    MODULES_NEEDED = ["model"]

    def __init__(self, modules=None, hparams=None, run_opts=None, freeze_params=True):
        hparams = dict(hparams or {})
        for name in ("window", "hop"):
            value = hparams.get(name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        super().__init__(modules, hparams, run_opts, freeze_params)
        self.hparams.species_bands = self._check_bands(
            getattr(self.hparams, "species_bands", None)
        )
        # Scoring runs a copy with BatchNorms folded into the convolutions
        # (same outputs, faster); ``mods.model`` stays as trained, for export.
        # The copy is made here and shares the weights that folding leaves
        # alone: to score other weights, build a new detector. It is checked
        # on a probe of at most FOLD_PROBE_SECONDS (a longer one only slows
        # every start).
        self.scoring_model = self.mods.model
        if not self.mods.model.training:
            seconds = min(float(self.hparams.window), FOLD_PROBE_SECONDS)
            probe = torch.randn(
                1,
                int(round(seconds * self.sample_rate)),
                generator=torch.Generator().manual_seed(0),
            )
            self.scoring_model, _ = fold_batch_norms(
                self.mods.model,
                0.1 * probe.to(self.device),
                torch.ones(1, device=self.device),
            )

    @staticmethod
    def _check_bands(bands):
        if bands is None:
            return None
        checked = {}
        for species, band in bands.items():
            low, high = (float(v) for v in band)
            if not 0 <= low <= high:
                raise ValueError(f"species_bands[{species}] = {band!r} is not a band")
            checked[int(species)] = (low, high)
        return checked

    # --- loading and export -------------------------------------------------

    @classmethod
    def from_hparams(
        cls, source, savedir=None, run_opts=None, torchscript=False, **kwargs
    ):
        """Load a detector from a training fold folder or an exported folder.

        Arguments
        ---------
        source : str
            A fold folder (``hyperparams.yaml`` + ``save/CKPT+*``) or a
            folder written by :meth:`export` (``detector.yaml``).
        savedir : str, optional
            When given, the loaded detector is also exported there (a
            self-contained copy for use elsewhere).
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
        torchscript : bool
            Run a ``timm_sed`` backbone as frozen TorchScript, cached per
            weights (:mod:`~speechbrain_rfcx.models.torchscript`): faster
            on the CPU, same outputs within float rounding, and timm is not
            imported once cached; in bfloat16 when ``run_opts`` asks for
            ``"precision": "bf16"``. CPU only (ignored otherwise); the model
            can then no longer train.
        **kwargs
            Passed to the constructor (e.g. ``freeze_params``).

        Returns
        -------
        SpeciesDetector
            In eval mode.

        Example
        -------
        >>> SpeciesDetector.from_hparams("/no/such/folder")
        Traceback (most recent call last):
        ...
        speechbrain_rfcx.interface.ModelFolderError: /no/such/folder holds neither detector.yaml (an exported detector) nor hyperparams.yaml (a training fold folder)
        """
        source = str(source)
        options = run_opts or {}
        device = options.get("device")
        if device is not None:  # None: SpeechBrain's default
            check_device(device)
        precision = options.get("precision") or "fp32"
        if str(device or "cpu") != "cpu" or precision == "fp16":
            torchscript = False  # frozen weights stay on the CPU
        backbone = {"torchscript": torchscript, "bf16": precision == "bf16"}
        if os.path.isfile(os.path.join(source, EXPORT_YAML)):
            detector = cls._from_export(source, run_opts, backbone, **kwargs)
        elif os.path.isfile(os.path.join(source, TRAINING_YAML)):
            detector = cls._from_training(source, run_opts, backbone, **kwargs)
        else:
            raise ModelFolderError(
                f"{source} holds neither {EXPORT_YAML} (an exported detector) nor "
                f"{TRAINING_YAML} (a training fold folder)"
            )
        if savedir is not None:
            detector.export(savedir)
        return detector

    @classmethod
    def _from_export(cls, source, run_opts, backbone, **kwargs):
        path = os.path.join(source, EXPORT_YAML)
        with open(path, encoding="utf-8") as f:
            document = _load_yaml(f.read(), path)
        model_yaml = _yaml_text({"model": _model_node(document, path)})
        settings = DetectorSettings.from_document(document, path)
        weights = os.path.join(source, EXPORT_WEIGHTS)
        if not os.path.isfile(weights):
            raise ModelFolderError(f"{source}: {EXPORT_WEIGHTS} is missing")
        model = _model_with_weights(model_yaml, path, weights, **backbone)
        hparams = dict(settings.to_document(), model_yaml=model_yaml)
        return cls(
            modules={"model": model}, hparams=hparams, run_opts=run_opts, **kwargs
        )

    @classmethod
    def _from_training(cls, source, run_opts, backbone, **kwargs):
        path = os.path.join(source, TRAINING_YAML)
        with open(path, encoding="utf-8") as f:
            document = YAML().load(f)
        model_yaml = _yaml_text({"model": _model_node(document, path)})
        best = Checkpointer(os.path.join(source, "save")).find_checkpoint(
            max_key="lwlrap"
        )
        if best is None or "model" not in best.paramfiles:
            raise ModelFolderError(
                f"{source}/save holds no checkpoint with a validation lwlrap"
            )
        model = _model_with_weights(
            model_yaml, path, str(best.paramfiles["model"]), **backbone
        )
        if os.path.isfile(os.path.join(source, SETTINGS_FILE)):
            settings = DetectorSettings.read(source)
        else:  # a fold trained before the settings file existed: no bands
            settings = _training_settings(document, path)
        hparams = dict(settings.to_document(), model_yaml=model_yaml)
        return cls(
            modules={"model": model}, hparams=hparams, run_opts=run_opts, **kwargs
        )

    def export(self, folder):
        """Write a self-contained detector folder: ``detector.yaml`` + ``model.ckpt``.

        Arguments
        ---------
        folder : str
            Created if needed; existing files of the same names are replaced
            atomically.

        Returns
        -------
        str
            ``folder``.
        """
        model_yaml = getattr(self.hparams, "model_yaml", None)
        if model_yaml is None:
            raise ModelFolderError(
                "this detector was not built from a model yaml block, so it "
                "cannot be exported (load it with from_hparams)"
            )
        document = YAML().load(model_yaml)
        document.update(self.settings.to_document())
        os.makedirs(folder, exist_ok=True)
        weights = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.mods.model.state_dict().items()}
        torch.save(state, weights)
        write_atomically(os.path.join(folder, EXPORT_WEIGHTS), weights.getvalue())
        write_atomically(os.path.join(folder, EXPORT_YAML), _yaml_text(document))
        return folder

    # --- properties ---------------------------------------------------------

    @property
    def settings(self):
        """The :class:`DetectorSettings` of this detector."""
        return DetectorSettings(
            sample_rate=self.hparams.sample_rate,
            n_classes=self.hparams.n_classes,
            window=self.hparams.window,
            hop=self.hparams.hop,
            class_names=getattr(self.hparams, "class_names", None),
            species_bands=self.hparams.species_bands,
        )

    @property
    def sample_rate(self):
        """The model's sample rate in Hz."""
        return int(self.hparams.sample_rate)

    @property
    def species_bands(self):
        """``{species_id: (f_min, f_max)}`` from the training boxes, or None."""
        return self.hparams.species_bands

    @property
    def class_names(self):
        """Species names (list) or None (``s<id>``)."""
        return getattr(self.hparams, "class_names", None)

    # --- inference ----------------------------------------------------------

    def _precision_context(self):
        """A fresh autocast context at the run's precision: one per call, so
        several threads can score files with the same detector."""
        dtype = AMPConfig.from_name(self.precision).dtype
        return TorchAutocast(device_type=self.device_type, dtype=dtype)

    def detect_batch(self, wavs, lens=None):
        """Probabilities of a batch of windows at the model's rate.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(B, samples)`` audio at :attr:`sample_rate`.
        lens : torch.Tensor, optional
            ``(B,)`` relative lengths (default: all 1).

        Returns
        -------
        dict
            ``clip_probs`` (B, C) and ``frame_probs`` (B, T', C).
        """
        wavs = torch.as_tensor(wavs, dtype=torch.float32)
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must have shape (B, samples), got {tuple(wavs.shape)}"
            )
        if lens is None:
            lens = torch.ones(wavs.shape[0])
        with torch.no_grad(), self._precision_context():
            out = self.scoring_model(
                wavs.to(self.device), torch.as_tensor(lens).to(self.device)
            )
        return {
            "clip_probs": torch.sigmoid(out["clip_logits"].float()),
            "frame_probs": torch.sigmoid(out["frame_logits"].float()),
        }

    def forward(self, wavs, lens=None):
        """Same as :meth:`detect_batch` (``Pretrained`` convention)."""
        return self.detect_batch(wavs, lens)

    def detect_file(self, path, window=None, hop=None, **options):
        """Clip and framewise probabilities of one audio file of any length.

        The file is streamed in chunks: a convolutional model scores each
        chunk in one pass and pools the windows on its frames, other models
        run ``batch_size`` windows at a time (see
        :func:`speechbrain_rfcx.inference.score_audio`).

        Arguments
        ---------
        path : str
            Audio file soundfile reads (downmixed, resampled to the model's rate).
        window, hop : float, optional
            Seconds; default: the training validation windows.
        **options
            The other fields of
            :class:`~speechbrain_rfcx.inference.ScoringSettings`: ``tta``
            (``"shift"`` and/or speeds such as ``0.9``, ``1.1``),
            ``batch_size`` (16), ``windowed`` (False: a convolutional model
            scores in one pass), ``chunk_seconds`` (60).

        Returns
        -------
        dict
            ``clip_probs`` (C,), ``frame_probs`` (T, C), ``frame_times`` (T,)
            frame centres in seconds, ``frame_hop`` and ``duration`` in
            seconds.
        """
        window = float(self.hparams.window if window is None else window)
        hop = float(self.hparams.hop if hop is None else hop)
        with self._precision_context():
            return score_file(
                self.scoring_model,
                str(path),
                self.sample_rate,
                window,
                hop,
                device=self.device,
                **options,
            )

    def embed_file(self, path, window=None, hop=None, batch_size=16):
        """The model's embedding of every sliding window of one audio file.

        Arguments
        ---------
        path : str
            Audio file (downmixed, resampled to the model's rate).
        window, hop : float, optional
            Seconds; default: the training validation windows.
        batch_size : int
            Windows per forward.

        Returns
        -------
        dict
            ``starts`` (W,) seconds and ``embeddings`` (W, D), as
            :func:`speechbrain_rfcx.inference.window_embeddings`.
        """
        window = float(self.hparams.window if window is None else window)
        hop = float(self.hparams.hop if hop is None else hop)
        with self._precision_context():
            return window_embeddings(
                self.scoring_model, str(path), self.sample_rate, window, hop,
                batch_size, self.device,
            )  # fmt: skip


def ensemble_detect_file(detectors, path, **kwargs):
    """Average the :meth:`SpeciesDetector.detect_file` results of several models.

    Clip probabilities and framewise probabilities are averaged (frames on the
    first detector's frame grid, see
    :func:`speechbrain_rfcx.inference.average_results`).

    Arguments
    ---------
    detectors : list of SpeciesDetector
        E.g. one per cross-validation fold; they must have the same classes.
    path : str
        Audio file.
    **kwargs
        Options of ``detect_file`` (``window``, ``hop``, ``tta``, ...).

    Returns
    -------
    dict
        As ``detect_file``.

    Example
    -------
    >>> ensemble_detect_file([], "a.wav")
    Traceback (most recent call last):
    ...
    ValueError: detectors is empty: give at least one model
    """
    if not detectors:
        raise ValueError("detectors is empty: give at least one model")
    classes = {int(d.hparams.n_classes) for d in detectors}
    if len(classes) > 1:
        raise ValueError(f"detectors disagree on n_classes: {sorted(classes)}")
    return average_results([d.detect_file(path, **kwargs) for d in detectors])
