"""`smcvae train`: YAML config + CLI overrides, resumable checkpoints, CSV/TensorBoard metrics,
validation PSNR every N steps, best checkpoint kept. Weights are safetensors (no pickles).
One process, or N ranks under torchrun with DistributedDataParallel (see distributed.py): every step
consumes batch_size samples per rank; rank 0 validates, logs and writes checkpoints."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..data.clips import list_clips, set_frame_cache_mb
from .pairs import PairDataset, PairSpec, fixed_batch
from .tile_metrics import pooled_psnr
from ..model import SMCVAE, SMCVAEConfig, save_model, smcvae_loss
from ..model.smcvae import RAW_GATE_INIT
from ..model.io import config_path
from . import distributed as D

DEFAULTS = {
    'train_dir': '../shared/data/train', 'val_dir': '../shared/data/val', 'out_dir': 'runs/smcvae',
    'steps': 20000, 'batch_size': 32, 'lr': 4e-4, 'weight_decay': 0.05, 'warmup': 300,
    'val_every': 500, 'val_samples': 256, 'ckpt_every': 250, 'seed': 0, 'workers': 1,
    'device': 'auto', 'time_limit_min': 0.0, 'anneal_by_time': False, 'threads': 0, 'holdout_clips': [],
    'init_from': '',
    'model': {}, 'data': {},
    'frame_cache_mb': 1024,     # decoded-frame LRU per process (data/clips.py)
}


class _ConfigLoader(yaml.SafeLoader):
    """YAML with 1.2 floats: `1e-4` is a number, not the string PyYAML (YAML 1.1) makes of it."""


_ConfigLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$'), list('-+0123456789.'))


def _yaml(text: str):
    return yaml.load(text, Loader=_ConfigLoader)


def load_config(path: str | None, overrides: list[str]) -> dict:
    """DEFAULTS, then the YAML file, then `key=value` / `section.key=value` overrides (YAML values)."""
    cfg = json.loads(json.dumps(DEFAULTS))
    if path:
        user = _yaml(Path(path).read_text()) or {}
        for k, v in user.items():
            if k not in cfg:
                raise ValueError(f'unknown training config key {k!r}')
            cfg[k] = {**cfg[k], **v} if isinstance(cfg[k], dict) else v
    for item in overrides:  # key=value or model.key=value
        key, _, raw = item.partition('=')
        val = _yaml(raw)
        if '.' in key:
            sect, sub = key.split('.', 1)
            cfg[sect][sub] = val
        elif key in cfg:
            cfg[key] = val
        else:
            raise ValueError(f'unknown override {key!r}')
    return cfg


def pair_spec(model_cfg: SMCVAEConfig, data: dict) -> PairSpec:
    names = {f.name for f in fields(PairSpec)}
    extra = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return PairSpec(img_size=model_cfg.img_size, patch_size=model_cfg.patch_size, align=model_cfg.align,
                    ref_raw=model_cfg.ref_raw, ref_hom=model_cfg.ref_hom, cues=model_cfg.cues, **extra)


def warm_start(model: SMCVAE, weights: str | Path) -> list[str]:
    """Copy every tensor of an earlier SMCVAE whose name and shape match. The output heads (gate,
    residual) are copied only from a model of the same design (its JSON's model config equal to this
    one's but for the loss weight beta, the cue implementation `cues`, `ref_raw` / `ref_hom` and the
    block counts `enc_depth` / `dec_depth`: a shallower model keeps the first blocks, a deeper one
    starts its extra blocks fresh): from any other they start at zero, i.e. at the plain mean of the
    cues. A patch stem with fewer input channels is copied into the first channels (the extra ones
    start at zero); a model widened with more reference cues (`ref_raw`, `ref_hom`) keeps its gate
    for the cues it had and starts each new cue's at RAW_GATE_INIT (it begins as the old model, but
    for a ~2 % share per new cue). Returns the names left at their fresh initialisation."""
    cfg_file = config_path(weights)
    old_cfg = json.loads(cfg_file.read_text()).get('model', {}) if cfg_file.is_file() else {}
    same = ('beta', 'ref_raw', 'ref_hom', 'cues', 'enc_depth', 'dec_depth')
    design = lambda c: {k: v for k, v in c.items() if k not in same}  # noqa: E731
    skip = () if design(old_cfg) == design(model.cfg.to_dict()) else ('head.', 'gate.')
    old = load_file(str(weights))
    state = model.state_dict()
    fresh = []
    for k, v in state.items():
        o = None if k.startswith(skip) else old.get(k)
        if o is not None and o.shape == v.shape:
            state[k] = o
        elif o is not None and o.ndim == 4 and o.shape[0] == v.shape[0] and o.shape[1] < v.shape[1]:
            state[k] = torch.zeros_like(v)
            state[k][:, :o.shape[1]] = o
        elif o is not None and k.startswith('gate.') and o.shape[0] < v.shape[0]:   # -> ref_raw / ref_hom
            new = v[o.shape[0]:]
            new = torch.zeros_like(new) if k.endswith('weight') else torch.full_like(new, RAW_GATE_INIT)
            state[k] = torch.cat([o, new])
        else:
            fresh.append(k)
    model.load_state_dict(state)
    return fresh


def lr_at(step: int, cfg: dict, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine to 5 % of lr at `steps`, or at the end of `time_limit_min` when
    `anneal_by_time` is set and time runs out first (time_frac: the part of the limit used)."""
    if step < cfg['warmup']:
        return cfg['lr'] * (step + 1) / cfg['warmup']
    t = max((step - cfg['warmup']) / max(1, cfg['steps'] - cfg['warmup']), time_frac)
    return cfg['lr'] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _save_tensors(tensors: dict, path: Path) -> None:
    tmp = path.with_suffix('.tmp')
    save_file(tensors, str(tmp))
    tmp.replace(path)


def optimizer_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.stem + '.optim.safetensors')


def save_checkpoint(path: Path, model: SMCVAE, opt: torch.optim.Optimizer, step: int, best: float) -> None:
    """A checkpoint set: PATH (model weights, loadable like any model file: restore, eval, the node),
    PATH.json (model config + step counters), PATH.optim.safetensors (AdamW moments). Each file is
    replaced atomically; the JSON is written last."""
    moments, opt_steps = {}, {}
    for i, p in enumerate(p for g in opt.param_groups for p in g['params']):
        st = opt.state.get(p)
        if st:
            moments[f'opt.{i}.exp_avg'] = st['exp_avg'].cpu().contiguous()
            moments[f'opt.{i}.exp_avg_sq'] = st['exp_avg_sq'].cpu().contiguous()
            opt_steps[i] = float(st['step'])
    _save_tensors(moments, optimizer_path(path))
    _save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    meta = {'step': step, 'best': best, 'opt_steps': opt_steps}
    config_path(path).write_text(json.dumps({'model': model.cfg.to_dict(), 'meta': {'step': step}, **meta}))


def load_checkpoint(path: Path, model: SMCVAE, opt: torch.optim.Optimizer) -> tuple[int, float]:
    """Restore model and AdamW state (any world size: every rank holds the same state). Also reads the
    earlier single-file layout (model.* and opt.* tensors in PATH)."""
    tensors = load_file(str(path))
    meta = json.loads(config_path(path).read_text())
    if any(k.startswith('opt.') for k in tensors):  # earlier layout
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith('model.')})
    else:
        model.load_state_dict(tensors)
        tensors = load_file(str(optimizer_path(path))) if meta['opt_steps'] else {}
    dev = next(model.parameters()).device
    for i, p in enumerate(p for g in opt.param_groups for p in g['params']):
        if str(i) in meta['opt_steps']:
            opt.state[p] = {'step': torch.tensor(meta['opt_steps'][str(i)]),
                            'exp_avg': tensors[f'opt.{i}.exp_avg'].to(dev),
                            'exp_avg_sq': tensors[f'opt.{i}.exp_avg_sq'].to(dev)}
    return meta['step'], meta['best']


def validation_batch(spec: PairSpec, val_dir, n: int) -> tuple[torch.Tensor, ...]:
    """The fixed val tiles a run selects on: `spec` unflipped and unaugmented, gaps uniform, mixed
    failures, seed 1234."""
    plain = {'flip': False, 'gap_power': 0.0, 'ratio_power': 0.0, 'camera_aug': 0.0}
    val_spec = PairSpec(**{**asdict(spec), **plain})
    return fixed_batch(list_clips(val_dir), val_spec, n, seed=1234, pattern='mixed')


@torch.no_grad()
def validate(model: SMCVAE, val: tuple[torch.Tensor, ...], device: torch.device) -> dict[str, float]:
    """Failed-pixel PSNR (pooled) of the model and of the cues it starts from on the fixed val tiles
    (and of the copied reference when the tiles hold it)."""
    model.eval()
    ref, dmg, tgt, mask = val
    outs = [model(r.to(device), d.to(device), m.to(device))['restored'].cpu()
            for r, d, m in zip(ref.split(64), dmg.split(64), mask.split(64))]
    model.train()
    failed = dmg[:, 3:4]
    fill, warped = dmg[:, :3], ref[:, :3]
    scores = {'smcvae': torch.cat(outs), 'flow': warped, 'telea': fill, 'blend': (warped + fill) / 2}
    if ref.shape[1] >= 6:          # a ref_raw model's tiles hold the raw reference too
        scores['copy'] = ref[:, 3:6]
    return {k: pooled_psnr(v, tgt, failed) for k, v in scores.items()}


def train(cfg: dict) -> Path:
    """Train (one process, or one rank under torchrun); returns the best checkpoint's path."""
    d = D.setup(cfg['device'])
    device = d.device
    anneal_by_time = bool(cfg['anneal_by_time'] and cfg['time_limit_min'])
    if anneal_by_time and d.enabled:  # each rank's clock would give it its own lr
        raise ValueError('anneal_by_time needs a single process (not torchrun)')
    if cfg['threads']:
        torch.set_num_threads(int(cfg['threads']))
    set_frame_cache_mb(cfg['frame_cache_mb'])
    torch.manual_seed(cfg['seed'])
    out = Path(cfg['out_dir'])
    out.mkdir(parents=True, exist_ok=True)
    if d.is_main:
        (out / 'config.yaml').write_text(yaml.safe_dump(cfg))
    mcfg = SMCVAEConfig.from_dict(cfg['model'])
    spec = pair_spec(mcfg, cfg['data'])
    model = SMCVAE(mcfg)
    if cfg['init_from'] and not (out / 'last.safetensors').exists():
        fresh = warm_start(model, cfg['init_from'])
        print(f"initialised from {cfg['init_from']}; fresh: {', '.join(fresh) or 'none'}")
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg['lr'], weight_decay=cfg['weight_decay'], betas=(0.9, 0.95))
    step, best = 0, -1.0
    ckpt = out / 'last.safetensors'
    if ckpt.exists():
        step, best = load_checkpoint(ckpt, model, opt)
        if d.is_main:
            print(f'resumed from {ckpt} at step {step} (best val PSNR {best:.2f} dB)')
    D.check_same('the resumed step', step, d)
    ddp = D.wrap(model, d)          # forward/backward through DDP; `model` is the same parameters
    if d.is_main:
        val = validation_batch(spec, cfg['val_dir'], cfg['val_samples'])
    all_clips = [c for c in list_clips(cfg['train_dir']) if c.name not in set(cfg['holdout_clips'])]
    train_clips = D.shard(all_clips, d)
    if d.is_main:
        print(f"training on {len(all_clips)} clip(s): {', '.join(c.name for c in all_clips)}")
    loader = torch.utils.data.DataLoader(PairDataset(train_clips, spec, seed=D.rank_seed(cfg['seed'] + step, d)),
                                         batch_size=cfg['batch_size'], num_workers=cfg['workers'],
                                         persistent_workers=cfg['workers'] > 0)
    use_amp = device.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
    log = writer = tb = None
    if d.is_main:
        log_path = out / 'metrics.csv'
        new_log = not log_path.exists()
        log = open(log_path, 'a', newline='')
        writer = csv.writer(log)
        if new_log:
            writer.writerow(['step', 'time_s', 'lr', 'loss', 'rec', 'kl', 'val_psnr', 'val_flow_psnr',
                             'val_telea_psnr', 'val_blend_psnr'])
        try:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(out / 'tb'))
        except ImportError:  # tensorboard is optional at run time
            tb = None
        if d.enabled:
            print(f'{d.world_size} ranks ({d.backend}), effective batch {cfg["batch_size"] * d.world_size}, '
                  f'{len(train_clips)} of {len(all_clips)} train clips on rank 0')
    t0, deadline = time.time(), time.time() + 60 * cfg['time_limit_min'] if cfg['time_limit_min'] else math.inf
    bar = tqdm(total=cfg['steps'], initial=step, desc='train', dynamic_ncols=True, disable=not d.is_main)
    it = iter(loader)
    while step < cfg['steps'] and not (deadline < math.inf and D.any_rank(time.time() >= deadline, d)):
        ref, dmg, tgt, mask = (t.to(device, non_blocking=True) for t in next(it))
        time_frac = (time.time() - t0) / (60 * cfg['time_limit_min']) if anneal_by_time else 0.0
        for g in opt.param_groups:
            g['lr'] = lr_at(step, cfg, time_frac)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            outd = ddp(ref, dmg, mask)
            loss, parts = smcvae_loss(outd, tgt, dmg, mcfg.beta)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        step += 1
        bar.update(1)
        if not d.is_main:
            continue
        bar.set_postfix(loss=f'{loss.item():.4f}')
        vp, vb = '', {}
        if step % cfg['val_every'] == 0 or step == cfg['steps']:
            vb = validate(model, val, device)
            vp = vb['smcvae']
            if vp > best:
                best = vp
                save_model(model, out / 'best.safetensors', {'step': step, 'val_failed_psnr_pooled_db': round(vp, 3)})
            bar.write(f"step {step}: val failed-pixel PSNR {vp:.2f} dB (flow {vb['flow']:.2f}, telea "
                      f"{vb['telea']:.2f}, blend {vb['blend']:.2f}; best {best:.2f})")
        if step % 20 == 0 or vp != '':
            writer.writerow([step, round(time.time() - t0, 1), opt.param_groups[0]['lr'], loss.item(),
                             parts['rec'].item(), parts['kl'].item(), vp, vb.get('flow', ''), vb.get('telea', ''),
                             vb.get('blend', '')])
            log.flush()
            if tb:
                tb.add_scalar('loss/total', loss.item(), step)
                if vp != '':
                    tb.add_scalar('val/masked_psnr', vp, step)
        if step % cfg['ckpt_every'] == 0:
            save_checkpoint(ckpt, model, opt, step, best)
    if d.is_main:
        save_checkpoint(ckpt, model, opt, step, best)
        if not (out / 'best.safetensors').exists():
            save_model(model, out / 'best.safetensors', {'step': step})
        log.close()
    del model, opt
    D.cleanup(d)
    return out / 'best.safetensors'


def add_parser(sub) -> None:
    p = sub.add_parser('train', help='train SMCVAE on clips, videos or bags; torchrun for several processes '
                       '(resumes from OUT_DIR/last.safetensors)')
    p.add_argument('--config', help='YAML training config (see config/train.yaml)')
    p.add_argument('overrides', nargs='*', help='key=value overrides, e.g. steps=1000 model.enc_depth=2')
    p.set_defaults(func=run)


def run(args) -> int:
    best = train(load_config(args.config, args.overrides))
    if os.environ.get('RANK', '0') == '0':
        print(best)
    return 0
