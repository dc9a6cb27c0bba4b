"""Temporal consistency of a processed clip: how much consecutive output frames disagree where the input says
they should agree (the warping error of Lai et al., ECCV 2018, with the flow taken from the input).

For each pair of consecutive frames, OpenCV's DIS optical flow is estimated on the *input* (frame t back to
frame t-1, and forward to check it); the same flow then carries frame t-1 of every sequence measured (the
input itself, a model's output, the sharp ground truth) onto frame t. The error is the RMS difference between
frame t and the carried frame t-1, in 8-bit levels, over the pixels where the flow can be trusted: inside
the frame and passing the forward-backward consistency check (occlusions and flow failures fail it). A
per-frame model that flickers scores higher than its input; sharp frames score what real motion with real
detail costs, so "no more than the sharp frames" is the bar for an output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FlowStep:
    """Backward flow of one frame pair (HxWx2, pixels: where each pixel of frame t was in frame t-1) and the
    mask of pixels it is trusted at."""

    flow: np.ndarray
    valid: np.ndarray


def _gray(rgb_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb_u8[..., :3]), cv2.COLOR_RGB2GRAY)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    return np.asarray(cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def flow_steps(frames_rgb_u8: Sequence[np.ndarray]) -> list[FlowStep]:
    """One ``FlowStep`` per consecutive pair of ``frames_rgb_u8`` (HxWx3 uint8, all the same size)."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    steps = []
    prev = _gray(frames_rgb_u8[0])
    for frame in frames_rgb_u8[1:]:
        cur = _gray(frame)
        h, w = cur.shape
        back = np.asarray(dis.calc(cur, prev, np.zeros((h, w, 2), np.float32)))  # frame t -> offset in t-1
        fwd = np.asarray(dis.calc(prev, cur, np.zeros((h, w, 2), np.float32)))
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        x1, y1 = grid_x + back[..., 0], grid_y + back[..., 1]
        inside = (x1 >= 0) & (x1 <= w - 1) & (y1 >= 0) & (y1 <= h - 1)
        # Going back and forth again should land where it started (Sundaram et al.'s tolerance).
        fwd_there = _warp(fwd, back)
        round_trip = back + fwd_there
        tol = 0.01 * ((back**2).sum(axis=2) + (fwd_there**2).sum(axis=2)) + 0.5
        valid = inside & ((round_trip**2).sum(axis=2) <= tol)
        steps.append(FlowStep(back, valid))
        prev = cur
    return steps


def warping_error(frames_rgb_u8: Sequence[np.ndarray], steps: Sequence[FlowStep]) -> list[float]:
    """RMS difference (8-bit levels) between each frame t and frame t-1 carried by the input's flow."""
    if len(frames_rgb_u8) != len(steps) + 1:
        raise ValueError(f"{len(frames_rgb_u8)} frames for {len(steps)} flow steps")
    errors = []
    for t, step in enumerate(steps, start=1):
        carried = _warp(frames_rgb_u8[t - 1].astype(np.float32), step.flow)
        diff = (frames_rgb_u8[t].astype(np.float32) - carried)[step.valid]
        errors.append(float(np.sqrt(np.mean(diff**2))) if diff.size else float("nan"))
    return errors


@dataclass(frozen=True)
class Consistency:
    """Mean warping error (RMS levels) of each measured sequence, over ``pairs`` frame pairs; ``valid`` is
    the mean share of pixels the flow was trusted at."""

    errors: dict[str, float]
    pairs: int
    valid: float


def temporal_consistency(input_rgb_u8: Sequence[np.ndarray], **others: Iterable[np.ndarray]) -> Consistency:
    """The warping error of the input and of each named sequence (e.g. ``output=...``, ``sharp=...``), all
    carried by the flow estimated on the input. Sequences must have the input's length and frame size."""
    frames = list(input_rgb_u8)
    if len(frames) < 2:
        raise ValueError("temporal consistency needs at least two frames")
    steps = flow_steps(frames)
    errors = {"input": float(np.nanmean(warping_error(frames, steps)))}
    for name, seq in others.items():
        seq_frames = list(seq)
        if len(seq_frames) != len(frames) or any(a.shape != b.shape for a, b in zip(seq_frames, frames)):  # noqa: B905
            raise ValueError(f"{name}: {len(seq_frames)} frames do not match the input's {len(frames)}")
        errors[name] = float(np.nanmean(warping_error(seq_frames, steps)))
    return Consistency(errors, len(steps), float(np.mean([s.valid.mean() for s in steps])))
