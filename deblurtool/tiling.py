"""Cut frames into overlapping tiles for the model and stitch the results back without seams.

Pure functions on ``C x H x W`` tensors; no model, no device choice (whatever device the input is on).

Geometry (``plan_tiles``): along each axis of length ``L`` the tile extent is ``tile_size``, or the axis
length rounded up to a multiple of 4 (and to at least 8) when the frame is smaller than a tile: no compute
wasted on padding a 100-pixel-tall strip up to 256. ``tile_size`` 0 gives one whole-frame tile, rounded up
the same way (the generator downsamples twice by 2 and reflect-pads at quarter resolution). Tile starts
are spread evenly from 0 to ``L - extent`` so the last tile ends exactly at the frame edge and neighbours
share at least ``tile_overlap`` pixels.

Padding (to a multiple of 4, at least 8): mirror padding at the bottom/right, repeated periodically when
the pad is wider than the frame (2 pixels padded to 8), replicate padding for 1-pixel axes where no mirror
exists. Mirrored content looks like the image to the model; zeros would not.

Stitching (``stitch_tiles``): separable feathering. Tiles of one row are merged left to right into a strip:
wherever a tile overlaps what is already there, the strip becomes ``old + r * (tile - old)`` with ``r`` a
raised-cosine ramp rising from ~0 at the new tile's edge to ~1 at the old tile's edge; strips are merged top
to bottom the same way. The weights are a partition of unity that downweights every tile's border (where its
output is least reliable), and because a lerp between equal values returns that value bitwise, an identity
model reproduces the input exactly, for any size and overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_MULTIPLE = 4  # the generator downsamples twice by 2
# The generator reflect-pads by 1 at quarter resolution, which needs at least 2 pixels there: tiles >= 8.
MIN_EXTENT = 8


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _starts(length: int, extent: int, tile_overlap: int) -> tuple[int, ...]:
    """Evenly spread starts: first 0, last ``length - extent``, step at most ``extent - tile_overlap``."""
    if length <= extent:
        return (0,)
    stride = extent - tile_overlap
    n = math.ceil((length - extent) / stride) + 1
    span = length - extent
    # Consecutive starts differ by floor or ceil of span/(n-1) <= stride, so overlaps stay >= tile_overlap.
    return tuple(round(i * span / (n - 1)) for i in range(n))


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one ``height x width`` frame lie.

    ``tile_h x tile_w`` is every tile's size; ``padded_h x padded_w`` the frame after padding (at least one
    tile, multiples of 4); ``ys``/``xs`` the tile starts per axis; tiles are ordered row-major
    (``boxes``). ``tile_size``/``tile_overlap`` are the requested settings (``tile_size`` 0: whole frame).
    """

    height: int
    width: int
    tile_size: int
    tile_overlap: int
    tile_h: int
    tile_w: int
    padded_h: int
    padded_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(y0, x0, y1, x1)`` of each tile in padded-frame coordinates, row-major."""
        return [(y, x, y + self.tile_h, x + self.tile_w) for y in self.ys for x in self.xs]

    @property
    def pixels_computed(self) -> int:
        """Pixels the model processes for this frame (overlaps and padding counted)."""
        return self.n_tiles * self.tile_h * self.tile_w


def plan_tiles(height: int, width: int, tile_size: int, tile_overlap: int) -> TilePlan:
    """Plan the tiles of a ``height x width`` frame (see the module docstring for the geometry).

    ``tile_size``: 0 (whole frame) or a positive multiple of 4; ``0 <= tile_overlap < tile_size``
    (``TileConfig`` further asks for less than half, which keeps at most two tiles on most pixels).
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame must be at least 1x1, got {height}x{width}")
    if tile_size < 0 or tile_size % _MULTIPLE or 0 < tile_size < MIN_EXTENT:
        raise ValueError(f"tile_size must be 0 or a multiple of {_MULTIPLE} >= {MIN_EXTENT}, got {tile_size}")
    if tile_size and not 0 <= tile_overlap < tile_size:
        raise ValueError(f"tile_overlap must be in [0, tile_size), got {tile_overlap} for {tile_size}")
    tile_h, tile_w = (max(MIN_EXTENT, _round_up(n, _MULTIPLE)) for n in (height, width))
    if tile_size:
        tile_h, tile_w = min(tile_size, tile_h), min(tile_size, tile_w)
    ys = _starts(height, tile_h, tile_overlap)
    xs = _starts(width, tile_w, tile_overlap)
    return TilePlan(
        height=height,
        width=width,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        tile_h=tile_h,
        tile_w=tile_w,
        padded_h=max(height, tile_h),
        padded_w=max(width, tile_w),
        ys=ys,
        xs=xs,
    )


def _mirror_index(length: int, padded: int, device: torch.device) -> torch.Tensor:
    """Source indices for padding an axis of ``length`` to ``padded``: periodic mirror (no edge repeat)."""
    j = torch.arange(padded, device=device)
    if length == 1:
        return torch.zeros_like(j)  # replicate: a 1-pixel axis has nothing to mirror
    period = 2 * (length - 1)
    m = j % period
    return torch.where(m < length, m, period - m)


def pad_to_plan(x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """``C x H x W`` -> ``C x padded_h x padded_w`` (mirror padding at the bottom/right)."""
    _check_frame(x, plan)
    if plan.padded_h > plan.height:
        x = x.index_select(1, _mirror_index(plan.height, plan.padded_h, x.device))
    if plan.padded_w > plan.width:
        x = x.index_select(2, _mirror_index(plan.width, plan.padded_w, x.device))
    return x


def cut_tiles(x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """``C x H x W`` -> ``N x C x tile_h x tile_w`` (contiguous copies, row-major order; dtype kept)."""
    xp = pad_to_plan(x, plan)
    return torch.stack([xp[:, y0:y1, x0:x1] for y0, x0, y1, x1 in plan.boxes])


def _ramp(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Raised cosine over ``n`` pixels, strictly inside (0, 1), rising: weight of the incoming tile."""
    k = torch.arange(n, dtype=torch.float64, device=device)
    return (0.5 - 0.5 * torch.cos(math.pi * (k + 0.5) / n)).to(dtype)


def _merge_along(parts: list[torch.Tensor], starts: tuple[int, ...], total: int, dim: int) -> torch.Tensor:
    """Merge equally sized ``parts`` placed at ``starts`` along ``dim`` into a tensor of length ``total``.

    Each part is lerped over what is already there across the overlap, then pasted beyond it.
    """
    extent = parts[0].shape[dim]
    shape = list(parts[0].shape)
    shape[dim] = total
    out = parts[0].new_empty(shape)
    filled = 0  # out[..., :filled] along dim holds merged content
    for part, start in zip(parts, starts, strict=True):
        end = start + extent
        ov = filled - start
        if ov > 0:
            old = out.narrow(dim, start, ov)
            new = part.narrow(dim, 0, ov)
            view = [1] * part.dim()
            view[dim] = ov
            r = _ramp(ov, part.dtype, part.device).view(view)
            old.add_(r * (new - old))  # lerp: equal inputs give the input back bitwise
        ov = max(ov, 0)
        out.narrow(dim, start + ov, end - start - ov).copy_(part.narrow(dim, ov, extent - ov))
        filled = end
    return out


def stitch_tiles(tiles: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """``N x C x tile_h x tile_w`` (row-major, as ``cut_tiles``) -> ``C x height x width``, feathered.

    Computes in the tiles' dtype and device; pass float32 for exact identity reconstruction.
    """
    expected = (plan.n_tiles, plan.tile_h, plan.tile_w)
    if tiles.dim() != 4 or (tiles.shape[0], *tiles.shape[2:]) != expected:
        raise ValueError(
            f"tiles of shape {tuple(tiles.shape)} do not fit the plan (N, tile_h, tile_w) {expected}"
        )
    n_cols = len(plan.xs)
    strips = [
        _merge_along(list(tiles[r * n_cols : (r + 1) * n_cols]), plan.xs, plan.padded_w, dim=2)
        for r in range(len(plan.ys))
    ]
    canvas = _merge_along(strips, plan.ys, plan.padded_h, dim=1)
    return canvas[:, : plan.height, : plan.width].contiguous()


def _check_frame(x: torch.Tensor, plan: TilePlan) -> None:
    if x.dim() != 3 or tuple(x.shape[1:]) != (plan.height, plan.width):
        raise ValueError(
            f"frame of shape {tuple(x.shape)} does not fit a plan for C x {plan.height} x {plan.width}"
        )
