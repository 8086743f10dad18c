"""ONNX export of the frame graph (model.frame.FrameGraph) and its verification against PyTorch.

Graph I/O (H, W and the tile count T dynamic):
    reference, damaged (H,W,3) uint8 RGB; failed (H,W) uint8 (nonzero = failed);
    origins (T,2) int64 tile origins (restoration.tiles.tile_origins)  ->  restored (H,W,3) uint8
Written beside the weights as <name>.frame.onnx, with the same metadata as the tile graph (weights
sha256, model config) plus the op list (`smcvae_frame_ops`), checked against TENSORRT_OPS.
The check runs onnxruntime against PyTorch at two frame sizes (the trace must not have frozen one):
healthy pixels bit-exact, failed pixels within FRAME_TOLERANCE grey levels (float rounding of the
cues can move a value across a .5 boundary).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model import load_model
from ..model.frame import FrameGraph
from .base import BackendError, read_model_config
from .export import DEFAULT_OPSET, atomic_onnx, save_with_meta
from .graph import FRAME_INPUTS, META_MODEL_CONFIG, META_SAMPLING, META_WEIGHTS_SHA, OUTPUT, file_sha256, onnx_path_for

FRAME_TOLERANCE = 2          # grey levels, failed pixels only
META_GRAPH = 'smcvae_graph'
META_OPS = 'smcvae_frame_ops'
# ONNX ops of the frame graph and what TensorRT 10's ONNX parser does with them (onnx-tensorrt
# docs/operators.md, TensorRT 10.x): every op is parsed natively except ScatterElements with
# reduction=add, which the parser maps to TensorRT's shipped ScatterElements plugin (TRT >= 8.6);
# GridSample needs TRT >= 8.5 (bilinear, border padding, align_corners=1 are all supported modes).
TENSORRT_OPS = {
    'Abs', 'Add', 'And', 'AveragePool', 'Cast', 'Clip', 'Concat', 'Constant', 'ConstantOfShape', 'Conv', 'Div',
    'Equal', 'Erf', 'Exp', 'Expand', 'Flatten', 'Gather', 'Greater', 'GridSample', 'Identity',
    'LayerNormalization', 'Less', 'LessOrEqual', 'MatMul', 'Max', 'MaxPool', 'Min', 'Mul', 'Neg', 'Not', 'Or',
    'Pow', 'Range', 'Reciprocal', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceSum', 'Reshape',
    'Resize', 'Round', 'ScatterElements', 'Shape', 'Slice', 'Softmax', 'Split', 'Sqrt', 'Squeeze', 'Sub',
    'Tile', 'Transpose', 'Unsqueeze', 'Where',
}


def example_frames(height: int, width: int, ratio: float = 0.15, seed: int = 0, size: int = 64, overlap: int = 8):
    """A reference, a damaged frame (a shifted copy with blocks failed), the mask and the origins of
    size-px tiles: textured enough that the flow and the homography are exercised."""
    from ..data.synthetic import generate_sequence
    from ..restoration.masks import pixel_failure_mask
    from ..restoration.tiles import tile_origins
    frames = generate_sequence(3, width, height, seed=seed)[::2]
    failed = pixel_failure_mask(np.random.default_rng(seed), height, width, ratio, 'blocks')
    damaged = np.where(failed[..., None], 0, frames[1]).astype(np.uint8)
    origins = np.array(tile_origins(failed, size, overlap), np.int64).reshape(-1, 2)
    return frames[0], damaged, failed.astype(np.uint8), origins


def _torch_inputs(arrays):
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def export_frame_onnx(weights: str | Path, out: str | Path | None = None, opset: int = DEFAULT_OPSET,
                      check: bool = True, overlap: int = 8) -> Path:
    """Export (atomically) the frame graph of a `cues: tensor` model and, with check, verify it."""
    import onnx
    weights = Path(weights)
    out = Path(out) if out else onnx_path_for(weights, frame=True)
    model = load_model(weights, 'cpu')
    graph = FrameGraph(model, overlap).eval()
    dims = {'reference': {0: 'height', 1: 'width'}, 'damaged': {0: 'height', 1: 'width'},
            'failed': {0: 'height', 1: 'width'}, 'origins': {0: 'tiles'}, OUTPUT: {0: 'height', 1: 'width'}}
    with atomic_onnx(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')        # tracer warnings on shape arithmetic, the legacy exporter
            traced = _torch_inputs(example_frames(192, 320, size=graph.size, overlap=overlap))
            torch.onnx.export(graph, traced, tmp, input_names=list(FRAME_INPUTS), output_names=[OUTPUT],
                              dynamic_axes=dims, opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        ops = sorted({n.op_type for n in proto.graph.node})
        unknown = sorted(set(ops) - TENSORRT_OPS)
        if unknown:
            raise BackendError(f'frame graph uses ops not checked against TensorRT: {unknown}')
        meta = {META_WEIGHTS_SHA: file_sha256(weights), META_SAMPLING: '0', META_GRAPH: 'frame',
                META_MODEL_CONFIG: json.dumps(read_model_config(weights), sort_keys=True),
                META_OPS: ','.join(ops), 'smcvae_img_size': str(model.cfg.img_size),
                'smcvae_patch_size': str(model.cfg.patch_size), 'smcvae_tile_overlap': str(overlap)}
        save_with_meta(proto, tmp, meta)
        if check:
            save_with_meta(proto, tmp, {**meta, 'smcvae_check_max_abs_error': str(verify_frame_onnx(tmp, graph))})
    return out


def compare_frames(got: np.ndarray, expected: np.ndarray, damaged: np.ndarray, failed: np.ndarray) -> int:
    """Max grey-level difference on failed pixels; raises BackendError if a healthy pixel differs
    from the input or a failed one by more than FRAME_TOLERANCE."""
    f = failed > 0
    if not np.array_equal(got[~f], damaged[~f]):
        raise BackendError('frame graph changed healthy pixels')
    err = int(np.abs(got.astype(np.int16) - expected.astype(np.int16))[f].max(initial=0))
    if err > FRAME_TOLERANCE:
        raise BackendError(f'frame graph check failed: {err} grey levels > {FRAME_TOLERANCE} on failed pixels')
    return err


def verify_frame_onnx(onnx_file: str | Path, graph: FrameGraph,
                      sizes: tuple[tuple[int, int], ...] = ((192, 320), (260, 452))) -> int:
    """Max failed-pixel error of onnxruntime (CPU) vs PyTorch over frames of each size."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    worst = 0
    for i, (h, w) in enumerate(sizes):
        arrays = example_frames(h, w, seed=i + 1, size=graph.size, overlap=graph.overlap)
        with torch.no_grad():
            expected = graph(*_torch_inputs(arrays)).numpy()
        got = sess.run([OUTPUT], dict(zip(FRAME_INPUTS, arrays)))[0]
        worst = max(worst, compare_frames(got, expected, arrays[1], arrays[2]))
    return worst
