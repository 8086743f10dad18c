"""TensorRT 10 backend: engine built from the verified ONNX, cached on disk, run on torch CUDA buffers.

`import tensorrt` is lazy and optional: without it (or without CUDA) the backend raises BackendError
and create_backend falls back. Every TensorRT call goes through the `trt` module object passed in
(the real `tensorrt`, or a test double), so the logic around TensorRT is testable without it.
Device buffers are torch CUDA tensors (no pycuda: one CUDA context, torch's), and every copy and
enqueue runs on one explicit torch CUDA stream.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import MAX_BATCH, Backend, BackendError
from .cache import EngineCache, EngineKey, sha256_bytes
from .graph import DEFAULT_CACHE, FRAME_INPUTS, INPUTS, OUTPUT, ensure_onnx

log = logging.getLogger(__name__)

PRECISIONS = ('fp16', 'fp32')
FP32_LAYER_TYPES = ('NORMALIZATION', 'SOFTMAX')   # kept in FP32 under an FP16 build
DEFAULT_WORKSPACE_MB = 1024


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError('TensorRT is not installed (needs the tensorrt 10.x Python package from NVIDIA; '
                           'see README "Vehicle install")') from e
    if int(trt.__version__.split('.')[0]) < 10:
        raise BackendError(f'TensorRT {trt.__version__} found; this backend needs TensorRT >= 10')
    return trt


def profile_shapes(profile: tuple[int, int, int], img_size: int, num_patches: int,
                   ref_chans: int = 3) -> dict[str, tuple]:
    """Input name -> (min, opt, max) shapes of the optimization profile (batch dimension only varies)."""
    def shape(name, b):
        if name == 'patch_mask':
            return (b, num_patches)
        return (b, 4 if name == 'damaged' else ref_chans, img_size, img_size)
    return {n: tuple(shape(n, b) for b in profile) for n in INPUTS}


def keep_fp32_layers(trt, network) -> int:
    """Pin LayerNorm and softmax layers (and their outputs) to FP32; returns how many were pinned."""
    kinds = {getattr(trt.LayerType, k) for k in FP32_LAYER_TYPES}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(trt, onnx_path: str | Path, precision: str, profile: tuple[int, int, int], img_size: int,
                 num_patches: int, workspace_mb: int = DEFAULT_WORKSPACE_MB, logger=None,
                 ref_chans: int = 3) -> bytes:
    """Serialized tile engine from the ONNX: FP16 (LayerNorm/softmax FP32) or FP32; FP32 I/O; batch profile."""
    return build_from_onnx(trt, onnx_path, precision, profile_shapes(profile, img_size, num_patches, ref_chans),
                           dict.fromkeys((*INPUTS, OUTPUT), 'float32'), workspace_mb, logger)


def build_from_onnx(trt, onnx_path: str | Path, precision: str, shapes: dict[str, tuple], io_types: dict[str, str],
                    workspace_mb: int = DEFAULT_WORKSPACE_MB, logger=None, pin=keep_fp32_layers) -> bytes:
    """Serialized engine: one optimization profile (`shapes`: input -> (min, opt, max)), every I/O tensor
    of the dtype `io_types` names (`trt.<name>`), under FP16 `pin(trt, network)` keeps layers in FP32."""
    if precision not in PRECISIONS:
        raise BackendError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network has an explicit batch dimension
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT could not parse {onnx_path}: {errors}')
    for tensor in [network.get_input(i) for i in range(network.num_inputs)] + \
                  [network.get_output(i) for i in range(network.num_outputs)]:
        expected = io_types.get(tensor.name)
        if expected is None or tensor.dtype != getattr(trt, expected):
            want = (expected or 'no tensor of that name').upper().replace('FLOAT', 'FP')   # FP32, UINT8, INT64
            raise BackendError(f'engine I/O {tensor.name} is {tensor.dtype}, expected {want} (re-export the ONNX)')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == 'fp16':
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info('FP16 build: %d layers kept in FP32', pin(trt, network))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError('TensorRT engine build failed (see the TensorRT log above)')
    return bytes(serialized)


def gpu_identity(device: str = 'cuda') -> tuple[str, str]:
    import torch
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f'{major}.{minor}'


def engine_key(trt, onnx_path: str | Path, precision: str, max_batch: int, img_size: int,
               gpu: tuple[str, str]) -> EngineKey:
    return EngineKey(onnx_sha256=sha256_bytes(Path(onnx_path).read_bytes()), tensorrt_version=trt.__version__,
                     gpu_name=gpu[0], compute_capability=gpu[1], precision=precision,
                     profile=(1, max_batch, max_batch), img_size=img_size)


def load_or_build(trt, cache: EngineCache, stem: str, key: EngineKey, build, force: bool = False):
    """Engine bytes from the cache when the key and hash match, else build() and store.

    Returns (bytes, how) with how in {'cached', 'built: <reason>'}; the rebuild reason is logged.
    """
    if force:
        reason = 'force_engine_rebuild is set'
    else:
        data, reason = cache.load(stem, key)
        if data is not None:
            return data, 'cached'
    log.warning('building TensorRT engine (%s); this can take minutes', reason)
    data = build()
    cache.store(stem, key, data)
    return data, f'built: {reason}'


class EngineRunner:
    """One execution context; inputs/outputs are torch tensors whose data_ptr() are the bindings.
    `io_types`: tensor name -> dtype name (torch and trt spell them alike); default the tile graph's."""

    def __init__(self, trt, engine, device, stream, io_types: dict[str, str] | None = None):
        import torch
        io_types = io_types or dict.fromkeys((*INPUTS, OUTPUT), 'float32')
        self.engine, self.device, self.stream = engine, device, stream
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError('TensorRT could not create an execution context')
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self.inputs]
        if sorted(names) != sorted(io_types) or len(outputs) != 1:
            raise BackendError(f'engine I/O {names} does not match {list(io_types)}')
        self.output = outputs[0]
        wrong = [n for n in names if engine.get_tensor_dtype(n) != getattr(trt, io_types[n])]
        if wrong:
            raise BackendError(f'engine bindings {wrong} are not of the types {io_types}')
        self.io_types, self.dtypes = io_types, {n: getattr(torch, t) for n, t in io_types.items()}

    def __call__(self, feeds: dict) -> 'torch.Tensor':  # noqa: F821
        import torch
        for name in self.inputs:
            t = feeds[name]
            if t.dtype != self.dtypes[name] or not t.is_contiguous():
                raise BackendError(f'input {name} must be a contiguous {self.io_types[name]} tensor')
            if not self.context.set_input_shape(name, tuple(t.shape)):
                raise BackendError(f'input {name} shape {tuple(t.shape)} is outside the optimization profile')
            self.context.set_tensor_address(name, t.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=self.dtypes[self.output],
                          device=self.device)
        self.context.set_tensor_address(self.output, out.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError('TensorRT execute_async_v3 failed')
        return out


def load_engine(trt, runtime, cache: EngineCache, stem: str, key: EngineKey, build, force: bool = False):
    """(engine, how, path): the cached or built engine, rebuilt once when a valid-looking cached file
    is still rejected by the runtime."""
    data, how = load_or_build(trt, cache, stem, key, build, force)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None and how == 'cached':
        data, how = load_or_build(trt, cache, stem, key, build, force=True)
        engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise BackendError('TensorRT could not deserialize the engine it just built')
    return engine, how, cache.paths(stem, key)[0]


class TensorRTBackend(Backend):
    name = 'tensorrt'

    def __init__(self, model_path, device: str = 'auto', precision: str = 'auto', max_batch: int = MAX_BATCH,
                 engine_cache_dir=None, force_engine_rebuild: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, trt_module=None, **_):
        trt = trt_module or import_tensorrt()
        import torch
        device = 'cuda' if device in ('auto', '') else device
        if not device.startswith('cuda') or not torch.cuda.is_available():
            raise BackendError(f'TensorRT needs a CUDA GPU (device={device!r}, '
                               f'torch.cuda.is_available()={torch.cuda.is_available()})')
        precision = 'fp16' if precision == 'auto' else precision
        if precision not in PRECISIONS:
            raise BackendError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        super().__init__(model_path, device, precision, max_batch)
        self._torch, self._sampler = torch, None
        cache_dir = Path(engine_cache_dir) if engine_cache_dir else DEFAULT_CACHE / 'engines'
        onnx = ensure_onnx(self.model_path, engine_cache_dir)
        n = (self.img_size // self.patch_size) ** 2
        gpu = gpu_identity(device)
        key = engine_key(trt, onnx, precision, max_batch, self.img_size, gpu)
        logger = trt.Logger(trt.Logger.WARNING)

        def build():
            return build_engine(trt, onnx, precision, key.profile, self.img_size, n, workspace_mb, logger,
                                ref_chans=self.ref_chans)
        cache = EngineCache(cache_dir)
        self._runtime = trt.Runtime(logger)
        engine, self.engine_status, self.engine_path = load_engine(trt, self._runtime, cache, Path(onnx).stem, key,
                                                                   build, force_engine_rebuild)
        self.stream = torch.cuda.Stream(device)
        self.runner = EngineRunner(trt, engine, device, self.stream)
        self.frame_runner = None
        if self.cues == 'tensor':     # the frame graph: built now, not on the first failed frame
            from .tensorrt_frame import frame_runner
            self.frame_runner, self.frame_engine_status = frame_runner(
                self, trt, self._runtime, cache, gpu, engine_cache_dir, workspace_mb, logger,
                force_engine_rebuild)
        self.warmup()

    def warmup(self) -> None:
        s, n = self.img_size, (self.img_size // self.patch_size) ** 2
        for b in sorted({1, self.max_batch}):
            ref, damaged = np.zeros((b, self.ref_chans, s, s), np.float32), np.ones((b, 4, s, s), np.float32)
            self._run(ref, damaged, np.ones((b, n), np.float32))

    def _run(self, ref, damaged, patch_mask):
        torch = self._torch
        with torch.cuda.stream(self.stream):
            feeds = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(self.device)
                     for k, v in zip(INPUTS, (ref, damaged, patch_mask))}
            out = self.runner(feeds)
            return out.cpu().numpy()  # synchronizes self.stream

    def _run_frame(self, reference, damaged, failed, origins):
        torch = self._torch
        with torch.cuda.stream(self.stream):
            feeds = {k: torch.from_numpy(v).to(self.device)
                     for k, v in zip(FRAME_INPUTS, (reference, damaged, failed, origins))}
            return self.frame_runner(feeds).cpu().numpy()  # synchronizes self.stream

    def restore_with_uncertainty(self, ref, damaged, patch_mask, samples: int):
        """Latent sampling runs through the torch CUDA model (the engine holds the deterministic graph)."""
        if self._sampler is None:
            from .torch_backend import TorchBackend
            self._sampler = TorchBackend(self.model_path, self.device, self.precision, self.max_batch)
        return self._sampler.restore_with_uncertainty(ref, damaged, patch_mask, samples)

    def describe(self) -> str:
        frame = f'; frame engine {self.frame_engine_status}' if self.frame_runner is not None else ''
        return f'{self.name}({self.device}, {self.precision}, engine {self.engine_status}{frame})'
