"""Per-camera restoration: reference keeping, failure masks, tiling, batched inference, merge.

No ROS here: the node, the bag tools and the benchmarks all call `Restorer`.
Every pixel outside the failed patches is returned bit-exact; only tiles (model size) that hold
failed patches are run through the model, so cost grows with the failed area, not the frame size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .align import align_reference
from .detect import DetectSettings, detect_failed_patches
from .frames import ENCODINGS, check_image, grid_to_pixels, patch_grid, rgb_pixels_to, to_rgb


class FrameStatus(str, Enum):
    """What happened to a frame: the one status vocabulary of the restorer, the node and the bag tools."""

    HEALTHY = 'healthy'                                   # no failure: passed through, now the reference
    RESTORED = 'restored'                                 # failed patches synthesized
    NO_REFERENCE = 'passthrough_no_reference'             # no healthy frame of this camera yet
    STALE_REFERENCE = 'passthrough_stale_reference'       # reference older than max_reference_age_s
    OUT_OF_ORDER = 'passthrough_out_of_order'             # stamp before the previous frame's: reference reset
    INVALID = 'passthrough_invalid'                       # malformed image or health status
    UNLOCATED = 'passthrough_unlocated_failure'           # WARN/ERROR status without failed_rois
    UNSUPPORTED_ENCODING = 'passthrough_unsupported_encoding'
    ERROR = 'passthrough_error'                           # inference failed

    __str__ = str.__str__                                 # f'{status}' is the value

    @property
    def flagged(self) -> bool:
        """True when the frame has failures that were not restored (passed through)."""
        return self.value.startswith('passthrough')


@dataclass
class RestorationSettings:
    max_reference_age_s: float = 2.0
    self_detect: bool = False
    detect: DetectSettings = field(default_factory=DetectSettings)
    uncertainty_samples: int = 0   # > 0: also return a per-pixel variance map
    margin: int = 16               # context around each tile for motion alignment


@dataclass
class FrameResult:
    image: np.ndarray                 # same shape/dtype/encoding as the input
    mask: np.ndarray                  # (H,W) uint8, 255 where pixels were synthesized
    status: FrameStatus
    failed_patches: int = 0
    reference_age_s: float | None = None
    uncertainty: np.ndarray | None = None  # (H,W) float32 variance, when sampled
    message: str = ''

    @property
    def flagged(self) -> bool:
        """True when the frame has failures that were not restored (passed through)."""
        return self.status.flagged


@dataclass
class _Camera:
    reference: np.ndarray | None = None
    reference_stamp: float = 0.0
    last_stamp: float | None = None   # stamp of the camera's previous frame (a jump back resets the reference)
    key: tuple | None = None          # (shape, encoding); a change resets the reference
    previous: np.ndarray | None = None


@dataclass
class _Job:
    camera: str
    image: np.ndarray
    encoding: str
    rgb: np.ndarray
    grid: np.ndarray
    reference: np.ndarray
    result: FrameResult
    tiles: list = field(default_factory=list)
    failed_px: np.ndarray | None = None  # (H,W) bool pixels of the failed patches


class Restorer:
    def __init__(self, backend, settings: RestorationSettings | None = None):
        self.backend = backend
        self.settings = settings or RestorationSettings()
        self.cameras: dict[str, _Camera] = {}

    @property
    def patch(self) -> int:
        return self.backend.patch_size

    def reset(self, camera: str | None = None) -> None:
        if camera is None:
            self.cameras.clear()
        else:
            self.cameras.pop(camera, None)

    def process(self, camera: str, image: np.ndarray, encoding: str, stamp: float,
                failed: np.ndarray | None = None, whole_frame: bool = False) -> FrameResult:
        """Restore one frame (see process_batch)."""
        return self.process_batch([(camera, image, encoding, stamp, failed, whole_frame)])[0]

    def process_batch(self, frames) -> list[FrameResult]:
        """Restore frames of several cameras; damaged frames of all cameras go to the backend as one batch.

        frames: [(camera, image, encoding, stamp_s, failed (H,W) bool | None, whole_frame)].
        Time rules: a frame stamped before the camera's previous frame (bag loop, clock jump, or a
        frame older than its reference) resets the camera's reference; if it has failures it is passed
        through as OUT_OF_ORDER, if it is healthy it becomes the new reference.
        """
        jobs, results = [], []
        for args in frames:
            res, job = self._prepare(*args)
            results.append(res)
            if job is not None:
                jobs.append(job)
        if jobs:
            self._infer(jobs)
        return results

    # --- steps ---------------------------------------------------------------------------------
    def _prepare(self, camera, image, encoding, stamp, failed, whole_frame):
        h, w = image.shape[:2]

        def passthrough(status, msg=''):
            return FrameResult(image, np.zeros((h, w), np.uint8), status, message=msg)
        try:
            check_image(image, encoding)
        except ValueError as e:
            return passthrough(FrameStatus.INVALID, str(e)), None
        if failed is not None and failed.shape != (h, w):
            return passthrough(FrameStatus.INVALID, f'failure mask {failed.shape} does not match image {(h, w)}'), None
        cam = self.cameras.setdefault(camera, _Camera())
        key = (image.shape, encoding)
        jumped_back = cam.last_stamp is not None and stamp < cam.last_stamp
        back_msg = f'stamp {stamp:.3f}s is before the previous frame\'s {cam.last_stamp or 0.0:.3f}s: reference reset'
        cam.last_stamp = stamp
        if cam.key != key or jumped_back:
            cam.reference, cam.previous, cam.key = None, None, key
        rgb = to_rgb(image, encoding)
        p = self.patch
        grid = patch_grid(failed, p) if failed is not None else np.zeros((-(-h // p), -(-w // p)), bool)
        if whole_frame:
            grid[:] = True
        if self.settings.self_detect:
            grid |= detect_failed_patches(rgb, cam.previous, p, self.settings.detect)
        cam.previous = rgb
        n_failed = int(grid.sum())
        age = None if cam.reference is None else stamp - cam.reference_stamp   # >= 0: jumps back reset above
        if n_failed == 0:
            cam.reference, cam.reference_stamp = rgb, stamp
            return FrameResult(image, np.zeros((h, w), np.uint8), FrameStatus.HEALTHY, 0, 0.0), None
        if jumped_back:
            res = passthrough(FrameStatus.OUT_OF_ORDER, back_msg)
            res.failed_patches = n_failed
            return res, None
        if cam.reference is None:
            return passthrough(FrameStatus.NO_REFERENCE, 'no healthy reference frame yet'), None
        if age > self.settings.max_reference_age_s:
            res = passthrough(FrameStatus.STALE_REFERENCE,
                              f'reference is {age:.2f}s old (max {self.settings.max_reference_age_s}s)')
            res.failed_patches, res.reference_age_s = n_failed, age
            return res, None
        res = FrameResult(image, np.zeros((h, w), np.uint8), FrameStatus.RESTORED, n_failed, age)
        return res, _Job(camera, image, encoding, rgb, grid, cam.reference, res)

    def _infer(self, jobs: list[_Job]) -> None:
        s, p, m = self.backend.img_size, self.patch, self.settings.margin
        refs, dmgs, masks = [], [], []
        for job in jobs:
            h, w = job.rgb.shape[:2]
            gh, gw = job.grid.shape
            th, tw = -(-h // s), -(-w // s)
            pad = ((m, th * s - h + m), (m, tw * s - w + m))
            job.failed_px = px_failed = grid_to_pixels(job.grid, p, h, w)
            dmg = np.pad(np.where(px_failed[..., None], 0, job.rgb).astype(np.uint8), pad + ((0, 0),), mode='reflect')
            ref = np.pad(job.reference, pad + ((0, 0),), mode='reflect')
            fail = np.zeros(dmg.shape[:2], bool)
            fail[m:m + h, m:m + w] = px_failed
            tile_grid = np.zeros((th * s // p, tw * s // p), bool)
            tile_grid[:gh, :gw] = job.grid
            k = s // p
            for ty, tx in zip(*np.nonzero(tile_grid.reshape(th, k, tw, k).any(axis=(1, 3)))):
                y0, x0 = ty * s, tx * s  # tile origin in the padded frame is (y0+m, x0+m)
                ctx = (slice(y0, y0 + s + 2 * m), slice(x0, x0 + s + 2 * m))
                aligned = align_reference(ref[ctx], dmg[ctx], fail[ctx], self.backend.align)
                inner = slice(m, m + s)
                refs.append(aligned[inner, inner])
                dmgs.append(dmg[ctx][inner, inner])
                masks.append(tile_grid[ty * k:(ty + 1) * k, tx * k:(tx + 1) * k].reshape(-1))
                job.tiles.append((y0, x0))
        to_f = lambda a: np.stack(a).transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # noqa: E731
        ref_b, dmg_b, mask_b = to_f(refs), to_f(dmgs), np.stack(masks)
        out = self.backend.restore(ref_b, dmg_b, mask_b)
        var = None
        if self.settings.uncertainty_samples > 0:
            _, var = self.backend.restore_with_uncertainty(ref_b, dmg_b, mask_b, self.settings.uncertainty_samples)
        out8 = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        i = 0
        for job in jobs:
            h, w = job.rgb.shape[:2]
            th, tw = -(-h // s), -(-w // s)
            canvas = np.zeros((th * s, tw * s, 3), np.uint8)
            unc = np.zeros((th * s, tw * s), np.float32) if var is not None else None
            for y0, x0 in job.tiles:
                canvas[y0:y0 + s, x0:x0 + s] = out8[i]
                if unc is not None:
                    unc[y0:y0 + s, x0:x0 + s] = var[i, 0]
                i += 1
            px = job.failed_px
            self._merge(job, canvas[:h, :w], px)
            if unc is not None:
                job.result.uncertainty = np.where(px, unc[:h, :w], 0.0).astype(np.float32)

    @staticmethod
    def _merge(job: _Job, restored_rgb: np.ndarray, px: np.ndarray) -> None:
        """Copy the input and overwrite only failed-patch pixels (alpha kept)."""
        out = job.image.copy()
        ys, xs = np.nonzero(px)
        vals = rgb_pixels_to(restored_rgb[ys, xs], job.encoding)
        if ENCODINGS[job.encoding][0] == 4:
            out[ys, xs, :3] = vals
        else:
            out[ys, xs] = vals
        job.result.image = out
        job.result.mask = px.astype(np.uint8) * 255
