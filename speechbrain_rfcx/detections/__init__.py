"""From model scores to what users open: timed events, tables, submissions.

* :mod:`~speechbrain_rfcx.detections.events`: framewise probabilities to
  timed :class:`Detection` events (thresholds, merging, bands);
* :mod:`~speechbrain_rfcx.detections.tables`: Raven selection tables,
  Audacity label tracks and a detections CSV (writers and readers);
* :mod:`~speechbrain_rfcx.detections.submission`: Kaggle submissions and
  class-prior rescaling.

The public names of the three modules are importable from here too.
"""

from speechbrain_rfcx.detections.events import Detection, frames_to_detections
from speechbrain_rfcx.detections.submission import rescale_to_priors, write_submission
from speechbrain_rfcx.detections.tables import (
    DETECTION_CSV_COLUMNS,
    RAVEN_COLUMNS,
    read_audacity_labels,
    read_raven_table,
    write_audacity_labels,
    write_detections_csv,
    write_raven_table,
)

__all__ = [
    "DETECTION_CSV_COLUMNS",
    "RAVEN_COLUMNS",
    "Detection",
    "frames_to_detections",
    "read_audacity_labels",
    "read_raven_table",
    "rescale_to_priors",
    "write_audacity_labels",
    "write_detections_csv",
    "write_raven_table",
    "write_submission",
]
