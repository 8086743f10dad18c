"""Camera-failure masks at pixel level, on no fixed grid (real failures ignore the model's patch grid).

Failed regions are ROIs (x, y, w, h) in pixels, or an (H,W) bool mask; used by training, evaluation,
rosbag injection, the demo and the benches.
"""
from __future__ import annotations

import cv2
import numpy as np

from .frames import grid_to_rois, rois_to_mask

PIXEL_PATTERNS = ('random', 'blocks', 'rows')
CELL_SIZES = (8, 16, 24, 32)
Roi = tuple[int, int, int, int]


def failure_components(failed: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups of failed pixels closer than ~2 * reach px: the 8-connected components of `failed`
    dilated by `reach` px. Returns (labels (H,W) int32, 0 = none; stats (n,4) x, y, w, h of each
    group's dilated box, group i + 1 in row i)."""
    f8 = failed.astype(np.uint8)
    near = cv2.dilate(f8, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) if reach else f8
    _, labels, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    return labels, stats[1:, :4].astype(int)


def _random_cells(rng: np.random.Generator, gh: int, gw: int, ratio: float) -> np.ndarray:
    """(gh,gw) bool: round(ratio * gh * gw) cells chosen uniformly without replacement."""
    n = gh * gw
    m = np.zeros(n, bool)
    m[rng.choice(n, size=int(round(ratio * n)), replace=False)] = True
    return m.reshape(gh, gw)


def _clip_rois(rois, h: int, w: int) -> list[Roi]:
    out = []
    for x, y, rw, rh in rois:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + rw), min(h, y + rh)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return out


def random_cell_rois(rng: np.random.Generator, h: int, w: int, ratio: float, cell: int | None = None) -> list[Roi]:
    """A fraction `ratio` of square cells (side `cell`, random from CELL_SIZES when None) on a grid
    shifted by a random offset, so cell edges fall on no fixed patch grid."""
    c = int(cell or rng.choice(CELL_SIZES))
    dy, dx = (int(v) for v in rng.integers(0, c, 2))
    gh, gw = -(-(h + dy) // c), -(-(w + dx) // c)
    grid = _random_cells(rng, gh, gw, ratio)
    rois = grid_to_rois(grid, c, gh * c, gw * c)
    return _clip_rois([(x - dx, y - dy, rw, rh) for x, y, rw, rh in rois], h, w)


def random_rois(rng: np.random.Generator, h: int, w: int, ratio: float,
                size: tuple[int, int] = (24, 120)) -> list[Roi]:
    """Rectangles with sides in `size` px at any position (dead sensor areas, lost packets) until
    ~ratio of the frame is covered."""
    m = np.zeros((h, w), bool)
    rois = []
    while m.mean() < ratio and len(rois) < 100000:
        bh, bw = (int(min(v, lim)) for v, lim in zip(rng.integers(size[0], size[1] + 1, 2), (h, w)))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        m[y:y + bh, x:x + bw] = True
        rois.append((x, y, bw, bh))
    return rois


def stripe_rois(rng: np.random.Generator, h: int, w: int, ratio: float) -> list[Roi]:
    """Full-width stripes of 4-40 px (transmission errors) until ~ratio of the rows are covered."""
    rows = np.zeros(h, bool)
    rois = []
    while rows.mean() < ratio and len(rois) < 10000:
        sh = int(min(h, rng.integers(4, 41)))
        y = int(rng.integers(0, h - sh + 1))
        rows[y:y + sh] = True
        rois.append((0, y, w, sh))
    return rois


def failure_rois(rng: np.random.Generator, h: int, w: int, ratio: float, pattern: str = 'mixed',
                 cell: int | None = None) -> list[Roi]:
    """Failed regions of an (H,W) frame; pattern in PIXEL_PATTERNS or 'mixed'. Never empty."""
    if pattern == 'mixed':
        pattern = PIXEL_PATTERNS[rng.choice(len(PIXEL_PATTERNS), p=[0.5, 0.35, 0.15])]
    if pattern == 'random':
        rois = random_cell_rois(rng, h, w, ratio, cell)
    elif pattern == 'blocks':
        rois = random_rois(rng, h, w, ratio)
    elif pattern == 'rows':
        rois = stripe_rois(rng, h, w, ratio)
    else:
        raise ValueError(f'unknown pixel mask pattern {pattern!r}; choose from {PIXEL_PATTERNS + ("mixed",)}')
    return rois or [(int(rng.integers(w)), int(rng.integers(h)), 1, 1)]


def pixel_failure_mask(rng: np.random.Generator, h: int, w: int, ratio: float, pattern: str = 'mixed',
                       cell: int | None = None) -> np.ndarray:
    """`failure_rois` as an (H,W) bool mask."""
    return rois_to_mask(failure_rois(rng, h, w, ratio, pattern, cell), h, w)
