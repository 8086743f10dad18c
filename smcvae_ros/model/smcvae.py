"""SMCVAE: Siamese Masked Conditional VAE (reference frame A1 + masked frame A2 -> restored A2).

Structure follows the paper (facebookresearch/mae style, index-free masking):
  U1 = Enc(X1), U2 = Enc(X2 | visible); mask token at failed positions of U2
  M = W_m [U1,U2] + B_m,  S = softplus(W_s [U1,U2] + B_s) > 0,  Z = M + S * E
  V0 = W_d [Z, U1] + B_d + P_d  ->  L decoder blocks  ->  O = W_o LN(V) + B_o
  R = X2 on healthy patches (bit-exact), prediction on failed patches (eq. 16).
U is concatenated per patch along features, so M, S, Z have one D'-vector per patch.
With ``residual`` the decoder predicts a correction to the reference pixels (a cheap fill that
the restoration layer may motion-align), and starts as an exact reference copy (zero-init head).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .patches import patch_to_pixel_mask, patchify, unpatchify
from .vit import Block, ViTEncoder, init_weights

PIXEL_MEAN = 0.45
PIXEL_STD = 0.25


@dataclass
class SMCVAEConfig:
    img_size: int = 64          # model input side (a tile of the camera frame)
    patch_size: int = 8
    in_chans: int = 3
    enc_dim: int = 128
    enc_depth: int = 4
    enc_heads: int = 4
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    latent_dim: int = 64        # D'
    mlp_ratio: float = 4.0
    stem: str = 'conv'          # linear | conv
    encoder: str = 'siamese'    # siamese (shared weights) | dual (ablation)
    latent: str = 'cond'        # cond (paper) | var (decoder sees Z only) | none (no reparameterization)
    residual: bool = True       # predict a correction over the reference pixels
    align: str = 'flow'         # how restoration prepares the reference input: none | flow
    beta: float = 0.01

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError('img_size must be a multiple of patch_size')
        for name, allowed in (('encoder', ('siamese', 'dual')), ('latent', ('cond', 'var', 'none')),
                              ('stem', ('linear', 'conv')), ('align', ('none', 'flow'))):
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {getattr(self, name)!r}')

    @property
    def grid(self) -> tuple[int, int]:
        g = self.img_size // self.patch_size
        return g, g

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> 'SMCVAEConfig':
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f'unknown model config keys: {sorted(unknown)}')
        return cls(**d)


class SMCVAE(nn.Module):
    def __init__(self, cfg: SMCVAEConfig):
        super().__init__()
        self.cfg = cfg
        d, dl, dd = cfg.enc_dim, cfg.latent_dim, cfg.dec_dim
        self.encoder = ViTEncoder(cfg, cfg.grid)
        self.encoder_ref = ViTEncoder(cfg, cfg.grid) if cfg.encoder == 'dual' else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.to_mean = nn.Linear(2 * d, dl)                                    # W_m, B_m
        self.to_scale = nn.Linear(2 * d, dl) if cfg.latent != 'none' else None  # W_s, B_s
        dec_in = dl if cfg.latent == 'var' else dl + d
        self.dec_embed = nn.Linear(dec_in, dd)                                 # W_d, B_d
        self.dec_pos = nn.Parameter(torch.zeros(1, cfg.num_patches, dd))      # P_d
        self.dec_blocks = nn.ModuleList(Block(dd, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth))
        self.dec_norm = nn.LayerNorm(dd)
        self.head = nn.Linear(dd, cfg.patch_size ** 2 * cfg.in_chans)         # W_o, B_o
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.dec_pos, std=0.02)
        if cfg.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # --- pieces -------------------------------------------------------------------------------
    def encode(self, ref: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor):
        """Images normalized, patch_mask (B,N) bool -> U1, merged U2 (B,N,D)."""
        px = patch_to_pixel_mask(patch_mask, self.cfg.patch_size, *damaged.shape[-2:]).to(damaged.dtype)
        damaged = damaged * (1 - px)  # failed pixels never reach the encoder
        enc_ref = self.encoder_ref or self.encoder
        u1 = enc_ref(ref)
        u2 = self.encoder(damaged, hidden=patch_mask)
        u2 = torch.where(patch_mask[..., None], self.mask_token.to(u2.dtype), u2)
        return u1, u2

    def latent_params(self, u1: torch.Tensor, u2: torch.Tensor):
        u = torch.cat([u1, u2], dim=-1)
        mean = self.to_mean(u)
        scale = None if self.to_scale is None else F.softplus(self.to_scale(u)) + 1e-4
        return mean, scale

    def decode(self, z: torch.Tensor, u1: torch.Tensor) -> torch.Tensor:
        v = self.dec_embed(z if self.cfg.latent == 'var' else torch.cat([z, u1], dim=-1)) + self.dec_pos
        for blk in self.dec_blocks:
            v = blk(v)
        return self.head(self.dec_norm(v))  # (B,N,P*P*C), normalized pixels (or residual)

    # --- public -------------------------------------------------------------------------------
    def forward(self, ref: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor,
                sample: bool | None = None) -> dict:
        """ref, damaged: (B,C,H,W) in [0,1]; patch_mask: (B,N) bool (True = failed).

        sample: draw Z = M + S*E (default: in training mode) or use Z = M (deterministic).
        Returns pred (B,N,PPC normalized), target-space restored image, mean and scale.
        """
        cfg = self.cfg
        patch_mask = patch_mask.bool()
        sample = self.training if sample is None else sample
        ref_n, dmg_n = (ref - PIXEL_MEAN) / PIXEL_STD, (damaged - PIXEL_MEAN) / PIXEL_STD
        u1, u2 = self.encode(ref_n, dmg_n, patch_mask)
        mean, scale = self.latent_params(u1, u2)
        z = mean + scale * torch.randn_like(mean) if (sample and scale is not None) else mean
        pred = self.decode(z, u1)
        if cfg.residual:
            pred = pred + patchify(ref_n, cfg.patch_size)
        restored = self.merge(pred, damaged, patch_mask)
        return {'pred': pred, 'restored': restored, 'mean': mean, 'scale': scale}

    def merge(self, pred: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Eq. 16: healthy patches of `damaged` bit-exact, predicted pixels (clamped) where failed."""
        h, w = damaged.shape[-2:]
        img = unpatchify(pred, self.cfg.patch_size, h, w, self.cfg.in_chans) * PIXEL_STD + PIXEL_MEAN
        px = patch_to_pixel_mask(patch_mask, self.cfg.patch_size, h, w) > 0
        return torch.where(px, img.clamp(0, 1).to(damaged.dtype), damaged)

    @torch.no_grad()
    def sample_stats(self, ref, damaged, patch_mask, k: int = 8):
        """K latent samples -> per-pixel mean restored image and variance map (B,1,H,W)."""
        outs = torch.stack([self(ref, damaged, patch_mask, sample=True)['restored'] for _ in range(k)])
        return outs.mean(0), outs.var(0, unbiased=False).mean(1, keepdim=True)


def build_model(cfg: SMCVAEConfig | dict) -> SMCVAE:
    return SMCVAE(cfg if isinstance(cfg, SMCVAEConfig) else SMCVAEConfig.from_dict(cfg))
