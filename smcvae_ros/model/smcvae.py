"""SMCVAE: Siamese Masked Conditional VAE (reference frame A1 + damaged frame A2 -> restored A2).

Structure follows the paper (facebookresearch/mae style, index-free masking):
  U1 = Enc(X1), U2 = Enc(X2); the mask token marks the failed positions of U2
  M = W_m [U1,U2] + B_m,  S = softplus(W_s [U1,U2] + B_s) > 0,  Z = M + S * E
  V0 = W_d [Z, U1] + B_d + P_d  ->  L decoder blocks  ->  O = W_o LN(V) + B_o
  R = X2 on healthy pixels (bit-exact), prediction on failed pixels (eq. 16, per pixel).
U is concatenated per patch along features, so M, S, Z have one D'-vector per patch.

Inputs are the two cheap cues the restoration layer computes once per frame (restoration.align):
X1 is the motion-aligned reference (`align: flow`) plus a warp-agreement channel
exp(-|X1 - fill| / 0.1) (photometric flow confidence on healthy pixels, warp-vs-fill agreement in
the holes); X2 is the damaged frame with its holes Telea-filled (`fill: telea`; zeros with
`fill: none`) plus the failed-pixel channel. The decoder predicts, per pixel, a confidence gate
g between the two cues and a residual: pred = g * X1 + (1 - g) * fill + O (`gate: true`; with
`gate: false` pred = X1 + O). Both heads start at zero, i.e. at the plain mean of the cues.
With `ref_raw: true` the unwarped reference is a third cue: X1 also holds it and its agreement with
the fill, and the gate is a softmax over (aligned reference, raw reference, fill) per pixel; with
`ref_hom: true` also the reference warped by one homography fitted to the healthy flow (a fourth cue:
the road plane's motion carried into large holes, where the smooth flow fill cannot follow).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .patches import unpatchify
from .vit import Block, ViTEncoder, init_weights

PIXEL_MEAN = 0.45
PIXEL_STD = 0.25
AGREEMENT_SCALE = 0.1
RAW_GATE_INIT = -4.0   # raw-reference gate logit bias when widening a model without it (softmax weight ~2 %)


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
    align: str = 'flow'         # reference input: flow (motion-aligned, restoration.align) | none (raw)
    fill: str = 'telea'         # damaged input's holes: telea (spatial fill; push-pull with cues: tensor) | none
    gate: bool = True           # learned per-pixel confidence between aligned reference and fill
    ref_raw: bool = False       # also feed the unwarped reference (ref input (B,6,S,S)); needs gate
    ref_hom: bool = False       # also feed the homography-warped reference (ref input (B,9,S,S)); needs ref_raw
    cues: str = 'opencv'        # opencv (restoration.align: Telea, DIS, RANSAC) | tensor (model.cues, frame graph)
    beta: float = 0.01

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError('img_size must be a multiple of patch_size')
        for name, allowed in (('encoder', ('siamese', 'dual')), ('latent', ('cond', 'var', 'none')),
                              ('stem', ('linear', 'conv')), ('align', ('none', 'flow')),
                              ('fill', ('none', 'telea')), ('cues', ('opencv', 'tensor'))):
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {getattr(self, name)!r}')
        if self.ref_raw and not (self.gate and self.align == 'flow'):
            raise ValueError('ref_raw needs gate: true and align: flow')
        if self.ref_hom and not self.ref_raw:
            raise ValueError('ref_hom needs ref_raw: true')

    @property
    def grid(self) -> tuple[int, int]:
        g = self.img_size // self.patch_size
        return g, g

    @property
    def ref_cues(self) -> int:
        """Reference cues in the `ref` input: aligned (+ raw (+ homography-warped))."""
        return 1 + self.ref_raw + self.ref_hom

    @property
    def ref_chans(self) -> int:
        """Channels of the `ref` input."""
        return self.in_chans * self.ref_cues

    @property
    def stream_chans(self) -> int:
        """Channels of each encoder stream (see SMCVAE.streams)."""
        return (self.in_chans + 1) * self.ref_cues

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
        d, dl, dd, pp = cfg.enc_dim, cfg.latent_dim, cfg.dec_dim, cfg.patch_size ** 2
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
        self.head = nn.Linear(dd, pp * cfg.in_chans)                           # W_o, B_o: residual
        self.gate = nn.Linear(dd, pp * cfg.ref_cues) if cfg.gate else None  # per-pixel cue confidence
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.dec_pos, std=0.02)
        for lin in (self.head, self.gate):
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    # --- pieces -------------------------------------------------------------------------------
    def streams(self, ref: torch.Tensor, damaged: torch.Tensor):
        """ref (B,3,S,S) aligned reference (B,6,S,S with `ref_raw`: + the raw reference), damaged
        (B,4,S,S) = fill RGB + failed pixels, in [0,1] -> normalized encoder inputs X1 = [reference,
        agreement with the fill] per reference cue, X2 = [fill, failed] (4 channels: the encoder reads it
        as zero-padded to X1's, see PatchStem), the failed-pixel map (B,1,S,S), the normalized reference
        cue(s) and the normalized fill."""
        fill, failed = damaged[:, :3], damaged[:, 3:4]
        if self.cfg.fill == 'none':
            fill = fill * (1 - failed)
        cues = ref.split(3, dim=1)
        agree = [torch.exp(-(r - fill).abs().mean(1, keepdim=True) / AGREEMENT_SCALE) for r in cues]
        ref_n, fill_n = (ref - PIXEL_MEAN) / PIXEL_STD, (fill - PIXEL_MEAN) / PIXEL_STD
        x1 = torch.cat([t for r, a in zip(ref_n.split(3, dim=1), agree) for t in (r, a)], 1)
        x2 = torch.cat([fill_n, failed], 1)
        return x1, x2, failed, ref_n, fill_n

    def encode(self, x1: torch.Tensor, x2: torch.Tensor, patch_mask: torch.Tensor):
        """Shared-weight encoder over both streams -> U1, U2 (B,N,D) with the mask token added at
        failed positions (the fill under it stays visible: it is one of the cues)."""
        if self.encoder_ref is None:
            u1, u2 = self.encoder(x1, x2)          # shared weights: both streams as one batch
        else:
            u1, u2 = self.encoder_ref(x1), self.encoder(x2)
        return u1, u2 + patch_mask[..., None].to(x2.dtype) * self.mask_token.to(x2.dtype)

    def latent_params(self, u1: torch.Tensor, u2: torch.Tensor):
        u = torch.cat([u1, u2], dim=-1)
        mean = self.to_mean(u)
        scale = None if self.to_scale is None else F.softplus(self.to_scale(u)) + 1e-4
        return mean, scale

    def decode(self, z: torch.Tensor, u1: torch.Tensor, ref_n: torch.Tensor, fill_n: torch.Tensor) -> torch.Tensor:
        """-> prediction (B,C,S,S) in normalized pixels: gated mean of the cues + residual. The
        per-patch heads are laid out as images once and the cues mixed there, so the cue images
        are never cut into patch rows (fewer transposes in the exported graph)."""
        v = self.dec_embed(z if self.cfg.latent == 'var' else torch.cat([z, u1], dim=-1)) + self.dec_pos
        for blk in self.dec_blocks:
            v = blk(v)
        v = self.dec_norm(v)
        c, (h, w) = self.cfg.in_chans, fill_n.shape[-2:]
        residual = unpatchify(self.head(v), self.cfg.patch_size, h, w, c)
        if self.gate is None:
            return ref_n[:, :c] + residual
        logits = self._planes(self.gate(v), h, w)                          # (B,K,S,S): one per pixel and cue
        if not self.cfg.ref_raw:
            return fill_n + torch.sigmoid(logits) * (ref_n[:, :c] - fill_n) + residual
        # softmax over (reference cues..., fill) with the fill's logit fixed at 0, written out: a
        # Softmax across channels costs onnxruntime two transposes (9 ms per 32 tiles on a 2-core CPU)
        top = logits.amax(1, keepdim=True).clamp(min=0)
        e = (logits - top).exp()
        wts = e / (e.sum(1, keepdim=True) + (-top).exp())
        base = fill_n
        for i, cue in enumerate(ref_n.split(c, dim=1)):
            base = base + wts[:, i:i + 1] * (cue - fill_n)
        return base + residual

    def _planes(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B,N,K*P*P) per-patch values, K-major inside a patch -> (B,K,H,W) images."""
        p = self.cfg.patch_size
        b, k = x.shape[0], x.shape[2] // (p * p)
        x = x.reshape(b, h // p, w // p, k, p, p)
        return x.permute(0, 3, 1, 4, 2, 5).reshape(b, k, h, w)

    def restore(self, ref: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor,
                noise: torch.Tensor | None = None) -> dict:
        """One pass: Z = M (noise None) or Z = M + S * noise. Returns pred, restored, mean, scale."""
        patch_mask = patch_mask.bool()
        x1, x2, failed, ref_n, fill_n = self.streams(ref, damaged)
        u1, u2 = self.encode(x1, x2, patch_mask)
        mean, scale = self.latent_params(u1, u2)
        z = mean if noise is None or scale is None else mean + scale * noise
        pred = self.decode(z, u1, ref_n, fill_n)
        return {'pred': pred, 'restored': self.merge(pred, damaged), 'mean': mean, 'scale': scale}

    # --- public -------------------------------------------------------------------------------
    def forward(self, ref: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor,
                sample: bool | None = None) -> dict:
        """ref (B,3,S,S), damaged (B,4,S,S) in [0,1] (see `streams`); patch_mask (B,N) bool, True
        where a patch holds a failed pixel. sample: Z = M + S*E (default: in training) or Z = M."""
        sample = self.training if sample is None else sample
        noise = None
        if sample and self.to_scale is not None:
            noise = torch.randn(ref.shape[0], patch_mask.shape[1], self.cfg.latent_dim, device=ref.device,
                                dtype=ref.dtype)
        return self.restore(ref, damaged, patch_mask, noise)

    def merge(self, pred: torch.Tensor, damaged: torch.Tensor) -> torch.Tensor:
        """Eq. 16 per pixel: healthy pixels of `damaged` bit-exact, predicted pixels (clamped) where failed."""
        img = pred * PIXEL_STD + PIXEL_MEAN
        failed = damaged[:, 3:4] > 0.5
        return torch.where(failed, img.clamp(0, 1).to(damaged.dtype), damaged[:, :3])

    def restore_samples(self, ref: torch.Tensor, damaged: torch.Tensor, patch_mask: torch.Tensor,
                        noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uncertainty with one encoder pass: noise (B,K,N,D') -> (restored with Z = M, per-pixel
        variance (B,1,H,W) over the K samples Z = M + S * noise_k). Only the decoder runs K+1 times,
        as one batch."""
        patch_mask = patch_mask.bool()
        x1, x2, failed, ref_n, fill_n = self.streams(ref, damaged)
        u1, u2 = self.encode(x1, x2, patch_mask)
        mean, scale = self.latent_params(u1, u2)
        b, k = noise.shape[:2]
        z = mean[:, None] + noise * (scale[:, None] if scale is not None else 0.0)
        z = torch.cat([mean[:, None], z], 1).flatten(0, 1)                     # (B*(K+1),N,D')
        rep = lambda t: t.repeat_interleave(k + 1, dim=0)  # noqa: E731
        out = self.merge(self.decode(z, rep(u1), rep(ref_n), rep(fill_n)), rep(damaged))
        out = out.unflatten(0, (b, k + 1))
        return out[:, 0], out[:, 1:].var(1, unbiased=False).mean(1, keepdim=True)

    @torch.no_grad()
    def sample_stats(self, ref, damaged, patch_mask, k: int = 8):
        """K latent samples -> (restored with Z = M, per-pixel variance (B,1,H,W))."""
        noise = torch.randn(ref.shape[0], k, patch_mask.shape[1], self.cfg.latent_dim, device=ref.device,
                            dtype=ref.dtype)
        return self.restore_samples(ref, damaged, patch_mask, noise)


def build_model(cfg: SMCVAEConfig | dict) -> SMCVAE:
    return SMCVAE(cfg if isinstance(cfg, SMCVAEConfig) else SMCVAEConfig.from_dict(cfg))
