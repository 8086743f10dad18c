"""Vehicle check of the TensorRT engine: build (or load from cache), run, compare with torch fp32, time.

Run on the vehicle after installing TensorRT 10 (see README "Vehicle install"):
    python3 bench/trt_check.py --clips /path/to/clip_frames [--precision fp16] [--max-batch 32]
PASS when, on real tiles from the clip (30% failed patches), the engine's PSNR on the failed region is
within 0.1 dB of PyTorch fp32. Prints build/load time, max abs difference and latency p50/p99 per batch.
`--backend` checks another backend the same way (e.g. torch fp16, or onnxruntime on a CPU machine).
Exit code 0 = PASS, 1 = FAIL, 2 = could not run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOLERANCE_DB = 0.1


def real_tiles(clips: Path, cfg: dict, n: int, seed: int = 0):
    from smcvae_ros.data.clips import list_clips
    from smcvae_ros.training.pairs import PairSpec, fixed_batch
    spec = PairSpec(img_size=cfg['img_size'], patch_size=cfg['patch_size'], align=cfg.get('align', 'none'),
                    ref_raw=cfg.get('ref_raw', False), ref_hom=cfg.get('ref_hom', False))
    return [t.numpy() for t in fixed_batch(list_clips(clips), spec, n, seed, ratio=0.3)]


def failed_region_psnr(out: np.ndarray, target: np.ndarray, damaged: np.ndarray) -> float:
    """PSNR over the failed pixels (the damaged input's 4th channel) of a batch of tiles."""
    from smcvae_ros.evaluation.metrics import psnr
    px = (damaged[:, 3:4] > 0.5).repeat(3, 1)
    q = lambda x: np.clip(np.rint(x * 255.0), 0, 255)  # noqa: E731 - compare 8-bit images, as published
    return psnr(q(out), q(target), px)


def latency(backend, tiles, batch: int, iters: int, sync) -> tuple[float, float]:
    ref, dmg, _, mask = (t[:batch] for t in tiles)
    for _ in range(3):
        backend.restore(ref, dmg, mask)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        backend.restore(ref, dmg, mask)
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv=None) -> int:
    from smcvae_ros.engine.base import MAX_BATCH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', help='weights .safetensors (default: the shipped model)')
    ap.add_argument('--clips', required=True, help='a clip folder (frames in time order) or a folder of clips')
    ap.add_argument('--backend', default='tensorrt', choices=['tensorrt', 'torch', 'onnxruntime'])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--precision', default='fp16', choices=['fp16', 'fp32'])
    ap.add_argument('--max-batch', type=int, default=MAX_BATCH)
    ap.add_argument('--cache-dir', help='engine cache folder (default: ~/.cache/smcvae_ros/engines)')
    ap.add_argument('--force', action='store_true', help='rebuild the engine even if cached')
    ap.add_argument('--tiles', type=int, default=64, help='number of real tiles to compare on')
    ap.add_argument('--iters', type=int, default=100)
    args = ap.parse_args(argv)

    import torch

    from smcvae_ros.engine import create_backend
    from smcvae_ros.engine.base import read_model_config, resolve_model
    model = resolve_model(args.model)
    cfg = read_model_config(model)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        print(f'FAIL: no CUDA GPU visible to torch {torch.__version__} (install the CUDA build of torch)')
        return 2
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f'torch {torch.__version__}, device {torch.cuda.get_device_name() if cuda else "cpu"}, model {model}')
    try:
        import tensorrt
        print(f'TensorRT {tensorrt.__version__}')
    except ImportError:
        print('TensorRT not importable')
    t = time.perf_counter()
    try:
        backend, _ = create_backend(args.backend, model, device=args.device, fallback=False, precision=args.precision,
                                    max_batch=args.max_batch, engine_cache_dir=args.cache_dir,
                                    force_engine_rebuild=args.force)
    except Exception as e:  # noqa: BLE001 - report and exit 2
        print(f'FAIL: {args.backend} could not be loaded: {e}')
        return 2
    print(f'{backend.describe()} ready in {time.perf_counter() - t:.1f}s')
    reference, _ = create_backend('torch', model, device=args.device, fallback=False, precision='fp32',
                                  max_batch=args.max_batch)

    tiles = real_tiles(Path(args.clips), cfg, args.tiles)
    ref, dmg, target, mask = tiles
    out, ref_out = backend.restore(ref, dmg, mask), reference.restore(ref, dmg, mask)
    p, p_ref = (failed_region_psnr(o, target, dmg) for o in (out, ref_out))
    diff = float(np.abs(out - ref_out).max())
    print(f'failed-region PSNR on {len(ref)} real tiles: {backend.describe()} {p:.3f} dB, torch fp32 {p_ref:.3f} dB '
          f'(delta {p - p_ref:+.3f} dB, max abs diff {diff:.2e})')
    print(f'{"batch":>5} {"p50 ms":>8} {"p99 ms":>8} {"torch fp32 p50":>15}')
    for b in sorted({1, 4, args.max_batch}):
        (p50, p99) = latency(backend, tiles, b, args.iters, sync)
        r50 = latency(reference, tiles, b, args.iters, sync)[0]
        print(f'{b:>5} {p50:>8.2f} {p99:>8.2f} {r50:>15.2f}')
    ok = abs(p - p_ref) <= TOLERANCE_DB
    verdict = 'PASS' if ok else 'FAIL'
    print(f'{verdict}: |delta PSNR| {abs(p - p_ref):.3f} dB {"<=" if ok else ">"} {TOLERANCE_DB} dB')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
