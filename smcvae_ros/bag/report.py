"""bag-eval outputs: per-camera summary, report.json, CSVs, plots and side-by-side example PNGs."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np

METRICS = ('psnr_failed', 'ssim_failed', 'psnr_frame', 'ssim_frame')
METHODS = ('smcvae', 'copy')
FRAME_FIELDS = ['camera', 'index', 'stamp', 'mask_ratio', 'status', 'failed_pixels', 'failed_fraction',
                'reference_age_s', 'latency_ms'] + [f'{m}_{k}' for m in METRICS for k in METHODS]


def _mean(vals) -> float | None:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict]) -> dict:
    """Means over restored frames per method; frame counts by status; latency over all frames."""
    restored = [r for r in rows if r['status'] == 'restored']
    lat = np.array([r['latency_ms'] for r in rows])
    lat_r = [r['latency_ms'] for r in restored]
    out = {'frames': len(rows), 'restored': len(restored),
           'healthy': sum(r['status'] == 'healthy' for r in rows),
           'passthrough': sum(r['status'].startswith('passthrough') for r in rows),
           'mean_failed_fraction': _mean([r['failed_fraction'] for r in restored])}
    for k in METHODS:
        out[k] = {m: _mean([r.get(f'{m}_{k}') for r in restored]) for m in METRICS}
    out['latency_ms'] = {'mean': float(lat.mean()), 'p50': float(np.percentile(lat, 50)),
                         'p95': float(np.percentile(lat, 95)), 'max': float(lat.max()),
                         'mean_restored': _mean(lat_r)}
    return out


def summarize_by_camera(rows: list[dict]) -> dict:
    cams = sorted({r['camera'] for r in rows})
    out = {c: summarize([r for r in rows if r['camera'] == c]) for c in cams}
    if len(cams) > 1:
        out['all'] = summarize(rows)
    return out


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no inf/nan (PSNR of identical pixels is inf)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def write_reports(out_dir: Path, meta: dict, rows: list[dict], sweep: list[dict], sweep_rows: list[dict]) -> dict:
    """report.json (meta, per-camera summary at --mask-ratio, sweep summaries, frames), frames.csv (every
    pass of a sweep; column mask_ratio) and cameras.csv (one line per ratio, camera and method)."""
    summary = summarize_by_camera(rows)
    report = {**meta, 'cameras': summary, 'sweep': sweep, 'frames': rows}
    (out_dir / 'report.json').write_text(json.dumps(_clean(report), indent=1))
    with open(out_dir / 'frames.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, FRAME_FIELDS, extrasaction='ignore')
        w.writeheader()
        for r in rows + sweep_rows:
            w.writerow({k: ('' if r.get(k) is None else r.get(k)) for k in FRAME_FIELDS})
    with open(out_dir / 'cameras.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['camera', 'mask_ratio', 'method', 'frames', 'restored', 'passthrough', *METRICS, 'latency_ms_mean',
                    'latency_ms_p95'])
        for s in sweep:
            for cam, c in s['cameras'].items():
                lat = c['latency_ms']
                for k in METHODS:
                    latency = [_fmt(lat['mean']), _fmt(lat['p95'])] if k == 'smcvae' else ['', '']
                    w.writerow([cam, s['mask_ratio'], k, c['frames'], c['restored'], c['passthrough'],
                                *[_fmt(c[k][m]) for m in METRICS], *latency])
    return summary


def _fmt(v) -> str:
    return '' if v is None else f'{v:.4f}'


def markdown_table(summary: dict) -> str:
    """The README table: one line per camera and method."""
    lines = ['| camera | method | frames restored | PSNR failed (dB) | SSIM failed | PSNR frame (dB) | SSIM frame '
             '| latency mean / p95 (ms) |', '|---|---|---|---|---|---|---|---|']
    f = lambda v, d: '-' if v is None else f'{v:.{d}f}'  # noqa: E731
    for cam, c in summary.items():
        for k in METHODS:
            lat = f"{c['latency_ms']['mean']:.0f} / {c['latency_ms']['p95']:.0f}" if k == 'smcvae' else '-'
            lines.append(f"| {cam} | {k} | {c['restored']}/{c['frames']} | {f(c[k]['psnr_failed'], 2)} | "
                         f"{f(c[k]['ssim_failed'], 3)} | {f(c[k]['psnr_frame'], 2)} | {f(c[k]['ssim_frame'], 4)} "
                         f"| {lat} |")
    return '\n'.join(lines)


def plot_psnr_over_time(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cams = sorted({r['camera'] for r in rows})
    fig, axes = plt.subplots(len(cams), 1, figsize=(9, 3 * len(cams)), squeeze=False)
    t0 = min(r['stamp'] for r in rows)
    for ax, cam in zip(axes[:, 0], cams):
        rs = [r for r in rows if r['camera'] == cam and r['status'] == 'restored']
        for k, style in zip(METHODS, ('o-', 's--')):
            ax.plot([r['stamp'] - t0 for r in rs], [r[f'psnr_failed_{k}'] for r in rs], style, ms=3, label=k)
        ax.set_title(f'{cam}: PSNR on failed pixels'), ax.set_xlabel('time (s)'), ax.set_ylabel('dB')
        ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_psnr_vs_ratio(path: Path, sweep: list[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ratios = [s['mask_ratio'] for s in sweep]
    for cam in sweep[0]['cameras']:
        for k, style in zip(METHODS, ('o-', 's--')):
            ax.plot(ratios, [s['cameras'][cam][k]['psnr_failed'] for s in sweep], style, label=f'{cam} {k}')
    ax.set_xlabel('mask ratio'), ax.set_ylabel('PSNR failed pixels (dB)'), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_example(out_dir: Path, camera: str, index: int, original: np.ndarray, failed: np.ndarray,
                 restored: dict[str, np.ndarray], row: dict, width: int = 480) -> Path:
    """damaged | SMCVAE | reference copy | original, each scaled to `width`, labelled with PSNR."""
    damaged = original.copy()
    damaged[failed] = (255, 0, 255)
    panels = [('damaged', damaged)] + [(f"{k} {row[f'psnr_failed_{k}']:.1f} dB", img) for k, img in restored.items()]
    panels.append(('original', original))
    h = round(original.shape[0] * width / original.shape[1])
    tiles = []
    for label, img in panels:
        tile = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    path = Path(out_dir) / f"{camera.strip('/').replace('/', '_')}_{index:05d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))
    return path
