"""Tiling: geometry, exact identity reconstruction for any size/overlap, no visible seams."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deblurtool.tiling import cut_tiles, pad_to_plan, plan_tiles, stitch_tiles


def _frame(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, h, w, generator=g) * 2 - 1


def _roundtrip(h: int, w: int, tile_size: int, tile_overlap: int) -> None:
    x = _frame(h, w, seed=h * 1000 + w)
    plan = plan_tiles(h, w, tile_size, tile_overlap)
    tiles = cut_tiles(x, plan)
    y = stitch_tiles(tiles, plan)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, x), f"identity not exact for {h}x{w} tile {tile_size} overlap {tile_overlap}"


SIZES = [
    (1, 1),
    (1, 7),
    (7, 1),
    (1, 300),
    (2, 2),
    (3, 5),
    (15, 17),
    (31, 64),
    (100, 37),
    (255, 257),
    (720, 1280),
]
# (32, 24): overlap beyond half a tile, so three tiles share some pixels; stitching must still be exact.
TILINGS = [(0, 0), (16, 0), (16, 7), (32, 24), (64, 8), (256, 32), (256, 127)]


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize(("tile_size", "tile_overlap"), TILINGS)
def test_identity_exact(h: int, w: int, tile_size: int, tile_overlap: int) -> None:
    _roundtrip(h, w, tile_size, tile_overlap)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 600),
    w=st.integers(1, 600),
    tile_size=st.integers(4, 64).map(lambda k: 4 * k),
    data=st.data(),
)
def test_identity_exact_property(h: int, w: int, tile_size: int, data: st.DataObject) -> None:
    tile_overlap = data.draw(st.integers(0, tile_size // 2 - 1))
    _roundtrip(h, w, tile_size, tile_overlap)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 2000), tile_size=st.integers(4, 64).map(lambda k: 4 * k), data=st.data())
def test_geometry_property(length: int, tile_size: int, data: st.DataObject) -> None:
    tile_overlap = data.draw(st.integers(0, tile_size // 2 - 1))
    plan = plan_tiles(length, 5, tile_size, tile_overlap)
    ys = plan.ys
    assert plan.tile_h % 4 == 0 and 8 <= plan.tile_h <= tile_size
    assert ys[0] == 0 and ys[-1] + plan.tile_h == plan.padded_h >= length
    assert plan.padded_h == length or length < tile_size  # padding only for frames below one tile
    assert plan.padded_h - length < 4 or length < 8
    overlaps = [ys[i] + plan.tile_h - ys[i + 1] for i in range(len(ys) - 1)]
    assert all(o >= tile_overlap for o in overlaps)
    # Evenly spread: no more tiles than needed.
    if len(ys) > 1:
        assert len(ys) == math.ceil((length - tile_size) / (tile_size - tile_overlap)) + 1


def test_shapes_and_whole_frame() -> None:
    plan = plan_tiles(720, 1280, 256, 32)
    assert (plan.tile_h, plan.tile_w) == (256, 256)
    assert len(plan.ys) == 4 and len(plan.xs) == 6 and plan.n_tiles == 24
    assert cut_tiles(_frame(720, 1280), plan).shape == (24, 3, 256, 256)
    whole = plan_tiles(721, 1279, 0, 0)
    assert (whole.n_tiles, whole.tile_h, whole.tile_w) == (1, 724, 1280)
    assert cut_tiles(_frame(721, 1279), whole).shape == (1, 3, 724, 1280)
    small = plan_tiles(10, 1000, 256, 32)  # below one tile in height: tile shrinks to 12 rows, not 256
    assert (small.tile_h, small.tile_w, len(small.ys)) == (12, 256, 1)
    assert plan_tiles(1, 1, 0, 0).tile_h == 8  # the generator needs 2 pixels at quarter resolution


def test_padding_mirrors_then_replicates() -> None:
    rows = {2: [0, 1, 0, 1, 0, 1, 0, 1], 3: [0, 1, 2, 1, 0, 1, 2, 1], 9: [0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 6, 5]}
    for w, row in rows.items():
        xp = pad_to_plan(torch.arange(float(w)).view(1, 1, w), plan_tiles(1, w, 16, 0))
        assert xp.shape == (1, 8, len(row))
        assert xp[0, 0].tolist() == row  # mirror, repeated when the pad is wider than the frame
        assert torch.equal(xp[0, 1:], xp[0, :1].expand(7, len(row)))  # 1-pixel axis: replicate


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 30, 0)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 4, 0)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 32, 32)
    with pytest.raises(ValueError):
        plan_tiles(0, 10, 32, 4)
    plan = plan_tiles(40, 40, 16, 4)
    with pytest.raises(ValueError):
        cut_tiles(_frame(40, 41), plan)
    with pytest.raises(ValueError):
        stitch_tiles(torch.zeros(plan.n_tiles - 1, 3, 16, 16), plan)


@pytest.mark.parametrize(("tile_size", "tile_overlap"), [(32, 8), (64, 16), (64, 31)])
def test_no_visible_seam(tile_size: int, tile_overlap: int) -> None:
    """Each tile gets its own constant offset in [0, 1]: pasted edge to edge this would leave steps up to 1;
    feathered, neighbouring pixels may differ by at most the ramp slope, pi / (2 * overlap) per unit step, for
    each of the two blend directions."""
    h, w = 150, 170
    plan = plan_tiles(h, w, tile_size, tile_overlap)
    assert len(plan.ys) > 2 and len(plan.xs) > 2
    offsets = torch.rand(plan.n_tiles, generator=torch.Generator().manual_seed(1))
    tiles = cut_tiles(torch.zeros(1, h, w), plan) + offsets.view(-1, 1, 1, 1)
    y = stitch_tiles(tiles, plan)[0]
    bound = 2 * math.pi / (2 * tile_overlap)
    step = max(y.diff(dim=0).abs().max().item(), y.diff(dim=1).abs().max().item())
    assert step <= bound, f"seam step {step:.3f} > {bound:.3f}"
    assert y.min() >= offsets.min() - 1e-6 and y.max() <= offsets.max() + 1e-6  # a convex blend


def test_stitch_is_a_convex_blend_of_covering_tiles() -> None:
    """Every output pixel lies between the smallest and largest value any covering tile gave it."""
    h, w, plan_args = 70, 90, (32, 12)
    plan = plan_tiles(h, w, *plan_args)
    tiles = torch.rand(plan.n_tiles, 1, plan.tile_h, plan.tile_w, generator=torch.Generator().manual_seed(2))
    y = stitch_tiles(tiles, plan)[0]
    lo = torch.full((plan.padded_h, plan.padded_w), math.inf)
    hi = torch.full((plan.padded_h, plan.padded_w), -math.inf)
    for t, (y0, x0, y1, x1) in zip(tiles, plan.boxes, strict=True):
        lo[y0:y1, x0:x1] = torch.minimum(lo[y0:y1, x0:x1], t[0])
        hi[y0:y1, x0:x1] = torch.maximum(hi[y0:y1, x0:x1], t[0])
    assert torch.all(y >= lo[:h, :w] - 1e-6) and torch.all(y <= hi[:h, :w] + 1e-6)
