"""`smcvae export` (ONNX, verified against PyTorch) and `smcvae build-engine` (TensorRT engine cache)."""
from __future__ import annotations

import logging
import sys

from .base import MAX_BATCH, BackendError, resolve_model


def run_export(args) -> int:
    from ..data.clips import SHARED_VAL
    from .export import export_onnx
    from .frame_export import FRAME_TOLERANCE, export_frame_onnx
    from .graph import onnx_metadata
    model = resolve_model(args.model)
    try:
        if args.frame:
            out = export_frame_onnx(model, args.out, opset=args.opset, check=True)
        else:
            clips = args.clips or (SHARED_VAL if SHARED_VAL.is_dir() else None)
            out = export_onnx(model, args.out, opset=args.opset, sampling=args.sampling, check=True,
                              clips=clips, require_real=args.check)
    except (BackendError, FileNotFoundError, ValueError) as e:
        print(f'export failed: {e}', file=sys.stderr)
        return 1
    meta = onnx_metadata(out)
    err = meta['smcvae_check_max_abs_error']
    if args.frame:
        print(f'exported {out} (frame graph, opset {args.opset}); ops: {meta["smcvae_frame_ops"]}')
        print(f'check: onnxruntime vs PyTorch, healthy pixels bit-exact, failed pixels within {err} grey '
              f'levels (<= {FRAME_TOLERANCE}) at two frame sizes')
    else:
        print(f'exported {out} (opset {args.opset}, weights sha256 {meta["smcvae_weights_sha256"][:16]}...)')
        print(f'check: onnxruntime vs PyTorch max abs error {err} (<= 1e-4) on {meta["smcvae_check_tiles"]}')
    return 0


def run_build_engine(args) -> int:
    from .tensorrt_backend import TensorRTBackend
    model = resolve_model(args.model)
    try:
        backend = TensorRTBackend(model, precision=args.precision, max_batch=args.max_batch,
                                  engine_cache_dir=args.cache_dir, force_engine_rebuild=args.force,
                                  workspace_mb=args.workspace_mb)
    except (BackendError, FileNotFoundError) as e:
        print(f'build-engine failed: {e}', file=sys.stderr)
        return 1
    print(f'engine {backend.engine_path} ({backend.engine_status}); {backend.describe()}')
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser('export', help='export the model to ONNX (opset >= 17) and verify it with onnxruntime')
    p.add_argument('--model', help='weights .safetensors (default: the shipped model)')
    p.add_argument('--out', help='output .onnx (default: next to the weights, <name>.onnx)')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--sampling', action='store_true', help='export the sampling graph (latent noise input)')
    p.add_argument('--frame', action='store_true',
                   help='export the frame graph of a cues: tensor model (<name>.frame.onnx: frames in, frame out)')
    p.add_argument('--check', action='store_true',
                   help='require the check (onnxruntime vs PyTorch, <= 1e-4; always run) to use real tiles')
    p.add_argument('--clips', help='clip folder for the check (default: ../shared/data/val if present)')
    p.set_defaults(func=_logged(run_export))

    b = sub.add_parser('build-engine', help='build (or validate) the cached TensorRT engine for this GPU')
    b.add_argument('--model', help='weights .safetensors (default: the shipped model)')
    b.add_argument('--precision', choices=['fp16', 'fp32'], default='fp16')
    b.add_argument('--max-batch', type=int, default=MAX_BATCH,
                   help='largest batch of the optimization profile (the node parameter max_batch)')
    b.add_argument('--cache-dir', help='engine cache folder (default: ~/.cache/smcvae_ros/engines)')
    b.add_argument('--workspace-mb', type=int, default=1024)
    b.add_argument('--force', action='store_true', help='rebuild even if a valid cached engine exists')
    b.set_defaults(func=_logged(run_build_engine))


def _logged(func):
    def wrapper(args):
        logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
        return func(args)
    return wrapper
