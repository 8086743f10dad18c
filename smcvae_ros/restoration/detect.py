"""Self-detection of failed patches when no diagnostics arrive: constant black, saturated white,
and frozen patches (bit-identical to the previous frame)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetectSettings:
    dark_level: int = 2          # a patch whose every value is <= this is "dead black"
    bright_level: int = 254      # a patch whose every value is >= this is "saturated"
    frozen: bool = True          # bit-identical to the previous frame's patch
    frozen_min_std: float = 2.0  # ...and textured (std >= this), so a flat sky is not "frozen"
    min_patches: int = 1         # report nothing if fewer patches are flagged


def _blocks(img: np.ndarray, p: int) -> np.ndarray:
    """(H,W,C) -> (gh, gw, P*P*C) for the full patches (edge remainder ignored)."""
    gh, gw = img.shape[0] // p, img.shape[1] // p
    c = img.shape[2] if img.ndim == 3 else 1
    x = img[:gh * p, :gw * p].reshape(gh, p, gw, p, c)
    return x.transpose(0, 2, 1, 3, 4).reshape(gh, gw, p * p * c)


def detect_failed_patches(img: np.ndarray, prev: np.ndarray | None, patch: int, s: DetectSettings) -> np.ndarray:
    """(ceil(H/P), ceil(W/P)) bool grid of self-detected failed patches."""
    h, w = img.shape[:2]
    out = np.zeros((-(-h // patch), -(-w // patch)), bool)
    b = _blocks(img, patch)
    gh, gw = b.shape[:2]
    bad = (b.max(-1) <= s.dark_level) | (b.min(-1) >= s.bright_level)
    if s.frozen and prev is not None and prev.shape == img.shape:
        same = (b == _blocks(prev, patch)).all(-1)
        if same.any():
            bad |= same & (b.std(-1) >= s.frozen_min_std)
    if bad.sum() >= s.min_patches:
        out[:gh, :gw] = bad
    return out
