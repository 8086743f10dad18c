"""Where the model's time goes on onnxruntime CPU: per op type and per node, for one call of N tiles.

onnxruntime's own profiler over `--iters` calls of the tile graph (after warm-up), the model's FLOPs
(torch FlopCounterMode, as bench/engines.py) and the rate they run at. Use it to see what a cheaper
model has to cut: the table is per op type (share of kernel time, ms per call, nodes) and the
`--top` most expensive nodes by name (their ONNX scope names the module: /encoder/stem/..., ...).

    .venv/bin/python bench/model_profile.py [--model PATH] [--batch 32] [--iters 10] [--threads 0] [--top 12]
                                            [--precision fp32|int8]

--precision int8 profiles the graph `precision auto` runs on a CPU with int8 dot products (the weight
MatMuls quantized, engine.onnxruntime_backend.quantized_onnx).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import default_size_model, model_flops  # noqa: E402

from smcvae_ros.engine.export import example_inputs  # noqa: E402
from smcvae_ros.engine.graph import ensure_onnx  # noqa: E402
from smcvae_ros.engine.onnxruntime_backend import quantized_onnx  # noqa: E402
from smcvae_ros.model import load_model  # noqa: E402

KERNEL = '_kernel_time'
WARMUP = 3                 # untimed calls first (their kernels are left out of the shares)


def profile(onnx_path: Path, feeds: dict, iters: int, threads: int) -> tuple[float, list[dict]]:
    """(ms per call over `iters` timed calls, the profiler's kernel events of those calls)."""
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')   # as the backend runs it
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, 'model')
        sess = ort.InferenceSession(str(onnx_path), opts, providers=['CPUExecutionProvider'])
        for _ in range(WARMUP):
            sess.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(iters):
            sess.run(None, feeds)
        ms = 1e3 * (time.perf_counter() - t0) / iters
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted(e['ts'] for e in events if e.get('cat') == 'Session' and e['name'] == 'model_run')
    start = runs[WARMUP]                                        # the timed calls' kernels only
    kernels = [e for e in events if e.get('cat') == 'Node' and e['name'].endswith(KERNEL) and e['ts'] >= start]
    return ms, kernels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', default='')
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--threads', type=int, default=0, help='onnxruntime intra-op threads (0: its default)')
    ap.add_argument('--top', type=int, default=12)
    ap.add_argument('--precision', choices=('fp32', 'int8'), default='fp32')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(a.model) if a.model else default_size_model(Path(tmp))
        onnx_path = ensure_onnx(weights, tmp)
        if a.precision == 'int8':
            onnx_path = quantized_onnx(onnx_path, tmp)
        cfg = load_model(weights, 'cpu').cfg
        inputs = dict(zip(('ref', 'damaged', 'patch_mask'), (t.numpy() for t in example_inputs(cfg, a.batch))))
        ms, kernels = profile(onnx_path, inputs, a.iters, a.threads)
        gflop = a.batch * model_flops(weights) / 1e9
    calls = a.iters
    by_op, nodes, by_name = defaultdict(float), defaultdict(set), defaultdict(float)
    for e in kernels:
        op, name = e['args']['op_name'], e['name'][:-len(KERNEL)]
        by_op[op] += e['dur'] / 1e3 / calls
        nodes[op].add(name)
        by_name[name] += e['dur'] / 1e3 / calls
    total = sum(by_op.values())
    print(f'{weights.name} ({a.precision}), {a.batch} tiles per call, '
          f'onnxruntime CPU ({a.threads or "default"} threads): '
          f'{ms:.1f} ms per call, {gflop:.2f} GFLOP, {gflop / ms * 1e3:.0f} GFLOP/s; kernels {total:.1f} ms')
    print('\n| op type | share | ms per call | nodes |\n|---|---|---|---|')
    for op, v in sorted(by_op.items(), key=lambda kv: -kv[1]):
        if v >= 0.005 * total:
            print(f'| {op} | {100 * v / total:.1f} % | {v:.2f} | {len(nodes[op])} |')
    print(f'\n| node (top {a.top}) | ms per call |\n|---|---|')
    for name, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f'| `{name}` | {v:.2f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
