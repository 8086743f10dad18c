"""restore_node: restores failed patches of camera images (thin ROS 2 layer over restoration.Restorer).

Threads: a SingleThreadedExecutor runs the subscriptions, the parameter services and the diagnostics
timer; these callbacks never wait for inference. A frame of a camera with no active failure (and
self_detect off) and nothing queued is handled right in its callback: it only becomes the reference
and is republished, so pass-through costs about what a relay costs. Other frames go to one worker
thread that runs inference: each camera has a single pending slot (the newest frame; a frame
replaced before the worker took it is dropped and counted), and the frames waiting together go to
Restorer.process_batch as one batch. Every processed frame is published on /ns/image_restored
(restored or passed through) with the input's header.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ..engine.base import Backend, create_backend
from ..restoration import Restorer
from ..restoration.frames import failure_mask
from . import params as P
from .compat import SubscriptionEventCallbacks, add_parameter_callbacks
from .diagnostics import CameraStats, Failure, camera_status
from .messages import (CHANNELS, MalformedMessage, decode_compressed, fill_image_msg, image_msg_to_array,
                       parse_failure_status)

THROTTLE_S = 5.0
UNSUPPORTED, INVALID, ERROR = 'passthrough_unsupported_encoding', 'passthrough_invalid', 'passthrough_error'
UNDECODABLE = 'undecodable'     # a CompressedImage that cannot be decoded: nothing is published for it


def _norm(topic: str) -> str:
    return '/' + topic.strip().strip('/')


def _stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@dataclass
class Camera:
    topic: str                      # input topic, fully resolved
    namespace: str
    camera_topic: str = ''          # the topic without /compressed (= topic for raw Image input)
    pub_image: object = None
    pub_mask: object = None
    pub_uncertainty: object = None
    pending: tuple | None = None    # (msg, monotonic receive time, failure state at arrival)
    in_flight: bool = False         # the worker is processing a frame of this camera
    failure: Failure = field(default_factory=Failure)
    stats: CameraStats = field(default_factory=CameraStats)
    warned_encodings: set = field(default_factory=set)


class RestoreNode(Node):
    def __init__(self, **kwargs):
        super().__init__('restore_node', **kwargs)
        for p in P.PARAMS:
            self.declare_parameter(p.name, p.default, P.descriptor(p))
        self.values = {p.name: self.get_parameter(p.name).value for p in P.PARAMS}
        self.values['image_topics'] = list(self.values['image_topics'])
        reason = P.check(self.values)
        if reason:
            raise ValueError(f'invalid parameters: {reason}')
        log = self.get_logger()
        self.backend, self.backend_notes = create_backend(fallback=True, **P.backend_kwargs(self.values))
        for note in self.backend_notes:
            log.warning(f'backend fallback: {note}')
        self.can_sample = type(self.backend).restore_with_uncertainty is not Backend.restore_with_uncertainty
        if self.values['publish_uncertainty'] and not self.can_sample:
            log.warning(f'publish_uncertainty ignored: the {self.backend.name} backend cannot sample')
            self.values['publish_uncertainty'] = False
        self.restorer = Restorer(self.backend, P.restoration_settings(self.values, self.values['publish_uncertainty']))
        log.info(f'backend {self.backend.describe()}, model {self.backend.model_path}, '
                 f'tile {self.backend.img_size}px, patch {self.backend.patch_size}px')

        self._cv = threading.Condition()
        self._stop = False
        self.cameras: list[Camera] = []
        depth = self.values['qos_depth']
        qos_in = QoSProfile(depth=depth, reliability=self._reliability('input_qos_reliability'))
        qos_out = QoSProfile(depth=depth, reliability=self._reliability('qos_reliability'))
        for topic in self.values['image_topics']:
            resolved = self.resolve_topic_name(topic)
            compressed, camera_topic = P.camera_input(resolved)
            cam = Camera(resolved, P.camera_namespace(resolved), camera_topic)
            cam.pub_image, cam.pub_mask, cam.pub_uncertainty = (
                self.create_publisher(Image, P.output_topic(topic, leaf), qos_out)
                for leaf in ('image_restored', 'restoration_mask', 'restoration_uncertainty'))
            events = SubscriptionEventCallbacks(incompatible_qos=lambda e, t=resolved: self._incompatible(t, e))
            on_msg = self._on_compressed if compressed else self._on_image
            self.create_subscription(CompressedImage if compressed else Image, topic,
                                     lambda m, c=cam, f=on_msg: f(c, m), qos_in, event_callbacks=events)
            self.cameras.append(cam)
            log.info(f'{resolved} -> {cam.pub_image.topic_name}')
        by_id = {}
        for cam in self.cameras:
            by_id.setdefault(_norm(cam.topic), cam)
            by_id.setdefault(_norm(cam.camera_topic), cam)
            by_id.setdefault(_norm(cam.namespace), cam)
        self._by_hardware_id = by_id
        self.create_subscription(DiagnosticArray, self.values['diagnostics_topic'], self._on_health, 10)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = self.create_timer(self.values['diagnostics_period_s'], self._publish_diagnostics)
        add_parameter_callbacks(self, self._validate_params, self._apply_params)
        self._worker = threading.Thread(target=self._work, name='restore_worker', daemon=True)
        self._worker.start()

    def _reliability(self, name: str) -> ReliabilityPolicy:
        return ReliabilityPolicy.BEST_EFFORT if self.values[name] == 'best_effort' else ReliabilityPolicy.RELIABLE

    def _incompatible(self, topic: str, event) -> None:
        self.get_logger().warning(
            f'{topic}: a publisher has incompatible QoS ({event.last_policy_kind}); a best_effort camera driver '
            'needs input_qos_reliability: best_effort', throttle_duration_sec=THROTTLE_S)

    # --- parameters ---------------------------------------------------------------------------
    def _validate_params(self, parameters) -> SetParametersResult:
        new = dict(self.values)
        new.update({p.name: p.value for p in parameters if p.name in P.BY_NAME})
        reason = P.check(new)
        if reason is None and new['publish_uncertainty'] and not self.can_sample:
            reason = f'publish_uncertainty needs a backend that can sample; {self.backend.name} cannot'
        return SetParametersResult(successful=reason is None, reason=reason or '')

    def _apply_params(self, parameters) -> None:
        old_period = self.values['diagnostics_period_s']
        self.values.update({p.name: p.value for p in parameters if p.name in P.BY_NAME})
        self.restorer.settings = P.restoration_settings(self.values, self.values['publish_uncertainty'])
        if self.values['diagnostics_period_s'] != old_period:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(self.values['diagnostics_period_s'], self._publish_diagnostics)
        self.get_logger().info('parameters updated: ' + ', '.join(f'{p.name}={p.value!r}' for p in parameters))

    # --- inputs -------------------------------------------------------------------------------
    def _on_compressed(self, cam: Camera, msg: CompressedImage) -> None:
        """Decode to a raw Image (header kept) and handle it like one; undecodable data is counted,
        flagged in /diagnostics and not published (it cannot be passed through as a raw frame)."""
        try:
            array, encoding = decode_compressed(msg.format, msg.data)
        except MalformedMessage as e:
            with self._cv:
                cam.stats.frames_in += 1
                cam.stats.frames_undecodable += 1
                cam.stats.last_status, cam.stats.last_message = UNDECODABLE, str(e)
            self.get_logger().warning(f'{cam.topic}: {e}; frame dropped', throttle_duration_sec=THROTTLE_S)
            return
        self._on_image(cam, fill_image_msg(Image(), array, encoding, msg.header))

    def _on_image(self, cam: Camera, msg: Image) -> None:
        t = time.monotonic()
        with self._cv:
            cam.stats.frames_in += 1
            healthy = cam.failure.describe() == 'none' and not self.values['self_detect']
            if not (healthy and cam.pending is None and not cam.in_flight):
                if cam.pending is not None:
                    cam.stats.frames_dropped += 1
                cam.pending = (msg, t, cam.failure)  # the health status in force when the frame arrived
                self._cv.notify()
                return
        # healthy fast path: the worker holds nothing of this camera, so its Restorer state is ours
        try:
            self._process([(cam, (msg, t), cam.failure)])
        except Exception as e:  # noqa: BLE001 - never let a frame end the executor
            self.get_logger().error(f'{cam.topic}: {type(e).__name__}: {e}', throttle_duration_sec=THROTTLE_S)

    def _on_health(self, msg: DiagnosticArray) -> None:
        changed = []
        for status in msg.status:
            hardware_id = str(status.hardware_id)
            cam = self._by_hardware_id.get(_norm(hardware_id))
            if cam is None:
                self.get_logger().warning(f'health status for unknown hardware_id {hardware_id!r} ignored '
                                          f'(known: {sorted(self._by_hardware_id)})', throttle_duration_sec=THROTTLE_S)
                continue
            try:
                _, rois, whole = parse_failure_status(status)
                failure = Failure(rois, whole)
            except Exception as e:  # noqa: BLE001 - any malformed status is reported, never fatal
                failure = Failure(error=f'malformed health status: {e}')
                self.get_logger().warning(f'{cam.topic}: {failure.error}; frames pass through until the next '
                                          'valid status', throttle_duration_sec=THROTTLE_S)
            with self._cv:
                cam.failure = failure
                cam.stats.health_statuses += 1
            changed.append(cam)
        if changed:
            self._publish_diagnostics(changed)

    # --- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or any(c.pending for c in self.cameras))
                if self._stop:
                    return
                batch = [(c, c.pending[:2], c.pending[2]) for c in self.cameras if c.pending]
                for c, _, _ in batch:
                    c.pending, c.in_flight = None, True
            try:
                self._process(batch)
            except Exception as e:  # noqa: BLE001 - the worker must survive anything a frame causes
                self.get_logger().error(f'worker error: {type(e).__name__}: {e}', throttle_duration_sec=THROTTLE_S)
            finally:
                with self._cv:
                    for c, _, _ in batch:
                        c.in_flight = False

    def _process(self, batch) -> None:
        frames, restorable = [], []
        for cam, (msg, t_in), failure in batch:
            try:
                image = image_msg_to_array(msg)
            except MalformedMessage as e:
                if msg.encoding not in CHANNELS:
                    if msg.encoding not in cam.warned_encodings:
                        cam.warned_encodings.add(msg.encoding)
                        self.get_logger().warning(f'{cam.topic}: {e}; frames in this encoding pass through unchanged')
                    self._publish(cam, msg, t_in, UNSUPPORTED, str(e))
                else:
                    self.get_logger().warning(f'{cam.topic}: malformed image passed through: {e}',
                                              throttle_duration_sec=THROTTLE_S)
                    self._publish(cam, msg, t_in, INVALID, f'malformed image: {e}')
                continue
            h, w = image.shape[:2]
            if failure.error:
                self._publish(cam, msg, t_in, INVALID, failure.error)
                continue
            try:
                failed = failure_mask(failure.rois, h, w)
            except ValueError as e:
                self.get_logger().warning(f'{cam.topic}: {e}; frame passed through', throttle_duration_sec=THROTTLE_S)
                self._publish(cam, msg, t_in, INVALID, str(e))
                continue
            frames.append((cam.topic, image, msg.encoding, _stamp_s(msg), failed, failure.whole_frame))
            restorable.append((cam, msg, t_in, image))
        if not frames:
            return
        try:
            results = self.restorer.process_batch(frames)
        except Exception as e:  # noqa: BLE001 - a failing backend must not stop the camera stream
            text = f'inference failed: {type(e).__name__}: {e}'
            self.get_logger().error(text, throttle_duration_sec=THROTTLE_S)
            for cam, msg, t_in, _ in restorable:
                with self._cv:
                    cam.stats.errors += 1
                self._publish(cam, msg, t_in, ERROR, text)
            return
        for (cam, msg, t_in, image), res in zip(restorable, results):
            self._publish(cam, msg, t_in, res.status, res.message, res, image, len(frames))

    def _publish(self, cam: Camera, msg: Image, t_in: float, status: str, message: str,
                 res=None, image=None, batch_size: int = 1) -> None:
        """Publish one output frame; unchanged frames reuse the input message. Mask and uncertainty go
        out only for restored frames: no mask with a frame's stamp means nothing was synthesized."""
        restored = res is not None and res.image is not image
        cam.pub_image.publish(fill_image_msg(Image(), res.image, msg.encoding, msg.header) if restored else msg)
        if restored and self.values['publish_mask']:
            cam.pub_mask.publish(fill_image_msg(Image(), res.mask, 'mono8', msg.header))
        if restored and self.values['publish_uncertainty'] and res.uncertainty is not None:
            variance = res.uncertainty.astype(np.float32)
            cam.pub_uncertainty.publish(fill_image_msg(Image(), variance, '32FC1', msg.header))
        with self._cv:
            s = cam.stats
            s.frames_out += 1
            s.frames_restored += status == 'restored'
            s.frames_flagged += status.startswith('passthrough')
            s.last_status, s.last_message = status, message
            s.last_latency_ms = (time.monotonic() - t_in) * 1e3
            s.last_failed_pixels = res.failed_pixels if res is not None else 0
            s.last_reference_age_s = res.reference_age_s if res is not None else None
            s.last_batch_size = batch_size

    # --- node diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self, cameras: list[Camera] | None = None) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        with self._cv:
            arr.status = [camera_status(f'{self.get_name()}: {c.topic}', c.topic, c.stats, c.failure,
                                        self.backend.describe(), self.backend_notes, c.pending is not None)
                          for c in (cameras or self.cameras)]
        self._pub_diag.publish(arr)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._worker.join(timeout=5.0)


def main(args=None) -> int:
    rclpy.init(args=args)
    node, rc = None, 0
    try:
        node = RestoreNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:  # noqa: BLE001 - startup errors (parameters, model, backend) end the process clearly
        rclpy.logging.get_logger('restore_node').fatal(f'cannot start: {type(e).__name__}: {e}')
        rc = 1
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == '__main__':
    raise SystemExit(main())
