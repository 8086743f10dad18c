"""Per damaged frame: the OpenCV-cue path against the one frame graph, Telea timed in the same run.

Frames: the val highway clip resized to --size (a generated road sequence without ../shared), gap 1,
~10 % of each damaged frame failed as 24-120 px rectangles on no grid (as bench/node_latency.py).
Paths (each through `Restorer`, exactly as the node calls it, in-process):
    opencv:<backend>[-fp16]   the shipped cues model: OpenCV cues on the CPU, tiles through <backend>
    frame:<backend>[-fp16]    a `cues: tensor` model: cues + tiles + model + blend in one graph on <backend>
<backend> is torch-cpu, torch-cuda, onnxruntime-cpu or onnxruntime-cuda. Prints per-frame p50 / p99 ms,
the ratio to Telea and failed-region PSNR. With --cameras N --hz F it also replays N cameras at F Hz,
camera 0 failing, for each frame path, and reports whether every tick (N frames, one restored) fits
in the 1/F s budget: the "8 cameras x 30 Hz" check.

    .venv/bin/python bench/frame_graph.py --tensor-model models/smcvae_tile64_tensor.safetensors
        [--paths opencv:onnxruntime-cpu,frame:onnxruntime-cpu] [--frames 20] [--size 1280x720]
        [--cameras 8 --hz 30 --seconds 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_latency import load_frames  # noqa: E402

from smcvae_ros.cli import frame_size  # noqa: E402
from smcvae_ros.engine import create_backend  # noqa: E402
from smcvae_ros.evaluation.metrics import psnr  # noqa: E402
from smcvae_ros.restoration import RestorationSettings, Restorer, rois_to_mask  # noqa: E402
from smcvae_ros.restoration.masks import random_rois  # noqa: E402


def make_backend(path: str, shipped: str, tensor: str):
    kind, _, spec = path.partition(':')
    name, _, rest = spec.partition('-')
    device, _, precision = rest.partition('-')
    model = shipped if kind == 'opencv' else tensor
    be, _ = create_backend(name, model, device, fallback=False, precision=precision or 'fp32')
    return be


def damaged_frames(frames: list[np.ndarray], ratio: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    out = []
    for f in frames[1:]:
        failed = rois_to_mask(random_rois(rng, h, w, ratio), h, w)
        out.append((np.where(failed[..., None], 0, f).astype(np.uint8), failed, f))
    return out


def time_path(be, frames, damaged) -> tuple[list[float], float, dict]:
    """Per-frame ms (reference then damaged frame, gap 1), mean failed-region PSNR, median stage times."""
    r = Restorer(be, RestorationSettings(max_reference_age_s=1e9))
    times, scores, stages = [], [], []
    for i, (dmg, failed, truth) in enumerate(damaged):
        r.process('cam', frames[i], 'rgb8', 2.0 * i)
        t0 = time.perf_counter()
        res = r.process('cam', dmg, 'rgb8', 2.0 * i + 1, failed=failed)
        times.append(1e3 * (time.perf_counter() - t0))
        scores.append(psnr(res.image[failed], truth[failed]))
        stages.append(res.timings)
    med = {k: float(np.median([s.get(k, np.nan) for s in stages])) for k in ('align', 'tile', 'infer', 'merge')}
    return times[1:] or times, float(np.mean(scores)), med     # the first frame builds the graph


def sustained(be, frames, damaged, cameras: int, hz: float, seconds: float) -> tuple[float, float, int]:
    """cameras x hz, camera 0 failing every frame: (p50, p99 tick ms, ticks over budget)."""
    r = Restorer(be, RestorationSettings(max_reference_age_s=1e9))
    for c in range(cameras):
        r.process(f'cam{c}', frames[0], 'rgb8', 0.0)
    ticks, late = [], 0
    budget = 1e3 / hz
    n = int(seconds * hz)
    for k in range(n):
        dmg, failed, _ = damaged[k % len(damaged)]
        batch = [('cam0', dmg, 'rgb8', (k + 1) / hz, failed, False)]
        batch += [(f'cam{c}', frames[(k + 1) % len(frames)], 'rgb8', (k + 1) / hz, None, False)
                  for c in range(1, cameras)]
        t0 = time.perf_counter()
        res = r.process_batch(batch)
        dt = 1e3 * (time.perf_counter() - t0)
        assert res[0].status == 'restored', res[0].status
        ticks.append(dt)
        late += dt > budget
        time.sleep(max(0.0, budget - dt) / 1e3)
    return float(np.percentile(ticks, 50)), float(np.percentile(ticks, 99)), late


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--tensor-model', required=True, help='a cues: tensor model (.safetensors)')
    ap.add_argument('--model', default='', help="the OpenCV-cue model ('' = the shipped default)")
    ap.add_argument('--paths', default='opencv:onnxruntime-cpu,frame:onnxruntime-cpu,frame:torch-cpu')
    ap.add_argument('--frames', type=int, default=20)
    ap.add_argument('--size', type=frame_size, default=(1280, 720))
    ap.add_argument('--ratio', type=float, default=0.1)
    ap.add_argument('--cameras', type=int, default=0)
    ap.add_argument('--hz', type=float, default=30.0)
    ap.add_argument('--seconds', type=float, default=10.0)
    a = ap.parse_args()
    source, frames = load_frames(a.frames + 1, *a.size)
    damaged = damaged_frames(frames, a.ratio)
    telea = []
    for dmg, failed, _ in damaged:
        t0 = time.perf_counter()
        cv2.inpaint(dmg, failed.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        telea.append(1e3 * (time.perf_counter() - t0))
    t_med = float(np.median(telea))
    print(f'{source}, {len(damaged)} damaged frames, {100 * np.mean([d[1].mean() for d in damaged]):.1f} % failed '
          f'(blocks on no grid); cv2.inpaint Telea r=3 median {t_med:.1f} ms\n')
    print('| path | backend | p50 ms | p99 ms | / Telea | align | tile | infer | merge | failed-region PSNR |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    backends = {}
    for path in a.paths.split(','):
        try:
            be = backends[path] = make_backend(path, a.model, a.tensor_model)
        except Exception as e:  # noqa: BLE001 - an unavailable backend is a row, not the end of the run
            print(f'| {path} | unavailable: {type(e).__name__}: {str(e)[:120]} |')
            continue
        times, score, st = time_path(be, frames, damaged)
        p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
        align = '- (in infer)' if np.isnan(st['align']) else f'{st["align"]:.1f}'   # not visible inside the graph
        print(f'| {path} | {be.describe()} | {p50:.1f} | {p99:.1f} | {p50 / t_med:.2f} | {align} | '
              f'{st["tile"]:.1f} | {st["infer"]:.1f} | {st["merge"]:.1f} | {score:.2f} dB |')
    if a.cameras:
        print(f'\n{a.cameras} cameras x {a.hz:g} Hz for {a.seconds:g} s, camera 0 failing every frame '
              f'(budget {1e3 / a.hz:.1f} ms per tick):\n')
        print('| path | tick p50 ms | tick p99 ms | ticks over budget |\n|---|---|---|---|')
        for path, be in backends.items():
            p50, p99, late = sustained(be, frames, damaged, a.cameras, a.hz, a.seconds)
            print(f'| {path} | {p50:.1f} | {p99:.1f} | {late} of {int(a.seconds * a.hz)} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
