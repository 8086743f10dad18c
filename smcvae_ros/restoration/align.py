"""The two cheap cues SMCVAE starts from, computed once per damaged frame on the whole frame:

- spatial fill: `cv2.inpaint` Telea of the holes from the damaged frame alone;
- motion-aligned reference: DIS optical flow (MEDIUM) from the filled damaged frame to the last
  healthy frame, flow inside the holes replaced by a smooth fill from around them, and the
  reference remapped with it (linear, replicate border); with much of the frame failed, the flow from
  the reference-filled frame instead where it matches the healthy pixels better;
- on request, the reference warped by one homography fitted (RANSAC) to the healthy pixels' flow:
  the dominant plane's motion, carried into holes too large for the smooth flow fill.

The same `prepare_cues` feeds training, evaluation, `restore`, the bag tools and the node, and the
`telea`, `flow` and `blend` baselines are these cues copied into the holes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .masks import failure_components

INPAINT_RADIUS = 3


@dataclass
class Cues:
    fill: np.ndarray       # (H,W,3) uint8: damaged frame, holes Telea-inpainted
    warped: np.ndarray     # (H,W,3) uint8: reference warped onto the damaged frame
    hom: np.ndarray | None = None   # (H,W,3) uint8: reference warped by the homography (when asked)


def _dis() -> cv2.DISOpticalFlow:
    """A new DIS instance per call (0.1 ms): OpenCV's DIS lowers its finest scale for good after a
    frame too small for the preset, so a reused instance would make results depend on history."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def hole_groups(failed: np.ndarray, radius: int) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Groups of holes that Telea must inpaint together: holes closer than 2 * (radius + 1) px share
    a group. Returns, per group, the box around it (grown by radius + 2, clipped) and the group's
    failed pixels inside that box."""
    labels, stats = failure_components(failed, radius + 1)
    h, w = failed.shape
    m = radius + 2
    groups = []
    for i, (x, y, bw, bh) in enumerate(stats.tolist(), start=1):
        box = (slice(max(0, y - m), min(h, y + bh + m)), slice(max(0, x - m), min(w, x + bw + m)))
        groups.append((box, failed[box] & (labels[box] == i)))
    return groups


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Threads for independent OpenCV calls (OpenCV releases the GIL): one per core."""
    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix='cues')


# a forked child (DataLoader workers) inherits the pool object but not its threads: start afresh
os.register_at_fork(after_in_child=_pool.cache_clear)


def telea_fill(damaged: np.ndarray, failed: np.ndarray, radius: int = INPAINT_RADIUS) -> np.ndarray:
    """`damaged` with its holes inpainted by Telea's method. Each group of nearby holes is inpainted
    in its own box, the groups in parallel: Telea reads no pixel farther than `radius` from a hole,
    so the result equals `cv2.inpaint` on the whole frame while the cost follows the failed area."""
    out = damaged.copy()
    groups = hole_groups(failed, radius)

    def fill(group):
        box, holes = group
        return cv2.inpaint(np.ascontiguousarray(damaged[box]), holes.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    filled = _pool().map(fill, groups) if len(groups) > 1 else map(fill, groups)
    for (box, holes), f in zip(groups, filled):
        cv2.copyTo(f, holes.view(np.uint8), out[box])     # = out[box][holes] = f[holes], ~3x faster
    return out


def smooth_flow_fill(flow: np.ndarray, holes: np.ndarray, factor: int = 4) -> np.ndarray:
    """Replace the flow inside `holes` by a smooth fill from around them (Telea per channel at
    1/factor resolution, so large holes get a smooth field quickly). Writes into `flow`."""
    h, w = holes.shape
    sh, sw = max(1, h // factor), max(1, w // factor)
    small = cv2.resize(flow, (sw, sh), interpolation=cv2.INTER_AREA)
    small_holes = cv2.resize(holes.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
    small_holes |= cv2.resize(holes.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    if small_holes.all():
        return np.zeros_like(flow)
    fill = lambda c: cv2.inpaint(np.ascontiguousarray(small[..., c]), small_holes.astype(np.uint8), 3,  # noqa: E731
                                 cv2.INPAINT_TELEA)
    filled = np.dstack(list(_pool().map(fill, range(2))))
    big = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(big, holes.view(np.uint8), flow)         # = flow[holes] = big[holes], ~3x faster
    return flow


REF_FILL_MIN_FAILED = 0.25   # failed fraction from which the reference-filled flow is tried too
REF_FILL_FAVOUR = 0.5        # beyond half failed, its healthy error may exceed the other's by this x (frac - 0.5)
CHECK_STEP = 4               # px between the healthy pixels the two flows are scored on


def _dis_flow(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """DIS flow (H,W,2) from gray `a` to gray `b`, at `scale` of their size when < 1 (upscaled back)."""
    h, w = a.shape
    if scale != 1.0:
        size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
        a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
    flow = _dis().calc(a, b, None)
    if scale != 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(w / flow.shape[1])
    return flow


def _healthy_error(ref: np.ndarray, cur: np.ndarray, flow: np.ndarray, healthy: np.ndarray) -> float:
    """Mean |ref warped by flow - cur| over healthy pixels on a CHECK_STEP grid (gray frames);
    inf when no grid pixel is healthy."""
    sel = healthy[::CHECK_STEP, ::CHECK_STEP]
    if not sel.any():
        return float('inf')
    h, w = ref.shape
    gy, gx = np.mgrid[0:h:CHECK_STEP, 0:w:CHECK_STEP].astype(np.float32)
    f = flow[::CHECK_STEP, ::CHECK_STEP]
    got = cv2.remap(ref, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(got.astype(np.float32) - cur[::CHECK_STEP, ::CHECK_STEP])[sel].mean())


def hole_margin(failed: np.ndarray) -> np.ndarray:
    """(H,W) bool: the failed pixels grown by 2 px, where the holes disturb DIS's flow."""
    return cv2.dilate(failed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def estimate_flow(ref: np.ndarray, fill: np.ndarray, failed: np.ndarray, scale: float = 1.0,
                  holes: np.ndarray | None = None) -> np.ndarray:
    """Dense flow (H,W,2) from the filled damaged frame to the reference; inside `holes`
    (hole_margin(failed) when None) the flow is a smooth fill from the healthy surroundings.
    `scale` < 1 runs DIS on a downscaled pair (faster; the flow is upscaled back).

    When much of the frame failed (>= REF_FILL_MIN_FAILED), DIS's coarse levels see mostly Telea
    smudge and its flow at the healthy pixels goes wrong too; a second flow is then computed with
    the holes filled by the reference instead (near-zero motion in the holes, right for a slow
    scene), and the one whose warp better matches the healthy pixels is kept. Beyond half failed the
    Telea-filled flow's fit to the few healthy pixels says less about the holes, so the
    reference-filled one is favoured in proportion (REF_FILL_FAVOUR)."""
    a, b = _gray(fill), _gray(ref)
    holes = hole_margin(failed) if holes is None else holes
    flow = _dis_flow(a, b, scale)
    frac = float(failed.mean())
    if frac >= REF_FILL_MIN_FAILED and not holes.all():
        alt = _dis_flow(np.where(failed, b, a), b, scale)
        favour = 1.0 + REF_FILL_FAVOUR * max(0.0, frac - 0.5)
        healthy = ~holes
        if _healthy_error(b, a, alt, healthy) < favour * _healthy_error(b, a, flow, healthy):
            flow = alt
    return smooth_flow_fill(flow, holes)


def warp(ref: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(ref, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


HOM_STEP = 8            # px between the healthy flow samples the homography is fitted to
HOM_RANSAC_PX = 2.0


def homography_warp(ref: np.ndarray, flow: np.ndarray, holes: np.ndarray) -> np.ndarray | None:
    """`ref` warped by the homography that best explains (RANSAC) the flow at healthy pixels (a grid
    every HOM_STEP px outside `holes`, the failed pixels' hole_margin); None when too few healthy
    samples or no fit."""
    h, w = holes.shape
    holes = holes[::HOM_STEP, ::HOM_STEP]
    gy, gx = np.mgrid[0:h:HOM_STEP, 0:w:HOM_STEP].astype(np.float32)
    src = np.stack([gx[~holes], gy[~holes]], 1)
    if len(src) < 16:
        return None
    dst = src + flow[::HOM_STEP, ::HOM_STEP][~holes]
    hom, _ = cv2.findHomography(src, dst, cv2.RANSAC, HOM_RANSAC_PX)
    if hom is None:
        return None
    return cv2.warpPerspective(ref, hom, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def prepare_cues(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, flow_scale: float = 1.0,
                 fill: np.ndarray | None = None, hom: bool = False) -> Cues:
    """ref, damaged: (H,W,3) uint8 RGB frames of one camera; failed: (H,W) bool (True = failed);
    fill: `telea_fill(damaged, failed)` when the caller has it already; hom: also the
    homography-warped reference (the flow-warped one where no homography fits)."""
    fill = telea_fill(damaged, failed) if fill is None else fill
    if not failed.any():
        return Cues(fill, ref, ref if hom else None)
    holes = hole_margin(failed)
    flow = estimate_flow(ref, fill, failed, flow_scale, holes)
    warped = warp(ref, flow)
    hom_warped = None
    if hom:
        hom_warped = homography_warp(ref, flow, holes)
        hom_warped = warped if hom_warped is None else hom_warped
    return Cues(fill, warped, hom_warped)


def model_cues(ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray, n_refs: int,
               flow_scale: float = 1.0, cues: str = 'opencv') -> tuple[list[np.ndarray], np.ndarray]:
    """The model's inputs from one damaged frame: its `ref` cues in order, the first n_refs of the
    flow-warped reference, the raw reference (`ref_raw`) and the homography-warped reference
    (`ref_hom`), and the Telea fill (`damaged`). The restorer and the training tiles both use this.
    cues: the model config's `cues`; 'tensor' makes them as the frame graph does (model.cues, on
    the CPU; flow_scale does not apply there)."""
    if cues == 'tensor':
        from ..model.cues import numpy_cues
        return numpy_cues(ref, damaged, failed, n_refs)
    cues = prepare_cues(ref, damaged, failed, flow_scale, hom=n_refs > 2)
    return [cues.warped, ref, cues.hom][:n_refs], cues.fill
