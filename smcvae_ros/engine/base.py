"""One small interface for every inference backend (torch, onnxruntime, TensorRT).

A backend restores batches of model-size tiles:
    restore(ref, damaged, patch_mask) -> restored
with ref (B,3,S,S) the aligned reference ((B,6,S,S) for a `ref_raw` model: + the raw reference;
(B,9,S,S) for `ref_hom`: + the homography-warped reference),
damaged (B,4,S,S) the Telea-filled frame + failed-pixel channel, restored (B,3,S,S), float32 in
[0,1], and patch_mask bool (B,N), True where a patch holds a failed pixel. Healthy pixels of
`damaged` come back unchanged (the model's merge, eq. 16).

A `cues: tensor` model also runs as one frame graph (model.frame, engine.frame_export):
    restore_frame(reference, damaged, failed, origins) -> restored
with whole (H,W,3) uint8 RGB frames, failed (H,W) uint8 and the tile origins (T,2) int64; the cues,
the tiles, the model and the merge all run inside the backend (on the GPU where it has one).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

PACKAGE_MODELS = Path(__file__).resolve().parent.parent.parent / 'models'
DEFAULT_MODEL_NAME = 'smcvae_tile64.safetensors'
# Tiles per inference call: on CPU onnxruntime a 64-px tile costs ~15 % less at batch 32 than at 8, and
# 10 % failed 1280x720 blocks make ~59 tiles; also the TensorRT profile's opt/max batch.
MAX_BATCH = 32


PRECISIONS = ('auto', 'fp32', 'fp16', 'int8')
# CPU flags (/proc/cpuinfo) of int8 dot-product instructions: x86 VNNI / AMX, Arm dotprod
INT8_DOT_FLAGS = frozenset({'avx512_vnni', 'avx_vnni', 'amx_int8', 'asimddp'})


@lru_cache(maxsize=1)
def cpu_has_int8_dot() -> bool:
    """True when this CPU has int8 dot-product instructions, where onnxruntime's int8 MatMuls run
    ~30 % faster than fp32 ones (without them they are slower); False where /proc/cpuinfo is unreadable."""
    try:
        return not INT8_DOT_FLAGS.isdisjoint(Path('/proc/cpuinfo').read_text().split())
    except OSError:
        return False


class BackendError(RuntimeError):
    """A backend could not be loaded or run."""


def check_precision(precision: str) -> str:
    """A requested precision (node parameter, --precision), checked: `auto` = fp16 on a GPU; on a
    CPU int8 weight MatMuls on onnxruntime where cpu_has_int8_dot(), else fp32."""
    if precision not in PRECISIONS:
        raise BackendError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    return precision


def read_model_config(model_path: str | Path) -> dict:
    """The model section of the JSON config stored next to the weights."""
    cfg = Path(model_path).with_suffix('.json')
    if not cfg.is_file():
        raise BackendError(f'model config not found: {cfg} (expected next to {model_path})')
    return json.loads(cfg.read_text())['model']


def default_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """A shipped model by file name: ./models next to the package (source tree) or
    share/smcvae_ros/models."""
    candidates = [PACKAGE_MODELS / name]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('smcvae_ros')) / 'models' / name)
    except Exception:  # noqa: BLE001 - not installed as an ament package
        pass
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def resolve_model(model: str | Path | None) -> Path:
    """The weights a `model_path` / `--model` value names: '' or None = the default shipped model; a
    bare file name that is not a file here (`smcvae_tile64_small.safetensors`) = that shipped model;
    anything else = that path."""
    if not model:
        return default_model_path()
    path = Path(model)
    if path.name == str(model) and not path.is_file():
        return default_model_path(path.name)
    return path


class Backend:
    """Base class: subclasses set `name` and implement _run; sizes come from the model config."""

    name = 'base'

    def __init__(self, model_path: str | Path, device: str = 'cpu', precision: str = 'fp32',
                 max_batch: int = MAX_BATCH):
        """precision: what the backend runs (each subclass resolves the requested one, see
        check_precision)."""
        self.model_path = Path(model_path)
        self.device = device
        self.precision = precision
        self.max_batch = max_batch
        cfg = read_model_config(self.model_path)
        self.img_size, self.patch_size = cfg['img_size'], cfg['patch_size']
        self.align = cfg.get('align', 'none')
        self.ref_chans = 3 * (1 + bool(cfg.get('ref_raw')) + bool(cfg.get('ref_hom')))
        self.cues = cfg.get('cues', 'opencv')          # 'tensor': restore_frame runs cues + model as one graph
        self.frame_stages: dict[str, float] = {}      # ms per stage inside the last frame graph, where visible

    def restore(self, ref: np.ndarray, damaged: np.ndarray, patch_mask: np.ndarray) -> np.ndarray:
        c = self.ref_chans
        if ref.ndim != 4 or ref.shape[1] != c or damaged.shape != (ref.shape[0], 4) + ref.shape[2:]:
            raise ValueError(f'ref {ref.shape} must be (B,{c},S,S) and damaged {damaged.shape} (B,4,S,S)')
        outs = [self._run(ref[i:i + self.max_batch], damaged[i:i + self.max_batch], patch_mask[i:i + self.max_batch])
                for i in range(0, ref.shape[0], self.max_batch)]
        return np.concatenate(outs) if outs else np.zeros_like(damaged[:, :3])

    def restore_with_uncertainty(self, ref, damaged, patch_mask, samples: int):
        """(restored with Z = M, per-pixel variance (B,1,S,S) over `samples` latent samples);
        backends without sampling raise BackendError."""
        raise BackendError(f'{self.name} backend has no sampling path')

    def restore_frame(self, reference: np.ndarray, damaged: np.ndarray, failed: np.ndarray,
                      origins: np.ndarray) -> np.ndarray:
        """The frame graph: (H,W,3) uint8 frames, (H,W) uint8 mask, (T,2) int64 origins -> (H,W,3) uint8."""
        if self.cues != 'tensor':
            raise BackendError(f'{self.model_path.name} is a cues: {self.cues} model: it has no frame graph')
        return self._run_frame(*(np.ascontiguousarray(a) for a in (reference, damaged, failed)),
                               np.ascontiguousarray(origins, np.int64).reshape(-1, 2))

    def _run(self, ref: np.ndarray, damaged: np.ndarray, patch_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run_frame(self, reference, damaged, failed, origins) -> np.ndarray:
        raise BackendError(f'{self.name} backend has no frame graph path')

    def describe(self) -> str:
        return f'{self.name}({self.device}, {self.precision})'
