"""Synthetic camera failures for bag-eval, expressed as ROIs on the patch grid (the diagnostics contract).

Schedule per camera topic: frame 0 is healthy (it gives the restorer its first reference); every later
frame is damaged with probability `damage_prob`, otherwise healthy (which refreshes the reference).
A damaged frame gets a make_mask(pattern, ratio) patch mask, written as rectangles 'x,y,w,h' in pixels.
The damage decisions and the masks use separate random streams seeded by (seed, crc32(camera topic)), so
the same frames are damaged for every --mask-ratio of a sweep, runs are reproducible, and a camera's
'/compressed' topic gets the same failures as its raw topic.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..restoration.frames import grid_to_rois
from ..restoration.masks import make_mask
from ..ros.params import camera_input

EVAL_PATTERNS = ('random', 'blocks', 'rows')


class FailureSchedule:
    """Per-camera failure injection: `next(h, w)` -> ROIs for the camera's next frame ([] = healthy)."""

    def __init__(self, topic: str, seed: int, ratio: float, pattern: str = 'random', damage_prob: float = 0.75,
                 patch: int = 8):
        if pattern not in EVAL_PATTERNS:
            raise ValueError(f'unknown --pattern {pattern!r}; choose {"|".join(EVAL_PATTERNS)}')
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f'mask ratio must be in (0, 1], got {ratio}')
        key = zlib.crc32(camera_input(topic)[1].encode())
        self.damage_rng = np.random.default_rng([seed, key, 0])
        self.mask_rng = np.random.default_rng([seed, key, 1])
        self.ratio, self.pattern, self.damage_prob, self.patch = ratio, pattern, damage_prob, patch
        self.index = 0

    def next(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        first, self.index = self.index == 0, self.index + 1
        damaged = self.damage_rng.random() < self.damage_prob  # drawn for every frame: stream stays aligned
        if first or not damaged:
            return []
        gh, gw = -(-height // self.patch), -(-width // self.patch)
        grid = make_mask(self.mask_rng, gh, gw, self.ratio, self.pattern)
        return grid_to_rois(grid, self.patch, height, width)
