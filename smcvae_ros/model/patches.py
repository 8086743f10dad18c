"""Patch grid helpers: (B,C,H,W) images <-> (B,N,P*P*C) patch rows, patch <-> pixel masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def patchify(img: torch.Tensor, p: int) -> torch.Tensor:
    """(B,C,H,W) -> (B,N,P*P*C), patches in row-major order, pixels (p,q,c) inside a patch."""
    b, c, h, w = img.shape
    x = img.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, h: int, w: int, c: int = 3) -> torch.Tensor:
    """(B,N,P*P*C) -> (B,C,H,W); inverse of :func:`patchify`."""
    b = x.shape[0]
    x = x.reshape(b, h // p, w // p, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def pixel_to_patch_mask(mask: torch.Tensor, p: int) -> torch.Tensor:
    """(B,1,H,W) pixel mask (non-zero = failed) -> (B,N) bool: a patch fails if any pixel fails."""
    return (F.max_pool2d((mask > 0).float(), p, p).flatten(1) > 0)


def patch_to_pixel_mask(patch_mask: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """(B,N) bool -> (B,1,H,W) float {0,1}."""
    b = patch_mask.shape[0]
    m = patch_mask.float().reshape(b, 1, h // p, w // p)
    return m.repeat_interleave(p, 2).repeat_interleave(p, 3)
