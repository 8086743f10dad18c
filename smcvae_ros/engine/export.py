"""ONNX export of the SMCVAE restore graph, its verification, and the weights <-> ONNX consistency.

Graph I/O (all float32, batch axis dynamic):
    ref (B,3,S,S) aligned reference, damaged (B,4,S,S) fill + failed pixels, in [0,1];
    patch_mask (B,N) float, > 0.5 = patch holds a failed pixel  ->  restored (B,3,S,S)
    sampling graph: + noise (B,K,N,D') standard normal (K dynamic)  ->  restored, variance (B,1,S,S)
The patch mask is float (not bool) so every binding of the TensorRT engine is FP32.
The deterministic graph uses Z = M; the sampling graph runs the encoder once and the decoder for
Z = M and the K samples Z = M + S * noise_k in one batch (uncertainty path).
The sha256 of the weights and the JSON's model config are stored in the ONNX metadata_props
(engine.graph decides at run time which ONNX matches, without torch).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..model import SMCVAE, load_model
from .base import BackendError, read_model_config
from .graph import (INPUTS, META_MODEL_CONFIG, META_SAMPLING, META_WEIGHTS_SHA, OUTPUT, VARIANCE, file_sha256,
                    onnx_path_for)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17            # >= 17: LayerNorm is one LayerNormalization op (TensorRT keeps it in FP32)
TOLERANCE = 1e-4              # max abs error ONNX Runtime vs PyTorch, fp32


@contextmanager
def atomic_onnx(out: Path):
    """A temporary file beside `out` to export into; moved onto `out` only when the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.onnx', dir=out.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it 0600; an export is as readable as any file
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_with_meta(proto, path: str, meta: dict) -> None:
    """Set the ONNX metadata_props and write the model."""
    import onnx
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, path)


class RestoreGraph(nn.Module):
    """SMCVAE.forward restricted to the inference path, with the latent noise as an explicit input."""

    def __init__(self, model: SMCVAE):
        super().__init__()
        self.model = model

    def forward(self, ref, damaged, patch_mask, noise=None):
        if noise is None:
            return self.model.restore(ref, damaged, patch_mask > 0.5)['restored']
        return self.model.restore_samples(ref, damaged, patch_mask > 0.5, noise)


def example_inputs(cfg, batch: int = 2, sampling: bool = False, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s, n = cfg.img_size, cfg.num_patches
    ref, dmg = torch.rand(batch, cfg.ref_chans, s, s, generator=g), torch.rand(batch, 4, s, s, generator=g)
    dmg[:, 3] = (dmg[:, 3] < 0.3).float()
    mask = (torch.nn.functional.max_pool2d(dmg[:, 3:4], cfg.patch_size).flatten(1) > 0).float()
    return (ref, dmg, mask) + ((torch.randn(batch, 3, n, cfg.latent_dim, generator=g),) if sampling else ())


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
    outputs = [OUTPUT] + ([VARIANCE] if sampling else [])
    dynamic = {n: {0: 'batch'} for n in names + outputs}
    if sampling:
        dynamic['noise'] = {0: 'batch', 1: 'samples'}
    with atomic_onnx(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore', torch.jit.TracerWarning)  # shape asserts traced as constants
            warnings.simplefilter('ignore', DeprecationWarning)       # the legacy exporter, chosen on purpose
            # dynamo=True needs onnxscript; the TorchScript exporter gives the same ops at opset 17
            torch.onnx.export(graph, example_inputs(model.cfg, sampling=sampling), tmp, input_names=names,
                              output_names=outputs, dynamic_axes=dynamic, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        meta = {META_WEIGHTS_SHA: file_sha256(weights), META_SAMPLING: str(int(sampling)),
                META_MODEL_CONFIG: json.dumps(read_model_config(weights), sort_keys=True),
                'smcvae_img_size': str(model.cfg.img_size), 'smcvae_patch_size': str(model.cfg.patch_size),
                'smcvae_latent_dim': str(model.cfg.latent_dim)}
        save_with_meta(proto, tmp, meta)
        if check:
            err, source = verify_onnx(tmp, weights, clips=clips, require_real=require_real)
            log.info('verified %s: max abs error %.2e vs PyTorch on %s', out.name, err, source)
            save_with_meta(proto, tmp, {**meta, 'smcvae_check_max_abs_error': f'{err:.3e}',
                                        'smcvae_check_tiles': source})
    return out


def verification_batch(cfg, clips: str | Path | None = None, n: int = 8, seed: int = 0, require_real: bool = False):
    """Real tiles (ref aligned, damaged, mask) from the clip folder `clips` when it exists, else random tiles."""
    root = Path(clips) if clips else None
    if root is not None and root.is_dir():
        from ..data.clips import list_clips
        from ..training.pairs import PairSpec, fixed_batch
        spec = PairSpec(img_size=cfg.img_size, patch_size=cfg.patch_size, align=cfg.align, ref_raw=cfg.ref_raw,
                        ref_hom=cfg.ref_hom)
        ref, dmg, _, mask = fixed_batch(list_clips(root), spec, n, seed, ratio=0.3, gap=3)
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
        noise = torch.randn(ref.shape[0], 3, model.cfg.num_patches, model.cfg.latent_dim,
                            generator=torch.Generator().manual_seed(1))
        feeds['noise'] = noise.numpy()
    with torch.no_grad():
        expected = graph(ref, dmg, mask, noise)
    expected = [t.numpy() for t in (expected if noise is not None else (expected,))]
    got = sess.run([o.name for o in sess.get_outputs()], feeds)
    err = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    if not err <= tol:
        raise BackendError(f'ONNX export check failed: max abs error {err:.3e} > {tol:.0e} on {source}')
    return err, source
