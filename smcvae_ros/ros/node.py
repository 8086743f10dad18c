"""restore_node: a managed (lifecycle) ROS 2 node over the frame-handling core (ros.handler.FrameHandler).

Lifecycle: on_configure loads the backend (builds/loads the TensorRT engine) and creates the publishers;
on_activate starts the worker, the subscriptions and the status timer; on_deactivate stops taking frames
(frames already taken are finished and published); on_cleanup releases the model; on_shutdown releases
everything from any state. With `autostart` (default true) main() configures and activates at start-up.

Threads: a SingleThreadedExecutor runs the subscriptions, the parameter and lifecycle services and the
status timer; these callbacks never wait for inference. This module is the ROS wiring; what happens to a
frame once its callback hands it in (the direct path, the pending slots, the worker thread, publishing
and the per-camera stats) is ros.pipeline.FramePipeline, created on configure and started on activate.
"""
from __future__ import annotations

import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from ..engine import Backend, create_backend
from ..restoration import Restorer
from . import params as P
from .compat import SubscriptionEventCallbacks, add_parameter_callbacks
from .handler import FrameHandler
from .health import Failure, failure_from_status, short
from .messages import MalformedMessage, decode_compressed, fill_image_msg
from .pipeline import THROTTLE_S, Camera, FramePipeline
from .topics import OUTPUT_LEAVES, CameraIds, camera_input, output_topic

MAX_HEALTH_BYTES = 1 << 20        # a camera-health DiagnosticArray above this is not deserialized
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


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
        self.pipeline: FramePipeline | None = None    # from configure to cleanup
        self._ids = CameraIds([])
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
        self.pipeline = FramePipeline(self.handler, self.cameras, self.values, log)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        log.info(f'configured: backend {self.backend.describe()}, model {self.backend.model_path}, '
                 f'tile {self.backend.img_size}px, patch {self.backend.patch_size}px')
        return SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.pipeline.start()
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
                                            message_lost=lambda e, c=cam: self.pipeline.lost(c, e.total_count_change))
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
        if self.pipeline is not None:
            self.pipeline.stop()

    def _release(self) -> None:
        for cam in self.cameras:
            for pub in cam.pubs.values():
                self.destroy_publisher(pub)
        if self._pub_diag is not None:
            self.destroy_publisher(self._pub_diag)
        self.cameras, self._ids, self._pub_diag, self.pipeline = [], CameraIds([]), None, None
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

    def _on_compressed(self, cam: Camera, msg: CompressedImage) -> None:
        """Decode to a raw Image (header kept) and handle it like one; undecodable data is counted,
        flagged in /diagnostics and not published (it cannot be passed through as a raw frame)."""
        try:
            array, encoding = decode_compressed(msg.format, msg.data)
        except MalformedMessage as e:
            self.pipeline.undecodable(cam, short(e))
            self.get_logger().warning(f'{cam.topic}: {short(e)}; frame dropped', throttle_duration_sec=THROTTLE_S)
            return
        self._on_image(cam, fill_image_msg(Image(), array, encoding, msg.header))

    def _on_image(self, cam: Camera, msg: Image) -> None:
        self.pipeline.take(cam, msg, time.monotonic(), self.get_clock().now().nanoseconds * 1e-9)

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
        changed = self.pipeline.set_failures(failures)
        if changed:
            self._publish_diagnostics(changed)

    # --- node diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self, cameras: list[Camera] | None = None) -> None:
        if self._pub_diag is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = self.pipeline.statuses(self.get_name(), self.backend.describe(), self.backend_notes, cameras)
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
