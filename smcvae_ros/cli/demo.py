"""`smcvae demo`: run the real restore_node on a short sequence with injected camera failures.

Starts restore_node (CPU, shipped model unless --model) as launch_ros would, publishes each frame with
a camera-health DiagnosticArray naming its failed regions (dead rectangles anywhere, `random_rois`),
records the node's output, and prints the end-to-end latency and the failed-region PSNR of the
restoration and of copying the reference frame.
Writes out/demo/side_by_side.png (reference | damaged | restored | ground truth) and frames.csv.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from . import frame_size
from ..data.clips import SHARED_VAL, list_clips
from ..engine.base import resolve_model
from ..evaluation.metrics import psnr
from ..restoration.frames import rois_to_mask
from ..restoration.masks import random_rois

TOPIC = '/demo_cam/image_raw'


def add_parser(sub):
    p = sub.add_parser('demo', help='restore a sample sequence with injected failures through the real ROS 2 node')
    p.add_argument('--frames', type=Path, help='clip folder of frames (default: ../shared/data/val clip, '
                                               'else a generated road sequence)')
    p.add_argument('--num-frames', type=int, default=20)
    p.add_argument('--generated', action='store_true', help='use the generated sequence even if shared data exists')
    p.add_argument('--size', type=frame_size, default='640x360', help='WxH of the generated sequence')
    p.add_argument('--model', default='', help='model .safetensors (default: the shipped model)')
    p.add_argument('--backend', default='auto')
    p.add_argument('--device', default='cpu')
    p.add_argument('--failure-ratio', type=float, default=0.1, help='fraction of the frame failed in damaged frames '
                   '(dead rectangles of 24-120 px anywhere)')
    p.add_argument('--healthy-every', type=int, default=5, help='every Nth frame is healthy (new reference)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', type=Path, default=Path('out/demo'))
    p.set_defaults(func=run)


def load_sequence(args) -> tuple[str, list[np.ndarray]]:
    if args.frames is None and not args.generated and SHARED_VAL.is_dir():
        clips = [c for c in list_clips(SHARED_VAL) if len(c) >= args.num_frames and c.name != SHARED_VAL.name]
        if clips:
            args.frames = SHARED_VAL / clips[0].name
    if args.frames is not None:
        clip = list_clips(args.frames)[0]
        return str(args.frames), [clip.read(i) for i in range(min(args.num_frames, len(clip)))]
    from ..data.synthetic import generate_sequence
    w, h = args.size
    return f'generated road sequence {w}x{h} (seed {args.seed})', generate_sequence(args.num_frames, w, h, args.seed)


def side_by_side(panels: dict[str, np.ndarray], failed: np.ndarray) -> np.ndarray:
    """Labelled horizontal strip (BGR for cv2.imwrite); failed region outlined on the damaged panel."""
    tiles = []
    contours, _ = cv2.findContours(failed.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for name, rgb in panels.items():
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if name == 'damaged':
            cv2.drawContours(bgr, contours, -1, (0, 0, 255), 2)
        cv2.putText(bgr, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(bgr, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(bgr)
    return np.concatenate(tiles, axis=1)


def run(args) -> int:
    from ..ros.env import ros_env
    from .harness import Client, NodeProcess, image_msg
    from ..ros.messages import image_msg_to_array
    model = resolve_model(args.model)
    if not model.is_file():
        print(f'model not found: {model} (the shipped model; pass --model PATH)')
        return 2
    source, frames = load_sequence(args)
    if len(frames) < 2:
        print(f'need at least 2 frames, got {len(frames)} from {source}')
        return 2
    ros_env()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f'sequence: {source}, {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}')
    node = NodeProcess('smcvae_demo_node', {'model_path': str(model), 'backend': args.backend, 'device': args.device,
                                            'image_topics': [TOPIC], 'max_reference_age_s': 10.0},
                       log_path=args.out / 'restore_node.log')
    client = Client('smcvae_demo_client')
    rng = np.random.default_rng(args.seed)
    rows, shown = [], None
    try:
        if not client.connect(TOPIC, timeout=120):
            print(f'restore_node did not come up; log:\n{node.log()}')
            return 1
        client.send_frame(TOPIC, image_msg(frames[0], 'rgb8', 0.0, 'demo_cam'))   # DDS warm-up
        backend = client.wait_for(lambda: client.status(TOPIC).get('backend'), 5.0) or '?'
        print(f'restore_node up, backend {backend}')
        print(f'{"frame":>5} {"state":>8} {"failed%":>7} {"latency_ms":>10} {"psnr_restored":>13} {"psnr_refcopy":>12}')
        reference, failing = None, False
        h, w = frames[0].shape[:2]
        for i, truth in enumerate(frames):
            healthy = i % args.healthy_every == 0 or reference is None
            if healthy:
                rois = []
                if failing:
                    client.send_health(TOPIC, TOPIC)
            else:
                rois = random_rois(rng, h, w, args.failure_ratio)
                client.send_health(TOPIC, TOPIC, rois=rois)
            failing = not healthy
            failed = rois_to_mask(rois, h, w)
            damaged = np.where(failed[..., None], 0, truth).astype(np.uint8)
            out, mask, latency = client.send_frame(TOPIC, image_msg(damaged, 'rgb8', 1.0 + 0.1 * i, 'demo_cam'))
            restored = image_msg_to_array(out)
            row = {'frame': i, 'state': 'healthy' if healthy else 'damaged', 'failed_pct': 100 * failed.mean(),
                   'latency_ms': 1e3 * latency, 'psnr_restored': '', 'psnr_refcopy': ''}
            if healthy:
                reference = truth
            else:
                row['psnr_restored'] = psnr(restored, truth, failed)
                row['psnr_refcopy'] = psnr(reference, truth, failed)
                panels = {'reference': reference, 'damaged': damaged, 'restored': restored.copy(),
                          'ground truth': truth}
                shown = panels, failed
            rows.append(row)
            fmt = lambda v: f'{v:.2f}' if isinstance(v, float) else v  # noqa: E731
            print(f'{i:>5} {row["state"]:>8} {row["failed_pct"]:>7.1f} {row["latency_ms"]:>10.1f} '
                  f'{fmt(row["psnr_restored"]):>13} {fmt(row["psnr_refcopy"]):>12}')
    finally:
        client.close()
        node.stop()
    with open(args.out / 'frames.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    damaged_rows = [r for r in rows if r['state'] == 'damaged']
    if shown is not None:
        cv2.imwrite(str(args.out / 'side_by_side.png'), side_by_side(*shown))
    lat = [r['latency_ms'] for r in rows]
    print(f'latency: median {np.median(lat):.1f} ms, max {max(lat):.1f} ms (publish -> restored frame received)')
    if damaged_rows:
        print(f'failed-region PSNR over {len(damaged_rows)} damaged frames: restored '
              f'{np.mean([r["psnr_restored"] for r in damaged_rows]):.2f} dB, reference copy '
              f'{np.mean([r["psnr_refcopy"] for r in damaged_rows]):.2f} dB')
    print(f'wrote {args.out / "side_by_side.png"}, {args.out / "frames.csv"}, {args.out / "restore_node.log"}')
    return 0
