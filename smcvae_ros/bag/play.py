"""`smcvae bag-play`: publish a bag's messages over rclpy with their recorded timing (like `ros2 bag play`).

Messages are published as the raw CDR bytes stored in the bag (rosbag2 stores CDR), so they arrive
bit-exact. Before the first message the player waits (up to --wait-for-subscribers s) until every played
topic has a matched subscriber; at the end it waits until reliable subscribers acknowledged everything.
"""
from __future__ import annotations

import logging
import time

from .io import BagError, check_topics, messages, open_bag
from .live import live_node, msg_class, qos_profile, wait_matched

log = logging.getLogger(__name__)


def play_bag(in_bag, rate: float = 1.0, loop: bool = False, topics=None, reliability: str = 'reliable',
             depth: int = 100, wait_for_subscribers: float = 5.0, settle_s: float = 0.3, ready=print) -> dict:
    """Publish every (selected) message at bag time / rate; returns messages published per topic."""
    if rate <= 0:
        raise BagError(f'--rate must be > 0, got {rate}')
    with open_bag(in_bag) as reader:
        selected = check_topics(reader, in_bag, topics) if topics else sorted({c.topic for c in reader.connections})
        conns = [c for c in reader.connections if c.topic in selected]
        qos = qos_profile(reliability, depth)
        with live_node('smcvae_bag_play') as (node, stop):
            pubs = {}
            for c in conns:
                if c.topic not in pubs:
                    pubs[c.topic] = node.create_publisher(msg_class(c.msgtype, c.topic), c.topic, qos)
            missing = wait_matched({t: p.get_subscription_count for t, p in pubs.items()}, wait_for_subscribers,
                                   lambda: bool(stop))
            if missing:
                log.warning('no subscriber after %.1fs on: %s (playing anyway)', wait_for_subscribers,
                            ', '.join(missing))
            time.sleep(settle_s)  # let the subscriber side finish matching the new writers
            ready(f'playing {in_bag}: {", ".join(pubs)} at rate {rate:g}', flush=True)
            counts = {t: 0 for t in pubs}
            while not stop:
                t_bag0, t_wall0 = None, time.monotonic()
                for conn, t, data in messages(reader, in_bag, conns):
                    if t_bag0 is None:
                        t_bag0 = t
                    delay = t_wall0 + (t - t_bag0) * 1e-9 / rate - time.monotonic()
                    while delay > 0 and not stop:
                        time.sleep(min(delay, 0.1))
                        delay = t_wall0 + (t - t_bag0) * 1e-9 / rate - time.monotonic()
                    if stop:
                        break
                    pubs[conn.topic].publish(bytes(data))
                    counts[conn.topic] += 1
                if not loop:
                    break
            if reliability == 'reliable':
                from rclpy.duration import Duration
                for t, p in pubs.items():
                    if not p.wait_for_all_acked(Duration(seconds=5)):
                        log.warning('%s: not every subscriber acknowledged the last messages', t)
    return counts


def run(args) -> int:
    counts = play_bag(args.in_bag, args.rate, args.loop, args.topics, args.qos_reliability, args.qos_depth,
                      args.wait_for_subscribers)
    print('published ' + ', '.join(f'{t}: {n}' for t, n in counts.items()))
    return 0
