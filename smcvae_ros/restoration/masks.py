"""Failure masks on the patch grid: the paper's random masking and camera-failure patterns."""
from __future__ import annotations

import numpy as np

PATTERNS = ('random', 'blocks', 'rows', 'quadrant')


def random_mask(rng: np.random.Generator, gh: int, gw: int, ratio: float) -> np.ndarray:
    n = gh * gw
    k = int(round(ratio * n))
    m = np.zeros(n, bool)
    m[rng.choice(n, size=k, replace=False)] = True
    return m.reshape(gh, gw)


def blocks_mask(rng: np.random.Generator, gh: int, gw: int, ratio: float,
                block: tuple[int, int] | None = None) -> np.ndarray:
    """Contiguous rectangles of patches (dead sensor areas, lost packets) until ~ratio is covered.

    block: (min, max) patches a side of each rectangle; default 1 to half the grid per axis.
    """
    m = np.zeros((gh, gw), bool)
    target = max(1, int(round(ratio * gh * gw)))
    while m.sum() < target:
        if block is None:
            bh, bw = rng.integers(1, max(2, gh // 2) + 1), rng.integers(1, max(2, gw // 2) + 1)
        else:
            bh, bw = (min(int(v), n) for v, n in zip(rng.integers(block[0], block[1] + 1, size=2), (gh, gw)))
        y, x = rng.integers(0, gh - bh + 1), rng.integers(0, gw - bw + 1)
        m[y:y + bh, x:x + bw] = True
    return m


def rows_mask(rng: np.random.Generator, gh: int, gw: int, ratio: float) -> np.ndarray:
    """Whole patch rows (or columns): stripes from transmission errors."""
    vertical = rng.random() < 0.25
    n = gw if vertical else gh
    k = min(n, max(1, int(round(ratio * n))))
    start = rng.integers(0, n - k + 1)
    idx = np.arange(start, start + k) if rng.random() < 0.5 else rng.choice(n, k, replace=False)
    m = np.zeros((gh, gw), bool)
    if vertical:
        m[:, idx] = True
    else:
        m[idx, :] = True
    return m


def quadrant_mask(rng: np.random.Generator, gh: int, gw: int, ratio: float) -> np.ndarray:
    """A corner region (a quadrant-sized failure), sized to cover ~ratio."""
    s = float(np.sqrt(max(ratio, 1.0 / (gh * gw))))
    bh, bw = max(1, int(round(s * gh))), max(1, int(round(s * gw)))
    m = np.zeros((gh, gw), bool)
    ys = slice(0, bh) if rng.random() < 0.5 else slice(gh - bh, gh)
    xs = slice(0, bw) if rng.random() < 0.5 else slice(gw - bw, gw)
    m[ys, xs] = True
    return m


_MAKERS = {'random': random_mask, 'blocks': blocks_mask, 'rows': rows_mask, 'quadrant': quadrant_mask}


def make_mask(rng: np.random.Generator, gh: int, gw: int, ratio: float, pattern: str = 'random') -> np.ndarray:
    """(gh,gw) bool patch mask; pattern in PATTERNS or 'mixed' (random pattern per call)."""
    if pattern == 'mixed':
        pattern = PATTERNS[rng.choice(len(PATTERNS), p=[0.5, 0.25, 0.15, 0.1])]
    if pattern not in _MAKERS:
        raise ValueError(f'unknown mask pattern {pattern!r}; choose from {PATTERNS + ("mixed",)}')
    return _MAKERS[pattern](rng, gh, gw, ratio)


def patch_mask_to_pixels(mask: np.ndarray, patch: int) -> np.ndarray:
    return np.kron(mask.astype(np.uint8), np.ones((patch, patch), np.uint8)).astype(bool)
