"""restore_node: a managed (lifecycle) ROS 2 node over the frame-handling core (ros.handler.FrameHandler).

Lifecycle: on_configure loads the backend (builds/loads the TensorRT engine) and creates the publishers;
on_activate starts the worker, the subscriptions and the status timer; on_deactivate stops taking frames
(frames already taken are finished and published); on_cleanup releases the model; on_shutdown releases
everything from any state. With `autostart` (default true) main() configures and activates at start-up.

Threads: a SingleThreadedExecutor runs the subscriptions, the parameter and lifecycle services and the
status timer; these callbacks never wait for inference. A frame that cannot reach the model (camera
healthy and self_detect off, or its status invalid or without ROIs) with nothing of its camera queued is
handled right in its callback: it is republished (and a healthy one becomes the reference). Other
frames go to one worker thread: each camera has a single pending slot (the newest frame; a frame replaced
before the worker took it is dropped and counted), and the frames waiting together are handled as one
batch. Every handled frame is published on /ns/image_restored.
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
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from ..engine import Backend, create_backend
from ..restoration import FrameStatus, Restorer
from . import params as P
from .compat import SubscriptionEventCallbacks, add_parameter_callbacks
from .diagnostics import CameraStats, camera_status, stage_summary
from .handler import Frame, FrameHandler, FrameOutcome
from .health import Failure, failure_from_status, short
from .messages import MalformedMessage, decode_compressed, fill_image_msg
from .topics import OUTPUT_LEAVES, CameraIds, camera_input, output_topic

THROTTLE_S = 5.0
MAX_WARNED_ENCODINGS = 8          # distinct unsupported encodings remembered (warned once) per camera
MAX_HEALTH_BYTES = 1 << 20        # a camera-health DiagnosticArray above this is not deserialized
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
UNDECODABLE = 'undecodable'       # a CompressedImage that cannot be decoded: nothing is published for it


@dataclass
class Camera:
    topic: str                      # input topic, fully resolved
    pubs: dict = field(default_factory=dict)   # output leaf -> publisher
    subscription: object = None
    pending: tuple | None = None    # (msg, monotonic receive time, failure at arrival, ROS receive time s)
    in_flight: bool = False         # the worker is handling a frame of this camera
    failure: Failure = field(default_factory=Failure)
    stats: CameraStats = field(default_factory=CameraStats)
    warned_encodings: set = field(default_factory=set)


class RestoreNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('restore_node', **kwargs)
        for p in P.PARAMS:
            self.declare_parameter(p.name, p.default, P.descriptor(p))
        self.values = {p.name: self.get_parameter(p.name).value for p in P.PARAMS}
        self.values['image_topics'] = list(self.values['image_topics'])
        self.backend: Backend | None = None
        self.backend_notes: list[str] = []
        self.handler: FrameHandler | None = None
        self.cameras: list[Camera] = []
        self._ids = CameraIds([])
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stop = False
        self._timer = self._health_sub = self._pub_diag = None
        add_parameter_callbacks(self, self._validate_params, self._apply_params)

    # --- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        log = self.get_logger()
        reason = P.check(self.values)
        if reason:
            log.error(f'cannot configure: invalid parameters: {reason}')
            return FAILURE
        try:
            self.backend, self.backend_notes = create_backend(fallback=True, **P.backend_kwargs(self.values))
        except Exception as e:  # noqa: BLE001 - no model, no backend: the transition fails with the reason
            log.error(f'cannot configure: {type(e).__name__}: {short(e, 2000)}')
            return FAILURE
        for note in self.backend_notes:
            log.warning(f'backend fallback: {note}')
        if self.values['publish_uncertainty'] and not self.can_sample:
            log.warning(f'publish_uncertainty ignored: the {self.backend.name} backend cannot sample')
            self.values['publish_uncertainty'] = False
        self.handler = FrameHandler(Restorer(self.backend, self._settings()))
        qos_out = QoSProfile(depth=self.values['qos_depth'], reliability=self._reliability('qos_reliability'))
        for topic in self.values['image_topics']:
            cam = Camera(self.resolve_topic_name(topic))
            cam.pubs = {leaf: self.create_publisher(Image, output_topic(topic, leaf), qos_out)
                        for leaf in OUTPUT_LEAVES}
            self.cameras.append(cam)
            log.info(f'{cam.topic} -> {cam.pubs["image_restored"].topic_name}')
        self._ids = CameraIds([c.topic for c in self.cameras])
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        log.info(f'configured: backend {self.backend.describe()}, model {self.backend.model_path}, '
                 f'tile {self.backend.img_size}px, patch {self.backend.patch_size}px')
        return SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._stop = False
        self._worker = threading.Thread(target=self._work, name='restore_worker', daemon=True)
        self._worker.start()
        qos_in = QoSProfile(depth=self.values['qos_depth'], reliability=self._reliability('input_qos_reliability'))
        for cam in self.cameras:
            cam.subscription = self._subscribe_camera(cam, qos_in)
        self._health_sub = self.create_subscription(DiagnosticArray, self.values['diagnostics_topic'],
                                                    self._on_health, 10, raw=True)
        self._timer = self.create_timer(self.values['diagnostics_period_s'], self._publish_diagnostics)
        self.get_logger().info('active: taking frames')
        return SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._publish_diagnostics()  # final counts: every frame taken has been published
        self.get_logger().info('inactive: frames are not taken')
        return SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info('cleaned up: model released')
        return SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return SUCCESS

    def _subscribe_camera(self, cam: Camera, qos: QoSProfile):
        events = SubscriptionEventCallbacks(incompatible_qos=lambda e, t=cam.topic: self._incompatible(t, e),
                                            message_lost=lambda e, c=cam: self._lost(c, e))
        if camera_input(cam.topic)[0]:    # '<camera topic>/compressed': sensor_msgs/CompressedImage
            return self.create_subscription(CompressedImage, cam.topic, lambda m, c=cam: self._on_compressed(c, m),
                                            qos, event_callbacks=events)
        return self.create_subscription(Image, cam.topic, lambda m, c=cam: self._on_image(c, m), qos,
                                        event_callbacks=events)

    def _stop_inputs(self) -> None:
        """Subscriptions and timer gone; the worker finishes (and publishes) what it has taken, then exits."""
        for cam in self.cameras:
            if cam.subscription is not None:
                self.destroy_subscription(cam.subscription)
                cam.subscription = None
        if self._health_sub is not None:
            self.destroy_subscription(self._health_sub)
            self._health_sub = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None

    def _release(self) -> None:
        for cam in self.cameras:
            for pub in cam.pubs.values():
                self.destroy_publisher(pub)
        if self._pub_diag is not None:
            self.destroy_publisher(self._pub_diag)
        self.cameras, self._ids, self._pub_diag = [], CameraIds([]), None
        self.backend, self.handler, self.backend_notes = None, None, []

    # --- parameters ---------------------------------------------------------------------------
    @property
    def can_sample(self) -> bool:
        return (self.backend is not None and
                type(self.backend).restore_with_uncertainty is not Backend.restore_with_uncertainty)

    def _settings(self):
        return P.restoration_settings(self.values, self.values['publish_uncertainty'])

    def _reliability(self, name: str) -> ReliabilityPolicy:
        return ReliabilityPolicy.BEST_EFFORT if self.values[name] == 'best_effort' else ReliabilityPolicy.RELIABLE

    def _validate_params(self, parameters) -> SetParametersResult:
        new = dict(self.values)
        new.update({p.name: p.value for p in parameters if p.name in P.BY_NAME})
        reason = P.check(new)
        if reason is None and new['publish_uncertainty'] and self.backend is not None and not self.can_sample:
            reason = f'publish_uncertainty needs a backend that can sample; {self.backend.name} cannot'
        return SetParametersResult(successful=reason is None, reason=reason or '')

    def _apply_params(self, parameters) -> None:
        old_period = self.values['diagnostics_period_s']
        self.values.update({p.name: p.value for p in parameters if p.name in P.BY_NAME})
        if self.handler is not None:
            self.handler.restorer.settings = self._settings()
        if self.values['diagnostics_period_s'] != old_period and self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(self.values['diagnostics_period_s'], self._publish_diagnostics)
        self.get_logger().info('parameters updated: ' + ', '.join(f'{p.name}={short(p.value)}' for p in parameters))

    # --- inputs -------------------------------------------------------------------------------
    def _incompatible(self, topic: str, event) -> None:
        self.get_logger().warning(
            f'{topic}: a publisher has incompatible QoS ({event.last_policy_kind}); a best_effort camera driver '
            'needs input_qos_reliability: best_effort', throttle_duration_sec=THROTTLE_S)

    def _lost(self, cam: Camera, event) -> None:
        with self._cv:
            cam.stats.frames_lost += event.total_count_change
            cam.stats.frames_dropped += event.total_count_change

    def _on_compressed(self, cam: Camera, msg: CompressedImage) -> None:
        """Decode to a raw Image (header kept) and handle it like one; undecodable data is counted,
        flagged in /diagnostics and not published (it cannot be passed through as a raw frame)."""
        try:
            array, encoding = decode_compressed(msg.format, msg.data)
        except MalformedMessage as e:
            with self._cv:
                cam.stats.frames_in += 1
                cam.stats.frames_undecodable += 1
                cam.stats.last_status, cam.stats.last_message = UNDECODABLE, short(e)
            self.get_logger().warning(f'{cam.topic}: {short(e)}; frame dropped', throttle_duration_sec=THROTTLE_S)
            return
        self._on_image(cam, fill_image_msg(Image(), array, encoding, msg.header))

    def _on_image(self, cam: Camera, msg: Image) -> None:
        t, rx = time.monotonic(), self.get_clock().now().nanoseconds * 1e-9
        with self._cv:
            cam.stats.frames_in += 1
            f = cam.failure  # frames that cannot reach the model are handled here, in arrival order
            direct = bool(f.error or f.unlocated) or (f.healthy and not self.values['self_detect'])
            if not (direct and cam.pending is None and not cam.in_flight):
                if cam.pending is not None:
                    cam.stats.frames_dropped += 1
                cam.pending = (msg, t, cam.failure, rx)  # the health status in force when the frame arrived
                self._cv.notify()
                return
        # direct path: the worker holds nothing of this camera, so its Restorer state is ours
        self._handle([(cam, msg, t, cam.failure, rx)])

    def _on_health(self, data: bytes) -> None:
        """Apply the last status per camera; unknown ids are counted. Bounded work per message and status.

        The subscription is raw: a message over MAX_HEALTH_BYTES is not deserialized (that alone would stall
        the executor for about a second per 100 MB); every camera is flagged invalid until its next status.
        """
        if len(data) > MAX_HEALTH_BYTES:
            error = f'health message of {len(data)} bytes exceeds the limit of {MAX_HEALTH_BYTES} bytes: not read'
            self.get_logger().warning(f'{error}; every camera passes through until its next valid status',
                                      throttle_duration_sec=THROTTLE_S)
            self._apply_health({c.topic: Failure(error=error) for c in self.cameras})
            return
        try:
            msg = deserialize_message(data, DiagnosticArray)
        except Exception as e:  # noqa: BLE001 - undecodable bytes are reported, never fatal
            self.get_logger().warning(f'undecodable health message: {short(e)}', throttle_duration_sec=THROTTLE_S)
            return
        latest, unknown = {}, 0
        for status in msg.status:
            topic = self._ids.match(status.hardware_id)
            if topic is None:
                unknown += 1
                first_unknown = status.hardware_id
            else:
                latest[topic] = status
        if unknown:
            self.get_logger().warning(f'{unknown} health status(es) for unknown hardware_id (e.g. '
                                      f'{short(first_unknown, 80)!r}) ignored (known: {self._ids.known()})',
                                      throttle_duration_sec=THROTTLE_S)
        failures = {topic: failure_from_status(status) for topic, status in latest.items()}
        for topic, failure in failures.items():
            if failure.error:
                self.get_logger().warning(f'{topic}: {failure.error}; frames pass through until the next valid '
                                          'status', throttle_duration_sec=THROTTLE_S)
        self._apply_health(failures)

    def _apply_health(self, failures: dict) -> None:
        changed = []
        for cam in self.cameras:
            if cam.topic in failures:
                failure = failures[cam.topic]
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
                batch = [(c, *c.pending) for c in self.cameras if c.pending]
                if not batch:  # stopped with nothing taken
                    return
                for c, *_ in batch:
                    c.pending, c.in_flight = None, True
            try:
                self._handle(batch)
            finally:
                with self._cv:
                    for c, *_ in batch:
                        c.in_flight = False

    def _handle(self, batch) -> None:
        """Handle and publish frames [(camera, msg, monotonic receive time, failure, ROS receive time)]."""
        try:
            t_start = time.monotonic()
            outcomes = self.handler.handle([Frame(c.topic, msg, failure, rx) for c, msg, _, failure, rx in batch])
            for (cam, msg, t_in, *_), out in zip(batch, outcomes):
                self._publish(cam, msg, t_in, out, len(batch), 1e3 * (t_start - t_in))
        except Exception as e:  # noqa: BLE001 - never let a frame end the executor or the worker
            self.get_logger().error(f'frame handling error: {type(e).__name__}: {short(e)}',
                                    throttle_duration_sec=THROTTLE_S)

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
        log = self.get_logger()
        if out.status == FrameStatus.UNSUPPORTED_ENCODING:
            if msg.encoding not in cam.warned_encodings and len(cam.warned_encodings) < MAX_WARNED_ENCODINGS:
                cam.warned_encodings.add(msg.encoding)
                log.warning(f'{cam.topic}: {out.message}; frames in this encoding pass through unchanged')
        elif out.status in (FrameStatus.INVALID, FrameStatus.ERROR):
            log.warning(f'{cam.topic}: {out.status.value}: {short(out.message)}', throttle_duration_sec=THROTTLE_S)

    # --- node diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self, cameras: list[Camera] | None = None) -> None:
        if self._pub_diag is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        with self._cv:
            arr.status = [camera_status(f'{self.get_name()}: {c.topic}', c.topic, c.stats, c.failure,
                                        self.backend.describe(), self.backend_notes, c.pending is not None)
                          for c in (cameras or self.cameras)]
        self._pub_diag.publish(arr)


def main(args=None) -> int:
    rclpy.init(args=args)
    node, rc, log = None, 0, rclpy.logging.get_logger('restore_node')
    try:
        node = RestoreNode()
        if node.get_parameter('autostart').value:
            if node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS:
                raise RuntimeError('autostart: configure/activate failed (reason above)')
        else:
            log.info('autostart is false: waiting in unconfigured for a lifecycle manager')
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:  # noqa: BLE001 - startup errors (parameters, model, backend) end the process clearly
        log.fatal(f'cannot start: {type(e).__name__}: {e}')
        rc = 1
    finally:
        if node is not None:
            node.on_shutdown(None)
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == '__main__':
    raise SystemExit(main())
