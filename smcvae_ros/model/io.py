"""Weights as safetensors + a JSON config beside them; loading never unpickles."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .smcvae import SMCVAE, SMCVAEConfig


def config_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix('.json')


def save_model(model: SMCVAE, weights: str | Path, meta: dict | None = None) -> Path:
    weights = Path(weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_suffix('.tmp')
    save_file(state, str(tmp))
    tmp.replace(weights)
    config_path(weights).write_text(json.dumps({'model': model.cfg.to_dict(), 'meta': meta or {}}, indent=2))
    return weights


def load_model(weights: str | Path, device: str | torch.device = 'cpu') -> SMCVAE:
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f'model weights not found: {weights}')
    cfg_file = config_path(weights)
    if not cfg_file.is_file():
        raise FileNotFoundError(f'model config not found next to the weights: {cfg_file}')
    cfg = SMCVAEConfig.from_dict(json.loads(cfg_file.read_text())['model'])
    model = SMCVAE(cfg)
    model.load_state_dict(load_file(str(weights), device='cpu'))
    return model.to(device).eval()


def load_meta(weights: str | Path) -> dict:
    return json.loads(config_path(weights).read_text()).get('meta', {})
