"""Model-size tiles cut straight from a frame's cues where failed pixels are, and their blend back.

Tiles are placed by *cells*: stride-wide squares (stride S - overlap) in the middle of their tile,
so a failed pixel in a cell has >= overlap/2 px of context on each side (less only at a frame
border). A tile runs for each cell holding a failed pixel, on whichever of two layouts needs fewer
tiles: one grid over the whole frame, or one grid per group of failures (failed pixels closer than
`overlap` px), centred on the group, so a small failure gets one centred tile instead of the 2-4
a fixed grid would cut through it. The count follows the failed area, not where it falls.
Overlapping outputs are feather-blended (weights ramping over `overlap` px from each tile edge).
Frames smaller than a tile are padded (reflect) at their borders; nothing else is padded or copied
whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .masks import failure_components


@dataclass
class TileSet:
    origins: list[tuple[int, int]]  # (y0, x0) of each tile in the (padded) frame
    ref: np.ndarray                 # (n,3,S,S) float32 aligned reference (n,6,S,S: + raw reference)
    damaged: np.ndarray             # (n,4,S,S) float32 fill + failed pixels
    patch_mask: np.ndarray          # (n,N) bool, patches holding a failed pixel
    box: tuple[slice, slice]        # frame region the tiles cover (clipped to the frame)
    size: int
    overlap: int


def failure_groups(failed: np.ndarray, gap: int) -> np.ndarray:
    """(n,4) int boxes y0, x0, y1, x1 (exclusive end) around the groups of failed pixels closer
    than ~`gap` px to each other (8-connected after a dilation by gap // 2; tight except where a
    group is within gap // 2 of the frame border, where the box reaches the border)."""
    m = gap // 2
    _, stats = failure_components(failed, m)
    x, y, w, h = stats.T
    hh, ww = failed.shape
    y0, x0 = np.where(y > 0, y + m, 0), np.where(x > 0, x + m, 0)
    y1, x1 = np.where(y + h < hh, y + h - m, hh), np.where(x + w < ww, x + w - m, ww)
    return np.stack([y0, x0, y1, x1], axis=1)


def _cell_starts(lo: int, hi: int, stride: int) -> np.ndarray:
    """Starts of the fewest stride-wide cells covering [lo, hi), the run centred on it."""
    n = -(-(hi - lo) // stride)
    return lo - (n * stride - (hi - lo)) // 2 + stride * np.arange(n)


def _busy_cells(failed: np.ndarray, cy: np.ndarray, cx: np.ndarray, stride: int) -> np.ndarray:
    """(len(cy), len(cx)) bool: which stride-wide cells (starts cy, cx, may begin < 0) hold a failed pixel."""
    y0, x0 = max(0, int(cy[0])), max(0, int(cx[0]))
    sub = failed[y0:int(cy[-1]) + stride, x0:int(cx[-1]) + stride]
    return np.logical_or.reduceat(np.logical_or.reduceat(sub, np.maximum(cy - y0, 0), axis=0),
                                  np.maximum(cx - x0, 0), axis=1)


def _grid_origins(failed: np.ndarray, size: int, overlap: int, boxes) -> list[tuple[int, int]]:
    """Origins of the tiles whose cells (of a grid centred on each box) hold a failed pixel."""
    h, w = failed.shape
    stride, m = size - overlap, overlap // 2
    origins: dict[tuple[int, int], None] = {}
    for y0, x0, y1, x1 in boxes:
        cy, cx = _cell_starts(y0, y1, stride), _cell_starts(x0, x1, stride)
        busy = _busy_cells(failed, cy, cx, stride) if len(cy) > 1 or len(cx) > 1 else [[True]]
        for i, j in zip(*np.nonzero(busy)):
            origins[(int(np.clip(cy[i] - m, 0, h - size)), int(np.clip(cx[j] - m, 0, w - size)))] = None
    return list(origins)


def tile_origins(failed: np.ndarray, size: int, overlap: int, layout: str = 'auto') -> list[tuple[int, int]]:
    """(y0, x0) of the tiles covering every failed pixel of a (padded, >= size) frame, each failed
    pixel in some tile's cell. layout 'frame': one frame-wide grid; 'groups': one grid per failure
    group (scattered small failures need far fewer tiles that way); 'auto': whichever is fewer."""
    h, w = failed.shape
    frame = _grid_origins(failed, size, overlap, [(0, 0, h, w)]) if layout != 'groups' else None
    if layout == 'frame':
        return frame
    per_group = _grid_origins(failed, size, overlap, failure_groups(failed, overlap).tolist())
    return per_group if frame is None or len(per_group) <= len(frame) else frame


def pad_to(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return a
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode='reflect' if min(h, w) > 1 else 'edge')


def plan_tiles(refs: list[np.ndarray], fill: np.ndarray, failed: np.ndarray, size: int, patch: int,
               overlap: int) -> TileSet:
    """Tiles (model inputs) over the failed pixels of one frame: `refs` (align.model_cues: the aligned
    reference, then the extra reference cues) stacked in each tile's `ref`, `fill` and the failed
    pixels in its `damaged`."""
    if not 0 <= overlap < size // 2:
        raise ValueError(f'tile_overlap must be in [0, {size // 2}), got {overlap}')
    h, w = failed.shape
    fill, fail = pad_to(fill, size), pad_to(failed, size)
    origins = tile_origins(fail, size, overlap)
    crop = lambda a: np.stack([a[y:y + size, x:x + size] for y, x in origins])  # noqa: E731
    ref = np.concatenate([crop(pad_to(a, size)) for a in refs], axis=3)
    ref = ref.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
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


def blend_tiles(tiles: TileSet, out: np.ndarray, ys: np.ndarray, xs: np.ndarray, var: np.ndarray | None = None):
    """Backend outputs (n,3,S,S) in [0,1] (and variances (n,S,S)), feather-blended where tiles
    overlap, at frame pixels (ys, xs) inside the tiles -> (len(ys),3) uint8 RGB (and (len(ys),)
    float32 variance). Only the requested pixels are normalized and converted."""
    (by, bx), s = tiles.box, tiles.size
    bh, bw = by.stop - by.start, bx.stop - bx.start
    wt = feather(s, tiles.overlap)
    acc = np.zeros((3, bh + s, bw + s), np.float32)         # channels first, as the outputs: no transposes
    acc_v = np.zeros((bh + s, bw + s), np.float32) if var is not None else None
    wsum = np.zeros((bh + s, bw + s), np.float32)
    for k, (y, x) in enumerate(tiles.origins):
        y, x = y - by.start, x - bx.start
        acc[:, y:y + s, x:x + s] += out[k] * wt
        wsum[y:y + s, x:x + s] += wt
        if acc_v is not None:
            acc_v[y:y + s, x:x + s] += var[k] * wt
    py, px = ys - by.start, xs - bx.start
    w = np.maximum(wsum[py, px], 1e-6)
    rgb = np.clip(np.rint(acc[:, py, px].T / w[:, None] * 255.0), 0, 255).astype(np.uint8)
    return rgb, (acc_v[py, px] / w if acc_v is not None else None)
