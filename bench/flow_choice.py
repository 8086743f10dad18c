"""The flow-warp cue with and without the reference-filled second flow (`restoration.align.estimate_flow`).

When >= REF_FILL_MIN_FAILED of a frame failed, a second DIS flow is computed with the holes filled by the
reference instead of Telea, and the flow whose warp better matches the healthy pixels is kept. This
prints, per clip / pattern / mask ratio (frame gap 3, the `smcvae eval` pairs and masks), the masked
PSNR of a plain copy, of the flow-warp from the Telea-filled frame only (session 8) and of the
flow-warp with the choice, and how often the reference-filled flow was chosen; then what the choice
costs: `prepare_cues` (with the homography cue, as the shipped model needs) at 1280x720 with blocks.

    .venv/bin/python bench/flow_choice.py [--clips DIR,DIR] [--pairs 6] [--ratios 0.3,0.5,0.7,0.9]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from smcvae_ros.data.clips import SHARED_VAL, list_clips, read_rgb
from smcvae_ros.evaluation.evaluate import build_pairs, choose_targets, pair_failure_mask
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.restoration import align

TEST_FRAMES = Path(__file__).resolve().parents[1] / 'test' / 'data' / 'udacity_solidwhiteright'
NO_CHOICE = 2.0      # a REF_FILL_MIN_FAILED no failed fraction reaches: the Telea-filled flow only
CLIPS = ('val/udacity_lanelines_solidwhiteright', 'val/sullychen_parking_garage',
         'train/kitti_odom_vslam_seq1_left_gray', 'train/udacity_ch2_run01')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--clips', default=','.join(str(SHARED_VAL.parent / c) for c in CLIPS))
    ap.add_argument('--pairs', type=int, default=6)
    ap.add_argument('--ratios', default='0.3,0.5,0.7,0.9')
    ap.add_argument('--patterns', default='random,blocks')
    ap.add_argument('--gap', type=int, default=3)
    args = ap.parse_args()
    print('| clip | pattern | ratio | copy | flow, Telea-filled only | flow, with the choice | Δ '
          '| reference-filled chosen |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for clip_dir in args.clips.split(','):
        targets = choose_targets(list_clips(clip_dir), args.pairs, 10, seed=0)
        for pattern in args.patterns.split(','):
            for ratio in (float(r) for r in args.ratios.split(',')):
                rows = []
                for p in build_pairs(targets, ratio, args.gap, pattern, seed=0):
                    fill = align.telea_fill(p.damaged, p.failed)
                    chosen = align.estimate_flow(p.ref, fill, p.failed)
                    with mock.patch.object(align, 'REF_FILL_MIN_FAILED', NO_CHOICE):
                        telea_only = align.estimate_flow(p.ref, fill, p.failed)
                    rows.append((psnr(p.ref, p.target, p.failed),
                                 psnr(align.warp(p.ref, telea_only), p.target, p.failed),
                                 psnr(align.warp(p.ref, chosen), p.target, p.failed),
                                 not np.array_equal(chosen, telea_only)))
                copy, old, new, picked = np.mean(rows, 0)
                print(f'| {clip_dir.rstrip("/").split("/")[-1]} | {pattern} | {ratio:.1f} | {copy:.2f} | {old:.2f} | '
                      f'{new:.2f} | {new - old:+.2f} | {picked:.0%} |', flush=True)
    timing()


def timing(ratios=(0.1, 0.3, 0.5, 0.9), repeats=6) -> None:
    """Median `prepare_cues` time at 1280x720 (the bundled test frames, gap 3), with and without the choice."""
    frames = [cv2.resize(read_rgb(p), (1280, 720)) for p in sorted(TEST_FRAMES.glob('*.jpg'))[:4]]
    print('\n| blocks failed | prepare_cues, Telea-filled flow only | with the choice |\n| --- | --- | --- |')
    for ratio in ratios:
        times = {NO_CHOICE: [], align.REF_FILL_MIN_FAILED: []}
        for i in range(repeats + 1):           # interleaved, so both see the same machine state
            failed = pair_failure_mask(720, 1280, ratio, 'blocks', 0, i)
            damaged = np.where(failed[..., None], 0, frames[3]).astype(np.uint8)
            for limit, got in times.items():
                with mock.patch.object(align, 'REF_FILL_MIN_FAILED', limit):
                    t0 = time.perf_counter()
                    align.prepare_cues(frames[0], damaged, failed, hom=True)
                    got.append(time.perf_counter() - t0)
        ms = {limit: 1e3 * np.median(got[1:]) for limit, got in times.items()}
        print(f'| {ratio:.0%} | {ms[NO_CHOICE]:.0f} ms | {ms[align.REF_FILL_MIN_FAILED]:.0f} ms |', flush=True)


if __name__ == '__main__':
    main()
