"""`smcvae eval`: SMCVAE against classical baselines on clip folders, at native resolution.

Each pair is a target frame t of a clip and its reference t-g (the last healthy frame, gap g).
The failure mask is drawn on the whole frame at ratio r, at pixel level and off any patch grid
(`random`: 16-px cells on a randomly shifted grid; `blocks`: 24-120 px rectangles anywhere;
`rows`: stripes); it depends only on (seed, pair, r, pattern), so every gap and every method sees
the same holes. SMCVAE runs through `Restorer` (whole-frame cues, tiling, merge) with the chosen
backend, exactly as the node does; the baselines (evaluation.baselines: copy, Telea, strong
flow-warp, their mean `blend`) get the same frames and masks. PSNR and SSIM are measured on the
failed pixels and on the whole frame.
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .baselines import BASELINES
from ..cli import add_flow_scale, add_process_scale, frame_size
from ..engine.base import PRECISIONS
from ..data.clips import Clip, list_clips
from .metrics import region_scores
from ..restoration import RestorationSettings, Restorer
from ..restoration.align import prepare_cues, telea_fill
from ..restoration.masks import PIXEL_PATTERNS, pixel_failure_mask

METHODS = ('copy', 'telea', 'flow', 'blend', 'smcvae')
EVAL_CELL = 16   # side of the random-pattern cells (px)
METRICS = ('psnr_masked', 'ssim_masked', 'psnr_frame', 'ssim_frame')


@dataclass
class EvalPair:
    index: int            # pair number: with the seed, it fixes the target frame and the mask
    clip: str
    t: int                # target frame index
    ref_t: int            # reference frame index: t - gap (clamped to 0 in clips shorter than the gap)
    gap: int
    ratio: float
    ref: np.ndarray       # (H,W,3) uint8 RGB
    target: np.ndarray    # ground truth (H,W,3) uint8 RGB
    failed: np.ndarray    # (H,W) bool failed pixels

    @property
    def damaged(self) -> np.ndarray:
        return np.where(self.failed[..., None], 0, self.target).astype(np.uint8)


def choose_targets(clips: list[Clip], n: int, max_gap: int, seed: int) -> list[tuple[Clip, int]]:
    """n (clip, target index) picks, clips taken in turn, t >= max_gap so every gap has a reference."""
    rng = np.random.default_rng(seed)
    picks = []
    for i in range(n):
        clip = clips[i % len(clips)]
        lo = min(max_gap, len(clip) - 1)
        picks.append((clip, int(rng.integers(lo, len(clip)))))
    return picks


def pair_failure_mask(height: int, width: int, ratio: float, pattern: str, seed: int, index: int,
                      cell: int = EVAL_CELL) -> np.ndarray:
    """(H,W) bool failed pixels of one evaluation pair (pixel_failure_mask, reproducible)."""
    rng = np.random.default_rng([seed, index, int(round(ratio * 1000)), PIXEL_PATTERNS.index(pattern)])
    return pixel_failure_mask(rng, height, width, ratio, pattern, cell)


def build_pairs(targets: list[tuple[Clip, int]], ratio: float, gap: int, pattern: str, seed: int,
                size: tuple[int, int] | None = None) -> list[EvalPair]:
    """The pairs of one setting; size (W, H): frames resized (bicubic) to it before the mask is drawn."""
    def read(clip: Clip, k: int) -> np.ndarray:
        img = clip.read(k)
        return img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    pairs = []
    for i, (clip, t) in enumerate(targets):
        r = max(0, t - gap)
        target = read(clip, t)
        failed = pair_failure_mask(*target.shape[:2], ratio, pattern, seed, i)
        pairs.append(EvalPair(i, clip.name, t, r, gap, ratio, read(clip, r), target, failed))
    return pairs


class SMCVAEMethod:
    """SMCVAE as the node runs it: the reference is fed as a healthy frame, then the damaged one."""

    def __init__(self, backend, process_scale: float = 1.0, flow_scale: float = 1.0):
        self.backend = backend
        self.restorer = Restorer(backend, RestorationSettings(max_reference_age_s=math.inf,
                                                              process_scale=process_scale, flow_scale=flow_scale))

    def __call__(self, ref: np.ndarray, damaged: np.ndarray, failed: np.ndarray) -> np.ndarray:
        self.restorer.reset()
        self.restorer.process('eval', ref, 'rgb8', 0.0)
        res = self.restorer.process('eval', damaged, 'rgb8', 0.0, failed=failed)
        if res.status != 'restored':
            raise RuntimeError(f'SMCVAE did not restore the frame: {res.status} {res.message}')
        return res.image


def load_smcvae(model: str | Path | None, backend: str = 'auto', device: str = 'auto',
                threads: int = 0, process_scale: float = 1.0, precision: str = 'auto',
                flow_scale: float = 1.0) -> SMCVAEMethod:
    """threads > 0 limits torch and onnxruntime CPU threads (0: their defaults); process_scale,
    precision and flow_scale as the node parameters."""
    from ..engine import create_backend
    if threads:
        import torch
        torch.set_num_threads(threads)
    be, notes = create_backend(backend, model, device, fallback=backend == 'auto', intra_op_threads=threads,
                               precision=precision)
    for n in notes:
        print(f'note: {n}')
    return SMCVAEMethod(be, process_scale, flow_scale)


def score(out: np.ndarray, target: np.ndarray, failed: np.ndarray) -> dict[str, float]:
    return dict(zip(('psnr_masked', 'ssim_masked', 'psnr_frame', 'ssim_frame'), region_scores(out, target, failed)))


def run_pairs(methods: dict, pairs: list[EvalPair], keep: int = 0, bar: tqdm | None = None):
    """Every method on every pair -> (rows, outputs of the first `keep` pairs as {method: image})."""
    rows, kept = [], []
    for pair in pairs:
        dmg, outs = pair.damaged, {}
        t0 = time.perf_counter()
        fill = telea_fill(dmg, pair.failed)
        t1 = time.perf_counter()
        cues = prepare_cues(pair.ref, dmg, pair.failed, fill=fill)   # shared by the baselines; SMCVAE makes its own
        t2 = time.perf_counter()
        cost = {'telea': t1 - t0, 'flow': t2 - t0, 'blend': t2 - t0}  # what each baseline needs of the cues
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn(pair.ref, dmg, pair.failed) if name == 'smcvae' else fn(pair.ref, dmg, pair.failed, cues)
            dt = time.perf_counter() - t0 + cost.get(name, 0.0)
            outs[name] = out
            rows.append({'ratio': pair.ratio, 'gap': pair.gap, 'pair': pair.index, 'clip': pair.clip, 't': pair.t,
                         'ref_t': pair.ref_t, 'method': name, 'seconds': dt, **score(out, pair.target, pair.failed)})
        if pair.index < keep:
            kept.append({'pair': pair, **outs})
        if bar is not None:
            bar.update(1)
    return rows, kept


def aggregate(rows: list[dict], ratio: float, gap: int) -> dict[str, dict]:
    """Per-method means (and masked-PSNR std, ms per frame) over the pairs of one setting."""
    out = {}
    for m in dict.fromkeys(r['method'] for r in rows):
        sel = [r for r in rows if r['method'] == m and r['ratio'] == ratio and r['gap'] == gap]
        if not sel:
            continue
        agg = {k: float(np.mean([r[k] for r in sel])) for k in METRICS}
        agg['psnr_masked_std'] = float(np.std([r['psnr_masked'] for r in sel]))
        agg['ms_per_frame'] = 1000 * float(np.mean([r['seconds'] for r in sel]))
        agg['n'] = len(sel)
        out[m] = agg
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()})


def sweep_rows(rows: list[dict], sweep: str, settings: list[tuple[float, int]]) -> list[dict]:
    table = []
    for ratio, gap in settings:
        for m, agg in aggregate(rows, ratio, gap).items():
            table.append({'sweep': sweep, 'ratio': ratio, 'gap': gap, 'method': m, **agg})
    return table


def evaluate(clips_dir: str | Path, out_dir: str | Path, smcvae: SMCVAEMethod, ratios=(0.1, 0.3, 0.5, 0.7, 0.9),
             gaps=(1, 2, 3, 5, 7, 10), ratio: float = 0.5, gap: int = 3, n_pairs: int = 24, pattern: str = 'random',
             seed: int = 0, examples: int = 4, model_name: str = '', size: tuple[int, int] | None = None) -> str:
    """Both sweeps, CSVs, plots, the example grid and summary.md in out_dir; returns the summary.
    size (W, H): every frame resized to it first (a proxy for a camera of that resolution)."""
    from .report import example_grid, plot_sweep, summary_markdown
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = list_clips(clips_dir)
    ratio_settings = [(r, gap) for r in ratios]
    gap_settings = [(ratio, g) for g in gaps]
    settings = list(dict.fromkeys(ratio_settings + gap_settings + [(ratio, gap)]))
    targets = choose_targets(clips, n_pairs, max([*gaps, gap]), seed)
    methods = {**BASELINES, 'smcvae': smcvae}
    rows, kept = [], []
    with tqdm(total=len(settings) * n_pairs, desc='eval', unit='pair', dynamic_ncols=True) as bar:
        for r, g in settings:
            bar.set_postfix(ratio=r, gap=g)
            pairs = build_pairs(targets, r, g, pattern, seed, size)
            keep = examples if (r, g) == (ratio, gap) else 0
            new_rows, new_kept = run_pairs(methods, pairs, keep, bar)
            rows += new_rows
            kept += new_kept
    write_csv(out / 'samples.csv', rows)
    ratio_table = sweep_rows(rows, 'ratio', ratio_settings)
    gap_table = sweep_rows(rows, 'gap', gap_settings)
    write_csv(out / 'ratio_sweep.csv', ratio_table)
    write_csv(out / 'gap_sweep.csv', gap_table)
    plot_sweep(ratio_table, 'ratio', out / 'ratio_sweep.png', f'frame gap {gap}')
    plot_sweep(gap_table, 'gap', out / 'gap_sweep.png', f'mask ratio {ratio}')
    example_grid(kept, out / 'examples.png')
    st = smcvae.restorer.settings
    setup = (f'{len(clips)} clip(s) in `{clips_dir}`, {n_pairs} pairs per setting, pattern `{pattern}`, '
             f'seed {seed}, model `{model_name}`, backend {smcvae.backend.describe()}'
             + (f', process_scale {st.process_scale}' if st.process_scale != 1.0 else '')
             + (f', flow_scale {st.flow_scale}' if st.flow_scale != 1.0 else '')
             + (f', frames resized to {size[0]}x{size[1]}' if size else ''))
    text = summary_markdown(aggregate(rows, ratio, gap), ratio_table, gap_table, ratio, gap, setup)
    (out / 'summary.md').write_text(text)
    return text


def _floats(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in s.split(',') if x.strip())


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(',') if x.strip())


def run(args: argparse.Namespace) -> int:
    from ..engine.base import resolve_model
    model = resolve_model(args.model)
    if not model.is_file():
        raise SystemExit(f'error: model not found: {model}')
    if not Path(args.clips).is_dir():
        raise SystemExit(f'error: clip folder not found: {args.clips}')
    smcvae = load_smcvae(model, args.backend, args.device, args.threads, args.process_scale, args.precision,
                         args.flow_scale)
    t0 = time.time()
    text = evaluate(args.clips, args.out, smcvae, args.ratios, args.gaps, args.ratio, args.gap, args.pairs,
                    args.pattern, args.seed, args.examples, model.name, args.size)
    print(text)
    print(f'wrote {args.out}/summary.md, samples.csv, ratio_sweep.csv/png, gap_sweep.csv/png, examples.png '
          f'in {time.time() - t0:.0f} s')
    return 0


def run_table(args: argparse.Namespace) -> int:
    from .report import results_markdown
    dirs = [Path(d) for d in args.dirs]
    missing = [str(d) for d in dirs if not (d / 'ratio_sweep.csv').is_file() or not (d / 'gap_sweep.csv').is_file()]
    if missing:
        raise SystemExit(f'error: not `smcvae eval` output folders (no ratio_sweep.csv/gap_sweep.csv): {missing}')
    print(results_markdown(dirs), end='')
    return 0


def add_parser(sub) -> None:
    t = sub.add_parser('eval-table',
                       help='one markdown table (margins over the best baseline) from `smcvae eval` folders')
    t.add_argument('dirs', nargs='+', help='output folders of `smcvae eval`')
    t.set_defaults(func=run_table)
    p = sub.add_parser('eval', help='PSNR/SSIM of SMCVAE vs copy, Telea, flow-warp and blend baselines on clip folders')
    p.add_argument('--model', help='weights (.safetensors with its .json); default: the shipped model')
    p.add_argument('--clips', required=True, help='a clip folder or a folder of clip folders (<clip>/<frame>.jpg)')
    p.add_argument('--out', default='eval_out', help='output folder (default: %(default)s)')
    p.add_argument('--ratios', type=_floats, default=(0.1, 0.3, 0.5, 0.7, 0.9),
                   help='mask ratios of the ratio sweep (default: 0.1,0.3,0.5,0.7,0.9)')
    p.add_argument('--gaps', type=_ints, default=(1, 2, 3, 5, 7, 10),
                   help='frame gaps of the gap sweep (default: 1,2,3,5,7,10)')
    p.add_argument('--ratio', type=float, default=0.5,
                   help='mask ratio held fixed in the gap sweep (default: %(default)s)')
    p.add_argument('--gap', type=int, default=3, help='frame gap held fixed in the ratio sweep (default: %(default)s)')
    p.add_argument('--pairs', type=int, default=24, help='pairs per setting (default: %(default)s)')
    p.add_argument('--pattern', choices=PIXEL_PATTERNS, default='random',
                   help='failure mask pattern (random 16-px cells | blocks of 24-120 px | rows), off any grid')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=frame_size, default=None,
                   help='resize every frame (bicubic) to WxH first: a proxy for a camera of that resolution')
    p.add_argument('--examples', type=int, default=4, help='rows of the qualitative grid (examples.png)')
    p.add_argument('--backend', choices=('auto', 'torch', 'onnxruntime', 'tensorrt'), default='auto')
    p.add_argument('--device', default='auto', help='auto|cpu|cuda[:N]')
    p.add_argument('--threads', type=int, default=0, help='CPU threads for torch/onnxruntime (0: their default)')
    p.add_argument('--precision', choices=PRECISIONS, default='auto',
                   help='as the node parameter precision (default: auto)')
    add_process_scale(p)
    add_flow_scale(p)
    p.set_defaults(func=run)
