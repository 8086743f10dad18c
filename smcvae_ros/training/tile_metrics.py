"""Validation metric of training on batches of torch tiles."""
from __future__ import annotations

import math

import torch


def pooled_psnr(out: torch.Tensor, target: torch.Tensor, failed: torch.Tensor) -> float:
    """PSNR of 8-bit-quantized tiles (B,3,S,S) in [0,1] over every failed pixel (failed (B,1,S,S)) of
    the batch pooled, as over a frame's holes, so easy tiles cannot dominate as they would in a mean
    of per-tile PSNRs."""
    px = failed.expand_as(target) > 0.5
    mse = (((out * 255).round().clamp(0, 255) - (target * 255).round()) ** 2)[px].double().mean().item()
    return float('inf') if mse == 0 else float(10 * math.log10(255 ** 2 / mse))
