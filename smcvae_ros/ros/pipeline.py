"""The frame path of restore_node, from its subscription callbacks to its output publishers.

The node (ros.node) wires the ROS side: it creates the publishers and subscriptions, reads the health
topic and the parameters, and hands every frame in (FramePipeline.take) from its executor thread. From there:
a frame that cannot reach the model (camera healthy and self_detect off, or its status invalid or without
ROIs) with nothing of its camera queued is handled right in the callback: it is republished (and a healthy
one becomes the reference). Other frames go to one worker thread: each camera has a single pending slot
(the newest frame), and the frames waiting together are handled as one batch. A frame replaced in its slot
before the worker took it is still answered: the worker publishes it unchanged (counted as superseded and
flagged, or as healthy for a healthy camera) before it handles the newer one, so every input goes out once,
in arrival order. Every handled frame is published on /ns/image_restored.
One lock guards every camera's pending slot, failure and stats (read for /diagnostics).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from sensor_msgs.msg import Image

from ..restoration import FrameStatus
from .diagnostics import CameraStats, camera_status, stage_summary
from .handler import Frame, FrameHandler, FrameOutcome
from .health import Failure, short
from .messages import fill_image_msg

THROTTLE_S = 5.0                  # a rate-limited warning is logged at most once per this many seconds
MAX_WARNED_ENCODINGS = 8          # distinct unsupported encodings remembered (warned once) per camera
UNDECODABLE = 'undecodable'       # a CompressedImage that cannot be decoded: nothing is published for it
MAX_SUPERSEDED = 32               # superseded frames held per camera (1 s at 30 Hz); older ones are dropped


@dataclass
class Camera:
    topic: str                      # input topic, fully resolved
    pubs: dict = field(default_factory=dict)   # output leaf -> publisher
    subscription: object = None
    pending: tuple | None = None    # (msg, monotonic receive time, failure at arrival, ROS receive time s)
    superseded: list = field(default_factory=list)  # (msg, failure at arrival) replaced in the pending slot
    in_flight: bool = False         # the worker is handling a frame of this camera
    failure: Failure = field(default_factory=Failure)
    stats: CameraStats = field(default_factory=CameraStats)
    warned_encodings: set = field(default_factory=set)


class FramePipeline:
    """Pending slots, the worker thread, handling (FrameHandler) and publishing for the node's cameras.

    `values` is the node's parameter dict itself (self_detect, publish_mask and publish_uncertainty are
    read per frame, so parameter updates apply to the next frame).
    """

    def __init__(self, handler: FrameHandler, cameras: list[Camera], values: dict, logger):
        self.handler = handler
        self.cameras = cameras
        self.values = values
        self._log = logger
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stop = False

    # --- worker thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._stop = False
        self._worker = threading.Thread(target=self._work, name='restore_worker', daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """The worker finishes (and publishes) what it has taken, then exits."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or any(c.pending for c in self.cameras))
                batch = [(c, *c.pending) for c in self.cameras if c.pending]
                if not batch:  # stopped with nothing taken
                    return
                superseded = [(c, *s) for c, *_ in batch for s in c.superseded]
                for c, *_ in batch:
                    c.pending, c.superseded, c.in_flight = None, [], True
            try:
                for cam, msg, failure in superseded:  # older than the batch: out first
                    self._pass_superseded(cam, msg, failure)
                self._handle(batch)
            finally:
                with self._cv:
                    for c, *_ in batch:
                        c.in_flight = False

    # --- from the node's callbacks ------------------------------------------------------------
    def take(self, cam: Camera, msg: Image, t: float, rx: float) -> None:
        """A frame of `cam` received at monotonic time t (ROS time rx, seconds): into its pending slot, or
        handled here (the direct path) when it cannot reach the model and nothing of its camera is queued."""
        with self._cv:
            cam.stats.frames_in += 1
            f = cam.failure  # frames that cannot reach the model are handled here, in arrival order
            direct = bool(f.error or f.unlocated) or (f.healthy and not self.values['self_detect'])
            if not (direct and cam.pending is None and not cam.in_flight):
                if cam.pending is not None:  # answered by the worker, before the newer frame
                    cam.superseded.append((cam.pending[0], cam.pending[2]))
                    if len(cam.superseded) > MAX_SUPERSEDED:
                        del cam.superseded[0]
                        cam.stats.frames_dropped += 1
                cam.pending = (msg, t, cam.failure, rx)  # the health status in force when the frame arrived
                self._cv.notify()
                return
        # direct path: the worker holds nothing of this camera, so its Restorer state is ours
        self._handle([(cam, msg, t, cam.failure, rx)])

    def lost(self, cam: Camera, count: int) -> None:
        """`count` frames of `cam` reported lost by the middleware."""
        with self._cv:
            cam.stats.frames_lost += count
            cam.stats.frames_dropped += count

    def undecodable(self, cam: Camera, message: str) -> None:
        """A compressed frame of `cam` that could not be decoded (nothing is published for it)."""
        with self._cv:
            cam.stats.frames_in += 1
            cam.stats.frames_undecodable += 1
            cam.stats.last_status, cam.stats.last_message = UNDECODABLE, message

    def set_failures(self, failures: dict) -> list[Camera]:
        """Apply {camera topic: Failure}; the cameras whose failure was set."""
        changed = []
        for cam in self.cameras:
            if cam.topic in failures:
                failure = failures[cam.topic]
                with self._cv:
                    cam.failure = failure
                    cam.stats.health_statuses += 1
                changed.append(cam)
        return changed

    def statuses(self, node_name: str, backend: str, backend_notes: list[str], cameras: list[Camera] | None = None):
        """One /diagnostics DiagnosticStatus per camera (all, or `cameras`); drops/errors count as reported."""
        with self._cv:
            return [camera_status(f'{node_name}: {c.topic}', c.topic, c.stats, c.failure, backend, backend_notes,
                                  c.pending is not None)
                    for c in (cameras or self.cameras)]

    # --- handling and publishing --------------------------------------------------------------
    def _handle(self, batch) -> None:
        """Handle and publish frames [(camera, msg, monotonic receive time, failure, ROS receive time)]."""
        try:
            t_start = time.monotonic()
            outcomes = self.handler.handle([Frame(c.topic, msg, failure, rx) for c, msg, _, failure, rx in batch])
            for (cam, msg, t_in, *_), out in zip(batch, outcomes):
                self._publish(cam, msg, t_in, out, len(batch), 1e3 * (t_start - t_in))
        except Exception as e:  # noqa: BLE001 - never let a frame end the executor or the worker
            self._log.error(f'frame handling error: {type(e).__name__}: {short(e)}', throttle_duration_sec=THROTTLE_S)

    def _pass_superseded(self, cam: Camera, msg: Image, failure: Failure) -> None:
        """Publish a frame replaced in its pending slot, unchanged (it does not become the reference): a healthy
        camera's (self_detect off) counts as a healthy frame out, any other as superseded and flagged.
        The last_* diagnostics keep describing the last handled frame."""
        healthy = failure.healthy and not self.values['self_detect']
        try:
            cam.pubs['image_restored'].publish(msg)
        except Exception as e:  # noqa: BLE001 - never let a frame end the worker
            self._log.error(f'publish error: {type(e).__name__}: {short(e)}', throttle_duration_sec=THROTTLE_S)
            with self._cv:
                cam.stats.frames_dropped += 1
            return
        with self._cv:
            cam.stats.frames_out += 1
            cam.stats.frames_superseded += not healthy
            cam.stats.frames_flagged += not healthy

    def _publish(self, cam: Camera, msg: Image, t_in: float, out: FrameOutcome, batch_size: int,
                 wait_ms: float) -> None:
        """Publish one output frame; unchanged frames reuse the input message. Mask and uncertainty go
        out only for restored frames: no mask with a frame's stamp means nothing was synthesized.
        wait_ms: receive -> handling start (queueing behind the previous frame)."""
        self._log_outcome(cam, msg, out)
        res = out.result
        t_pub = time.monotonic()
        cam.pubs['image_restored'].publish(
            fill_image_msg(Image(), res.image, msg.encoding, msg.header) if out.restored else msg)
        if out.restored and self.values['publish_mask']:
            cam.pubs['restoration_mask'].publish(fill_image_msg(Image(), res.mask, 'mono8', msg.header))
        if out.restored and self.values['publish_uncertainty'] and res.uncertainty is not None:
            variance = res.uncertainty.astype(np.float32)
            cam.pubs['restoration_uncertainty'].publish(fill_image_msg(Image(), variance, '32FC1', msg.header))
        with self._cv:
            s = cam.stats
            s.frames_out += 1
            s.frames_restored += out.restored
            s.frames_flagged += out.status.flagged
            s.errors += out.status == FrameStatus.ERROR
            s.last_status, s.last_message = out.status.value, out.message
            t_end = time.monotonic()
            s.last_latency_ms = (t_end - t_in) * 1e3
            if out.restored:
                s.last_stage_ms = stage_summary({'wait': wait_ms, **res.timings, 'publish': 1e3 * (t_end - t_pub)})
            s.last_failed_pixels = res.failed_pixels if res is not None else 0
            s.last_reference_age_s = res.reference_age_s if res is not None else None
            s.last_batch_size = batch_size

    def _log_outcome(self, cam: Camera, msg: Image, out: FrameOutcome) -> None:
        if out.status == FrameStatus.UNSUPPORTED_ENCODING:
            if msg.encoding not in cam.warned_encodings and len(cam.warned_encodings) < MAX_WARNED_ENCODINGS:
                cam.warned_encodings.add(msg.encoding)
                self._log.warning(f'{cam.topic}: {out.message}; frames in this encoding pass through unchanged')
        elif out.status in (FrameStatus.INVALID, FrameStatus.ERROR):
            self._log.warning(f'{cam.topic}: {out.status.value}: {short(out.message)}',
                              throttle_duration_sec=THROTTLE_S)
