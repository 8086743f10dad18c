"""Soak: 4 cameras at 10 Hz into one restore_node for N seconds (640x480 rgb8 by default).

Every camera first sends a healthy frame (its reference); then two have an active failure of ~10% of
the frame (dead rectangles of 24-120 px anywhere) the whole time (every frame the worker takes is
restored; `max_reference_age_s` is raised so the reference stays usable), two stay healthy. Reports
per camera: frames published / received / node in, out, restored, superseded (a newer frame came before the
worker was free: published unchanged, flagged), flagged (all passed through with a failure), dropped;
the node's RSS and the end-to-end latency in the first and last 10 s (a growing queue would show in both).

    .venv/bin/python bench/node_soak.py [--seconds 60] [--model PATH] [--size 640x480] [--dds-profile none]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from smcvae_ros.restoration.frames import rois_to_mask
from smcvae_ros.engine.base import resolve_model
from smcvae_ros.restoration.masks import random_rois
from smcvae_ros.cli.harness import Client, NodeProcess, add_dds_profile, dds_env, image_msg, stamp_key
from smcvae_ros.ros.env import ros_env
from smcvae_ros.ros.topics import output_topic
from smcvae_ros.data.synthetic import generate_sequence


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=60.0)
    ap.add_argument('--rate', type=float, default=10.0)
    ap.add_argument('--cameras', type=int, default=4)
    ap.add_argument('--damaged', type=int, default=2, help='cameras with an active failure')
    ap.add_argument('--size', default='640x480')
    ap.add_argument('--model', default='')
    ap.add_argument('--backend', default='auto')
    add_dds_profile(ap)
    args = ap.parse_args()
    ros_env()
    w, h = (int(v) for v in args.size.split('x'))
    model = resolve_model(args.model)
    topics = [f'/soak{i}/image_raw' for i in range(args.cameras)]
    outs = [output_topic(t, 'image_restored') for t in topics]
    frames = generate_sequence(4, w, h, seed=3)
    rois = random_rois(np.random.default_rng(0), h, w, 0.1)
    failed = rois_to_mask(rois, h, w)
    damaged = [np.where(failed[..., None], 0, f).astype(np.uint8) for f in frames]
    node = NodeProcess('soak_restore_node', {'model_path': str(model), 'backend': args.backend, 'device': 'cpu',
                                             'image_topics': topics, 'diagnostics_period_s': 0.5,
                                             # the failure lasts the whole soak: its reference stays usable
                                             'max_reference_age_s': 3600.0},
                       dds_profile=args.dds_profile)
    os.environ.update(dds_env(args.dds_profile))     # the cameras' side, as the README advises camera drivers
    client = Client('soak_client')
    sent = {t: {} for t in topics}          # topic -> stamp key -> publish time
    rss = []
    try:
        for t, o in zip(topics, outs):      # outputs only (not masks): the client must keep up too
            client.received[o] = []
            client.subscribe(o, depth=20)
        assert client.wait_for(lambda: all(client.publisher(t).get_subscription_count() > 0
                                           and client.node.count_publishers(o) > 0 for t, o in zip(topics, outs)),
                               120, 0.1), f'node did not come up:\n{node.log()}'
        for t in topics:                    # warm-up + healthy reference (not counted), before any failure
            client.send_frame(t, image_msg(frames[0], 'rgb8', 0.5, t))
        for t in topics[:args.damaged]:
            client.send_health(t, t, rois=rois)
        start, n = time.monotonic(), 0
        stop = threading.Event()

        def sample_rss():
            while not stop.wait(1.0):
                rss.append((time.monotonic() - start, rss_mb(node.proc.pid)))
        threading.Thread(target=sample_rss, daemon=True).start()
        while time.monotonic() - start < args.seconds:
            stamp = 1.0 + n / args.rate
            for i, t in enumerate(topics):
                img = (damaged if i < args.damaged else frames)[n % len(frames)]
                msg = image_msg(img, 'rgb8', stamp, t)
                sent[t][stamp_key(msg)] = time.monotonic()
                client.publisher(t).publish(msg)
            n += 1
            time.sleep(max(0.0, start + n / args.rate - time.monotonic()))
        stop.set()
        client.wait_for(lambda: all(len(client.received[o]) > len(sent[t]) for t, o in zip(topics, outs)), 15, 0.1)
        time.sleep(1.0)                     # let the node report its final counters
        status = {t: client.status(t) for t in topics}
    finally:
        client.close()
        node.stop()
    print(f'\n{args.cameras} cameras x {args.rate:g} Hz x {args.seconds:g} s, {w}x{h} rgb8, {args.damaged} with '
          f'{100 * failed.mean():.1f}% failed pixels; backend {status[topics[0]].get("backend", "?")}')
    print(f'{"camera":<18} {"sent":>5} {"received":>8} {"node_in":>7} {"node_out":>8} {"restored":>8} '
          f'{"superseded":>10} {"flagged":>7} {"dropped":>7} {"lat_first10s":>12} {"lat_last10s":>11}  (median ms)')
    for t, o in zip(topics, outs):
        got = [(rt, m) for rt, m in client.received[o] if stamp_key(m) in sent[t]]
        lat = [(sent[t][stamp_key(m)] - start, rt - sent[t][stamp_key(m)]) for rt, m in got]
        first = [1e3 * lat_s for ts, lat_s in lat if ts < 10]
        last = [1e3 * lat_s for ts, lat_s in lat if ts >= args.seconds - 10]
        st = status[t]
        med = lambda v: f'{np.median(v):.0f}' if v else '-'  # noqa: E731
        print(f'{t:<18} {len(sent[t]):>5} {len(got):>8} {int(st.get("frames_in", 0)) - 1:>7} '
              f'{int(st.get("frames_out", 0)) - 1:>8} {st.get("frames_restored", "?"):>8} '
              f'{st.get("frames_superseded", "?"):>10} {st.get("frames_flagged", "?"):>7} '
              f'{st.get("frames_dropped", "?"):>7} '
              f'{med(first):>12} {med(last):>11}')
    print(f'{"window_s":>8} {"median_latency_ms":>17} {"node_rss_mb":>11}   (all cameras)')
    for w0 in range(0, int(args.seconds), 10):
        lat = [1e3 * (rt - sent[t][stamp_key(m)]) for t, o in zip(topics, outs) for rt, m in client.received[o]
               if stamp_key(m) in sent[t] and w0 <= sent[t][stamp_key(m)] - start < w0 + 10]
        mem = [r for ts, r in rss if w0 <= ts < w0 + 10]
        print(f'{w0:>4}-{w0 + 10:<3} {np.median(lat) if lat else float("nan"):>17.0f} '
              f'{max(mem) if mem else float("nan"):>11.0f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
