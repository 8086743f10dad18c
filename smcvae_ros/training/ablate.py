"""`smcvae ablate`: equal-budget training runs of model variants (the paper's Table 1 plus this
project's design choices), each evaluated on the same val pairs as `smcvae eval`."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..evaluation.baselines import BASELINES
from ..data.clips import list_clips
from ..evaluation.report import LABELS
from ..evaluation.evaluate import METRICS, aggregate, build_pairs, choose_targets, load_smcvae, run_pairs, write_csv

# name -> (training-config overrides, what it changes). 'base' is the training config as given.
VARIANTS = {
    'base': ([], 'training config as given (shipped design)'),
    'no_reparam': (['model.latent=none'], 'no reparameterization: Z = M'),
    'latent_var': (['model.latent=var'], 'decoder sees Z only, not [Z, U1]'),
    'beta_0': (['model.beta=0.0'], 'beta = 0 (no KL term)'),
    'beta_0.1': (['model.beta=0.1'], 'beta = 0.1'),
    'dual_encoder': (['model.encoder=dual'], 'two encoders instead of shared (Siamese) weights'),
    'linear_stem': (['model.stem=linear'], 'linear patch embedding instead of the conv stem'),
    'no_align': (['model.align=none'], 'reference not flow-aligned (raw last healthy frame)'),
    'no_fill': (['model.fill=none'], 'holes of the damaged stream zeroed instead of Telea-filled'),
    'no_gate': (['model.gate=false'], 'no learned confidence: residual over the flow-warped reference'),
}


def train_variant(name: str, base_config: str | None, overrides: list[str], out: Path,
                  budget_min: float, steps: int | None) -> dict:
    """Train one variant into out/<name>/ (skipped when its train.json marks it finished)."""
    from ..model.io import load_model
    from .train import load_config, train
    run_dir = out / name
    done = run_dir / 'ablation_train.json'
    if done.is_file():
        print(f'{name}: already trained ({done}); delete {run_dir} to retrain')
        return json.loads(done.read_text())
    extra = [f'out_dir={run_dir}', f'time_limit_min={budget_min}'] + ([f'steps={steps}'] if steps else [])
    cfg = load_config(base_config, overrides + VARIANTS[name][0] + extra)
    t0 = time.time()
    best = train(cfg)
    step = json.loads((run_dir / 'last.json').read_text())['step']
    params = sum(p.numel() for p in load_model(best).parameters())
    info = {'variant': name, 'weights': str(best), 'steps': step, 'train_min': (time.time() - t0) / 60,
            'params': params}
    done.write_text(json.dumps(info, indent=2))
    return info


def ablate(out_dir: str | Path, variants: list[str], base_config: str | None, overrides: list[str],
           budget_min: float, steps: int | None, clips_dir: str, n_pairs: int = 24, ratio: float = 0.5,
           gap: int = 3, seed: int = 0) -> str:
    """Train every variant, then score each (and the baselines) on one set of val pairs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = [train_variant(v, base_config, overrides, out, budget_min, steps) for v in variants]
    targets = choose_targets(list_clips(clips_dir), n_pairs, gap, seed)
    pairs = build_pairs(targets, ratio, gap, 'random', seed)
    table = []
    for info in trained:
        method = load_smcvae(info['weights'], 'auto', 'auto')
        agg = aggregate(run_pairs({'smcvae': method}, pairs)[0], ratio, gap)['smcvae']
        table.append({'variant': info['variant'], 'changes': VARIANTS[info['variant']][1], 'params': info['params'],
                      'steps': info['steps'], 'train_min': info['train_min'], **{k: agg[k] for k in METRICS}})
    base_agg = aggregate(run_pairs(BASELINES, pairs)[0], ratio, gap)
    for m, agg in base_agg.items():
        table.append({'variant': m, 'changes': f'baseline: {LABELS[m]}', 'params': 0, 'steps': 0, 'train_min': 0.0,
                      **{k: agg[k] for k in METRICS}})
    write_csv(out / 'ablation.csv', table)
    budget = ' and at most '.join(filter(None, [f'{budget_min:g} min' if budget_min else '',
                                                f'{steps} steps' if steps else '']))
    setup = (f'Each variant trained for {budget} (same data, seed and schedule), '
             f'scored on {n_pairs} val pairs of `{clips_dir}` '
             f'at mask ratio {ratio}, frame gap {gap} (random 16-px cells, full frames, via Restorer; '
             f'best validated checkpoint of each run).')
    text = ablation_markdown(table, setup)
    (out / 'ablation.md').write_text(text)
    return text


def ablation_markdown(table: list[dict], setup: str) -> str:
    ref = next((r['psnr_masked'] for r in table if r['variant'] == 'base'), None)
    lines = ['## Ablation (equal training budget)', '', setup, '',
             '| variant | change | params | steps | masked PSNR (dB) | Δ vs base | masked SSIM | frame PSNR (dB) |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in table:
        delta = '' if ref is None or r['variant'] == 'base' else f"{r['psnr_masked'] - ref:+.2f}"
        params = f"{r['params'] / 1e6:.2f} M" if r['params'] else '-'
        lines.append(f"| {r['variant']} | {r['changes']} | {params} | {r['steps'] or '-'} | "
                     f"{r['psnr_masked']:.2f} | {delta} | {r['ssim_masked']:.3f} | {r['psnr_frame']:.2f} |")
    return '\n'.join(lines) + '\n'


def run(args: argparse.Namespace) -> int:
    names = list(VARIANTS) if args.variants == 'all' else [v.strip() for v in args.variants.split(',') if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f'error: unknown variant(s) {unknown}; choose from {", ".join(VARIANTS)}')
    if not args.budget_min and not args.steps:
        raise SystemExit('error: give a training budget: --budget-min and/or --steps')
    print(ablate(args.out, names, args.config, args.overrides, args.budget_min, args.steps, args.clips,
                 args.pairs, args.ratio, args.gap, args.seed))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser('ablate', help='train model variants for an equal budget and tabulate val PSNR (Table 1)')
    p.add_argument('--budget-min', type=float, default=0.0, help='wall-clock training minutes per variant')
    p.add_argument('--steps', type=int, help='training steps per variant (also sets the LR schedule length)')
    p.add_argument('--out', required=True, help='output folder: <variant>/ runs, ablation.md, ablation.csv')
    p.add_argument('--variants', default='all', help=f'comma list or "all": {", ".join(VARIANTS)}')
    p.add_argument('--config', default='config/train.yaml', help='base training config (default: %(default)s)')
    p.add_argument('--clips', default='../shared/data/val', help='evaluation clips (default: %(default)s)')
    p.add_argument('--pairs', type=int, default=24, help='val pairs per variant (default: %(default)s)')
    p.add_argument('--ratio', type=float, default=0.5)
    p.add_argument('--gap', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('overrides', nargs='*', help='training overrides for every variant, e.g. batch_size=16')
    p.set_defaults(func=run)
