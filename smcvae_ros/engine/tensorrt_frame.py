"""The frame graph (`<model>.frame.onnx`) as one TensorRT 10 engine, built and cached by the tile
engine's path: uint8 frames and int64 tile origins in, the uint8 restored frame out.

One optimization profile covers frame sizes from one tile to 3840x2160 (opt 1280x720) and 1 to 4096
tiles. Under FP16 the cues stay FP32 (as torch's autocast keeps them): the ONNX names every layer of
the model's submodules by its scope (`/encoder/...`, `/dec_blocks.0/...`); layers outside any scope
are the cues, the tile gather and the blend, and are pinned to FP32 with LayerNorm and softmax.
Written against the TensorRT 10 API and tested with the test double only (TensorRT cannot be installed
on this project's machines): GridSample needs TensorRT >= 8.5, ScatterElements with reduction=add the
TensorRT plugin or a release whose scatter layer reduces (docs/frame_graph.md).
"""
from __future__ import annotations

from .cache import EngineCache, EngineKey, sha256_bytes
from .graph import ensure_onnx

FRAME_HW = ((0, 0), (720, 1280), (2160, 3840))   # (min, opt, max) frame height, width; min = one tile
FRAME_TILES = (1, 64, 4096)                       # (min, opt, max) tiles per frame
FRAME_IO = {'reference': 'uint8', 'damaged': 'uint8', 'failed': 'uint8', 'origins': 'int64',
            'restored': 'uint8'}


def frame_profile_shapes(img_size: int) -> dict[str, tuple]:
    """Input name -> (min, opt, max) shapes: frames of at least one tile, up to 4K; the tile count."""
    hw = [(max(h, img_size), max(w, img_size)) for h, w in FRAME_HW]
    return {'reference': tuple((h, w, 3) for h, w in hw), 'damaged': tuple((h, w, 3) for h, w in hw),
            'failed': tuple(hw), 'origins': tuple((t, 2) for t in FRAME_TILES)}


def keep_cues_fp32(trt, network) -> int:
    """Pin the float layers outside the model's scopes (the cues, gather, blend), LayerNorm and softmax
    to FP32; returns how many were pinned."""
    from .tensorrt_backend import keep_fp32_layers
    floats = {trt.float32, trt.float16}
    pinned = keep_fp32_layers(trt, network)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name.lstrip('/').count('/') == 0 and all(
                layer.get_output(j).dtype in floats for j in range(layer.num_outputs)):
            layer.precision = trt.float32
            pinned += 1
    return pinned


def frame_key(trt, onnx_path, precision: str, img_size: int, gpu: tuple[str, str]) -> EngineKey:
    """The cache key; the profile field holds the tile range, then the min/opt/max frame sizes."""
    shapes = frame_profile_shapes(img_size)
    profile = (*FRAME_TILES, *(d for hw in shapes['failed'] for d in hw))
    return EngineKey(onnx_sha256=sha256_bytes(onnx_path.read_bytes()), tensorrt_version=trt.__version__,
                     gpu_name=gpu[0], compute_capability=gpu[1], precision=precision, profile=profile,
                     img_size=img_size)


def build_frame_engine(trt, onnx_path, precision: str, img_size: int, workspace_mb: int, logger=None) -> bytes:
    from .tensorrt_backend import build_from_onnx
    return build_from_onnx(trt, onnx_path, precision, frame_profile_shapes(img_size), FRAME_IO, workspace_mb,
                           logger, pin=keep_cues_fp32)


def frame_runner(backend, trt, runtime, cache: EngineCache, gpu: tuple[str, str], engine_cache_dir,
                 workspace_mb: int, logger, force: bool = False):
    """(EngineRunner, how) for the backend's `cues: tensor` model: its frame ONNX (exported into the
    cache when none is beside the weights), the engine cached like the tile engine."""
    from .tensorrt_backend import EngineRunner, load_engine
    onnx = ensure_onnx(backend.model_path, engine_cache_dir, frame=True)
    key = frame_key(trt, onnx, backend.precision, backend.img_size, gpu)
    engine, how, _ = load_engine(
        trt, runtime, cache, onnx.stem, key,
        lambda: build_frame_engine(trt, onnx, backend.precision, backend.img_size, workspace_mb, logger), force)
    return EngineRunner(trt, engine, backend.device, backend.stream, FRAME_IO), how
