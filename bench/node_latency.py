"""restore_node latency at 1280x720 rgb8 over DDS (loopback, reliable QoS).

1. Pass-through: healthy frames through restore_node vs through a bare rclpy relay node (ratio).
2. Restoration of ~10% failed rectangular blocks (24-120 px a side, anywhere: on no grid): the node's
   end-to-end round trip and failed-region PSNR vs cv2.inpaint (Telea) on the same frames and masks,
   timed in the same run, and vs the flow-warp / blend baselines.
3. Per-stage breakdown of a restored frame: inside the node (its /diagnostics `last_stage_ms`: wait,
   align, tile, infer, merge, publish), and the same code (Restorer + message conversion) run
   in-process on the same frames and masks after the node stopped (decode, align, tile, infer, merge,
   publish: message filling only).

    .venv/bin/python bench/node_latency.py [--frames 40] [--profile cpu] [--model PATH] [--size 1280x720]

--profile NAME starts the node with config/profile_NAME.yaml over restore.yaml, exactly as
`ros2 launch smcvae_ros restore.launch.py profile:=NAME` does, and takes the in-process breakdown's
settings from it; options given explicitly override the profile (as launch arguments would).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from smcvae_ros.cli import add_flow_scale, add_process_scale
from smcvae_ros.cli.harness import Client, NodeProcess, add_dds_profile, dds_env, image_msg, params_file
from smcvae_ros.data.clips import SHARED_VAL
from smcvae_ros.engine import create_backend
from smcvae_ros.engine.base import PRECISIONS, read_model_config, resolve_model
from smcvae_ros.evaluation.baselines import blend, flow_warp
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.restoration import RestorationSettings, Restorer, rois_to_mask
from smcvae_ros.restoration.align import prepare_cues
from smcvae_ros.restoration.masks import random_rois
from smcvae_ros.restoration.restorer import at_scale
from smcvae_ros.restoration.tiles import tile_origins
from smcvae_ros.ros.diagnostics import parse_stages
from smcvae_ros.ros.env import ros_env
from smcvae_ros.ros.launch_args import profile_file
from smcvae_ros.ros.params import defaults as node_defaults
from smcvae_ros.ros.messages import fill_image_msg, image_msg_to_array

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


PROFILE_KEYS = {'model_path': 'model', 'flow_scale': 'flow_scale', 'process_scale': 'process_scale',
                'precision': 'precision', 'tile_overlap': 'tile_overlap'}     # node parameter -> option
NODE_DEFAULTS = {option: node_defaults()[name] for name, option in PROFILE_KEYS.items()}


def node_params_files(args) -> list[Path]:
    """The node's params files (restore.yaml, then the profile's); fills the options left unset from
    the profile, then from the node's defaults."""
    import yaml
    files = [params_file()]
    if args.profile:
        files.append(Path(profile_file(args.profile, str(files[0].parent))))
        values = yaml.safe_load(files[1].read_text())['/**']['ros__parameters']
        for key, option in PROFILE_KEYS.items():
            if getattr(args, option) is None and key in values:
                setattr(args, option, values[key])
    for option, value in NODE_DEFAULTS.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    return files


def stats(ms) -> str:
    return f'{np.median(ms):7.1f} {np.percentile(ms, 90):7.1f}'


def stage_breakdown(cases, model: Path, args) -> dict[str, list[float]]:
    """ms per stage for each (reference, damaged, failed) case, through the node's own code."""
    from sensor_msgs.msg import Image
    be, _ = create_backend(args.backend, model, 'cpu', precision=args.precision)
    restorer = Restorer(be, RestorationSettings(max_reference_age_s=np.inf, flow_scale=args.flow_scale,
                                                process_scale=args.process_scale,
                                                tile_overlap=args.tile_overlap))
    out = {k: [] for k in ('decode', 'align', 'tile', 'infer', 'merge', 'publish', 'total', 'tiles', 'grid_tiles')}
    for reference, damaged, failed in cases:
        restorer.reset()
        restorer.process('c', reference, 'rgb8', 0.0)
        msg = image_msg(damaged, 'rgb8', 0.1)
        t0 = time.perf_counter()
        img = image_msg_to_array(msg)
        t1 = time.perf_counter()
        res = restorer.process('c', img, 'rgb8', 0.1, failed)
        t2 = time.perf_counter()
        fill_image_msg(Image(), res.image, 'rgb8', msg.header)
        t3 = time.perf_counter()
        for k in ('align', 'tile', 'infer', 'merge', 'tiles'):
            if k in res.timings:              # a frame graph seen from outside has no align of its own
                out[k].append(res.timings[k])
        work_failed = at_scale(reference, damaged, failed, args.process_scale)[2]
        out['grid_tiles'].append(len(tile_origins(work_failed, be.img_size, args.tile_overlap, layout='frame')))
        out['decode'].append(1e3 * (t1 - t0))
        out['publish'].append(1e3 * (t3 - t2))
        out['total'].append(1e3 * (t3 - t0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--relay', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--frames', type=int, default=40)
    add_dds_profile(ap)
    ap.add_argument('--size', default='1280x720')
    ap.add_argument('--profile', default='', help='a shipped parameter profile (cpu), as the launch argument profile:=')
    ap.add_argument('--model', default=None, help="the node parameter model_path (default: the profile's, else '')")
    ap.add_argument('--backend', default='auto')
    ap.add_argument('--ratio', type=float, default=0.1)
    ap.add_argument('--seed', type=int, default=0)
    add_flow_scale(ap)
    add_process_scale(ap)
    ap.add_argument('--precision', default=None, choices=PRECISIONS, help='the node parameter precision')
    ap.add_argument('--tile-overlap', type=int, default=None, help='the node parameter tile_overlap (default 8)')
    ap.set_defaults(flow_scale=None, process_scale=None)   # unset: the profile's, then the node's
    args = ap.parse_args()
    if args.relay:
        relay_main()
        return 0
    ros_env()
    files = node_params_files(args)
    w, h = (int(v) for v in args.size.split('x'))
    model = resolve_model(args.model)
    read_model_config(model)  # fail early on a bad model path
    source, frames = load_frames(max(2, args.frames // 2 + 1), w, h)
    os.environ.update(dds_env(args.dds_profile))  # camera stand-in and relay as the README advises camera drivers
    relay = subprocess.Popen([sys.executable, __file__, '--relay'])
    node = NodeProcess('bench_restore_node', {'model_path': str(model), 'backend': args.backend, 'device': 'cpu',
                                              'image_topics': [NODE_IN], 'diagnostics_period_s': 0.1,
                                              'flow_scale': args.flow_scale, 'precision': args.precision,
                                              'process_scale': args.process_scale,
                                              'tile_overlap': args.tile_overlap}, params=files,
                       dds_profile=args.dds_profile)
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

        def node_latency_ms() -> tuple[float, dict[str, float]]:
            """restore_node's own receive -> publish time for the last frame and its stages (/diagnostics)."""
            def settled():
                s = client.status(NODE_IN)
                return s and int(s['frames_out']) == sent[NODE_IN] and s
            st = client.wait_for(settled, 5)
            return float(st['last_latency_ms']), parse_stages(st['last_stage_ms'])

        for topic in (RELAY_IN, NODE_IN):                      # DDS warm-up (first sample waits a heartbeat)
            send(topic, frames[0]), send(topic, frames[0])
        relay_ms, pass_ms = [], []
        for i in range(args.frames):                           # interleaved, alternating order: same load
            img = frames[i % len(frames)]
            for topic in ((RELAY_IN, NODE_IN) if i % 2 else (NODE_IN, RELAY_IN)):
                (relay_ms if topic == RELAY_IN else pass_ms).append(1e3 * send(topic, img)[2])
        rng = np.random.default_rng(args.seed)
        rest_ms, inner_ms, telea_ms, fail_pct, cases = [], [], [], [], []
        node_stages = {}
        scores = {k: [] for k in ('smcvae', 'telea', 'flow', 'blend', 'copy')}
        for i in range(len(frames) - 1):
            reference, truth = frames[i], frames[i + 1]
            client.send_health(NODE_IN, NODE_IN)
            send(NODE_IN, reference)
            rois = random_rois(rng, h, w, args.ratio)
            failed = rois_to_mask(rois, h, w)
            client.send_health(NODE_IN, NODE_IN, rois=rois)
            damaged = np.where(failed[..., None], 0, truth).astype(np.uint8)
            out, _, lat = send(NODE_IN, damaged)
            rest_ms.append(1e3 * lat)
            total, stages_ms = node_latency_ms()
            inner_ms.append(total)
            stages_ms['other (decode, triage, locks)'] = total - sum(stages_ms.values())
            for k, v in stages_ms.items():
                node_stages.setdefault(k, []).append(v)
            scores['smcvae'].append(psnr(image_msg_to_array(out), truth, failed))
            t0 = time.perf_counter()
            telea = cv2.inpaint(damaged, failed.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
            telea_ms.append(1e3 * (time.perf_counter() - t0))
            cues = prepare_cues(reference, damaged, failed)
            for name, img in (('telea', telea), ('flow', flow_warp(reference, damaged, failed, cues)),
                              ('blend', blend(reference, damaged, failed, cues)), ('copy', reference)):
                scores[name].append(psnr(img, truth, failed))
            fail_pct.append(100 * failed.mean())
            cases.append((reference, damaged, failed))
        backend = client.status(NODE_IN).get('backend', '?')
    finally:
        client.close()
        node.stop()
        relay.send_signal(signal.SIGINT)
        try:
            relay.wait(10)
        except subprocess.TimeoutExpired:
            relay.kill()
    stages = stage_breakdown(cases, model, args)
    print(f'\nframes: {source}; profile {args.profile or "none"}; model {model.name}; backend {backend}; '
          f'flow_scale {args.flow_scale}; '
          f'process_scale {args.process_scale}; '
          f'tile_overlap {args.tile_overlap}; precision {args.precision}')
    print(f'{"measurement":<52} {"median":>7} {"p90":>7}  (ms, publish -> output received)')
    print(f'{"bare rclpy relay, pass-through":<52} {stats(relay_ms)}')
    print(f'{"restore_node, healthy pass-through":<52} {stats(pass_ms)}')
    print(f'{"  ratio restore_node / relay (median)":<52} {np.median(pass_ms) / np.median(relay_ms):7.2f}')
    print(f'{f"restore_node, {np.mean(fail_pct):.1f}% failed (blocks 24-120 px), round trip":<52} {stats(rest_ms)}')
    print(f'{"  of which inside restore_node":<52} {stats(inner_ms)}')
    for k, v in node_stages.items():
        print(f'{f"    {k}":<52} {stats(v)}')
    print(f'{"cv2.inpaint Telea r=3, same frames and masks":<52} {stats(telea_ms)}')
    print(f'{"  ratio node round trip / Telea (median)":<52} {np.median(rest_ms) / np.median(telea_ms):7.2f}')
    print(f'\nper-stage breakdown, same frames and masks, in-process ({np.median(stages["tiles"]):.0f} tiles median; '
          f'one frame-wide grid would need {np.median(stages["grid_tiles"]):.0f}):')
    for k in ('decode', 'align', 'tile', 'infer', 'merge', 'publish', 'total'):
        print(f'  {k:<50} {stats(stages[k]) if stages[k] else "      - (inside infer)"}')
    print(f'\nfailed-region PSNR (mean over {len(scores["smcvae"])} frames): '
          + ', '.join(f'{k} {np.mean(v):.2f} dB' for k, v in scores.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
