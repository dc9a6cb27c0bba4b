"""Temporal consistency (warping error with the input's DIS flow): zero for a static clip, small for a clean
pan, larger when a per-frame process flickers, and the flow's trusted pixels exclude the uncovered border."""

from __future__ import annotations

import numpy as np
import pytest
from test_synth import texture

from deblurtool.temporal import flow_steps, temporal_consistency, warping_error


def pan(n: int = 5, step: int = 3) -> list[np.ndarray]:
    big = texture(140, 200 + n * step, seed=5)[..., ::-1]
    return [np.ascontiguousarray(big[:, i * step : i * step + 200]) for i in range(n)]


def test_static_clip_has_no_warping_error() -> None:
    frame = texture(96, 128, seed=1)
    result = temporal_consistency([frame] * 4, output=[frame] * 4)
    assert result.errors == {"input": 0.0, "output": 0.0} and result.pairs == 3


def test_pan_is_followed_and_flicker_is_caught() -> None:
    frames = pan()
    flicker = [
        np.clip(f.astype(int) + (4 if i % 2 else -4), 0, 255).astype(np.uint8) for i, f in enumerate(frames)
    ]
    result = temporal_consistency(frames, same=frames, flicker=flicker)
    assert result.errors["input"] < 3.0  # the flow explains the pan
    assert result.errors["same"] == result.errors["input"]
    assert result.errors["flicker"] > result.errors["input"] + 5.0  # frames alternate by 8 levels
    assert 0.8 < result.valid < 1.0  # the strip the camera uncovers cannot be carried


def test_uncovered_border_is_not_trusted() -> None:
    steps = flow_steps(pan(2, step=6))
    assert not steps[0].valid[:, -3:].any() and steps[0].valid[:, 20:150].mean() > 0.95
    with pytest.raises(ValueError, match="frames for"):
        warping_error(pan(3), steps)
    with pytest.raises(ValueError, match="do not match"):
        temporal_consistency(pan(3), output=pan(2))
