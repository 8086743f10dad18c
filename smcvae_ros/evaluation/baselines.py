"""Classical restorations the evaluation compares SMCVAE with.

Each baseline takes (reference, damaged, failed): RGB uint8 (H,W,3) frames and an (H,W) bool mask
(True = failed pixel) and returns the restored frame with every healthy pixel of `damaged`
unchanged; only failed pixels are filled.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..restoration.align import align_reference


def merge_fill(damaged: np.ndarray, fill: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """`damaged` with its failed pixels taken from `fill`."""
    return np.where(failed[..., None], fill, damaged).astype(np.uint8)


def copy_reference(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """(a) Copy the failed patches from the last healthy frame."""
    return merge_fill(damaged, ref, failed)


def telea_inpaint(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, radius: int = 3) -> np.ndarray:
    """(b) cv2.inpaint (Telea) on the damaged frame alone; the reference is not used."""
    filled = cv2.inpaint(damaged, failed.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return merge_fill(damaged, filled, failed)


def flow_warp(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """(c) The reference warped by dense DIS optical flow estimated once on the whole frame from
    its healthy pixels (flow in the holes filled from the healthy surroundings), copied into the
    holes. SMCVAE's input uses the same alignment, but per 64-px tile with 16 px of context."""
    return merge_fill(damaged, align_reference(ref, damaged, failed, 'flow'), failed)


BASELINES = {'copy': copy_reference, 'telea': telea_inpaint, 'flow': flow_warp}
