"""Model-size tiles cut straight from a frame's cues where failed pixels are, and their blend back.

Tiles lie on a grid of stride S - overlap, the last one flush with the frame edge. Each pixel
belongs to the *cell* of exactly one tile (the stride-wide band around the tile's centre, inside
the tile), and a tile runs only if its cell holds a failed pixel, so every failed pixel is covered
and the count grows with the failed area. Overlapping outputs are feather-blended (weights
ramping over `overlap` px from each tile edge). Frames smaller than a tile are padded (reflect)
at their borders; nothing else is padded or copied whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import Cues


@dataclass
class TileSet:
    origins: list[tuple[int, int]]  # (y0, x0) of each tile in the (padded) frame
    ref: np.ndarray                 # (n,3,S,S) float32 aligned reference
    damaged: np.ndarray             # (n,4,S,S) float32 fill + failed pixels
    patch_mask: np.ndarray          # (n,N) bool, patches holding a failed pixel
    box: tuple[slice, slice]        # frame region the tiles cover (clipped to the frame)
    size: int
    overlap: int


def tile_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Tile origins along one axis of `length` >= size: 0, stride, ..., the last flush with the end."""
    starts = list(range(0, max(1, length - size + 1), stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.array(starts)


def cell_bounds(starts: np.ndarray, size: int) -> np.ndarray:
    """Start of each tile's cell: the midpoint between neighbouring tile centres (first cell at 0)."""
    centres = starts + size / 2
    return np.concatenate([[0], np.ceil((centres[:-1] + centres[1:]) / 2).astype(int)])


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return a
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode='reflect' if min(h, w) > 1 else 'edge')


def plan_tiles(cues: Cues, failed: np.ndarray, size: int, patch: int, overlap: int) -> TileSet:
    """Tiles (model inputs) over the failed pixels of one frame."""
    if not 0 <= overlap < size // 2:
        raise ValueError(f'tile_overlap must be in [0, {size // 2}), got {overlap}')
    h, w = failed.shape
    warped, fill, fail = (_pad(a, size) for a in (cues.warped, cues.fill, failed))
    ph, pw = fail.shape
    ys, xs = tile_starts(ph, size, size - overlap), tile_starts(pw, size, size - overlap)
    cy, cx = cell_bounds(ys, size), cell_bounds(xs, size)
    busy = np.logical_or.reduceat(np.logical_or.reduceat(fail, cy, axis=0), cx, axis=1)
    origins = [(int(ys[i]), int(xs[j])) for i, j in zip(*np.nonzero(busy))]
    crop = lambda a: np.stack([a[y:y + size, x:x + size] for y, x in origins])  # noqa: E731
    ref = crop(warped).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    f = crop(fail)
    damaged = np.concatenate([crop(fill).transpose(0, 3, 1, 2).astype(np.float32) / 255.0,
                              f[:, None].astype(np.float32)], axis=1)
    g = size // patch
    patch_mask = f.reshape(len(origins), g, patch, g, patch).any(axis=(2, 4)).reshape(len(origins), -1)
    y0, x0 = min(o[0] for o in origins), min(o[1] for o in origins)
    y1, x1 = max(o[0] for o in origins) + size, max(o[1] for o in origins) + size
    box = (slice(y0, min(y1, h)), slice(x0, min(x1, w)))
    return TileSet(origins, ref, damaged, patch_mask, box, size, overlap)


def feather(size: int, overlap: int) -> np.ndarray:
    """(S,S) blend weights: 1 inside, ramping down over `overlap` px towards each tile edge."""
    i = np.arange(size)
    ramp = np.minimum(1.0, (np.minimum(i, size - 1 - i) + 1) / (overlap + 1)).astype(np.float32)
    return ramp[:, None] * ramp[None, :]


def blend_tiles(tiles: TileSet, out: np.ndarray, var: np.ndarray | None = None):
    """Backend outputs (n,3,S,S) in [0,1] (and variances (n,S,S)) -> uint8 RGB (and float32
    variance) over `tiles.box`, overlapping tiles feather-blended."""
    (ys, xs), s = tiles.box, tiles.size
    bh, bw = ys.stop - ys.start, xs.stop - xs.start
    wt = feather(s, tiles.overlap)
    acc = np.zeros((bh + s, bw + s, 3), np.float32)
    acc_v = np.zeros((bh + s, bw + s), np.float32) if var is not None else None
    wsum = np.zeros((bh + s, bw + s), np.float32)
    for k, (y, x) in enumerate(tiles.origins):
        y, x = y - ys.start, x - xs.start
        acc[y:y + s, x:x + s] += out[k].transpose(1, 2, 0) * wt[..., None]
        wsum[y:y + s, x:x + s] += wt
        if acc_v is not None:
            acc_v[y:y + s, x:x + s] += var[k] * wt
    wsum = np.maximum(wsum[:bh, :bw], 1e-6)
    rgb = np.clip(np.rint(acc[:bh, :bw] / wsum[..., None] * 255.0), 0, 255).astype(np.uint8)
    return rgb, (acc_v[:bh, :bw] / wsum if acc_v is not None else None)
