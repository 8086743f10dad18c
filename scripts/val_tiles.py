"""Score model files on the fixed validation tiles `smcvae train` selects on (failed-pixel PSNR, pooled).

    .venv/bin/python scripts/val_tiles.py MODEL [MODEL ...] [--val-dir DIR] [--samples 384]

The tiles are the training config's (`config/train.yaml`: val_dir, data section, seed 1234, mixed
failures), their cues made the way each model's config says (`cues: opencv|tensor`), so the numbers
equal the `val_psnr` column of a run's metrics.csv for its checkpoints.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smcvae_ros.model import load_model  # noqa: E402
from smcvae_ros.model.smcvae import SMCVAEConfig  # noqa: E402
from smcvae_ros.training.tile_metrics import pooled_psnr  # noqa: E402
from smcvae_ros.training.train import load_config, pair_spec, validate, validation_batch  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('models', nargs='+')
    ap.add_argument('--config', default='config/train.yaml')
    ap.add_argument('--val-dir', help='default: the config\'s val_dir')
    ap.add_argument('--samples', type=int, help='default: the config\'s val_samples')
    args = ap.parse_args(argv)
    cfg = load_config(args.config, [])
    # the raw and homography-warped references ride along for every model (they draw no random
    # numbers: the same tiles)
    spec = replace(pair_spec(SMCVAEConfig.from_dict(cfg['model']), cfg['data']), ref_raw=True, ref_hom=True)
    tiles = {}   # cues -> the val tiles made with them: each model is scored on its own cues
    print('model | cues | SMCVAE | flow-warp | Telea | blend | copy  (failed-pixel PSNR, dB)')
    for path in args.models:
        model = load_model(path)
        if model.cfg.cues not in tiles:
            tiles[model.cfg.cues] = validation_batch(replace(spec, cues=model.cfg.cues), args.val_dir or cfg['val_dir'],
                                                     args.samples or cfg['val_samples'])
        ref, dmg, tgt, mask = tiles[model.cfg.cues]
        copy = pooled_psnr(ref[:, 3:6], tgt, dmg[:, 3:4])
        s = validate(model, (ref[:, :model.cfg.ref_chans], dmg, tgt, mask), torch.device('cpu'))
        print(f"{path} | {model.cfg.cues} | {s['smcvae']:.2f} | {s['flow']:.2f} | {s['telea']:.2f} | "
              f"{s['blend']:.2f} | {copy:.2f}", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
