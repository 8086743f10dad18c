"""The cues two ways: OpenCV (restoration.align: Telea, DIS MEDIUM + flow choice, RANSAC homography)
against the tensor cues of the frame graph (model.cues: push-pull, LK, IRLS homography), each copied
into the holes as a restoration of its own: failed-region PSNR on the evaluation's pairs and masks
(`smcvae eval`'s protocol), and the time to make all four cues per frame (torch CPU).

    .venv/bin/python bench/tensor_cues.py [--pairs 8] [--data ../shared/data]

Settings: val highway random 0.5/3, blocks 0.5/3 and 0.9/3; held-out dashcam random 0.5/3; held-out
KITTI blocks 0.5/3; train Udacity random 0.3/1. Without the data folder: the bundled test frames.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from smcvae_ros.data.clips import list_clips
from smcvae_ros.evaluation.evaluate import build_pairs, choose_targets
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.model.cues import numpy_cues
from smcvae_ros.restoration.align import prepare_cues

SETTINGS = [('val/udacity_lanelines_solidwhiteright', 'random', 0.5, 3),
            ('val/udacity_lanelines_solidwhiteright', 'blocks', 0.5, 3),
            ('val/udacity_lanelines_solidwhiteright', 'blocks', 0.9, 3),
            ('val/sullychen_parking_garage', 'random', 0.5, 3),
            ('train/kitti_odom_vslam_seq1_left_gray', 'blocks', 0.5, 3),
            ('train/udacity_ch2_run01', 'random', 0.3, 1)]
BUNDLED = Path(__file__).resolve().parent.parent / 'test' / 'data' / 'udacity_solidwhiteright'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pairs', type=int, default=8)
    ap.add_argument('--data', default=str(Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'))
    a = ap.parse_args()
    torch.set_num_threads(2)
    data = Path(a.data)
    settings = SETTINGS if data.is_dir() else [(str(BUNDLED), 'random', 0.5, 3), (str(BUNDLED), 'blocks', 0.5, 3)]
    print('| clip | pattern | ratio / gap | Telea → push-pull | DIS flow-warp → LK flow-warp '
          '| RANSAC → IRLS homography | OpenCV / tensor cue time |')
    print('|---|---|---|---|---|---|---|')
    for clip, pattern, ratio, gap in settings:
        root = data / clip if data.is_dir() else Path(clip)
        pairs = build_pairs(choose_targets(list_clips([root]), a.pairs, 10, 0), ratio, gap, pattern, 0)
        rows, times = [], []
        for p in pairs:
            score = lambda img: psnr(img[p.failed], p.target[p.failed])  # noqa: E731
            t0 = time.perf_counter()
            c = prepare_cues(p.ref, p.damaged, p.failed, hom=True)
            t1 = time.perf_counter()
            (warped, _, hom), fill = numpy_cues(p.ref, p.damaged, p.failed, 3)
            times.append((t1 - t0, time.perf_counter() - t1))
            rows.append([score(c.fill), score(fill), score(c.warped), score(warped), score(c.hom), score(hom)])
        m = np.mean(rows, 0)
        t = 1e3 * np.median(times, 0)
        h, w = pairs[0].target.shape[:2]
        print(f'| {Path(clip).name} ({w}x{h}) | {pattern} | {ratio} / {gap} | {m[0]:.2f} → {m[1]:.2f} '
              f'| {m[2]:.2f} → {m[3]:.2f} | {m[4]:.2f} → {m[5]:.2f} | {t[0]:.0f} / {t[1]:.0f} ms |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
