"""Pre-LN ViT building blocks (timm-style). Every token stays in the sequence (static shapes for
ONNX/TensorRT); failed positions carry the cheap fill and are marked by SMCVAE's mask token."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, 'width must be divisible by heads'
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(dim: int, gh: int, gw: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding (MAE), shape (1, gh*gw, dim)."""
    assert dim % 4 == 0
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                            indexing='ij')
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    parts = []
    for pos in (ys.flatten(), xs.flatten()):
        out = pos[:, None] * omega[None]
        parts += [torch.sin(out), torch.cos(out)]
    return torch.cat(parts, dim=1).float()[None]


class PatchStem(nn.Module):
    """Patch embedding: 'linear' (one PxP stride-P conv, the ViT embedding) or 'conv'
    (a 3x3 conv feature layer before it, cheaper to learn local texture).

    An input with fewer channels than `in_chans` is the zero-padded stream (X2): its first conv
    reads the weight's leading channels only, which is the padded conv without the zero products."""

    def __init__(self, kind: str, in_chans: int, dim: int, patch: int):
        super().__init__()
        if kind == 'linear':
            self.net = nn.Conv2d(in_chans, dim, patch, patch)
        elif kind == 'conv':
            mid = max(16, dim // 4)
            self.net = nn.Sequential(nn.Conv2d(in_chans, mid, 3, 1, 1), nn.GELU(),
                                     nn.Conv2d(mid, dim, patch, patch))
        else:
            raise ValueError(f'unknown stem {kind!r} (linear|conv)')

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        layers = list(self.net) if isinstance(self.net, nn.Sequential) else [self.net]
        first, c = layers[0], int(img.shape[1])     # channels are static: a constant slice when exported
        weight = first.weight if c == first.in_channels else first.weight[:, :c]
        x = F.conv2d(img, weight, first.bias, first.stride, first.padding)
        for layer in layers[1:]:
            x = layer(x)
        return x.flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    """Patch embedding (image channels + one aux channel) + positional embedding, pre-LN blocks,
    final LN and projection W_u."""

    def __init__(self, cfg, grid: tuple[int, int]):
        super().__init__()
        self.stem = PatchStem(cfg.stem, cfg.stream_chans, cfg.enc_dim, cfg.patch_size)
        self.register_buffer('pos_embed', sincos_pos_embed(cfg.enc_dim, *grid), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg.enc_dim, cfg.enc_heads, cfg.mlp_ratio) for _ in range(cfg.enc_depth))
        self.norm = nn.LayerNorm(cfg.enc_dim)
        self.proj = nn.Linear(cfg.enc_dim, cfg.enc_dim)  # W_u

    def forward(self, *imgs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """One image -> its tokens (B,N,D); several -> a tuple, the blocks run on them as one batch."""
        x = torch.cat([self.stem(img) for img in imgs]) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.proj(self.norm(x))
        if len(imgs) == 1:
            return x
        b = imgs[0].shape[0]                       # every stream has the same batch
        return tuple(x[i * b:(i + 1) * b] for i in range(len(imgs)))


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linears and zero biases (MAE's init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
