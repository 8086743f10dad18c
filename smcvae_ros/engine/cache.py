"""On-disk TensorRT engine cache.

One engine file per (model, precision, max batch): <dir>/<onnx stem>.<precision>.b<max_batch>.engine,
with a sidecar JSON <same>.json = {"key": {...}, "engine_sha256": ..., "engine_bytes": ...}.
The key holds everything an engine depends on: ONNX sha256, TensorRT version, GPU name and compute
capability, precision and optimization profile. A cached engine is only returned when the key matches
and the file's sha256 matches the sidecar; otherwise the reason is logged and the caller rebuilds.
Writes are atomic (temp file + fsync + rename), engine first, sidecar last.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str     # "8.7"
    precision: str              # fp16 | fp32
    profile: tuple              # (min, opt, max) batch size of the optimization profile
    img_size: int               # tile side S of the (B,3,S,S) inputs

    def to_json(self) -> dict:
        d = asdict(self)
        d['profile'] = list(self.profile)
        return d


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EngineCache:
    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)

    def paths(self, stem: str, key: EngineKey) -> tuple[Path, Path]:
        base = f'{stem}.{key.precision}.b{key.profile[2]}'
        return self.dir / f'{base}.engine', self.dir / f'{base}.json'

    def load(self, stem: str, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, '') on a valid hit, else (None, reason to rebuild)."""
        engine, sidecar = self.paths(stem, key)
        if not engine.is_file() or not sidecar.is_file():
            return None, f'no cached engine at {engine}'
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            return None, f'unreadable engine sidecar {sidecar}: {e}'
        if meta.get('key') != key.to_json():
            old = meta.get('key') or {}
            diff = [f'{k}: {old.get(k)!r} -> {v!r}' for k, v in key.to_json().items() if old.get(k) != v]
            return None, f'cached engine {engine.name} is stale ({"; ".join(diff)})'
        data = engine.read_bytes()
        if len(data) != meta.get('engine_bytes') or sha256_bytes(data) != meta.get('engine_sha256'):
            return None, f'cached engine {engine.name} is corrupt or truncated (sha256 mismatch)'
        return data, ''

    def store(self, stem: str, key: EngineKey, data: bytes) -> Path:
        engine, sidecar = self.paths(stem, key)
        atomic_write(engine, data)
        meta = {'key': key.to_json(), 'engine_sha256': sha256_bytes(data), 'engine_bytes': len(data)}
        atomic_write(sidecar, json.dumps(meta, indent=2).encode())
        return engine
