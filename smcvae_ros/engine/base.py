"""One small interface for every inference backend (torch, onnxruntime, TensorRT).

A backend restores batches of model-size tiles:
    restore(ref, damaged, patch_mask) -> restored
with ref (B,3,S,S) the aligned reference, damaged (B,4,S,S) the Telea-filled frame + failed-pixel
channel, restored (B,3,S,S), float32 in [0,1], and patch_mask bool (B,N), True where a patch holds
a failed pixel. Healthy pixels of `damaged` come back unchanged (the model's merge, eq. 16).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE_MODELS = Path(__file__).resolve().parent.parent.parent / 'models'
DEFAULT_MODEL_NAME = 'smcvae_tile64.safetensors'


class BackendError(RuntimeError):
    """A backend could not be loaded or run."""


def read_model_config(model_path: str | Path) -> dict:
    """The model section of the JSON config stored next to the weights."""
    cfg = Path(model_path).with_suffix('.json')
    if not cfg.is_file():
        raise BackendError(f'model config not found: {cfg} (expected next to {model_path})')
    return json.loads(cfg.read_text())['model']


def default_model_path() -> Path:
    """The shipped model: ./models next to the package (source tree) or share/smcvae_ros/models."""
    candidates = [PACKAGE_MODELS / DEFAULT_MODEL_NAME]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('smcvae_ros')) / 'models' / DEFAULT_MODEL_NAME)
    except Exception:  # noqa: BLE001 - not installed as an ament package
        pass
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


class Backend:
    """Base class: subclasses set `name` and implement _run; sizes come from the model config."""

    name = 'base'

    def __init__(self, model_path: str | Path, device: str = 'cpu', precision: str = 'fp32', max_batch: int = 8):
        self.model_path = Path(model_path)
        self.device = device
        self.precision = precision
        self.max_batch = max_batch
        cfg = read_model_config(self.model_path)
        self.img_size, self.patch_size = cfg['img_size'], cfg['patch_size']
        self.align = cfg.get('align', 'none')

    def restore(self, ref: np.ndarray, damaged: np.ndarray, patch_mask: np.ndarray) -> np.ndarray:
        if ref.ndim != 4 or ref.shape[1] != 3 or damaged.shape != (ref.shape[0], 4) + ref.shape[2:]:
            raise ValueError(f'ref {ref.shape} must be (B,3,S,S) and damaged {damaged.shape} (B,4,S,S)')
        outs = [self._run(ref[i:i + self.max_batch], damaged[i:i + self.max_batch], patch_mask[i:i + self.max_batch])
                for i in range(0, ref.shape[0], self.max_batch)]
        return np.concatenate(outs) if outs else np.zeros_like(ref)

    def restore_with_uncertainty(self, ref, damaged, patch_mask, samples: int):
        """(restored with Z = M, per-pixel variance (B,1,S,S) over `samples` latent samples);
        backends without sampling raise BackendError."""
        raise BackendError(f'{self.name} backend has no sampling path')

    def _run(self, ref: np.ndarray, damaged: np.ndarray, patch_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return f'{self.name}({self.device}, {self.precision})'


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
    damaged[0, 3, :backend.patch_size, :backend.patch_size] = 1.0
    mask = np.zeros((1, n), bool)
    mask[0, 0] = True
    out = backend.restore(tile, damaged, mask)
    if out.shape != tile.shape or not np.isfinite(out).all():
        raise BackendError(f'{backend.describe()} smoke run gave {out.shape} / non-finite output')


def create_backend(name: str = 'auto', model_path: str | Path | None = None, device: str = 'auto',
                   fallback: bool = True, **kw) -> tuple[Backend, list[str]]:
    """Build the requested backend; on failure fall back along the auto order.

    Returns (backend, notes) where notes lists every failure reason (for logs and diagnostics).
    """
    model_path = Path(model_path) if model_path else default_model_path()
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
        except Exception as e:  # noqa: BLE001 - every failure is reported and the next backend tried
            msg = f'{cand} backend unavailable: {type(e).__name__}: {e}'
            log.warning(msg)
            notes.append(msg)
    raise BackendError('no backend could be loaded: ' + '; '.join(notes))
