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
            'model.dec_depth=1', 'model.dec_heads=2', 'model.latent_dim=16', 'data.gap=[1,2]',
            'data.tiles_per_frame=4', 'data.shuffle_buffer=8']


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
    # exponent floats without a dot are numbers (PyYAML alone reads `1e-4` as a string: AdamW then failed)
    cfg_file.write_text('lr: 3e-4\nmodel:\n  beta: 1E-2\n')
    cfg = load_config(str(cfg_file), ['weight_decay=5e-2', 'model.latent_dim=64', 'init_from=1e-4.safetensors'])
    assert cfg['lr'] == 3e-4 and cfg['model']['beta'] == 0.01 and cfg['weight_decay'] == 0.05
    assert cfg['model']['latent_dim'] == 64 and cfg['init_from'] == '1e-4.safetensors'
    assert load_config(None, ['lr=-1.5e-4'])['lr'] == -1.5e-4
    with pytest.raises(ValueError, match='unknown override'):
        load_config(None, ['bogus=1'])
    cfg_file.write_text('bogus: 1\n')
    with pytest.raises(ValueError, match='unknown training config key'):
        load_config(str(cfg_file), [])


def test_warm_start_copies_matching_tensors_and_widens_the_stem(tmp_path):
    import torch

    from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model
    from smcvae_ros.training.train import warm_start
    small = dict(img_size=32, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, latent_dim=16)
    src = SMCVAE(SMCVAEConfig(**small))
    state = src.state_dict()
    state['encoder.stem.net.0.weight'] = state['encoder.stem.net.0.weight'][:, :3].clone()  # an older 3-channel stem
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / 'old.safetensors'))
    dst = SMCVAE(SMCVAEConfig(**small))
    fresh = warm_start(dst, tmp_path / 'old.safetensors')
    assert set(fresh) == {'head.weight', 'head.bias', 'gate.weight', 'gate.bias'}
    assert torch.equal(dst.encoder.blocks[0].attn.qkv.weight, src.encoder.blocks[0].attn.qkv.weight)
    stem = dst.encoder.stem.net[0].weight
    assert torch.equal(stem[:, :3], state['encoder.stem.net.0.weight']) and not stem[:, 3].any()
    assert not dst.head.weight.any()
    # a model of the same design (its JSON beside the weights): everything continues, heads included
    torch.nn.init.normal_(src.head.weight)
    save_model(src, tmp_path / 'same.safetensors')
    same = SMCVAE(SMCVAEConfig(**small, beta=0.1))
    assert warm_start(same, tmp_path / 'same.safetensors') == []
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), src.state_dict().values()))
    # a shallower encoder of that design (a cheaper model): its blocks and the heads continue
    shallow = SMCVAE(SMCVAEConfig(**{**small, 'enc_depth': 1, 'dec_depth': 2}))
    assert set(warm_start(shallow, tmp_path / 'same.safetensors')) == {
        k for k in shallow.state_dict() if k.startswith('dec_blocks.1.')}     # the extra decoder block
    assert torch.equal(shallow.head.weight, src.head.weight)


def test_lr_schedule_ends_at_steps_or_at_the_time_limit():
    from smcvae_ros.training.train import lr_at
    cfg = {'lr': 1e-3, 'warmup': 10, 'steps': 110}
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(0.525e-3) and lr_at(110, cfg) == pytest.approx(0.05e-3)
    # anneal_by_time: whichever is further along, the steps or the time used, sets the cosine
    assert lr_at(10, cfg, time_frac=0.5) == pytest.approx(lr_at(60, cfg))
    assert lr_at(10, cfg, time_frac=1.0) == lr_at(110, cfg) == lr_at(10, cfg, time_frac=2.0)
    assert lr_at(60, cfg, time_frac=0.1) == lr_at(60, cfg)
    assert lr_at(5, cfg, time_frac=0.9) == lr_at(5, cfg)          # warm-up is by steps only


def test_train_on_webp_frames_with_a_time_annealed_schedule(clips, tmp_path):
    """WebP frame folders are clips (packed training subsets), and `anneal_by_time` runs to `steps`."""
    for split in ('train', 'val'):
        for png in sorted((clips / split / 'clip').glob('*.png')):
            cv2.imwrite(str(png.with_suffix('.webp')), cv2.imread(str(png)), [cv2.IMWRITE_WEBP_QUALITY, 90])
            png.unlink()
    out = tmp_path / 'run'
    assert main(['train', *overrides(clips, out, 3), 'anneal_by_time=true', 'time_limit_min=10']) == 0
    assert json.loads((out / 'last.json').read_text())['step'] == 3
    assert (out / 'config.yaml').read_text().count('anneal_by_time: true') == 1


def test_val_tiles_scores_each_model_on_its_own_cues(val_frames, capsys):
    """scripts/val_tiles.py: an OpenCV-cue model and a `cues: tensor` model on the same val tiles, each
    with the cues it was trained on (the flow-warp column differs: DIS vs Lucas-Kanade)."""
    import importlib.util
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location('val_tiles', repo / 'scripts' / 'val_tiles.py')
    val_tiles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(val_tiles)
    models = [repo / 'models' / 'smcvae_tile64_small.safetensors', repo / 'models' / 'smcvae_tile64_tensor.safetensors']
    assert val_tiles.main([*map(str, models), '--val-dir', str(val_frames[0].parent), '--samples', '8']) == 0
    rows = [line.split(' | ') for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[1] for r in rows] == ['opencv', 'tensor']
    scores = [[float(v) for v in r[2:]] for r in rows]
    assert all(np.isfinite(s).all() for s in scores)
    assert scores[0][1] != scores[1][1]                    # flow-warp: DIS vs the tensor flow
    assert scores[0][2] != scores[1][2]                    # Telea vs push-pull fill
