"""Validation metric of training on batches of torch tiles."""
from __future__ import annotations

import numpy as np
import torch

from ..model.patches import patch_to_pixel_mask


def masked_psnr_batch(pred: torch.Tensor, target: torch.Tensor, patch_mask: torch.Tensor, patch: int) -> float:
    """Failed-region PSNR of a batch of tiles, images in [0,1] quantized to 8 bit. The squared error
    is pooled over every failed pixel of the batch (as over a frame's holes), so easy tiles with tiny
    errors cannot dominate the score the way a mean of per-tile PSNRs would."""
    px = patch_to_pixel_mask(patch_mask.bool(), patch, *target.shape[-2:]).expand_as(target) > 0
    p8, t8 = (pred * 255).round().clamp(0, 255), (target * 255).round()
    mse = ((p8 - t8) ** 2)[px].double().mean().item()
    return float('inf') if mse == 0 else float(10 * np.log10(255 ** 2 / mse))
