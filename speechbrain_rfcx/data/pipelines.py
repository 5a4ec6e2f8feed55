"""SpeechBrain DynamicItemDataset pipelines over the prepared manifests.

The manifest keys (``wav``, ``duration``, ``tp_boxes``, ``fp_boxes``, ...) are
only read; the items provided have other names (``signal``, ``clip_target``,
...) because a provided key that also exists in the JSON is silently shadowed
by the JSON value in SpeechBrain.
"""

import random

import speechbrain as sb
import torch

from speechbrain_rfcx.data.annotations import N_SPECIES
from speechbrain_rfcx.data.audio import read_segment
from speechbrain_rfcx.data.crops import TARGET_KEYS, load_crop

CROP_ITEMS = ("signal", "crop_start", *TARGET_KEYS)


def crop_pipeline(
    crop_seconds,
    n_frames,
    sample_rate,
    n_classes=N_SPECIES,
    min_overlap=0.0,
    rng=random,
    pseudo_rule=None,
):
    """A dynamic item giving one random training crop around an entry's anchor.

    Entries come from ``speechbrain_rfcx.data.sampling.anchored_entries``:
    the crop contains the entry's ``anchor`` box at a random offset, or lies
    anywhere when the anchor is None. With a ``pseudo_rule`` the entries
    also have ``pseudo_labels`` (a pseudo-label file or None), and the cells
    no human box labels take their pseudo-labels (``load_crop``).

    The default ``rng`` is Python's ``random`` module, which PyTorch seeds
    differently in every DataLoader worker, so workers draw different crops.

    Arguments
    ---------
    crop_seconds : float
    n_frames : int
        Frame-target resolution per crop.
    sample_rate : int
        Rate of the returned signal (files at other rates are resampled).
    n_classes : int
    min_overlap : float
    rng : random.Random or the random module
    pseudo_rule : speechbrain_rfcx.data.pseudo.PseudoLabelRule, optional

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, duration, tp_boxes, fp_boxes, anchor`` (and
        ``pseudo_labels`` with a ``pseudo_rule``); provides :data:`CROP_ITEMS`.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "r.flac")
    >>> sf.write(path, np.zeros(8000 * 4, dtype="float32"), 8000)
    >>> box = {"species_id": 1, "songtype_id": 1, "t_min": 1.0, "f_min": 1.0,
    ...        "t_max": 2.0, "f_max": 2.0}
    >>> data = {"r/tp0": {"wav": path, "duration": 4.0, "tp_boxes": [box],
    ...                   "fp_boxes": [], "anchor": box}}
    >>> dataset = sb.dataio.dataset.DynamicItemDataset(data)
    >>> dataset.add_dynamic_item(crop_pipeline(2.0, 4, 8000, n_classes=3))
    >>> dataset.set_output_keys(["id", "signal", "clip_target"])
    >>> item = dataset[0]
    >>> item["signal"].shape, item["clip_target"].tolist()
    (torch.Size([16000]), [0.0, 1.0, 0.0])
    """

    keys = ["wav", "duration", "tp_boxes", "fp_boxes", "anchor"]
    if pseudo_rule is not None:
        keys.append("pseudo_labels")

    @sb.utils.data_pipeline.takes(*keys)
    @sb.utils.data_pipeline.provides(*CROP_ITEMS)
    def crop_item(wav, duration, tp_boxes, fp_boxes, anchor, pseudo_labels=None):
        crop = load_crop(
            wav,
            duration,
            tp_boxes,
            fp_boxes,
            anchor,
            crop_seconds=crop_seconds,
            n_frames=n_frames,
            n_classes=n_classes,
            sample_rate=sample_rate,
            min_overlap=min_overlap,
            rng=rng,
            pseudo_labels=pseudo_labels,
            pseudo_rule=pseudo_rule,
        )
        for key in CROP_ITEMS:
            yield crop[key]

    return crop_item


def recording_pipeline(sample_rate):
    """A dynamic item giving a whole recording as ``signal`` (mono, resampled).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "r.wav")
    >>> sf.write(path, np.zeros((8000, 2), dtype="float32"), 8000)
    >>> dataset = sb.dataio.dataset.DynamicItemDataset({"r": {"wav": path}})
    >>> dataset.add_dynamic_item(recording_pipeline(16000))
    >>> dataset.set_output_keys(["signal"])
    >>> dataset[0]["signal"].shape
    torch.Size([16000])
    """

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("signal")
    def recording_item(wav):
        return read_segment(wav, sample_rate=sample_rate)

    return recording_item


def recording_targets_pipeline(n_classes=N_SPECIES):
    """A dynamic item giving a recording's labels for whole-recording metrics.

    ``recording_target`` (C): 1 for species with a TP box anywhere in the
    recording; ``recording_label_mask`` (C): 1 where the species is known
    (a TP or an FP box), for the masked lwlrap.

    Example
    -------
    >>> box = {"species_id": 1, "songtype_id": 1, "t_min": 1.0, "f_min": 1.0,
    ...        "t_max": 2.0, "f_max": 2.0}
    >>> item = recording_targets_pipeline(3)
    >>> dataset = sb.dataio.dataset.DynamicItemDataset(
    ...     {"r": {"tp_boxes": [box], "fp_boxes": [dict(box, species_id=2)]}})
    >>> dataset.add_dynamic_item(item)
    >>> dataset.set_output_keys(["recording_target", "recording_label_mask"])
    >>> [v.tolist() for v in dataset[0].values()]
    [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    """

    @sb.utils.data_pipeline.takes("tp_boxes", "fp_boxes")
    @sb.utils.data_pipeline.provides("recording_target", "recording_label_mask")
    def targets_item(tp_boxes, fp_boxes):
        yield from recording_labels(tp_boxes, fp_boxes, n_classes)

    return targets_item


def recording_labels(tp_boxes, fp_boxes, n_classes=N_SPECIES):
    """Recording-level ``(target, known)`` (C,) tensors from box dicts.

    ``target`` is 1 for species with a TP box; ``known`` is 1 for species
    with a TP or an FP box.

    Example
    -------
    >>> target, known = recording_labels([{"species_id": 0}], [{"species_id": 2}], 3)
    >>> target.tolist(), known.tolist()
    ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    """
    target = torch.zeros(n_classes)
    known = torch.zeros(n_classes)
    for box in fp_boxes:
        known[box["species_id"]] = 1.0
    for box in tp_boxes:
        target[box["species_id"]] = 1.0
        known[box["species_id"]] = 1.0
    return target, known


def recording_dataset(manifest, sample_rate, n_classes=N_SPECIES, labelled=True):
    """Whole recordings of a manifest as a dataset (validation, test, OOF).

    Provides ``signal`` and, when ``labelled``, ``recording_target`` and
    ``recording_label_mask``. Entries are sorted by id.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "r.flac")
    >>> sf.write(path, np.zeros(8000, dtype="float32"), 8000)
    >>> data = recording_dataset({"r": {"wav": path}}, 8000, labelled=False)
    >>> data[0]["signal"].shape
    torch.Size([8000])
    """
    # SpeechBrain adds an "id" key to the entries it is given: give it copies.
    dataset = sb.dataio.dataset.DynamicItemDataset(
        {rid: dict(entry) for rid, entry in manifest.items()}
    )
    dataset.add_dynamic_item(recording_pipeline(sample_rate))
    keys = ["id", "signal"]
    if labelled:
        dataset.add_dynamic_item(recording_targets_pipeline(n_classes))
        keys += ["recording_target", "recording_label_mask"]
    dataset.set_output_keys(keys)
    return dataset.filtered_sorted(sort_key="id")


def crop_dataset(
    entries, crop_seconds, n_frames, sample_rate, n_classes=N_SPECIES, pseudo_rule=None
):
    """Anchored entries as a training dataset of crops (see :func:`crop_pipeline`;
    with a ``pseudo_rule``, the entries' ``pseudo_labels`` fill unlabelled cells).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "r.flac")
    >>> sf.write(path, np.zeros(8000 * 3, dtype="float32"), 8000)
    >>> entry = {"wav": path, "duration": 3.0, "tp_boxes": [], "fp_boxes": [],
    ...          "anchor": None}
    >>> crops = crop_dataset({"r/random0": entry}, 2.0, 4, 8000, n_classes=2)
    >>> crops[0]["signal"].shape, crops[0]["frame_target"].shape
    (torch.Size([16000]), torch.Size([4, 2]))
    """
    dataset = sb.dataio.dataset.DynamicItemDataset(
        {key: dict(entry) for key, entry in entries.items()}
    )
    dataset.add_dynamic_item(
        crop_pipeline(
            crop_seconds,
            n_frames,
            sample_rate,
            n_classes=n_classes,
            pseudo_rule=pseudo_rule,
        )
    )
    dataset.set_output_keys(["id", *CROP_ITEMS])
    return dataset
