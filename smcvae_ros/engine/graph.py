"""The exported ONNX restore graph at run time: I/O names, metadata, and the ONNX that matches the weights.

No torch here: the onnxruntime and TensorRT backends run on a vehicle without it. An ONNX is used only
when its metadata records the sha256 of the weights and the model config of the JSON beside them
(`smcvae_model_config`). Weights with no matching ONNX are exported into the cache dir, which needs
torch (`engine.export`); a JSON that disagrees with a weight-matching ONNX is a ModelConfigMismatch,
never a silent disagreement between backends.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .base import BackendError, read_model_config

log = logging.getLogger(__name__)

INPUTS = ('ref', 'damaged', 'patch_mask')
OUTPUT = 'restored'
VARIANCE = 'variance'              # sampling graph only
META_WEIGHTS_SHA = 'smcvae_weights_sha256'
META_MODEL_CONFIG = 'smcvae_model_config'     # json.dumps of the JSON's "model" section at export time
META_SAMPLING = 'smcvae_sampling'
# the frame graph (`cues: tensor` models, engine.frame_export): whole frames in, restored frame out
FRAME_INPUTS = ('reference', 'damaged', 'failed', 'origins')
FRAME_SUFFIX = '.frame.onnx'
DEFAULT_CACHE = Path(os.environ.get('SMCVAE_CACHE_DIR', Path.home() / '.cache' / 'smcvae_ros'))


class ModelConfigMismatch(BackendError):
    """The model JSON disagrees with the ONNX exported from the same weights (a start-up error)."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def onnx_path_for(weights: str | Path, sampling: bool = False, frame: bool = False) -> Path:
    """models/<name>.onnx (or <name>.sampling.onnx, <name>.frame.onnx) next to the weights."""
    w = Path(weights)
    return w.with_name(w.stem + (FRAME_SUFFIX if frame else '.sampling.onnx' if sampling else '.onnx'))


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file, read with onnxruntime (no `onnx` package needed)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=['CPUExecutionProvider'])
    return dict(sess.get_modelmeta().custom_metadata_map)


# model config keys added after the first exports: a config without one has this value
LATER_CONFIG_KEYS = {'ref_raw': False, 'ref_hom': False, 'cues': 'opencv'}


def config_mismatch(recorded: dict, expected: dict) -> str:
    """'' when equal, else the differing keys as `key: onnx -> json`."""
    recorded, expected = ({**LATER_CONFIG_KEYS, **c} for c in (recorded, expected))
    keys = sorted(set(recorded) | set(expected))
    return '; '.join(f'{k}: {recorded.get(k, "<missing>")!r} -> {expected.get(k, "<missing>")!r}'
                     for k in keys if recorded.get(k) != expected.get(k))


def _read(onnx_file: Path) -> dict[str, str] | None:
    try:
        return onnx_metadata(onnx_file) if onnx_file.is_file() else None
    except Exception:  # noqa: BLE001 - a corrupt file is never used
        return None


def check_onnx(onnx_file: str | Path, weights: str | Path, sha: str | None = None) -> bool:
    """True when the ONNX was exported from these weights with this JSON config.

    False when it is missing, unreadable, from other weights, or records no config (older export).
    Raises ModelConfigMismatch when it is from these weights but the JSON's config differs.
    """
    meta = _read(Path(onnx_file))
    if meta is None or meta.get(META_WEIGHTS_SHA) != (sha or file_sha256(weights)):
        return False
    if META_MODEL_CONFIG not in meta:
        log.warning('%s records no model config (exported by an older version); not used', onnx_file)
        return False
    expected = read_model_config(weights)
    diff = config_mismatch(json.loads(meta[META_MODEL_CONFIG]), expected)
    if diff:
        raise ModelConfigMismatch(
            f'{Path(weights).with_suffix(".json")} disagrees with {onnx_file}, which was exported from the same '
            f'weights ({diff}); the weights were trained with one of them: fix the JSON, or re-export with '
            '`smcvae export` if the JSON is right')
    return True


def check_model_files(weights: str | Path) -> None:
    """Start-up check for every backend: ONNX files beside the weights must agree with the JSON."""
    sha = file_sha256(weights)
    for sampling, frame in ((False, False), (True, False), (False, True)):
        check_onnx(onnx_path_for(weights, sampling, frame), weights, sha)


def ensure_onnx(weights: str | Path, cache_dir: str | Path | None = None, sampling: bool = False,
                frame: bool = False) -> Path:
    """The ONNX for these weights and config (the tile graph, its sampling variant, or the frame
    graph): the one beside them, else one exported into cache_dir."""
    weights = Path(weights)
    sha = file_sha256(weights)
    shipped = onnx_path_for(weights, sampling, frame)
    if check_onnx(shipped, weights, sha):
        return shipped
    if shipped.exists():
        log.warning('%s does not match %s (weights sha256 differs or file unreadable); using a cache export',
                    shipped, weights.name)
    cached = Path(cache_dir or DEFAULT_CACHE) / 'onnx' / f'{shipped.stem}-{sha[:16]}.onnx'
    if check_onnx(cached, weights, sha):
        return cached
    try:
        from .export import export_onnx
        from .frame_export import export_frame_onnx
    except ImportError as e:
        raise BackendError(f'no ONNX matching {weights} (beside it or in {cached.parent}) and no torch to export '
                           f'one ({e}); run `smcvae export` on a development machine and ship the .onnx') from e
    log.info('exporting %s -> %s', weights, cached)
    if frame:
        return export_frame_onnx(weights, cached, check=True)
    return export_onnx(weights, cached, sampling=sampling, check=True)
