"""`smcvae train`: a few steps on tiny clips, checkpoint resume, safetensors outputs."""
import json

import cv2
import numpy as np
import pytest

from smcvae_ros.cli import main
from smcvae_ros.model import load_model
from smcvae_ros.training.train import load_config


@pytest.fixture
def clips(tmp_path):
    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), (5, 5), 0)
    for split in ('train', 'val'):
        d = tmp_path / split / 'clip'
        d.mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(d / f'{i:06d}.png'), world[10:90, 3 * i:3 * i + 120])
    return tmp_path


def overrides(clips, out, steps):
    return [f'train_dir={clips / "train"}', f'val_dir={clips / "val"}', f'out_dir={out}', f'steps={steps}',
            'batch_size=4', 'val_every=3', 'val_samples=4', 'ckpt_every=2', 'workers=0', 'warmup=2',
            'model.img_size=32', 'model.enc_dim=32', 'model.enc_depth=1', 'model.enc_heads=2', 'model.dec_dim=32',
            'model.dec_depth=1', 'model.dec_heads=2', 'model.latent_dim=16', 'data.margin=8', 'data.gap=[1,2]']


def test_train_resume_and_outputs(clips, tmp_path):
    out = tmp_path / 'run'
    assert main(['train', *overrides(clips, out, 3)]) == 0
    meta = json.loads((out / 'last.json').read_text())
    assert meta['step'] == 3
    assert (out / 'best.safetensors').exists() and load_model(out / 'best.safetensors').cfg.enc_dim == 32
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert rows[0].startswith('step,') and any(r.startswith('3,') for r in rows[1:])
    assert main(['train', *overrides(clips, out, 5)]) == 0  # resumes at step 3, runs 2 more
    assert json.loads((out / 'last.json').read_text())['step'] == 5
    assert not list(out.glob('*.pt')) and not list(out.glob('*.pth'))


def test_config_overrides_and_errors(tmp_path):
    cfg_file = tmp_path / 'c.yaml'
    cfg_file.write_text('steps: 7\nmodel:\n  enc_dim: 64\n')
    cfg = load_config(str(cfg_file), ['lr=0.001', 'model.latent=none'])
    assert cfg['steps'] == 7 and cfg['lr'] == 0.001 and cfg['model'] == {'enc_dim': 64, 'latent': 'none'}
    with pytest.raises(ValueError, match='unknown override'):
        load_config(None, ['bogus=1'])
    cfg_file.write_text('bogus: 1\n')
    with pytest.raises(ValueError, match='unknown training config key'):
        load_config(str(cfg_file), [])
