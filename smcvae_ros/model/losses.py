"""SMCVAE objective: L = L_r + beta * L_KL."""
from __future__ import annotations

import torch

from .smcvae import PIXEL_MEAN, PIXEL_STD


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, failed: torch.Tensor):
    """MSE over failed pixels only. pred (B,C,H,W) normalized; target (B,C,H,W) in [0,1];
    failed (B,1,H,W) {0,1}."""
    w = failed.expand_as(target).float()
    return (((pred - (target - PIXEL_MEAN) / PIXEL_STD) ** 2) * w).sum() / w.sum().clamp(min=1)


def kl_loss(mean: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Gaussian KL(N(M, S^2) || N(0, I)) averaged over tokens and latent dims (the paper's
    (|M|^2 + |S|^2 - sum log S^2) / (2 N D') - 1/2). Zero when M = 0, S = 1."""
    if scale is None:
        return mean.new_zeros(())
    return 0.5 * (mean.pow(2) + scale.pow(2) - torch.log(scale.pow(2))).mean() - 0.5


def smcvae_loss(out: dict, target: torch.Tensor, damaged: torch.Tensor, beta: float):
    """damaged: the model input (B,4,H,W); its last channel marks the failed pixels."""
    rec = reconstruction_loss(out['pred'], target, damaged[:, 3:4])
    kl = kl_loss(out['mean'], out['scale'])
    return rec + beta * kl, {'rec': rec.detach(), 'kl': kl.detach()}
