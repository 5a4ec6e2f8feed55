"""SpeechBrain DynamicItemDataset pipelines over the prepared manifests.

The manifest keys (``wav``, ``duration``, ``tp_boxes``, ``fp_boxes``, ...) are
only read; the items provided have other names (``signal``, ``clip_target``,
...) because a provided key that also exists in the JSON is silently shadowed
by the JSON value in SpeechBrain.
"""

import random

import speechbrain as sb

from speechbrain_rfcx.data.audio import read_segment
from speechbrain_rfcx.data.crops import load_crop

CROP_ITEMS = (
    "signal",
    "crop_start",
    "clip_target",
    "frame_target",
    "frame_mask",
    "label_mask",
    "frame_label_mask",
)


def crop_pipeline(
    crop_seconds,
    n_frames,
    sample_rate,
    n_classes=24,
    min_overlap=0.0,
    rng=random,
):
    """A dynamic item giving one random training crop around an entry's anchor.

    Entries come from ``speechbrain_rfcx.data.sampling.anchored_entries``:
    the crop contains the entry's ``anchor`` box at a random offset, or lies
    anywhere when the anchor is None.

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

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, duration, tp_boxes, fp_boxes, anchor``; provides
        :data:`CROP_ITEMS`.

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

    @sb.utils.data_pipeline.takes("wav", "duration", "tp_boxes", "fp_boxes", "anchor")
    @sb.utils.data_pipeline.provides(*CROP_ITEMS)
    def crop_item(wav, duration, tp_boxes, fp_boxes, anchor):
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
