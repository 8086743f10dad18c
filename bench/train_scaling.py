"""Training throughput: one process vs torchrun with N ranks (gloo on CPU, NCCL on GPUs); prints one table.

Runs: one process at the per-rank batch and at the effective batch (with the per-rank thread count),
N ranks, and one process using all cores as intra-op threads instead of ranks.

Each run is `smcvae train` for --steps steps (rank 0 logs every 20 steps; validation only at the end);
steps/s is measured between the first and last logged step, so start-up, data indexing and the first
steps are excluded. Data: --data (frames folder, video or bag), default ../shared/data/train when
present, else a generated road video.

    .venv/bin/python bench/train_scaling.py [--ranks 2] [--steps 100] [--batch 16] [--device cpu] [--data PATH]
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def generated_video(folder: Path) -> Path:
    import cv2

    from smcvae_ros.data.synthetic import generate_sequence
    path = folder / 'road.mp4'
    frames = generate_sequence(60, 640, 360, seed=0)
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (640, 360))
    for f in frames:
        video.write(f[..., ::-1])
    video.release()
    return path


def run(ranks: int, batch: int, threads: int, args, data: Path, out: Path) -> float:
    """steps/s of one training run."""
    train = ['train', '--config', 'config/train.yaml', f'train_dir={data}', f'val_dir={data}', f'out_dir={out}',
             f'steps={args.steps}', f'batch_size={batch}', f'val_every={10 * args.steps}', 'val_samples=8',
             f'ckpt_every={10 * args.steps}', f'workers={args.workers}', f'device={args.device}', f'threads={threads}']
    if ranks == 1:
        cmd = [sys.executable, '-m', 'smcvae_ros.cli', *train]
    else:
        cmd = [str(Path(sys.executable).parent / 'torchrun'), '--standalone', '--nproc_per_node', str(ranks),
               '-m', 'smcvae_ros.cli', *train]
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': str(threads)}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)} failed:\n{res.stderr[-3000:]}')
    rows = [r for r in csv.DictReader(open(out / 'metrics.csv')) if r['time_s']]
    (s0, t0), (s1, t1) = ((int(r['step']), float(r['time_s'])) for r in (rows[0], rows[-1]))
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ranks', type=int, default=2)
    p.add_argument('--steps', type=int, default=100, help='>= 60 (logged every 20 steps)')
    p.add_argument('--batch', type=int, default=16, help='per-rank batch of the multi-rank runs')
    p.add_argument('--device', default='cpu')
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--data', type=Path)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shared = REPO.parent / 'shared' / 'data' / 'train'
        data = args.data or (shared if shared.is_dir() else generated_video(tmp))
        n, b = args.ranks, args.batch
        per_rank = max(1, cores // n)
        cases = [(f'1 process, batch {b}, {per_rank} thread(s)', 1, b, per_rank),
                 (f'1 process, batch {n * b}, {per_rank} thread(s)', 1, n * b, per_rank),
                 (f'{n} ranks x batch {b} (effective batch {n * b}), {per_rank} thread(s) each', n, b, per_rank),
                 (f'1 process, batch {n * b}, {cores} threads (intra-op threads instead of ranks)', 1, n * b, cores)]
        print(f'data: {data}; {args.steps} steps; device {args.device}; {cores} CPU cores\n')
        print('| run | steps/s | samples/s |\n|---|---|---|')
        for i, (label, ranks, batch, threads) in enumerate(cases):
            sps = run(ranks, batch, threads, args, data, tmp / f'run{i}')
            print(f'| {label} | {sps:.2f} | {sps * batch * ranks:.1f} |', flush=True)


if __name__ == '__main__':
    main()
