"""ONNX export of the SMCVAE restore graph, its verification, and the weights <-> ONNX consistency.

Graph I/O (all float32, batch axis dynamic):
    ref (B,3,S,S), damaged (B,3,S,S) in [0,1]; patch_mask (B,N) float, > 0.5 = failed
    [sampling graph only: noise (B,N,D') standard normal]  ->  restored (B,3,S,S)
The patch mask is float (not bool) so every binding of the TensorRT engine is FP32.
The deterministic graph uses Z = M; the sampling graph Z = M + S * noise (uncertainty path).
The sha256 of the weights and the JSON's model config are stored in the ONNX metadata_props
(engine.graph decides at run time which ONNX matches, without torch).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..model import SMCVAE, load_model
from ..model.patches import patchify
from ..model.smcvae import PIXEL_MEAN, PIXEL_STD
from .base import BackendError, read_model_config
from .graph import INPUTS, META_MODEL_CONFIG, META_SAMPLING, META_WEIGHTS_SHA, OUTPUT, file_sha256, onnx_path_for

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17            # >= 17: LayerNorm is one LayerNormalization op (TensorRT keeps it in FP32)
TOLERANCE = 1e-4              # max abs error ONNX Runtime vs PyTorch, fp32


class RestoreGraph(nn.Module):
    """SMCVAE.forward restricted to the inference path, with the latent noise as an explicit input."""

    def __init__(self, model: SMCVAE):
        super().__init__()
        self.model = model

    def forward(self, ref, damaged, patch_mask, noise=None):
        m, cfg = self.model, self.model.cfg
        mask = patch_mask > 0.5
        ref_n, dmg_n = (ref - PIXEL_MEAN) / PIXEL_STD, (damaged - PIXEL_MEAN) / PIXEL_STD
        u1, u2 = m.encode(ref_n, dmg_n, mask)
        mean, scale = m.latent_params(u1, u2)
        z = mean if noise is None or scale is None else mean + scale * noise
        pred = m.decode(z, u1)
        if cfg.residual:
            pred = pred + patchify(ref_n, cfg.patch_size)
        return m.merge(pred, damaged, mask)


def example_inputs(cfg, batch: int = 2, sampling: bool = False, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s, n = cfg.img_size, cfg.num_patches
    ref, dmg = torch.rand(batch, 3, s, s, generator=g), torch.rand(batch, 3, s, s, generator=g)
    mask = (torch.rand(batch, n, generator=g) < 0.3).float()
    return (ref, dmg, mask) + ((torch.randn(batch, n, cfg.latent_dim, generator=g),) if sampling else ())


def export_onnx(weights: str | Path, out: str | Path | None = None, opset: int = DEFAULT_OPSET,
                sampling: bool = False, check: bool = True, clips: str | Path | None = None,
                require_real: bool = False) -> Path:
    """Export (atomically) and, with check, verify against PyTorch with onnxruntime (raises on failure).

    The check's result is recorded in metadata_props (smcvae_check_max_abs_error, smcvae_check_tiles).
    """
    import onnx
    weights = Path(weights)
    out = Path(out) if out else onnx_path_for(weights, sampling)
    if opset < 17:
        raise ValueError('opset must be >= 17 (LayerNormalization as one op)')
    model = load_model(weights, 'cpu')
    graph = RestoreGraph(model).eval()
    names = list(INPUTS) + (['noise'] if sampling else [])
    dynamic = {n: {0: 'batch'} for n in names + [OUTPUT]}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.onnx', dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore', torch.jit.TracerWarning)  # shape asserts traced as constants
            warnings.simplefilter('ignore', DeprecationWarning)       # the legacy exporter, chosen on purpose
            # dynamo=True needs onnxscript; the TorchScript exporter gives the same ops at opset 17
            torch.onnx.export(graph, example_inputs(model.cfg, sampling=sampling), tmp, input_names=names,
                              output_names=[OUTPUT], dynamic_axes=dynamic, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        meta = {META_WEIGHTS_SHA: file_sha256(weights), META_SAMPLING: str(int(sampling)),
                META_MODEL_CONFIG: json.dumps(read_model_config(weights), sort_keys=True),
                'smcvae_img_size': str(model.cfg.img_size), 'smcvae_patch_size': str(model.cfg.patch_size),
                'smcvae_latent_dim': str(model.cfg.latent_dim)}
        onnx.helper.set_model_props(proto, meta)
        onnx.save(proto, tmp)
        if check:
            err, source = verify_onnx(tmp, weights, clips=clips, require_real=require_real)
            log.info('verified %s: max abs error %.2e vs PyTorch on %s', out.name, err, source)
            onnx.helper.set_model_props(proto, {**meta, 'smcvae_check_max_abs_error': f'{err:.3e}',
                                                'smcvae_check_tiles': source})
            onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def verification_batch(cfg, clips: str | Path | None = None, n: int = 8, seed: int = 0, require_real: bool = False):
    """Real tiles (ref aligned, damaged, mask) from the clip folder `clips` when it exists, else random tiles."""
    root = Path(clips) if clips else None
    if root is not None and root.is_dir():
        from ..data.clips import list_clips
        from ..training.pairs import PairSpec, fixed_batch
        spec = PairSpec(img_size=cfg.img_size, patch_size=cfg.patch_size, align=cfg.align)
        ref, dmg, _, mask = fixed_batch(list_clips(root), spec, n, seed, ratio=0.3)
        return ref, dmg, mask.float(), 'real tiles from ' + str(root)
    if require_real:
        raise BackendError(f'no clip folder at {root} for the check on real tiles (pass --clips)')
    log.warning('no clip folder at %s: verifying on random tiles', root)
    return (*example_inputs(cfg, n, seed=seed), 'random tiles')


def verify_onnx(onnx_file: str | Path, weights: str | Path, clips: str | Path | None = None,
                tol: float = TOLERANCE, require_real: bool = False) -> tuple[float, str]:
    """(max abs error, tile source) of onnxruntime (CPU) vs PyTorch on the same tiles and noise;
    raises BackendError if the error exceeds tol."""
    import onnxruntime as ort
    model = load_model(weights, 'cpu')
    graph = RestoreGraph(model).eval()
    ref, dmg, mask, source = verification_batch(model.cfg, clips, require_real=require_real)
    sess = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    feeds = {'ref': ref.numpy(), 'damaged': dmg.numpy(), 'patch_mask': mask.numpy()}
    noise = None
    if 'noise' in {i.name for i in sess.get_inputs()}:
        noise = torch.randn(ref.shape[0], model.cfg.num_patches, model.cfg.latent_dim,
                            generator=torch.Generator().manual_seed(1))
        feeds['noise'] = noise.numpy()
    with torch.no_grad():
        expected = graph(ref, dmg, mask, noise).numpy()
    got = sess.run([OUTPUT], feeds)[0]
    err = float(np.abs(got - expected).max())
    if not err <= tol:
        raise BackendError(f'ONNX export check failed: max abs error {err:.3e} > {tol:.0e} on {source}')
    return err, source
