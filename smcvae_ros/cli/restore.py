"""`smcvae restore REF FRAME MASK OUT`: restore the failed pixels of your own images.

FRAME is an image or a directory of images. REF (the last healthy frame) and MASK (non-zero =
failed) are each a single image used for every frame, or a directory holding a file with the
same name stem as each frame (e.g. frames/0001.jpg <-> masks/0001.png). OUT is the output image
(single FRAME file) or a directory that receives one restored image per frame, named like it.
Masks are rounded up to whole 8-px patches, as the node does; all other pixels stay unchanged.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from . import add_process_scale
from ..data.clips import IMAGE_EXTS


class RestoreError(ValueError):
    """A user input problem, reported as one clear line."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _match(source: Path, frame: Path, what: str) -> Path:
    """The file for `frame`: `source` itself, or the file in directory `source` with frame's stem."""
    if source.is_file():
        return source
    hits = [p for p in _images(source) if p.stem == frame.stem]
    if not hits:
        raise RestoreError(f'no {what} for {frame.name} in {source} (expected {frame.stem}.<png|jpg|...>)')
    if len(hits) > 1:
        raise RestoreError(f'several {what} files for {frame.name} in {source}: {", ".join(p.name for p in hits)}')
    return hits[0]


def plan(ref: Path, frame: Path, mask: Path, out: Path) -> list[tuple[Path, Path, Path, Path]]:
    """[(ref, frame, mask, output)] for every frame; raises RestoreError on missing inputs."""
    for p, what in ((ref, 'REF'), (frame, 'FRAME'), (mask, 'MASK')):
        if not p.exists():
            raise RestoreError(f'{what} not found: {p}')
    if frame.is_file():
        if ref.is_dir() or mask.is_dir():
            raise RestoreError('FRAME is a file: REF and MASK must be files too')
        target = out / frame.name if out.is_dir() else out
        return [(ref, frame, mask, target)]
    frames = _images(frame)
    if not frames:
        raise RestoreError(f'no images in FRAME directory {frame}')
    if out.exists() and not out.is_dir():
        raise RestoreError(f'FRAME is a directory, so OUT must be a directory: {out}')
    return [(_match(ref, f, 'reference'), f, _match(mask, f, 'mask'), out / f.name) for f in frames]


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RestoreError(f'cannot read image: {path}')
    return img


def read_mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise RestoreError(f'cannot read mask: {path}')
    return (m != 0).any(axis=2) if m.ndim == 3 else m != 0


def restore_files(jobs, restorer) -> list[tuple[Path, str, int]]:
    """Restore each (ref, frame, mask, out); returns [(out, status, failed patches)]."""
    done = []
    for ref_p, frame_p, mask_p, out_p in jobs:
        ref, frame, failed = read_image(ref_p), read_image(frame_p), read_mask(mask_p)
        if ref.shape != frame.shape:
            raise RestoreError(f'size mismatch: reference {ref_p} is {ref.shape[1]}x{ref.shape[0]}, '
                               f'frame {frame_p} is {frame.shape[1]}x{frame.shape[0]}')
        if failed.shape != frame.shape[:2]:
            raise RestoreError(f'size mismatch: mask {mask_p} is {failed.shape[1]}x{failed.shape[0]}, '
                               f'frame {frame_p} is {frame.shape[1]}x{frame.shape[0]}')
        restorer.reset()
        restorer.process('restore', ref, 'bgr8', 0.0)
        res = restorer.process('restore', frame, 'bgr8', 0.0, failed=failed)
        out_p.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out_p), res.image):
            raise RestoreError(f'cannot write {out_p} (unknown image extension?)')
        done.append((out_p, res.status, res.failed_pixels))
    return done


def run(args: argparse.Namespace) -> int:
    from ..engine import create_backend, resolve_model
    from ..restoration import RestorationSettings, Restorer
    try:
        jobs = plan(Path(args.ref), Path(args.frame), Path(args.mask), Path(args.out))
        model = resolve_model(args.model)
        if not model.is_file():
            raise RestoreError(f'model not found: {model}')
        backend, notes = create_backend(args.backend, model, args.device, fallback=args.backend == 'auto')
        for n in notes:
            print(f'note: {n}')
        restorer = Restorer(backend, RestorationSettings(max_reference_age_s=math.inf,
                                                         process_scale=args.process_scale))
        for out_p, status, n in restore_files(jobs, restorer):
            print(f'{out_p}: {status} ({n} failed patches)')
    except RestoreError as e:
        raise SystemExit(f'error: {e}') from None
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser('restore', help='restore failed pixels of image files or folders (REF FRAME MASK OUT)')
    p.add_argument('ref', help='last healthy frame: an image, or a directory matched to FRAME by file name')
    p.add_argument('frame', help='damaged frame: an image or a directory of images')
    p.add_argument('mask', help='failure mask image (non-zero = failed), or a directory matched by file name')
    p.add_argument('out', help='output image, or output directory (created) when FRAME is a directory')
    p.add_argument('--model', help='weights (.safetensors with its .json); default: the shipped model')
    p.add_argument('--backend', choices=('auto', 'torch', 'onnxruntime', 'tensorrt'), default='auto')
    p.add_argument('--device', default='auto', help='auto|cpu|cuda[:N]')
    add_process_scale(p)
    p.set_defaults(func=run)
