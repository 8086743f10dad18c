"""rclpy helpers shared by bag-play and bag-record (imported only by those commands)."""
from __future__ import annotations

import contextlib
import importlib
import signal
import time

from ..ros.env import ensure_ament_prefix
from .io import BagError

RELIABILITY = ('reliable', 'best_effort')


def msg_class(msgtype: str, topic: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class; BagError naming the topic if unavailable."""
    pkg, _, name = msgtype.rpartition('/')
    try:
        return getattr(importlib.import_module(pkg.replace('/', '.')), name)
    except (ImportError, AttributeError) as e:
        raise BagError(f'topic {topic}: message type {msgtype} is not available to rclpy here ({e})') from e


def qos_profile(reliability: str, depth: int):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    if reliability not in RELIABILITY:
        raise BagError(f'unknown QoS reliability {reliability!r}; choose {"|".join(RELIABILITY)}')
    rel = ReliabilityPolicy.RELIABLE if reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel)


@contextlib.contextmanager
def live_node(name: str):
    """(node, stop) for a bag tool: an rclpy context without rclpy's signal handlers; SIGINT/SIGTERM
    append to `stop` instead, and on exit the node is shut down and the previous handlers restored."""
    ensure_ament_prefix()
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    stop: list[bool] = []
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(name)
    handlers = {s: signal.signal(s, lambda *_: stop.append(True)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield node, stop
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        for s, h in handlers.items():
            signal.signal(s, h)


def wait_matched(counts: dict[str, callable], timeout_s: float, stop=lambda: False) -> list[str]:
    """Wait until every count() >= 1 (DDS matching is done by rmw threads, no spinning needed).
    Returns the topics still unmatched after timeout_s."""
    end = time.monotonic() + timeout_s
    while not stop():
        missing = [t for t, count in counts.items() if count() < 1]
        if not missing or time.monotonic() >= end:
            return missing
        time.sleep(0.05)
    return [t for t, count in counts.items() if count() < 1]
