"""`smcvae bag-record`: record topics over rclpy into a rosbag2 (raw CDR, bag time = receive time).

Topic types come from the ROS graph (waits up to --wait s for each topic to be published). Once every
topic has a matched publisher the recorder prints 'recording ...' (scripts can wait for that line).
It stops on Ctrl-C/SIGTERM, after --duration seconds, or when every topic got --count messages, and
always finalizes the bag (written under a temporary name, renamed when complete).
"""
from __future__ import annotations

import logging
import time

from .io import TYPESTORE, BagError, BagWriter
from .live import live_node, msg_class, qos_profile, wait_matched

log = logging.getLogger(__name__)


def discover_types(node, topics, timeout_s: float, stop) -> dict[str, str]:
    end = time.monotonic() + timeout_s
    while True:
        graph = dict(node.get_topic_names_and_types())
        found = {t: graph[t][0] for t in topics if graph.get(t)}
        if len(found) == len(topics) or time.monotonic() >= end or stop():
            break
        time.sleep(0.1)
    missing = [t for t in topics if t not in found]
    if missing:
        raise BagError(f'no publisher for {", ".join(missing)} within {timeout_s:g}s')
    for t, msgtype in found.items():
        if msgtype not in TYPESTORE.types:
            raise BagError(f'topic {t}: type {msgtype} is not in the ROS 2 Jazzy typestore (cannot record)')
    return found


def record_bag(out_bag, topics, duration: float | None = None, count: int | None = None, storage: str = 'mcap',
               reliability: str = 'reliable', depth: int = 100, wait: float = 10.0, overwrite: bool = False,
               ready=print) -> dict:
    """Record until stopped; returns messages written per topic."""
    if not topics:
        raise BagError('bag-record needs --topics')
    with live_node('smcvae_bag_record') as (node, stop):
        import rclpy
        types = discover_types(node, topics, wait, lambda: bool(stop))
        qos = qos_profile(reliability, depth)
        with BagWriter(out_bag, storage, overwrite) as w:
            conns = {t: w.connection(t, types[t]) for t in topics}
            clock = node.get_clock()

            def callback(topic):
                def write(data: bytes):
                    if count is None or w.counts[topic] < count:
                        w.write(conns[topic], clock.now().nanoseconds, data)
                return write

            subs = {t: node.create_subscription(msg_class(types[t], t), t, callback(t), qos, raw=True) for t in topics}
            missing = wait_matched({t: s.get_publisher_count for t, s in subs.items()}, wait, lambda: bool(stop))
            if missing:
                log.warning('no matched publisher on %s (QoS mismatch?); recording anyway', ', '.join(missing))
            ready(f'recording {", ".join(topics)} to {out_bag}', flush=True)
            end = time.monotonic() + duration if duration else None
            while not stop and rclpy.ok():
                rclpy.spin_once(node, timeout_sec=0.05)
                if count is not None and all(w.counts[t] >= count for t in topics):
                    break
                if end is not None and time.monotonic() >= end:
                    break
            counts = dict(w.counts)
    return counts


def run(args) -> int:
    counts = record_bag(args.out_bag, args.topics, args.duration, args.count, args.storage, args.qos_reliability,
                        args.qos_depth, args.wait, args.overwrite)
    print(f'wrote {args.out_bag}: ' + ', '.join(f'{t}: {n}' for t, n in counts.items()))
    if args.count is not None and any(n < args.count for n in counts.values()):
        print(f'warning: stopped before every topic had {args.count} messages')
        return 1
    return 0
