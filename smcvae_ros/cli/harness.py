"""Drive a real restore_node over DDS: start it as launch_ros would, feed frames and camera health
statuses, collect its outputs. Used by `smcvae demo`, the node tests and the benchmarks (not by the node)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..ros.health import FAILED_ROIS_KEY, Level, format_rois
from ..ros.messages import fill_image_msg
from ..ros.topics import OUTPUT_LEAVES, output_topic

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPTS = {'restore_node': 'smcvae_ros.ros.node', 'smcvae': 'smcvae_ros.cli'}   # setup.py entry points


def command(name: str) -> list[str]:
    """The command line that runs one of this package's console scripts (`restore_node`, `smcvae`): on
    PATH (pip/venv install), beside this Python, in the colcon install's lib/smcvae_ros (where
    `ros2 run` looks), else `python -m` of its module."""
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).is_file():
        try:
            from ament_index_python.packages import PackageNotFoundError, get_package_prefix
            found = str(Path(get_package_prefix('smcvae_ros')) / 'lib' / 'smcvae_ros' / name)
        except (ImportError, PackageNotFoundError):
            pass
    return [found] if Path(found).is_file() else [sys.executable, '-m', CONSOLE_SCRIPTS[name]]


def params_file() -> Path:
    """config/restore.yaml of the source tree, else of the installed share directory."""
    src = REPO / 'config' / 'restore.yaml'
    if src.is_file():
        return src
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('smcvae_ros')) / 'config' / 'restore.yaml'


def _param_arg(name: str, value) -> str:
    if isinstance(value, bool):
        value = 'true' if value else 'false'
    elif isinstance(value, (list, tuple)):
        value = '[' + ','.join(f"'{v}'" for v in value) + ']'
    return f'{name}:={value}'


def dds_env(dds_profile: str = '') -> dict[str, str]:
    """The Fast DDS profile variables launch/restore.launch.py gives the node for `dds_profile:=`
    ('' = the shipped config/fastdds_large_images.xml unless the environment names one; 'none' = {})."""
    from ..ros.launch_args import dds_environment
    return dds_environment(dds_profile, str(params_file().parent), os.environ)


def add_dds_profile(p) -> None:
    """--dds-profile for the benchmarks, as the launch argument dds_profile:= (see dds_env)."""
    p.add_argument('--dds-profile', default='',
                   help="Fast DDS XML profile of every participant ('' = config/fastdds_large_images.xml, as "
                        "the launch file; none = the environment's)")


class NodeProcess:
    """`restore_node --ros-args --params-file FILE [--params-file PROFILE] -r __node:=NAME -p k:=v ...` as a
    subprocess, in the environment launch_ros gives it (what `ros2 launch smcvae_ros restore.launch.py`
    runs); `params`: the params file(s), later ones win (default: restore.yaml); `dds_profile` as the
    launch argument."""

    def __init__(self, name: str = 'restore_node', overrides: dict | None = None,
                 params: Path | list[Path] | None = None, log_path: Path | None = None, env: dict | None = None,
                 dds_profile: str = ''):
        self.name = name
        files = params if isinstance(params, (list, tuple)) else [params or params_file()]
        self.cmd = command('restore_node') + ['--ros-args']
        for f in files:
            self.cmd += ['--params-file', str(f)]
        self.cmd += ['-r', f'__node:={name}']
        for k, v in (overrides or {}).items():
            self.cmd += ['-p', _param_arg(k, v)]
        self.log_path = Path(log_path or tempfile.mkstemp(prefix=f'{name}_', suffix='.log')[1])
        self._log = open(self.log_path, 'wb')
        self.env = {**dds_env(dds_profile), **(env or {})}
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def stamp_key(msg) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def image_msg(array: np.ndarray, encoding: str, stamp_s: float, frame_id: str = 'camera'):
    from sensor_msgs.msg import Image
    msg = fill_image_msg(Image(), array, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int(round((stamp_s % 1) * 1e9))
    msg.header.frame_id = frame_id
    return msg


def health_array(hardware_id: str, rois=(), whole_frame: bool = False, level: int | None = None,
                 rois_text: str | None = None):
    """DiagnosticArray with one camera health status (the node's input contract)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    if level is None:
        level = Level.STALE if whole_frame else (Level.ERROR if rois or rois_text else Level.OK)
    st = DiagnosticStatus(level=bytes([level]), name=f'camera health {hardware_id}', hardware_id=hardware_id,
                          message='patch failure' if level else 'ok')
    if rois or rois_text is not None:
        st.values = [KeyValue(key=FAILED_ROIS_KEY, value=format_rois(rois) if rois_text is None else rois_text)]
    return DiagnosticArray(status=[st])


class Client:
    """An rclpy node in its own context, spinning in a background thread, that records what it hears."""

    def __init__(self, name: str = 'smcvae_client', diagnostics_topic: str = '/camera_health'):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received = defaultdict(list)       # topic -> [(monotonic time, msg)]
        self.node_status = {}                   # hardware_id -> latest status values of the node
        self.health_sent = defaultdict(int)     # hardware_id -> statuses we published
        self._pubs = {}
        self.health_pub = self.node.create_publisher(DiagnosticArray, diagnostics_topic, 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def _on_diagnostics(self, msg):
        with self.lock:
            for st in msg.status:
                self.node_status[st.hardware_id] = {kv.key: kv.value for kv in st.values} | {
                    '_level': st.level[0], '_message': st.message}

    def subscribe(self, topic: str, msg_type=None, depth: int = 50):
        from sensor_msgs.msg import Image
        cb = lambda m, t=topic: self._record(t, m)  # noqa: E731
        return self.node.create_subscription(msg_type or Image, topic, cb, depth)

    def _record(self, topic, msg):
        t = time.monotonic()
        with self.lock:
            self.received[topic].append((t, msg))

    def publisher(self, topic: str, depth: int = 10):
        """The client's (reliable) Image publisher on `topic` with history `depth`, made on first use."""
        from sensor_msgs.msg import Image
        if (topic, depth) not in self._pubs:
            self._pubs[(topic, depth)] = self.node.create_publisher(Image, topic, depth)
        return self._pubs[(topic, depth)]

    @staticmethod
    def wait_for(predicate, timeout: float, interval: float = 0.005):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        return predicate()

    def output(self, topic: str, key) -> object | None:
        with self.lock:
            return next((m for _, m in self.received[topic] if stamp_key(m) == key), None)

    def arrival(self, topic: str, key) -> float | None:
        with self.lock:
            return next((t for t, m in self.received[topic] if stamp_key(m) == key), None)

    def connect(self, input_topic: str, timeout: float = 60.0) -> bool:
        """Subscribe to the camera's outputs and wait until the node and we are matched both ways."""
        out = output_topic(input_topic, 'image_restored')
        if out not in self.received:
            self.received[out] = []
            for leaf in OUTPUT_LEAVES:
                self.subscribe(output_topic(input_topic, leaf))
        pub = self.publisher(input_topic)
        matched = lambda: (pub.get_subscription_count() > 0  # noqa: E731
                           and self.health_pub.get_subscription_count() > 0
                           and self.node.count_publishers(out) > 0)
        return bool(self.wait_for(matched, timeout, 0.05))

    def send_frame(self, input_topic: str, msg, timeout: float = 30.0):
        """Publish one frame; return (output Image, mask Image | None, latency s) or raise TimeoutError.
        The mask is None when the output is the unchanged input."""
        out, mask_topic = output_topic(input_topic, 'image_restored'), output_topic(input_topic, 'restoration_mask')
        key = stamp_key(msg)
        t0 = time.monotonic()
        self.publisher(input_topic).publish(msg)
        got = self.wait_for(lambda: self.output(out, key), timeout)
        if got is None:
            raise TimeoutError(f'no output on {out} for stamp {key} within {timeout}s')
        latency = self.arrival(out, key) - t0
        restored = bytes(got.data) != bytes(msg.data)   # the node publishes masks for restored frames only
        mask = self.wait_for(lambda: self.output(mask_topic, key), 10.0) if restored else None
        return got, mask, latency

    def send_health(self, hardware_id: str, camera_topic: str, timeout: float = 15.0, **kw) -> dict:
        """Publish a health status and wait until the node has applied it (its /diagnostics count)."""
        self.health_pub.publish(health_array(hardware_id, **kw))
        self.health_sent[camera_topic] += 1
        n = self.health_sent[camera_topic]
        ok = self.wait_for(lambda: int(self.status(camera_topic).get('health_statuses', -1)) >= n, timeout)
        if not ok:
            raise TimeoutError(f'node did not acknowledge health status #{n} for {camera_topic}')
        return self.status(camera_topic)

    def status(self, camera_topic: str) -> dict:
        with self.lock:
            return dict(self.node_status.get(camera_topic, {}))

    def forget(self, camera_topic: str) -> None:
        """A node restarted or reconfigured counts from zero: drop the camera's status snapshot (or
        send_health would take the old configuration's count as the acknowledgement) and our count."""
        with self.lock:
            self.node_status.pop(camera_topic, None)
        self.health_sent[camera_topic] = 0

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        """One service call; raises TimeoutError when the service is absent or does not answer."""
        cli = self.node.create_client(srv_type, name)
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'{name} not available')
            fut = cli.call_async(request)
            if not self.wait_for(fut.done, timeout):
                raise TimeoutError(f'{name} did not answer')
            return fut.result()
        finally:
            self.node.destroy_client(cli)

    def set_parameters(self, node_name: str, values: dict, timeout: float = 15.0) -> list:
        """SetParameters service call; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        msgs = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self.call(SetParameters, f'/{node_name}/set_parameters', SetParameters.Request(parameters=msgs),
                              timeout).results)

    def lifecycle_state(self, node_name: str, timeout: float = 30.0) -> str:
        """The node's lifecycle state label (/<node>/get_state)."""
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f'/{node_name}/get_state', GetState.Request(), timeout).current_state.label

    def change_state(self, node_name: str, transition: str, timeout: float = 120.0) -> bool:
        """Trigger a transition by label (configure, activate, deactivate, cleanup, shutdown)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        req = ChangeState.Request(transition=Transition(label=transition))
        return self.call(ChangeState, f'/{node_name}/change_state', req, timeout).success

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=2.0)
