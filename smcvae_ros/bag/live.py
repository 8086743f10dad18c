"""rclpy helpers shared by bag-play and bag-record (imported only by those commands)."""
from __future__ import annotations

import importlib
import os
import sys
import time

from .io import BagError

RELIABILITY = ('reliable', 'best_effort')


def ensure_ament_prefix() -> None:
    """rclpy finds message type support through AMENT_PREFIX_PATH; in a venv install it is the venv."""
    prefix = os.environ.get('VIRTUAL_ENV') or sys.prefix
    if prefix not in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(filter(None, [prefix, os.environ.get('AMENT_PREFIX_PATH')]))


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


def init_node(name: str):
    """rclpy context without rclpy's signal handlers (the tools stop cleanly on SIGINT/SIGTERM themselves)."""
    ensure_ament_prefix()
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    return rclpy.create_node(name)


def shutdown(node) -> None:
    import rclpy
    node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()


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
