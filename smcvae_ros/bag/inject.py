"""Synthetic camera failures for bag-eval, expressed as ROIs in pixels (the diagnostics contract).

Schedule per camera topic: frame 0 is healthy (it gives the restorer its first reference); every later
frame is damaged with probability `damage_prob`, otherwise healthy (which refreshes the reference).
A damaged frame gets `failure_rois(pattern, ratio)` rectangles 'x,y,w,h' in pixels, on no grid
(random: 16-px cells on a shifted grid; blocks: 24-120 px rectangles; rows: stripes).
The damage decisions and the masks use separate random streams seeded by (seed, crc32(camera topic)), so
the same frames are damaged for every --mask-ratio of a sweep, runs are reproducible, and a camera's
'/compressed' topic gets the same failures as its raw topic.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..restoration.masks import PIXEL_PATTERNS, failure_rois
from ..ros.topics import camera_input

EVAL_PATTERNS = PIXEL_PATTERNS
EVAL_CELL = 16


class FailureSchedule:
    """Per-camera failure injection: `next(h, w)` -> ROIs for the camera's next frame ([] = healthy)."""

    def __init__(self, topic: str, seed: int, ratio: float, pattern: str = 'random', damage_prob: float = 0.75):
        if pattern not in EVAL_PATTERNS:
            raise ValueError(f'unknown --pattern {pattern!r}; choose {"|".join(EVAL_PATTERNS)}')
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f'mask ratio must be in (0, 1], got {ratio}')
        key = zlib.crc32(camera_input(topic)[1].encode())
        self.damage_rng = np.random.default_rng([seed, key, 0])
        self.mask_rng = np.random.default_rng([seed, key, 1])
        self.ratio, self.pattern, self.damage_prob = ratio, pattern, damage_prob
        self.index = 0

    def next(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        first, self.index = self.index == 0, self.index + 1
        damaged = self.damage_rng.random() < self.damage_prob  # drawn for every frame: stream stays aligned
        if first or not damaged:
            return []
        return failure_rois(self.mask_rng, height, width, self.ratio, self.pattern, EVAL_CELL)
