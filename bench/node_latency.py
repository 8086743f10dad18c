"""restore_node latency at 1280x720 rgb8 over DDS (loopback, reliable QoS).

1. Pass-through: healthy frames through restore_node vs through a bare rclpy relay node (ratio).
2. Restoration of ~10% block-shaped failed patches: node end-to-end latency and failed-region PSNR,
   vs cv2.inpaint (Telea) on the same mask, and vs copying the reference frame.

    .venv/bin/python bench/node_latency.py [--frames 40] [--model PATH] [--size 1280x720]
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from smcvae_ros.cli.demo import BLOCKS
from smcvae_ros.data.clips import SHARED_VAL
from smcvae_ros.restoration.masks import blocks_mask
from smcvae_ros.restoration.frames import grid_to_rois
from smcvae_ros.engine.base import default_model_path, read_model_config
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.restoration.masks import patch_mask_to_pixels
from smcvae_ros.cli.harness import Client, NodeProcess, image_msg
from smcvae_ros.ros.env import ros_env
from smcvae_ros.ros.messages import image_msg_to_array

RELAY_IN, RELAY_OUT, NODE_IN = '/relay/image_raw', '/relay/image_restored', '/bench/image_raw'


def relay_main() -> None:
    """A bare rclpy relay: image_raw -> image_restored, same QoS as restore_node's defaults."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('bare_relay')
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, RELAY_OUT, qos)
    node.create_subscription(Image, RELAY_IN, pub.publish, qos)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    rclpy.try_shutdown()


def load_frames(n: int, w: int, h: int) -> tuple[str, list[np.ndarray]]:
    clip = SHARED_VAL / 'udacity_lanelines_solidwhiteright'
    if clip.is_dir():
        from smcvae_ros.data.clips import read_rgb
        paths = sorted(clip.glob('*.jpg'))[:n]
        return f'{clip.name} resized to {w}x{h}', [cv2.resize(read_rgb(p), (w, h), interpolation=cv2.INTER_CUBIC)
                                                   for p in paths]
    from smcvae_ros.data.synthetic import generate_sequence
    return f'generated road sequence {w}x{h}', generate_sequence(n, w, h)


def stats(ms) -> str:
    return f'{np.median(ms):7.1f} {np.percentile(ms, 90):7.1f}'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--relay', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--frames', type=int, default=40)
    ap.add_argument('--size', default='1280x720')
    ap.add_argument('--model', default='')
    ap.add_argument('--backend', default='auto')
    ap.add_argument('--ratio', type=float, default=0.1)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    if args.relay:
        relay_main()
        return 0
    ros_env()
    w, h = (int(v) for v in args.size.split('x'))
    model = Path(args.model) if args.model else default_model_path()
    patch = read_model_config(model)['patch_size']
    source, frames = load_frames(max(2, args.frames // 2 + 1), w, h)
    relay = subprocess.Popen([sys.executable, __file__, '--relay'])
    node = NodeProcess('bench_restore_node', {'model_path': str(model), 'backend': args.backend, 'device': 'cpu',
                                              'image_topics': [NODE_IN], 'diagnostics_period_s': 0.1})
    client = Client('bench_client')
    try:
        client.received[RELAY_OUT] = []
        client.subscribe(RELAY_OUT)
        relay_up = lambda: (client.publisher(RELAY_IN).get_subscription_count() > 0  # noqa: E731
                            and client.node.count_publishers(RELAY_OUT) > 0)
        ok = client.connect(NODE_IN, 120) and client.wait_for(relay_up, 60)
        assert ok, f'nodes did not come up:\n{node.log()}'
        stamp, sent = [0.0], {RELAY_IN: 0, NODE_IN: 0}

        def send(topic, img):
            stamp[0] += 0.1
            sent[topic] += 1
            return client.send_frame(topic, image_msg(img, 'rgb8', stamp[0], 'bench'))

        def node_latency_ms() -> float:
            """restore_node's own receive -> publish time for the last frame (its /diagnostics)."""
            def settled():
                s = client.status(NODE_IN)
                return s and int(s['frames_out']) == sent[NODE_IN] and s
            st = client.wait_for(settled, 5)
            return float(st['last_latency_ms'])

        for topic in (RELAY_IN, NODE_IN):                      # DDS warm-up (first sample waits a heartbeat)
            send(topic, frames[0]), send(topic, frames[0])
        relay_ms, pass_ms = [], []
        for i in range(args.frames):                           # interleaved, alternating order: same load
            img = frames[i % len(frames)]
            for topic in ((RELAY_IN, NODE_IN) if i % 2 else (NODE_IN, RELAY_IN)):
                (relay_ms if topic == RELAY_IN else pass_ms).append(1e3 * send(topic, img)[2])
        rng = np.random.default_rng(args.seed)
        gh, gw = -(-h // patch), -(-w // patch)
        rest_ms, inner_ms, telea_ms, p_model, p_telea, p_ref, fail_pct = [], [], [], [], [], [], []
        for i in range(len(frames) - 1):
            reference, truth = frames[i], frames[i + 1]
            client.send_health(NODE_IN, NODE_IN)
            send(NODE_IN, reference)
            grid = blocks_mask(rng, gh, gw, args.ratio, BLOCKS)
            failed = patch_mask_to_pixels(grid, patch)[:h, :w]
            client.send_health(NODE_IN, NODE_IN, rois=grid_to_rois(grid, patch, h, w))
            damaged = np.where(failed[..., None], 0, truth).astype(np.uint8)
            out, _, lat = send(NODE_IN, damaged)
            rest_ms.append(1e3 * lat)
            inner_ms.append(node_latency_ms())
            p_model.append(psnr(image_msg_to_array(out), truth, failed))
            t0 = time.perf_counter()
            telea = cv2.inpaint(damaged, failed.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
            telea_ms.append(1e3 * (time.perf_counter() - t0))
            p_telea.append(psnr(telea, truth, failed))
            p_ref.append(psnr(reference, truth, failed))
            fail_pct.append(100 * failed.mean())
        backend = client.status(NODE_IN).get('backend', '?')
    finally:
        client.close()
        node.stop()
        relay.send_signal(signal.SIGINT)
        try:
            relay.wait(10)
        except subprocess.TimeoutExpired:
            relay.kill()
    print(f'\nframes: {source}; model {model.name} (patch {patch}); backend {backend}')
    print(f'{"measurement":<44} {"median":>7} {"p90":>7}  (ms, publish -> output received)')
    print(f'{"bare rclpy relay, pass-through":<44} {stats(relay_ms)}')
    print(f'{"restore_node, healthy pass-through":<44} {stats(pass_ms)}')
    print(f'{"  ratio restore_node / relay (median)":<44} {np.median(pass_ms) / np.median(relay_ms):7.2f}')
    print(f'{f"restore_node, {np.mean(fail_pct):.1f}% failed (blocks), end-to-end":<44} {stats(rest_ms)}')
    print(f'{"  of which inside restore_node":<44} {stats(inner_ms)}')
    print(f'{"cv2.inpaint Telea r=3, same mask (in-process)":<44} {stats(telea_ms)}')
    print(f'\nfailed-region PSNR (mean over {len(p_model)} frames): SMCVAE node {np.mean(p_model):.2f} dB, '
          f'Telea {np.mean(p_telea):.2f} dB, reference copy {np.mean(p_ref):.2f} dB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
