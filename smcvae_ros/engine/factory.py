"""Backend selection: create_backend builds the requested backend or falls back along the auto order.

Backends are imported only when chosen, so the onnxruntime path never imports torch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import Backend, BackendError, resolve_model
from .graph import ModelConfigMismatch, check_model_files

log = logging.getLogger(__name__)


def _torch_backend(**kw) -> Backend:
    from .torch_backend import TorchBackend
    return TorchBackend(**kw)


def _ort_backend(**kw) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend
    return OnnxRuntimeBackend(**kw)


def _trt_backend(**kw) -> Backend:
    from .tensorrt_backend import TensorRTBackend
    return TensorRTBackend(**kw)


FACTORIES = {'torch': _torch_backend, 'onnxruntime': _ort_backend, 'tensorrt': _trt_backend}


def auto_order(device: str = 'auto') -> list[str]:
    """TensorRT if tensorrt + CUDA, else torch CUDA, else the fastest measured CPU backend.

    On CPU onnxruntime is first: 1.6x the throughput of torch for the shipped model (bench/engines.py).
    """
    import importlib.util
    try:
        import torch
        cuda = torch.cuda.is_available() and device != 'cpu'
    except ImportError:
        cuda = False
    if cuda:
        return (['tensorrt'] if importlib.util.find_spec('tensorrt') else []) + ['torch', 'onnxruntime']
    return ['onnxruntime', 'torch']


def smoke_run(backend: Backend) -> None:
    """One tile through a freshly loaded backend: one that loads but cannot run is skipped too."""
    s, n = backend.img_size, (backend.img_size // backend.patch_size) ** 2
    tile = np.full((1, 3, s, s), 0.5, np.float32)
    damaged = np.concatenate([tile, np.zeros((1, 1, s, s), np.float32)], axis=1)
    ref = np.repeat(tile, backend.ref_chans // 3, axis=1)
    damaged[0, 3, :backend.patch_size, :backend.patch_size] = 1.0
    mask = np.zeros((1, n), bool)
    mask[0, 0] = True
    out = backend.restore(ref, damaged, mask)
    if out.shape != tile.shape or not np.isfinite(out).all():
        raise BackendError(f'{backend.describe()} smoke run gave {out.shape} / non-finite output')


def create_backend(name: str = 'auto', model_path: str | Path | None = None, device: str = 'auto',
                   fallback: bool = True, **kw) -> tuple[Backend, list[str]]:
    """Build the requested backend; on failure fall back along the auto order.

    Returns (backend, notes) where notes lists every failure reason (for logs and diagnostics).
    """
    model_path = resolve_model(model_path)
    if not model_path.is_file():
        raise BackendError(f'model weights not found: {model_path}')
    check_model_files(model_path)  # a JSON that disagrees with its ONNX is an error, never a fallback
    order = auto_order(device) if name == 'auto' else [name] + ([n for n in auto_order(device) if n != name]
                                                                if fallback else [])
    if name not in FACTORIES and name != 'auto':
        raise BackendError(f'unknown backend {name!r}; choose auto|tensorrt|torch|onnxruntime')
    notes: list[str] = []
    for cand in order:
        try:
            backend = FACTORIES[cand](model_path=model_path, device=device, **kw)
            smoke_run(backend)
            return backend, notes
        except ModelConfigMismatch:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is reported and the next backend tried
            msg = f'{cand} backend unavailable: {type(e).__name__}: {e}'
            log.warning(msg)
            notes.append(msg)
    raise BackendError('no backend could be loaded: ' + '; '.join(notes))
