"""Random (reference, damaged) tile pairs from clips, prepared exactly as the restorer does at
run time: the context crop's failed pixels are blanked, the reference is aligned on it, and
the central model-size tile is kept."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..restoration.align import align_reference
from ..restoration.masks import make_mask, patch_mask_to_pixels
from ..data.clips import Clip


@dataclass
class PairSpec:
    img_size: int = 64
    patch_size: int = 8
    margin: int = 16            # context around the tile, used for alignment (as at run time)
    gap: tuple[int, int] = (1, 10)
    gap_power: float = 0.0      # P(gap = g) ~ g^-gap_power: > 0 favours short gaps (well-aligned refs)
    ratio: tuple[float, float] = (0.1, 0.9)
    pattern: str = 'mixed'
    scale: tuple[float, float] = (0.5, 1.0)
    flip: bool = True
    align: str = 'flow'


def make_sample(clips: list[Clip], spec: PairSpec, rng: np.random.Generator,
                ratio: float | None = None, gap: int | None = None) -> dict[str, np.ndarray]:
    """One sample: ref (aligned), damaged, target (S,S,3) uint8 and mask (N,) bool."""
    weights = np.array([len(c) for c in clips], float)
    clip = clips[rng.choice(len(clips), p=weights / weights.sum())]
    n = len(clip)
    if gap is None:
        gaps = np.arange(spec.gap[0], spec.gap[1] + 1)
        w = gaps.astype(float) ** -spec.gap_power
        gap = rng.choice(gaps, p=w / w.sum())
    g = int(gap)
    g = min(g, n - 1)
    t = int(rng.integers(g, n))
    ref, tgt = clip.read(t - g), clip.read(t)
    s = float(rng.uniform(*spec.scale))
    p, ctx = spec.patch_size, spec.img_size + 2 * spec.margin
    h, w = tgt.shape[:2]
    s = max(s, ctx / min(h, w))
    if s < 1.0:
        size = (max(ctx, int(round(w * s))), max(ctx, int(round(h * s))))
        ref, tgt = (cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (ref, tgt))
        h, w = tgt.shape[:2]
    y, x = int(rng.integers(0, h - ctx + 1)), int(rng.integers(0, w - ctx + 1))
    ref, tgt = ref[y:y + ctx, x:x + ctx], tgt[y:y + ctx, x:x + ctx]
    if spec.flip and rng.random() < 0.5:
        ref, tgt = ref[:, ::-1], tgt[:, ::-1]
    ref, tgt = np.ascontiguousarray(ref), np.ascontiguousarray(tgt)
    r = float(ratio if ratio is not None else rng.uniform(*spec.ratio))
    grid = ctx // p
    mask = make_mask(rng, grid, grid, r, spec.pattern)
    inner = slice(spec.margin // p, (spec.margin + spec.img_size) // p)
    if ratio is not None:  # evaluation: the model tile gets exactly the requested ratio
        mask[inner, inner] = make_mask(rng, spec.img_size // p, spec.img_size // p, r, spec.pattern)
    if not mask[inner, inner].any():
        mask[inner, inner][rng.integers(0, spec.img_size // p), rng.integers(0, spec.img_size // p)] = True
    failed = patch_mask_to_pixels(mask, p)
    damaged = np.where(failed[..., None], 0, tgt).astype(np.uint8)
    aligned = align_reference(ref, damaged, failed, spec.align)
    c = slice(spec.margin, spec.margin + spec.img_size)
    return {'ref': aligned[c, c], 'damaged': damaged[c, c], 'target': tgt[c, c],
            'mask': mask[inner, inner].reshape(-1), 'ref_raw': ref[c, c]}


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


class PairDataset(torch.utils.data.IterableDataset):
    """Endless stream of training samples; each worker gets its own seeded generator."""

    def __init__(self, clips: list[Clip], spec: PairSpec, seed: int = 0):
        self.clips, self.spec, self.seed = clips, spec, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            s = make_sample(self.clips, self.spec, rng)
            yield to_tensor(s['ref']), to_tensor(s['damaged']), to_tensor(s['target']), torch.from_numpy(s['mask'])


def fixed_batch(clips: list[Clip], spec: PairSpec, n: int, seed: int, ratio: float | None = None,
                gap: int | None = None) -> tuple[torch.Tensor, ...]:
    """A reproducible evaluation batch (same pairs and masks for every model and baseline)."""
    rng = np.random.default_rng(seed)
    samples = [make_sample(clips, spec, rng, ratio=ratio, gap=gap) for _ in range(n)]
    stack = lambda k: torch.stack([to_tensor(s[k]) for s in samples])  # noqa: E731
    return stack('ref'), stack('damaged'), stack('target'), torch.stack([torch.from_numpy(s['mask']) for s in samples])
