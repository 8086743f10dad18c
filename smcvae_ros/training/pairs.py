"""Training and validation tiles, prepared exactly as the restorer prepares them at run time.

One sample is a whole (reference, target) frame pair of a clip: a failure mask is drawn on the
whole (randomly rescaled) frame off any patch grid, the damaged frame's cues are computed once
(`restoration.align.model_cues`, or `model.cues.numpy_cues` for a `cues: tensor` model), and several
model-size tiles that hold failed pixels are cut from it. A worker keeps a shuffle buffer so a
batch mixes tiles of many frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..data.clips import Clip
from ..restoration.align import model_cues, telea_fill
from ..restoration.masks import pixel_failure_mask


@dataclass
class PairSpec:
    img_size: int = 64
    patch_size: int = 8
    gap: tuple[int, int] = (1, 10)
    gap_power: float = 0.0      # P(gap = g) ~ g^-gap_power: > 0 favours short gaps
    ratio: tuple[float, float] = (0.1, 0.9)
    ratio_power: float = 0.0    # density of the failed ratio r ~ r^ratio_power on `ratio`: > 0 favours large failures
    pattern: str = 'mixed'
    scale: tuple[float, float] = (0.5, 1.0)
    flip: bool = True
    align: str = 'flow'
    ref_raw: bool = False        # tiles' 'ref' also holds the unwarped reference (S,S,6)
    ref_hom: bool = False        # ... and the homography-warped reference (S,S,9; needs ref_raw)
    tiles_per_frame: int = 12
    shuffle_buffer: int = 384
    clip_weight: str = 'frames'  # P(clip): 'frames' (by length) | 'uniform' (every clip alike: short drives count)
    camera_aug: float = 0.0      # P(a pair is re-rendered as another camera would see it): see camera_look
    cues: str = 'opencv'         # opencv (restoration.align) | tensor (model.cues, as the frame graph)


def pick_pair(clips: list[Clip], spec: PairSpec, rng: np.random.Generator, gap: int | None = None):
    """(reference, target) RGB frames of a random clip, `gap` frames apart (drawn when None)."""
    if spec.clip_weight not in ('frames', 'uniform'):
        raise ValueError(f"clip_weight must be 'frames' or 'uniform', got {spec.clip_weight!r}")
    weights = np.array([len(c) if spec.clip_weight == 'frames' else 1 for c in clips], float)
    clip = clips[rng.choice(len(clips), p=weights / weights.sum())]
    if gap is None:
        gaps = np.arange(spec.gap[0], spec.gap[1] + 1)
        w = gaps.astype(float) ** -spec.gap_power
        gap = int(rng.choice(gaps, p=w / w.sum()))
    g = min(int(gap), len(clip) - 1)
    t = int(rng.integers(g, len(clip)))
    return clip.read(t - g), clip.read(t)


def draw_ratio(spec: PairSpec, rng: np.random.Generator) -> float:
    """A failed ratio on spec.ratio with density ~ r^ratio_power (inverse CDF; 0 = uniform)."""
    k = spec.ratio_power + 1.0
    lo, hi = (float(v) ** k for v in spec.ratio)
    return float(rng.uniform(lo, hi) ** (1.0 / k))


def camera_look(ref: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The pair as another camera would record it: a global gain and gamma (the target's exposure
    a few % off the reference's, as auto-exposure drifts), sometimes a slight blur, sometimes JPEG
    re-encoding, sometimes gray. Everything but the exposure drift is the same for both frames."""
    gamma, gain = rng.uniform(0.7, 1.4), rng.uniform(0.6, 1.2)
    drift = 1.0 + rng.normal(0.0, 0.03)
    sigma = rng.uniform(0.3, 1.0) if rng.random() < 0.3 else 0.0
    quality = int(rng.integers(50, 96)) if rng.random() < 0.4 else 0
    gray = rng.random() < 0.15
    x = np.arange(256, dtype=np.float32) / 255.0

    def render(img, g):
        lut = np.clip(np.rint(255.0 * g * x ** gamma), 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut)
        if sigma:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        if gray:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if quality:
            img = cv2.imdecode(cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_UNCHANGED)
        return img
    return render(ref, gain), render(target, gain * drift)


def frame_tiles(ref: np.ndarray, target: np.ndarray, spec: PairSpec, rng: np.random.Generator,
                ratio: float | None = None, pattern: str | None = None, scale: float | None = None) -> list[dict]:
    """Damage one frame pair, compute its cues, cut `tiles_per_frame` tiles holding failed pixels.

    Each tile: 'ref' (S,S,3) aligned reference (S,S,6 with spec.ref_raw: + the raw reference; S,S,9
    with spec.ref_hom: + the homography-warped reference),
    'damaged' (S,S,4) fill + failed (0/255),
    'target' (S,S,3), all uint8."""
    s = spec.img_size
    if spec.camera_aug and rng.random() < spec.camera_aug:
        ref, target = camera_look(ref, target, rng)
    sc = float(rng.uniform(*spec.scale)) if scale is None else scale
    h, w = target.shape[:2]
    sc = max(sc, s / min(h, w))
    if sc < 1.0:
        size = (max(s, int(round(w * sc))), max(s, int(round(h * sc))))
        ref, target = (cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (ref, target))
        h, w = target.shape[:2]
    r = draw_ratio(spec, rng) if ratio is None else ratio
    failed = pixel_failure_mask(rng, h, w, r, pattern or spec.pattern)
    damaged = np.where(failed[..., None], 0, target).astype(np.uint8)
    if spec.align == 'flow':
        refs, fill = model_cues(ref, damaged, failed, 1 + spec.ref_raw + spec.ref_hom, cues=spec.cues)
    else:
        refs, fill = [ref], telea_fill(damaged, failed)
    ys, xs = np.nonzero(failed)
    tiles = []
    for _ in range(spec.tiles_per_frame):
        k = int(rng.integers(len(ys)))
        y0 = int(np.clip(ys[k] - rng.integers(0, s), 0, h - s))
        x0 = int(np.clip(xs[k] - rng.integers(0, s), 0, w - s))
        win = (slice(y0, y0 + s), slice(x0, x0 + s))
        t = {'ref': np.dstack([a[win] for a in refs]),
             'damaged': np.dstack([fill[win], failed[win].astype(np.uint8) * 255]),
             'target': target[win]}
        if spec.flip and rng.random() < 0.5:
            t = {k2: v[:, ::-1] for k2, v in t.items()}
        tiles.append({k2: np.ascontiguousarray(v) for k2, v in t.items()})
    return tiles


def tile_patch_mask(failed_px: torch.Tensor, patch: int) -> torch.Tensor:
    """(B,1,S,S) failed pixels -> (B,N) bool, True where a patch holds a failed pixel."""
    return torch.nn.functional.max_pool2d(failed_px.float(), patch, patch).flatten(1) > 0


def to_batch(tiles: list[dict], patch: int) -> tuple[torch.Tensor, ...]:
    """Tiles -> ref (B,3,S,S), damaged (B,4,S,S), target (B,3,S,S) in [0,1], patch mask (B,N)."""
    f = lambda k: torch.from_numpy(np.stack([t[k] for t in tiles])).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    ref, dmg, tgt = f('ref'), f('damaged'), f('target')
    return ref, dmg, tgt, tile_patch_mask(dmg[:, 3:4], patch)


class PairDataset(torch.utils.data.IterableDataset):
    """Endless stream of training tiles; each worker has its own seeded generator and buffer."""

    def __init__(self, clips: list[Clip], spec: PairSpec, seed: int = 0):
        self.clips, self.spec, self.seed = clips, spec, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        buf: list[dict] = []
        while True:
            while len(buf) < self.spec.shuffle_buffer:
                buf += frame_tiles(*pick_pair(self.clips, self.spec, rng), self.spec, rng)
            t = buf.pop(int(rng.integers(len(buf))))
            yield tuple(x[0] for x in to_batch([t], self.spec.patch_size))


def fixed_batch(clips: list[Clip], spec: PairSpec, n: int, seed: int, ratio: float | None = None,
                gap: int | None = None, pattern: str = 'random') -> tuple[torch.Tensor, ...]:
    """A reproducible validation batch of n tiles (same frames, masks and cues for every model)."""
    rng = np.random.default_rng(seed)
    tiles: list[dict] = []
    while len(tiles) < n:
        tiles += frame_tiles(*pick_pair(clips, spec, rng, gap), spec, rng, ratio=ratio, pattern=pattern, scale=1.0)
    return to_batch(tiles[:n], spec.patch_size)
