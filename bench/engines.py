"""Benchmark every available inference backend; prints one table.

Per backend: latency p50/p99 and throughput for batches of model-size tiles, a 1280x720 frame with
~10% failed pixels (`pixel_failure_mask` patterns, on no grid) through the Restorer, peak memory
(process RSS, CUDA max allocated), and the model's FLOPs per tile (torch.utils.flop_counter) so GPU
numbers can be held against the card's peak.
Each backend runs in its own subprocess so peak memory is per backend.

    .venv/bin/python bench/engines.py [--model PATH] [--backends torch-cpu,onnxruntime-cpu] [--iters 50]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from smcvae_ros.engine.base import default_model_path, resolve_model  # noqa: E402

# name -> (create_backend name, device, precision)
VARIANTS = {'torch-cpu': ('torch', 'cpu', 'fp32'), 'onnxruntime-cpu': ('onnxruntime', 'cpu', 'fp32'),
            'onnxruntime-cpu-int8': ('onnxruntime', 'cpu', 'int8'),
            'torch-cuda-fp32': ('torch', 'cuda', 'fp32'), 'torch-cuda-fp16': ('torch', 'cuda', 'fp16'),
            'onnxruntime-cuda': ('onnxruntime', 'cuda', 'fp32'), 'tensorrt-fp16': ('tensorrt', 'cuda', 'fp16'),
            'tensorrt-fp32': ('tensorrt', 'cuda', 'fp32')}


def available_variants() -> list[str]:
    import importlib.util

    import onnxruntime as ort
    import torch
    from smcvae_ros.engine.base import cpu_has_int8_dot
    names = ['torch-cpu', 'onnxruntime-cpu'] + (['onnxruntime-cpu-int8'] if cpu_has_int8_dot() else [])
    if torch.cuda.is_available():
        names += ['torch-cuda-fp32', 'torch-cuda-fp16']
        if 'CUDAExecutionProvider' in ort.get_available_providers():
            names.append('onnxruntime-cuda')
        if importlib.util.find_spec('tensorrt'):
            names += ['tensorrt-fp16', 'tensorrt-fp32']
    return names


def default_size_model(out_dir: Path) -> Path:
    """The shipped model if present, else a random SMCVAEConfig() model (same size, same cost)."""
    if default_model_path().is_file():
        return default_model_path()
    import torch

    from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model
    torch.manual_seed(0)
    model = SMCVAE(SMCVAEConfig())
    with torch.no_grad():
        model.head.weight.normal_(std=0.01)
    return save_model(model, out_dir / 'bench_default.safetensors')


def model_flops(model_path: Path) -> float:
    """FLOPs of one forward pass for one tile (matmul/conv/attention counted by torch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from smcvae_ros.engine.export import RestoreGraph, example_inputs
    from smcvae_ros.model import load_model
    model = load_model(model_path, 'cpu')
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        RestoreGraph(model)(*example_inputs(model.cfg, batch=1))
    return float(counter.get_total_flops())


def timed(fn, iters: int, warmup: int, sync) -> np.ndarray:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


def frame_inputs(pattern: str, ratio: float, seed: int = 0):
    """(reference, damaged frame, failed pixel mask) at 1280x720: real val frames if present."""
    from smcvae_ros.restoration.masks import pixel_failure_mask
    clip = REPO.parent / 'shared' / 'data' / 'val' / 'udacity_lanelines_solidwhiteright'
    rng = np.random.default_rng(seed)
    if clip.is_dir():
        import cv2

        from smcvae_ros.data.clips import read_rgb
        frames = sorted(clip.glob('*.jpg'))[:2]
        ref, cur = (cv2.resize(read_rgb(f), (1280, 720), interpolation=cv2.INTER_AREA) for f in frames)
    else:
        ref = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
        cur = np.roll(ref, 2, axis=1)
    return ref, cur, pixel_failure_mask(rng, 720, 1280, ratio, pattern)


def run_one(variant: str, model: Path, iters: int, warmup: int, batches: list[int], patterns: list[str],
            threads: int) -> dict:
    import torch

    from smcvae_ros.engine import create_backend
    from smcvae_ros.restoration.restorer import Restorer
    name, device, precision = VARIANTS[variant]
    if device == 'cpu' and threads:
        torch.set_num_threads(threads)
    backend, notes = create_backend(name, model, device=device, fallback=False, precision=precision,
                                    max_batch=max(batches), intra_op_threads=threads)
    cuda = device == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rows = []
    s, n = backend.img_size, (backend.img_size // backend.patch_size) ** 2
    rng = np.random.default_rng(0)
    for b in batches:
        ref, dmg = rng.random((b, backend.ref_chans, s, s), np.float32), rng.random((b, 4, s, s), np.float32)
        dmg[:, 3] = dmg[:, 3] < 0.3                        # failed-pixel channel
        mask = dmg[:, 3].reshape(b, -1, backend.patch_size, s // backend.patch_size, backend.patch_size)
        mask = mask.any(axis=(2, 4)).reshape(b, n).astype(np.float32)
        ms = timed(lambda: backend.restore(ref, dmg, mask), iters, warmup, sync)
        rows.append({'case': f'tiles b={b}', 'tiles': b, 'p50': float(np.percentile(ms, 50)),
                     'p99': float(np.percentile(ms, 99)), 'tiles_s': b / np.median(ms) * 1e3})
    for pattern in patterns:
        ref_img, cur, failed = frame_inputs(pattern, 0.10)
        restorer = Restorer(backend)
        restorer.process('cam', ref_img, 'rgb8', 0.0)
        res = restorer.process('cam', cur, 'rgb8', 0.1, failed=failed)
        if res.status != 'restored':
            raise RuntimeError(f'frame not restored: {res.status} {res.message}')
        tiles = res.timings['tiles']
        ms = timed(lambda: restorer.process('cam', cur, 'rgb8', 0.1, failed=failed), max(3, iters // 10), 1, sync)
        rows.append({'case': f'1280x720 10% {pattern}', 'tiles': tiles, 'p50': float(np.percentile(ms, 50)),
                     'p99': float(np.percentile(ms, 99)), 'tiles_s': tiles / np.median(ms) * 1e3})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return {'variant': variant, 'backend': backend.describe(), 'notes': notes, 'rows': rows,
            'peak_rss_mb': peak, 'cuda_peak_mb': cuda_peak,
            'device_name': torch.cuda.get_device_name() if cuda else 'cpu', 'threads': torch.get_num_threads()}


def print_table(results: list[dict], flops: float) -> None:
    print(f'\nFLOPs per tile (one forward pass): {flops / 1e9:.3f} GFLOP')
    head = f'{"backend":<22}{"device":<22}{"case":<24}{"tiles":>6}{"p50 ms":>9}{"p99 ms":>9}{"tiles/s":>9}' \
           f'{"GFLOP/s":>9}{"peak MB":>9}'
    print(head + '\n' + '-' * len(head))
    for r in results:
        if 'error' in r:
            print(f'{r["variant"]:<22}FAILED: {r["error"]}')
            continue
        mem = r['cuda_peak_mb'] if r['cuda_peak_mb'] is not None else r['peak_rss_mb']
        for row in r['rows']:
            print(f'{r["variant"]:<22}{r["device_name"][:21]:<22}{row["case"]:<24}{row["tiles"]:>6}{row["p50"]:>9.2f}'
                  f'{row["p99"]:>9.2f}{row["tiles_s"]:>9.1f}{row["tiles_s"] * flops / 1e9:>9.1f}{mem:>9.0f}')
    print('peak MB: CUDA max allocated by torch on GPU backends (TensorRT workspace not included), else process RSS')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', help='weights (default: shipped model, else a random default-size model)')
    ap.add_argument('--backends', help=f'comma list of {list(VARIANTS)} (default: all available)')
    ap.add_argument('--batches', default='1,4,8')
    ap.add_argument('--patterns', default='blocks,random', help='failure patterns for the 1280x720 frame')
    ap.add_argument('--iters', type=int, default=50)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--threads', type=int, default=0, help='CPU threads (0: library default)')
    ap.add_argument('--one', help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(',')]
    patterns = [p for p in args.patterns.split(',') if p]
    if args.one:
        res = run_one(args.one, resolve_model(args.model), args.iters, args.warmup, batches, patterns, args.threads)
        print(json.dumps(res))
        return 0
    tmp = tempfile.TemporaryDirectory()
    model = resolve_model(args.model) if args.model else default_size_model(Path(tmp.name))
    variants = args.backends.split(',') if args.backends else available_variants()
    results = []
    for v in variants:
        cmd = [sys.executable, __file__, '--one', v, '--model', str(model), '--iters', str(args.iters),
               '--warmup', str(args.warmup), '--batches', args.batches, '--patterns', args.patterns,
               '--threads', str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            results.append({'variant': v, 'error': (proc.stderr.strip().splitlines() or ['?'])[-1]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f'{v}: done', file=sys.stderr)
    print(f'model: {model}')
    print_table(results, model_flops(model))
    return 0


if __name__ == '__main__':
    sys.exit(main())
