"""PSNR / SSIM sanity on known inputs."""
import math

import numpy as np
import pytest
import torch

from smcvae_ros.evaluation.metrics import psnr, ssim
from smcvae_ros.training.tile_metrics import pooled_psnr


def test_psnr_known_values():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100))  # MSE 100 -> 28.13 dB
    assert psnr(a, a) == math.inf
    c = a.copy()
    c[:8] = 255                                # error only in the top half
    top = np.zeros((16, 16), bool)
    top[:8] = True
    assert psnr(a, c, top) == pytest.approx(0.0)        # MSE 255^2 inside the mask
    assert psnr(a, c, ~top) == math.inf                 # nothing differs outside it
    assert psnr(a, c) == pytest.approx(10 * math.log10(2))  # half the pixels: MSE 255^2 / 2


def test_ssim_identical_is_one_and_falls_with_noise(rng):
    img = cv_smooth(rng.integers(0, 256, (64, 64, 3)).astype(np.float32))
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    scores = []
    for sigma in (2, 10, 40):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(img, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_mask_selects_region(rng):
    img = cv_smooth(rng.integers(0, 256, (64, 64, 3)).astype(np.float32))
    damaged = img.copy()
    damaged[:, 32:] = np.clip(img[:, 32:] + rng.normal(0, 40, (64, 32, 3)), 0, 255).astype(np.uint8)
    right = np.zeros((64, 64), bool)
    right[:, 40:] = True   # away from the window blur across the boundary
    left = np.zeros((64, 64), bool)
    left[:, :24] = True
    assert ssim(img, damaged, left) == pytest.approx(1.0, abs=1e-6)
    assert ssim(img, damaged, right) < 0.9


def test_pooled_psnr_matches_psnr(rng):
    tgt = rng.integers(0, 256, (2, 3, 16, 16)).astype(np.float32) / 255
    pred = np.clip(tgt + rng.normal(0, 0.05, tgt.shape), 0, 1).astype(np.float32)
    failed = torch.zeros(2, 1, 16, 16)
    failed[:, :, :8, :8] = 1  # the top-left 8x8 patch
    got = pooled_psnr(torch.from_numpy(pred), torch.from_numpy(tgt), failed)
    px = np.zeros((2, 16, 16), bool)
    px[:, :8, :8] = True
    to8 = lambda x: np.round(x * 255).transpose(0, 2, 3, 1)  # noqa: E731
    want = psnr(to8(pred), to8(tgt), px)  # pooled over both tiles' failed pixels
    assert got == pytest.approx(want, abs=1e-6)


def cv_smooth(x: np.ndarray) -> np.ndarray:
    import cv2
    return np.clip(cv2.GaussianBlur(x, (0, 0), 2) * 4 - 384, 0, 255).astype(np.uint8)
