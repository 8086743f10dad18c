"""Image encodings (cv2_bridge names) <-> the model's RGB working copy, and failure-mask helpers."""
from __future__ import annotations

import numpy as np

# encoding -> (channels, channel order)
ENCODINGS = {'rgb8': (3, 'rgb'), 'bgr8': (3, 'bgr'), 'rgba8': (4, 'rgb'), 'bgra8': (4, 'bgr'), 'mono8': (1, 'mono')}


class UnsupportedEncoding(ValueError):
    pass


def check_image(image: np.ndarray, encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise UnsupportedEncoding(f'unsupported encoding {encoding!r} (supported: {", ".join(ENCODINGS)})')
    ch = ENCODINGS[encoding][0]
    ok = image.dtype == np.uint8 and ((ch == 1 and image.ndim == 2) or (image.ndim == 3 and image.shape[2] == ch))
    if not ok:
        raise ValueError(f'{encoding} image must be uint8 with {ch} channel(s), got {image.dtype} {image.shape}')


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H,W,3) uint8 RGB view/copy of an image in any supported encoding."""
    ch, order = ENCODINGS[encoding]
    if order == 'mono':
        return np.repeat(image[..., None], 3, axis=2)
    rgb = image[..., :3]
    return np.ascontiguousarray(rgb[..., ::-1] if order == 'bgr' else rgb)


def rgb_pixels_to(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """(K,3) RGB pixel rows -> (K,C) pixels in `encoding` (alpha is handled by the caller)."""
    ch, order = ENCODINGS[encoding]
    if order == 'mono':
        return np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    return rgb[:, ::-1] if order == 'bgr' else rgb


def rois_to_mask(rois, height: int, width: int) -> np.ndarray:
    """[(x, y, w, h), ...] in pixels -> (H,W) bool, clipped to the image."""
    mask = np.zeros((height, width), bool)
    for x, y, w, h in rois:
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(width, int(x) + int(w)), min(height, int(y) + int(h))
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask


def failure_mask(rois, height: int, width: int) -> np.ndarray | None:
    """Failed ROIs of a health status -> (H,W) bool mask (None when there are none).

    An ROI not inside the image means the status was made for another image size: ValueError,
    so callers pass the frame through and flag it instead of guessing a region."""
    outside = [r for r in rois if r[0] < 0 or r[1] < 0 or r[0] + r[2] > width or r[1] + r[3] > height]
    if outside:
        raise ValueError(f'failed_rois {outside} exceed the {width}x{height} image')
    return rois_to_mask(rois, height, width) if rois else None


def patch_grid(mask: np.ndarray, patch: int) -> np.ndarray:
    """(H,W) bool pixel mask -> (ceil(H/P), ceil(W/P)) bool: a patch fails if any of its pixels fails."""
    h, w = mask.shape
    gh, gw = -(-h // patch), -(-w // patch)
    padded = np.zeros((gh * patch, gw * patch), bool)
    padded[:h, :w] = mask
    return padded.reshape(gh, patch, gw, patch).any(axis=(1, 3))


def grid_to_pixels(grid: np.ndarray, patch: int, height: int, width: int) -> np.ndarray:
    return np.repeat(np.repeat(grid, patch, 0), patch, 1)[:height, :width]


def grid_to_rois(grid: np.ndarray, patch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(gh,gw) bool patch grid -> pixel rectangles (x,y,w,h) covering exactly the True patches.

    Row runs are merged downwards while the run below has the same columns; rectangles are clipped
    to the image (the last patch row/column may be partial)."""
    rects, open_runs = [], {}  # (c0, c1) -> first row
    for r in range(grid.shape[0] + 1):
        row = grid[r] if r < grid.shape[0] else np.zeros(grid.shape[1], bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        runs = set(zip(edges[::2].tolist(), edges[1::2].tolist()))
        for run in [k for k in open_runs if k not in runs]:
            r0 = open_runs.pop(run)
            rects.append((run[0], r0, run[1], r))
        for run in runs:
            open_runs.setdefault(run, r)
    out = []
    for c0, r0, c1, r1 in sorted(rects, key=lambda q: (q[1], q[0])):
        x, y = c0 * patch, r0 * patch
        out.append((x, y, min(c1 * patch, width) - x, min(r1 * patch, height) - y))
    return out
