"""Per-camera restoration: reference keeping, failure masks, cues, tiling, batched inference, merge.

No ROS here: the node, the bag tools and the benchmarks all call `Restorer`.
Per damaged frame: the cues are computed once on the whole frame (restoration.align: Telea fill,
flow-warped reference); model-size tiles are cut straight from them where failed pixels are
(tiles overlap by `tile_overlap` px and are feather-blended, so no seams); only failed pixels
are written, every other pixel is returned bit-exact, and the mask marks exactly those pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np

from .align import model_cues
from .detect import DetectSettings, detect_failed_patches
from .frames import ENCODINGS, check_image, grid_to_pixels, rgb_pixels_to, to_rgb
from .tiles import TileSet, blend_tiles, pad_to, plan_tiles, tile_origins


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


SCALE_RANGE = (0.25, 1.0)   # flow_scale and process_scale (node parameters, CLI options)


@dataclass
class RestorationSettings:
    max_reference_age_s: float = 2.0
    self_detect: bool = False
    detect: DetectSettings = field(default_factory=DetectSettings)
    uncertainty_samples: int = 0   # > 0: also return a per-pixel variance map
    tile_overlap: int = 8          # px shared by neighbouring tiles, feather-blended
    flow_scale: float = 1.0        # < 1: optical flow on a downscaled frame (faster)
    process_scale: float = 1.0     # < 1: cues and model on a downscaled frame, upscaled into the holes


@dataclass
class FrameResult:
    image: np.ndarray                 # same shape/dtype/encoding as the input
    mask: np.ndarray                  # (H,W) uint8, 255 where pixels were synthesized
    status: FrameStatus
    failed_pixels: int = 0
    reference_age_s: float | None = None
    uncertainty: np.ndarray | None = None  # (H,W) float32 variance, when sampled
    message: str = ''
    timings: dict = field(default_factory=dict)  # ms per stage of a restored frame: align, tile, infer, merge

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
    reference: np.ndarray
    result: FrameResult
    failed: np.ndarray                   # (H,W) bool: exactly the pixels to synthesize
    tiles: TileSet | None = None
    work: tuple | None = None            # (reference, rgb, failed) at the processing scale


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
        failed = np.zeros((h, w), bool) if failed is None else failed
        if whole_frame:
            failed = np.ones((h, w), bool)
        if self.settings.self_detect:
            detected = detect_failed_patches(rgb, cam.previous, p, self.settings.detect)
            if detected.any():
                failed = failed | grid_to_pixels(detected, p, h, w)
        cam.previous = rgb
        n_failed = int(np.count_nonzero(failed))
        age = None if cam.reference is None else stamp - cam.reference_stamp   # >= 0: jumps back reset above
        if n_failed == 0:
            cam.reference, cam.reference_stamp = rgb, stamp
            return FrameResult(image, np.zeros((h, w), np.uint8), FrameStatus.HEALTHY, 0, 0.0), None
        if jumped_back:
            res = passthrough(FrameStatus.OUT_OF_ORDER, back_msg)
            res.failed_pixels = n_failed
            return res, None
        if cam.reference is None:
            return passthrough(FrameStatus.NO_REFERENCE, 'no healthy reference frame yet'), None
        if age > self.settings.max_reference_age_s:
            res = passthrough(FrameStatus.STALE_REFERENCE,
                              f'reference is {age:.2f}s old (max {self.settings.max_reference_age_s}s)')
            res.failed_pixels, res.reference_age_s = n_failed, age
            return res, None
        res = FrameResult(image, np.zeros((h, w), np.uint8), FrameStatus.RESTORED, n_failed, age)
        return res, _Job(camera, image, encoding, rgb, cam.reference, res, failed)

    def _infer(self, jobs: list[_Job]) -> None:
        s, st = self.backend.img_size, self.settings
        if self.backend.cues == 'tensor' and st.uncertainty_samples == 0:
            for job in jobs:
                self._infer_frame(job)
            return
        for job in jobs:       # (a `cues: tensor` model here: uncertainty, the tile graph on the same cues)
            t0 = time.perf_counter()
            job.work = at_scale(job.reference, job.rgb, job.failed, st.process_scale)
            refs, fill = model_cues(*job.work, self.backend.ref_chans // 3, st.flow_scale, self.backend.cues)
            t1 = time.perf_counter()
            job.tiles = plan_tiles(refs, fill, job.work[2], s, self.patch, st.tile_overlap)
            job.result.timings.update(align=1e3 * (t1 - t0), tile=1e3 * (time.perf_counter() - t1))
        t0 = time.perf_counter()
        ref_b = np.concatenate([j.tiles.ref for j in jobs])
        dmg_b = np.concatenate([j.tiles.damaged for j in jobs])
        mask_b = np.concatenate([j.tiles.patch_mask for j in jobs])
        var = None
        if st.uncertainty_samples > 0:
            out, var = self.backend.restore_with_uncertainty(ref_b, dmg_b, mask_b, st.uncertainty_samples)
        else:
            out = self.backend.restore(ref_b, dmg_b, mask_b)
        infer_ms = 1e3 * (time.perf_counter() - t0)
        i = 0
        for job in jobs:
            t0 = time.perf_counter()
            n = len(job.tiles.origins)
            _, work_rgb, work_failed = job.work
            ys, xs = np.nonzero(work_failed)
            rgb, unc = blend_tiles(job.tiles, out[i:i + n], ys, xs, None if var is None else var[i:i + n, 0])
            i += n
            fy, fx, rgb = self._at_full(job, work_rgb, ys, xs, rgb)
            if unc is not None and st.process_scale < 1.0:
                unc = upscale_at(np.zeros(work_failed.shape, np.float32), ys, xs, unc, job.failed.shape, fy, fx)
            ys, xs = fy, fx
            self._merge(job, ys, xs, rgb)
            if unc is not None:
                full = np.zeros(job.failed.shape, np.float32)
                full[ys, xs] = unc
                job.result.uncertainty = full
            job.result.timings.update(infer=infer_ms, merge=1e3 * (time.perf_counter() - t0), tiles=n)

    def _infer_frame(self, job: _Job) -> None:
        """A `cues: tensor` model: cues, tiles, model and blend in one backend call (the frame graph);
        only where the tiles go is planned here. Stage times: tile = planning; where the backend sees
        inside its graph (torch) align = the cues, infer = gather + model, merge = blend + the write here;
        else infer = the whole graph and no align."""
        st, s = self.settings, self.backend.img_size
        t0 = time.perf_counter()
        ref, rgb, failed = at_scale(job.reference, job.rgb, job.failed, st.process_scale)
        h, w = failed.shape
        ref, rgb, fail = (pad_to(a, s) for a in (ref, rgb, failed))
        origins = np.array(tile_origins(fail, s, st.tile_overlap), np.int64).reshape(-1, 2)
        t1 = time.perf_counter()
        out = self.backend.restore_frame(ref, rgb, fail.astype(np.uint8), origins)[:h, :w]
        t2 = time.perf_counter()
        ys, xs = np.nonzero(failed)
        self._merge(job, *self._at_full(job, out, ys, xs, out[ys, xs]))
        inside = self.backend.frame_stages
        graph = {'infer': 1e3 * (t2 - t1), 'merge': 0.0} if not inside else dict(inside)
        graph['merge'] += 1e3 * (time.perf_counter() - t2)
        job.result.timings.update(tile=1e3 * (t1 - t0), **graph, tiles=len(origins))

    def _at_full(self, job: _Job, work_rgb: np.ndarray, ys: np.ndarray, xs: np.ndarray, vals: np.ndarray):
        """(ys, xs, vals) of the failed pixels at the frame's own resolution: as given at process_scale
        1, else upscaled from the work frame into the frame's failed pixels."""
        if self.settings.process_scale >= 1.0:
            return ys, xs, vals
        fy, fx = np.nonzero(job.failed)
        return fy, fx, upscale_at(work_rgb, ys, xs, vals, job.failed.shape, fy, fx)

    @staticmethod
    def _merge(job: _Job, ys: np.ndarray, xs: np.ndarray, restored_rgb: np.ndarray) -> None:
        """Copy the input and overwrite exactly the failed pixels (ys, xs) with `restored_rgb`
        ((n,3) uint8; alpha kept)."""
        out = job.image.copy()
        vals = rgb_pixels_to(restored_rgb, job.encoding)
        if ENCODINGS[job.encoding][0] == 4:
            out[ys, xs, :3] = vals
        else:
            out[ys, xs] = vals
        job.result.image = out
        job.result.mask = job.failed.astype(np.uint8) * 255


def at_scale(reference: np.ndarray, rgb: np.ndarray, failed: np.ndarray, scale: float):
    """(reference, damaged rgb, failed) at `scale` of the frame (area-averaged); a low-resolution
    pixel is failed when any pixel under it is, so no failed pixel's value reaches a healthy one."""
    if scale >= 1.0:
        return reference, rgb, failed
    h, w = failed.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    area = lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA)  # noqa: E731
    return area(reference), area(rgb), area(failed.astype(np.float32)) > 0


def upscale_at(low: np.ndarray, ys: np.ndarray, xs: np.ndarray, values: np.ndarray, shape: tuple[int, int],
               fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """`low` with `values` written at (ys, xs), upscaled (bilinear) to `shape`, read at (fy, fx)."""
    low = low.copy()
    low[ys, xs] = values
    return cv2.resize(low, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)[fy, fx]
