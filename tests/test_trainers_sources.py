"""trainers.mix (sources mixed by weight) and trainers.holdout (held-out scenes, gains, sharp-input check),
on a miniature shared/data tree and on sources built in the test."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_layout import make_shared_data, moving_bar
from torch import nn

from deblurtool.metrics import psnr
from trainers.holdout import SELECT_SETS, EvalPair, HeldOut, centre_crop, evaluate_heldout, load_heldout
from trainers.mix import MIXES, ClipSource, PairSource, SourceMix, build_mix
from trainers.synth.hfr import Clip, average_frames

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shared_data(tmp_path_factory.mktemp("shared") / "data")


def _const_pair(blur: int, sharp: int, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return np.full((size, size, 3), blur, np.uint8), np.full((size, size, 3), sharp, np.uint8)


def _mix(**kw: object) -> SourceMix:
    src = PairSource("const", [_const_pair(0, 255)])
    return SourceMix([src], [1.0], HeldOut([]), **kw)  # type: ignore[arg-type]


def test_batches_have_the_layout_and_range_of_x_pm1(shared: Path) -> None:
    mix = build_mix(shared, "default", log=lambda _: None)
    assert [s.name for s in mix.sources] == ["gopro_real", "gopro_240fps", "x4k_1000fps"]
    blur, sharp = mix.batch(np.random.default_rng(0), 5, 32, 0.0)
    for t in (blur, sharp):
        assert t.shape == (5, 3, 32, 32) and t.dtype == torch.float32 and t.is_contiguous()
        assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0
    assert not torch.equal(blur, sharp)


def test_sharp_share_feeds_the_sharp_crop_as_input() -> None:
    mix = _mix()
    blur, sharp = mix.batch(np.random.default_rng(1), 400, 16, 0.25)
    assert torch.all(sharp == 1.0)
    as_sharp = (blur == 1.0).flatten(1).all(dim=1).float().mean().item()
    assert 0.18 < as_sharp < 0.32
    assert torch.all((blur == 1.0) | (blur == -1.0))  # each input is the blurry or the sharp crop, whole
    none, _ = mix.batch(np.random.default_rng(1), 50, 16, 0.0)
    assert torch.all(none == -1.0)


def test_same_seed_same_batch_other_seed_other_batch(shared: Path) -> None:
    mix = build_mix(shared, "default", log=lambda _: None)
    a = mix.batch(np.random.default_rng(7), 4, 32, 0.1)
    b = mix.batch(np.random.default_rng(7), 4, 32, 0.1)
    c = mix.batch(np.random.default_rng(8), 4, 32, 0.1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sources_are_drawn_by_weight() -> None:
    low, high = PairSource("a", [_const_pair(0, 0)]), PairSource("b", [_const_pair(255, 255)])
    mix = SourceMix([low, high], [1.0, 3.0], HeldOut([]))
    blur, _ = mix.batch(np.random.default_rng(2), 800, 16, 0.0)
    share_b = (blur[:, 0, 0, 0] == 1.0).float().mean().item()
    assert 0.69 < share_b < 0.81


def test_clip_samples_average_a_window_in_the_exposure_range() -> None:
    """Whole-frame samples (crop = the frame, no scaling, no flips that matter for a vertical bar): every blur
    is the mean of a window whose length lies in the exposure range, and the target is its middle frame."""
    frames = moving_bar(30, h=24, w=48)
    frames = np.ascontiguousarray(frames[:, :, :24])  # square frames: the crop is the whole frame
    clip = Clip("bar", frames, 240.0)
    src = ClipSource("bar", [clip], exposure_ms=(7 / 240 * 1000, 9 / 240 * 1000), linear_share=0.0)
    rng = np.random.default_rng(3)
    for _ in range(20):
        blur, sharp = src.sample(rng, 24)
        matches = [
            (t0, n)
            for n in range(7, 10)
            for t0 in range(0, 31 - n)
            if np.array_equal(blur, average_frames(frames[t0 : t0 + n]))
            and np.array_equal(sharp, frames[t0 + n // 2])
        ]
        assert matches, "no window of 7-9 frames gives this pair"


def test_named_mixes_and_a_mix_built_in_a_test(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown source mix"):
        build_mix(shared, "nope")
    monkeypatch.setitem(MIXES, "const", lambda root, log: _mix())
    assert build_mix(shared, "const").sources[0].name == "const"


def test_heldout_sets_from_the_shared_layout(shared: Path) -> None:
    held = load_heldout(shared)
    names = {(p.set_name, p.name) for p in held.pairs}
    assert held.sets == ["gopro0374", "samples", "tail0372", "x4k"]
    assert ("gopro0374", "000619_avg8") in names and ("gopro0374", "000807_avg10") not in names  # misaligned
    assert {n for s, n in names if s == "tail0372"} == {"000110", "000114"}
    assert {n for s, n in names if s == "x4k"} == {
        f"{c}/avg{n}" for c in ("TEST03_081_f4833_2k", "TEST08_079_f0321_2k") for n in (9, 17)
    }
    assert held.select_sets == SELECT_SETS and "tail0372" not in SELECT_SETS
    mix = build_mix(shared, "default", log=lambda _: None)
    trained = {p.stem for p in (shared / "gopro_train" / "GOPR0372_07_00" / "blur").iterdir()}
    assert len(mix.sources[0].pairs) == 5 and len(trained) == 4  # 000047, 000048 + gamma + 2 more scenes
    x4k = mix.sources[2]
    assert isinstance(x4k, ClipSource) and [c.name for c in x4k.clips] == ["TEST01_003_f0433_2k"]


class _Shift(nn.Module):
    """Adds ``delta`` levels (of 255) to every pixel: the gain it gives is computable by hand."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta / 127.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.delta).clamp(-1, 1)


def test_gain_per_set_and_the_sharp_input_minimum() -> None:
    """blur = sharp - 10 levels: a model adding 10 recovers the sharp frame exactly (gain = inf), one adding 5
    halves the error (gain = 20 log10(2) = 6.02 dB); sharp input moved by 5 levels lies 34.15 dB away."""
    sharp = np.full((20, 30, 3), 100, np.uint8)
    sharp[:, ::2] = 140
    blur = (sharp.astype(int) - 10).astype(np.uint8)
    pairs = [
        EvalPair("a", "p1", blur, sharp),
        EvalPair("a", "p2", blur, sharp),
        EvalPair("b", "p3", blur, sharp),
    ]
    held = HeldOut(pairs, select_sets=("a", "b"))
    gains, sharp_min = evaluate_heldout(
        _Shift(5), held, torch.device("cpu"), contextlib.nullcontext, full=True
    )
    assert gains == pytest.approx({"a": 20 * np.log10(2), "b": 20 * np.log10(2)}, abs=1e-3)
    assert sharp_min == pytest.approx(psnr(sharp + 5, sharp), abs=1e-6)
    assert sharp_min == pytest.approx(10 * np.log10(255**2 / 25), abs=1e-6)
    gains, sharp_min = evaluate_heldout(_Shift(0), held, torch.device("cpu"), contextlib.nullcontext)
    assert gains == {"a": 0.0, "b": 0.0} and sharp_min == float("inf")


def test_centre_crop() -> None:
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert np.array_equal(centre_crop(img, 4, 6), img[3:7, 3:9])
    assert centre_crop(img, 100, 100).shape == img.shape
