"""The one restoration graph: (reference, damaged frame, failure mask, tile origins) -> restored frame.

Everything between the decoded frames and the restored pixels is one module, so one ONNX graph and
one TensorRT engine hold it (engine.frame_export):

    cues (model.cues: push-pull fill, LK flow + its hole fill, IRLS homography, GridSample warps)
    -> model-size tiles gathered at the given origins -> SMCVAE on all tiles as one batch
    -> feather-blended back (scatter-add) -> failed pixels from the blend, every other pixel the
    input's own value (bit-exact: a select on the uint8 input).

I/O, H and W dynamic, T (tiles) dynamic:
    reference, damaged (H,W,3) uint8 RGB; failed (H,W) uint8 (nonzero = failed);
    origins (T,2) int64 (y0, x0) of each S x S tile, from restoration.tiles.tile_origins (where the
    tiles go is decided on the host: it is cheap, and it keeps the work bounded by the failed area)
    -> restored (H,W,3) uint8.
The frame must be at least S x S (the restorer pads smaller ones).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..restoration.tiles import feather
from .cues import tensor_cues
from .smcvae import SMCVAE


class FrameGraph(nn.Module):
    def __init__(self, model: SMCVAE, overlap: int = 8):
        super().__init__()
        if model.cfg.cues != 'tensor':
            raise ValueError(f"the frame graph needs a model trained on tensor cues (cues: tensor), "
                             f"not {model.cfg.cues!r}")
        self.model = model
        self.size, self.patch = model.cfg.img_size, model.cfg.patch_size
        self.overlap = overlap
        self.register_buffer('weight', torch.from_numpy(feather(self.size, overlap)), persistent=False)
        self.register_buffer('offsets', torch.arange(self.size), persistent=False)

    def tile_index(self, origins: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """(T*S*S,) flat frame index of every tile pixel, tile by tile, row-major."""
        iy = origins[:, 0:1] + self.offsets                        # (T,S)
        ix = origins[:, 1:2] + self.offsets
        return (iy[:, :, None] * width + ix[:, None, :]).flatten()

    def cues(self, reference: torch.Tensor, damaged: torch.Tensor, failed: torch.Tensor):
        """(1,3n,H,W) reference cues and (1,4,H,W) fill + failed, floats in [0,1]."""
        ref = reference.permute(2, 0, 1).unsqueeze(0).float() / 255.0
        dmg = damaged.permute(2, 0, 1).unsqueeze(0).float() / 255.0
        fail = (failed > 0).float().unsqueeze(0).unsqueeze(0)
        dmg = dmg * (1.0 - fail)                                   # failed pixels' values never enter
        refs, fill = tensor_cues(ref, dmg, fail, self.model.cfg.ref_cues)
        return torch.cat(refs, 1), torch.cat([fill, fail], 1)

    def forward(self, reference: torch.Tensor, damaged: torch.Tensor, failed: torch.Tensor,
                origins: torch.Tensor, mark=None) -> torch.Tensor:
        """mark: None (export), or a callable mark(stage) run when the cues and the model are done
        (the torch backend records CUDA events or host times there for the stage timings)."""
        s = self.size
        with torch.autocast(reference.device.type, enabled=False):       # the cues stay in fp32 under fp16
            refs, dmg4 = self.cues(reference, damaged, failed)
        if mark is not None:
            mark('align')
        width = (refs[0, 0, 0] * 0 + 1).sum().to(origins.dtype)    # W as a tensor (dynamic shapes)
        idx = self.tile_index(origins, width)
        take = lambda x, c: x[0].flatten(1)[:, idx].view(c, -1, s, s).transpose(0, 1)  # noqa: E731
        ref_t, dmg_t = take(refs, self.model.cfg.ref_chans), take(dmg4, 4)
        patch_mask = torch.nn.functional.max_pool2d(dmg_t[:, 3:4], self.patch).flatten(1) > 0.5
        out = self.model.restore(ref_t, dmg_t, patch_mask)['restored'].float()  # (T,3,S,S)
        if mark is not None:
            mark('infer')
        wt = self.weight.expand_as(out[:, :1])
        vals = torch.cat([out * wt, wt], 1).transpose(0, 1).reshape(4, -1)
        canvas = torch.zeros_like(dmg4[0].flatten(1)).scatter_add(1, idx.unsqueeze(0).expand(4, -1), vals)
        blend = (canvas[:3] / canvas[3:].clamp_min(1e-6)).view_as(dmg4[0, :3]).permute(1, 2, 0)
        pixels = (blend * 255.0).round().clamp(0, 255).to(torch.uint8)
        return torch.where(failed.unsqueeze(2) > 0, pixels, damaged)
