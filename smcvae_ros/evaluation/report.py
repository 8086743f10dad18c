"""Evaluation outputs: sweep plots (the paper's Figures 2-3), the qualitative grid (Figure 4) and
markdown tables."""
from __future__ import annotations

import csv
from pathlib import Path

from .metrics import psnr

LABELS = {'copy': 'copy reference', 'telea': 'Telea inpaint', 'flow': 'flow warp (DIS)',
          'blend': 'mean of Telea and flow', 'smcvae': 'SMCVAE'}
BASELINE_NAMES = ('copy', 'telea', 'flow', 'blend')
MARKERS = {'copy': 's', 'telea': '^', 'flow': 'D', 'blend': 'v', 'smcvae': 'o'}


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_sweep(table: list[dict], x_key: str, path: Path, fixed: str) -> None:
    """Masked-region PSNR and SSIM against `x_key` ('ratio' or 'gap'), one line per method."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in dict.fromkeys(r['method'] for r in table):
        sel = sorted((r for r in table if r['method'] == m), key=lambda r: r[x_key])
        xs = [r[x_key] for r in sel]
        for ax, key in zip(axes, ('psnr_masked', 'ssim_masked')):
            ax.plot(xs, [r[key] for r in sel], marker=MARKERS.get(m, 'o'), label=LABELS.get(m, m),
                    linewidth=2.2 if m == 'smcvae' else 1.4)
    xlabel = 'mask ratio' if x_key == 'ratio' else 'frame gap (frames)'
    for ax, ylabel in zip(axes, ('masked-region PSNR (dB)', 'masked-region SSIM')):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f'Restoration quality vs {xlabel} ({fixed})')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _crop(shape: tuple[int, int], size: tuple[int, int] = (160, 256)) -> tuple[slice, slice]:
    """A native-resolution window at the frame centre (whole frame when smaller)."""
    h, w = shape
    ch, cw = min(size[0], h), min(size[1], w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return slice(y, y + ch), slice(x, x + cw)


def example_grid(kept: list[dict], path: Path) -> None:
    """Rows = examples; columns = reference, damaged, copy, Telea, flow, blend, SMCVAE, ground truth.
    Native-resolution centre crops; each method is labelled with its masked PSNR on the whole frame."""
    if not kept:
        return
    plt = _pyplot()
    cols = ['reference', 'damaged', 'copy', 'telea', 'flow', 'blend', 'smcvae', 'ground truth']
    fig, axes = plt.subplots(len(kept), len(cols), figsize=(2.3 * len(cols), 1.6 * len(kept) + 0.4), squeeze=False)
    for row, ex in zip(axes, kept):
        pair = ex['pair']
        win = _crop(pair.target.shape[:2])
        images = {'reference': pair.ref, 'damaged': pair.damaged, 'ground truth': pair.target,
                  **{m: ex[m] for m in cols if m in ex}}
        for ax, col in zip(row, cols):
            ax.imshow(images[col][win])
            ax.set_xticks([])
            ax.set_yticks([])
            if col in ex:
                ax.set_xlabel(f'{psnr(ex[col], pair.target, pair.failed):.1f} dB', fontsize=8)
        row[0].set_ylabel(f'{pair.clip[:14]}\nt={pair.t} gap {pair.gap}', fontsize=7)
    for ax, col in zip(axes[0], cols):
        ax.set_title(LABELS.get(col, col), fontsize=9)
    ratio = kept[0]['pair'].ratio
    fig.suptitle(f'Mask ratio {ratio}: masked-region PSNR under each restoration (centre crops)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(cells) -> str:
    return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def sweep_markdown(table: list[dict], x_key: str) -> list[str]:
    """Methods x settings, cells 'masked PSNR / masked SSIM', best PSNR per column in bold."""
    xs = list(dict.fromkeys(r[x_key] for r in table))
    methods = list(dict.fromkeys(r['method'] for r in table))
    cell = {(r['method'], r[x_key]): r for r in table}
    best = {x: max((cell[(m, x)]['psnr_masked'], m) for m in methods if (m, x) in cell)[1] for x in xs}
    lines = [_row(['method'] + [f'{x_key} {x}' for x in xs]), _row(['---'] * (len(xs) + 1))]
    for m in methods:
        cells = []
        for x in xs:
            r = cell.get((m, x))
            txt = '' if r is None else f"{r['psnr_masked']:.2f} / {r['ssim_masked']:.3f}"
            cells.append(f'**{txt}**' if r is not None and best[x] == m else txt)
        lines.append(_row([LABELS.get(m, m)] + cells))
    if 'smcvae' in methods:
        lines.append(_row(['SMCVAE - best baseline (dB)'] + [f'{d:+.2f}' for d in margins(table, x_key).values()]))
    return lines


def margins(table: list[dict], x_key: str) -> dict:
    """Per setting: SMCVAE's masked PSNR minus the best baseline's."""
    cell = {(r['method'], r[x_key]): r['psnr_masked'] for r in table}
    xs = list(dict.fromkeys(r[x_key] for r in table))
    return {x: cell[('smcvae', x)] - max(cell[(m, x)] for m in BASELINE_NAMES if (m, x) in cell)
            for x in xs if ('smcvae', x) in cell}


def headline_markdown(agg: dict[str, dict]) -> list[str]:
    lines = [_row(['method', 'masked PSNR (dB)', 'masked SSIM', 'frame PSNR (dB)', 'frame SSIM', 'ms / frame']),
             _row(['---'] * 6)]
    for m, a in agg.items():
        lines.append(_row([LABELS.get(m, m), f"{a['psnr_masked']:.2f} ± {a['psnr_masked_std']:.2f}",
                           f"{a['ssim_masked']:.3f}", f"{a['psnr_frame']:.2f}", f"{a['ssim_frame']:.3f}",
                           f"{a['ms_per_frame']:.0f}"]))
    base = [m for m in BASELINE_NAMES if m in agg]
    if 'smcvae' in agg and base:
        best = max(base, key=lambda m: agg[m]['psnr_masked'])
        delta = agg['smcvae']['psnr_masked'] - agg[best]['psnr_masked']
        lines += ['', f'SMCVAE vs the best baseline ({LABELS[best]}): {delta:+.2f} dB masked-region PSNR.']
    return lines


def summary_markdown(headline: dict[str, dict], ratio_table: list[dict], gap_table: list[dict],
                     ratio: float, gap: int, setup: str) -> str:
    lines = ['## Evaluation: SMCVAE vs baselines', '', setup + '.', '',
             f'### Mask ratio {ratio}, frame gap {gap} (mean ± std over pairs)', '']
    lines += headline_markdown(headline)
    lines += ['', f'### Masked-region PSNR (dB) / SSIM vs mask ratio (frame gap {gap})', '']
    lines += sweep_markdown(ratio_table, 'ratio')
    lines += ['', f'### Masked-region PSNR (dB) / SSIM vs frame gap (mask ratio {ratio})', '']
    lines += sweep_markdown(gap_table, 'gap')
    return '\n'.join(lines) + '\n'


def read_sweep(path: Path) -> list[dict]:
    """A sweep CSV written by `smcvae eval` -> rows with numeric ratio, gap and metrics."""
    with open(path, newline='') as f:
        return [{**r, 'ratio': float(r['ratio']), 'gap': int(r['gap']), 'psnr_masked': float(r['psnr_masked'])}
                for r in csv.DictReader(f)]


def _span(m: dict) -> str:
    """'min … max' of margins, the worst setting named when SMCVAE is not best there."""
    worst = min(m, key=m.get)
    lo = f'{m[worst]:+.2f}' + (f' ({worst})' if m[worst] < 0 else '')
    return f'{lo} … {max(m.values()):+.2f}'


def results_markdown(eval_dirs: list[Path]) -> str:
    """One row per `smcvae eval` output folder: masked PSNR of every method at the setting the two
    sweeps share (the ratio sweep's gap, the gap sweep's ratio), SMCVAE's margin over the best
    baseline there, the range of margins over each sweep and how many distinct settings SMCVAE wins."""
    lines = [_row(['eval', 'copy', 'Telea', 'flow', 'blend', 'SMCVAE', 'margin', 'margin over ratios',
                   'margin over gaps', 'SMCVAE best']), _row(['---'] * 10)]
    methods = BASELINE_NAMES + ('smcvae',)
    for d in eval_dirs:
        ratio_t, gap_t = read_sweep(d / 'ratio_sweep.csv'), read_sweep(d / 'gap_sweep.csv')
        ratio, gap = gap_t[0]['ratio'], ratio_t[0]['gap']
        at = {r['method']: r['psnr_masked'] for r in ratio_t + gap_t if (r['ratio'], r['gap']) == (ratio, gap)}
        if set(at) != set(methods):
            raise ValueError(f'{d}: neither sweep has ratio {ratio} / gap {gap} for every method')
        mr, mg = margins(ratio_t, 'ratio'), margins(gap_t, 'gap')
        settings = {(x, gap): v for x, v in mr.items()} | {(ratio, x): v for x, v in mg.items()}
        best = max(at[m] for m in BASELINE_NAMES)
        cells = [f'**{at[m]:.2f}**' if at[m] == max(at.values()) else f'{at[m]:.2f}' for m in methods]
        lines.append(_row([f'`{d.name}` ({ratio} / {gap})'] + cells +
                          [f'{at["smcvae"] - best:+.2f}', _span(mr), _span(mg),
                           f'{sum(v > 0 for v in settings.values())}/{len(settings)}']))
    return '\n'.join(lines) + '\n'
