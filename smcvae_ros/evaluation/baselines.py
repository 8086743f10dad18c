"""Classical restorations the evaluation compares SMCVAE with.

Each baseline takes (reference, damaged, failed[, cues]): RGB uint8 (H,W,3) frames, an (H,W) bool
mask (True = failed pixel) and optionally the frame's precomputed `Cues` (so an evaluation computes
Telea and flow once per pair), and returns the restored frame with every healthy pixel of `damaged`
unchanged; only failed pixels are filled.
"""
from __future__ import annotations

import numpy as np

from ..restoration.align import Cues, prepare_cues


def merge_fill(damaged: np.ndarray, fill: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """`damaged` with its failed pixels taken from `fill`."""
    return np.where(failed[..., None], fill, damaged).astype(np.uint8)


def copy_reference(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, cues: Cues | None = None) -> np.ndarray:
    """Copy the failed pixels from the last healthy frame."""
    return merge_fill(damaged, ref, failed)


def telea_inpaint(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, cues: Cues | None = None) -> np.ndarray:
    """cv2.inpaint (Telea, radius 3) on the damaged frame alone; the reference is not used."""
    return (cues or prepare_cues(ref, damaged, failed)).fill


def flow_warp(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, cues: Cues | None = None) -> np.ndarray:
    """The strong flow-warp: Telea-fill the holes, DIS (MEDIUM) over the whole frame from the filled
    frame to the reference, flow in the holes smoothly filled from around them, the reference
    remapped with it and copied into the holes."""
    return merge_fill(damaged, (cues or prepare_cues(ref, damaged, failed)).warped, failed)


def blend(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, cues: Cues | None = None) -> np.ndarray:
    """The plain per-pixel mean of Telea and the flow-warp."""
    c = cues or prepare_cues(ref, damaged, failed)
    mean = ((c.fill.astype(np.uint16) + c.warped + 1) // 2).astype(np.uint8)
    return merge_fill(damaged, mean, failed)


BASELINES = {'copy': copy_reference, 'telea': telea_inpaint, 'flow': flow_warp, 'blend': blend}
