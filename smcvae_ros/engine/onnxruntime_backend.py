"""ONNX Runtime backend: CPU, or CUDA when the CUDA execution provider is installed."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .base import MAX_BATCH, Backend, BackendError, check_precision, cpu_has_int8_dot
from .graph import DEFAULT_CACHE, FRAME_INPUTS, OUTPUT, VARIANCE, ensure_onnx, file_sha256

log = logging.getLogger(__name__)


QUANTIZED_OPS = ['MatMul']   # int8 convolutions (ConvInteger) are slower than fp32 ones in onnxruntime


def quantized_onnx(onnx_path, cache_dir=None) -> Path:
    """Dynamic int8 quantization of the fp32 graph's weight MatMuls (weights int8, activations
    quantized per call at run time; the stem convolution, attention products and everything else
    stay fp32), cached in cache_dir under the fp32 file's sha256."""
    src = Path(onnx_path)
    cache = Path(cache_dir or DEFAULT_CACHE) / 'onnx'
    out = cache / f'{src.stem}-{file_sha256(src)[:16]}.int8-matmul.onnx'
    if not out.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic   # needs the onnx package
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f'.{os.getpid()}.tmp')       # concurrent processes write their own
        try:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS,
                             extra_options={'MatMulConstBOnly': True})
        except Exception as e:  # noqa: BLE001 - a corrupt graph: report it as a backend failure
            tmp.unlink(missing_ok=True)
            raise BackendError(f'onnxruntime cannot load {src} (int8 quantization): {e}') from e
        tmp.replace(out)
        log.info('quantized %s -> %s (dynamic int8)', src.name, out)
    return out


class OnnxRuntimeBackend(Backend):
    name = 'onnxruntime'

    def __init__(self, model_path, device: str = 'auto', precision: str = 'auto', max_batch: int = MAX_BATCH,
                 engine_cache_dir=None, intra_op_threads: int = 0, onnx_path=None, **_):
        import onnxruntime as ort
        available = ort.get_available_providers()
        if device in ('auto', ''):
            device = 'cuda' if 'CUDAExecutionProvider' in available else 'cpu'
        if device.startswith('cuda') and 'CUDAExecutionProvider' not in available:
            raise BackendError(f'CUDA requested but onnxruntime has no CUDAExecutionProvider ({available})')
        precision = check_precision(precision)
        super().__init__(model_path, device, 'fp32', max_batch)     # the exported graph is fp32
        # auto skips `cues: tensor` models: their frames run the fp32 frame graph (int8 = the tile graph only)
        int8 = device == 'cpu' and (precision == 'int8' or (precision == 'auto' and self.cues != 'tensor'
                                                            and cpu_has_int8_dot()))
        self.precision = 'int8' if int8 else 'fp32'
        self._ort, self._cache_dir = ort, engine_cache_dir
        self.onnx_path = onnx_path or ensure_onnx(self.model_path, engine_cache_dir)
        if int8:
            try:
                self.onnx_path = quantized_onnx(self.onnx_path, engine_cache_dir)
            except (ImportError, OSError, BackendError) as e:
                if precision == 'int8':
                    raise BackendError(f'precision int8: {e}') from e
                # auto: int8 is an optimization; without the onnx package (the runtime set) or a writable
                # cache, or for a graph that cannot be quantized, the fp32 graph runs (and reports itself)
                log.warning('precision auto: no int8 graph (%s); running fp32', e)
                self.precision = 'fp32'
        self._opts = ort.SessionOptions()
        self._opts.intra_op_num_threads = int(intra_op_threads)  # 0 = onnxruntime's default
        # no busy-waiting between runs: the node's other threads (alignment, ROS) need the cores
        self._opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self._opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._providers = (['CUDAExecutionProvider'] if device.startswith('cuda') else []) + ['CPUExecutionProvider']
        self.session = self._session(self.onnx_path)
        self._sampling = None  # sampling graph, built on the first uncertainty request
        self._frame = None     # frame graph (cues: tensor models), built on the first frame

    def _session(self, path):
        try:
            return self._ort.InferenceSession(str(path), self._opts, providers=self._providers)
        except Exception as e:  # noqa: BLE001 - corrupt/unsupported model: report it as a backend failure
            raise BackendError(f'onnxruntime cannot load {path}: {e}') from e

    @staticmethod
    def _feeds(ref, damaged, patch_mask) -> dict[str, np.ndarray]:
        return {'ref': np.ascontiguousarray(ref, np.float32), 'damaged': np.ascontiguousarray(damaged, np.float32),
                'patch_mask': np.ascontiguousarray(patch_mask, np.float32)}

    def _run(self, ref, damaged, patch_mask):
        return self.session.run([OUTPUT], self._feeds(ref, damaged, patch_mask))[0]

    def _run_frame(self, reference, damaged, failed, origins):
        if self._frame is None:
            self._frame = self._session(ensure_onnx(self.model_path, self._cache_dir, frame=True))
        feeds = dict(zip(FRAME_INPUTS, (reference, damaged, failed, origins)))
        return self._frame.run([OUTPUT], feeds)[0]

    def restore_with_uncertainty(self, ref, damaged, patch_mask, samples: int, seed: int | None = None):
        """One run of the sampling graph (encoder once, decoder for Z = M and K samples) ->
        (restored with Z = M, variance map (B,1,S,S))."""
        if self._sampling is None:
            self._sampling = self._session(ensure_onnx(self.model_path, self._cache_dir, sampling=True))
        latent = int(dict(self._sampling.get_modelmeta().custom_metadata_map)['smcvae_latent_dim'])
        rng = np.random.default_rng(seed)
        outs, vars_ = [], []
        for i in range(0, ref.shape[0], self.max_batch):
            sl = slice(i, i + self.max_batch)
            feeds = self._feeds(ref[sl], damaged[sl], patch_mask[sl])
            feeds['noise'] = rng.standard_normal((feeds['ref'].shape[0], samples, patch_mask.shape[1], latent),
                                                 dtype=np.float32)
            out, var = self._sampling.run([OUTPUT, VARIANCE], feeds)
            outs.append(out)
            vars_.append(var)
        return np.concatenate(outs), np.concatenate(vars_)
