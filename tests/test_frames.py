"""The one valid-frame rule (speechbrain_rfcx.frames)."""

import pytest
import torch

from speechbrain_rfcx.frames import frame_mask


def test_frame_mask_hand_values():
    mask = frame_mask(torch.tensor([1.0, 0.5, 0.3, 0.25]), 4)
    assert mask.tolist() == [
        [1, 1, 1, 1],
        [1, 1, 0, 0],
        [1, 1, 0, 0],  # 0.3 * 4 = 1.2: frame 1 is partly valid
        [1, 0, 0, 0],  # exactly one frame, despite float rounding
    ]
    # float32: 0.6 * 25 = 15.000001, still exactly 15 valid frames
    assert frame_mask(torch.tensor([0.6]), 25).sum().item() == 15
    with pytest.raises(ValueError, match="lens"):
        frame_mask(torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="lens"):
        frame_mask(torch.tensor([1.5]), 4)
    assert frame_mask(torch.tensor([1.0, 0.25, 0.3]), 4).sum(1).tolist() == [4, 1, 2]
