"""Evaluation: baselines, reproducible pairs/masks, `smcvae eval` and `smcvae ablate` end to end."""
import csv
import json

import cv2
import numpy as np
import pytest

from smcvae_ros import cli
from smcvae_ros.evaluation.baselines import BASELINES, blend, copy_reference, flow_warp, telea_inpaint
from smcvae_ros.data.clips import list_clips
from smcvae_ros.evaluation.evaluate import build_pairs, choose_targets, load_smcvae, pair_failure_mask
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.restoration.frames import rois_to_mask


def texture(rng, h, w):
    """Smooth random RGB texture with edges (flow can lock onto it)."""
    x = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return np.clip((x - x.mean()) * 6 + 128, 0, 255).astype(np.uint8)


def shifted_pair(rng, h=128, w=160, dx=5, dy=3):
    big = texture(rng, h + 20, w + 20)
    ref = big[10:10 + h, 10:10 + w].copy()
    target = big[10 + dy:10 + dy + h, 10 + dx:10 + dx + w].copy()   # the camera moved by (dx, dy)
    return ref, target


@pytest.fixture(scope='module')
def clip_dir(tmp_path_factory):
    """Two small clips of a texture drifting 1-2 px per frame; widths not a multiple of 8, heights
    >= 64 (the tiny model's 32-px tile + 16-px context, needed by the training crops)."""
    root = tmp_path_factory.mktemp('clips')
    rng = np.random.default_rng(3)
    for name, (h, w), step in (('a', (72, 100), 1), ('b', (64, 90), 2)):
        big = texture(rng, h + 30, w + 30)
        (root / name).mkdir()
        for i in range(7):
            cv2.imwrite(str(root / name / f'{i:06d}.png'), big[i * step // 2:i * step // 2 + h, i * step:i * step + w])
    return root


def damaged_case(rng, ratio=0.3, pattern='blocks'):
    ref, target = shifted_pair(rng)
    failed = rois_to_mask([(13, 9, 37, 21), (70, 61, 45, 33), (121, 3, 17, 90)], 128, 160)
    return ref, np.where(failed[..., None], 0, target).astype(np.uint8), failed, target


@pytest.mark.parametrize('name', list(BASELINES))
def test_baseline_fills_only_holes(name, rng):
    ref, damaged, failed, _ = damaged_case(rng)
    out = BASELINES[name](ref, damaged, failed)
    assert out.shape == damaged.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~failed], damaged[~failed])   # healthy pixels exact
    assert out[failed].astype(int).sum() > 0                        # holes were filled


def test_flow_baseline_beats_copy_on_shifted_frame(rng):
    ref, damaged, failed, target = damaged_case(rng, ratio=0.25)
    copy_db = psnr(copy_reference(ref, damaged, failed), target, failed)
    flow_db = psnr(flow_warp(ref, damaged, failed), target, failed)
    assert flow_db > copy_db + 5, (flow_db, copy_db)


def test_blend_is_the_mean_of_telea_and_flow(rng):
    ref, damaged, failed, _ = damaged_case(rng)
    t, f, b = (fn(ref, damaged, failed).astype(int) for fn in (telea_inpaint, flow_warp, blend))
    assert np.abs(b - (t + f) / 2)[failed].max() <= 0.5


def test_masks_are_reproducible_and_gap_independent(clip_dir):
    m = pair_failure_mask(40, 68, 0.5, 'random', seed=1, index=2)
    assert m.shape == (40, 68) and abs(m.mean() - 0.5) < 0.2
    np.testing.assert_array_equal(m, pair_failure_mask(40, 68, 0.5, 'random', seed=1, index=2))
    assert not np.array_equal(m, pair_failure_mask(40, 68, 0.5, 'random', seed=2, index=2))
    clips = list_clips(clip_dir)
    targets = choose_targets(clips, 4, 3, seed=0)
    assert targets == choose_targets(clips, 4, 3, seed=0)
    assert [c.name for c, _ in targets] == ['a', 'b', 'a', 'b'] and all(t >= 3 for _, t in targets)
    g1, g3 = build_pairs(targets, 0.5, 1, 'random', 0), build_pairs(targets, 0.5, 3, 'random', 0)
    for p1, p3 in zip(g1, g3):
        np.testing.assert_array_equal(p1.failed, p3.failed)             # same holes at every gap
        np.testing.assert_array_equal(p1.target, p3.target)
        assert (p1.t - p1.ref_t, p3.t - p3.ref_t) == (1, 3)
    big = build_pairs(targets, 0.5, 3, 'random', 0, size=(97, 61))    # --size: another camera's resolution
    assert all(p.target.shape == p.ref.shape == (61, 97, 3) and p.failed.shape == (61, 97) for p in big)
    assert abs(np.mean([p.failed.mean() for p in big]) - 0.5) < 0.15


def test_smcvae_method_keeps_healthy_pixels(tiny_model, clip_dir):
    method = load_smcvae(tiny_model, 'torch', 'cpu')
    pair = build_pairs(choose_targets(list_clips(clip_dir), 1, 3, 0), 0.3, 3, 'blocks', 0)[0]
    out = method(pair.ref, pair.damaged, pair.failed)
    np.testing.assert_array_equal(out[~pair.failed], pair.target[~pair.failed])
    assert not np.array_equal(out[pair.failed], pair.damaged[pair.failed])


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_eval_cli_end_to_end(tiny_model, clip_dir, tmp_path, capsys):
    args = ['eval', '--model', str(tiny_model), '--clips', str(clip_dir), '--ratios', '0.3,0.7', '--gaps', '1,3',
            '--pairs', '2', '--examples', '2', '--seed', '5', '--backend', 'torch', '--device', 'cpu']
    assert cli.main(args + ['--out', str(tmp_path / 'a')]) == 0
    out = tmp_path / 'a'
    for name in ('summary.md', 'samples.csv', 'ratio_sweep.csv', 'gap_sweep.csv', 'ratio_sweep.png',
                 'gap_sweep.png', 'examples.png'):
        assert (out / name).stat().st_size > 0, name
    assert cv2.imread(str(out / 'examples.png')) is not None
    samples = read_rows(out / 'samples.csv')
    assert len(samples) == 4 * 2 * 5   # settings (0.3,3) (0.7,3) (0.5,1) (0.5,3) x 2 pairs x 5 methods
    ratio_rows = read_rows(out / 'ratio_sweep.csv')
    assert {(r['ratio'], r['gap']) for r in ratio_rows} == {('0.3', '3'), ('0.7', '3')}
    assert {r['method'] for r in ratio_rows} == {'copy', 'telea', 'flow', 'blend', 'smcvae'}
    summary = (out / 'summary.md').read_text()
    assert 'SMCVAE' in summary and 'Telea inpaint' in summary and 'ratio 0.7' in summary
    assert 'SMCVAE - best baseline (dB)' in summary
    assert summary in capsys.readouterr().out
    # the cross-clip table: values at the shared setting (0.5 / 3, from the gap sweep) and margins
    assert cli.main(['eval-table', str(out)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split(' | ')
    at = {r['method']: float(r['psnr_masked']) for r in read_rows(out / 'gap_sweep.csv') if r['gap'] == '3'}
    assert row[0] == '| `a` (0.5 / 3)' and float(row[5].strip('*')) == round(at['smcvae'], 2)
    best = max(at[m] for m in ('copy', 'telea', 'flow', 'blend'))
    assert float(row[6]) == pytest.approx(at['smcvae'] - best, abs=0.006)
    assert row[9].endswith('/4 |')      # settings (0.3,3) (0.7,3) (0.5,1) (0.5,3)
    with pytest.raises(SystemExit, match='not `smcvae eval` output'):
        cli.main(['eval-table', str(tmp_path)])
    # same seed, fewer settings: the shared settings get the same pairs, masks and numbers
    rerun = args[:5] + ['--ratios', '0.3', '--gaps', '3'] + args[9:] + ['--examples', '0', '--out', str(tmp_path / 'b')]
    assert cli.main(rerun) == 0
    metrics = lambda rows: sorted(  # noqa: E731
        (r['ratio'], r['gap'], r['pair'], r['method'], r['psnr_masked'], r['ssim_frame'])
        for r in rows if r['gap'] == '3' and r['ratio'] in ('0.3', '0.5'))
    again = read_rows(tmp_path / 'b' / 'samples.csv')
    assert len(again) == 2 * 2 * 5 and metrics(again) == metrics(samples)
    # --flow-scale reaches SMCVAE's restorer (as the node parameter), not the baselines' cues
    assert cli.main(rerun[:-1] + [str(tmp_path / 'c'), '--flow-scale', '0.5']) == 0
    assert 'flow_scale 0.5' in (tmp_path / 'c' / 'summary.md').read_text()
    by = lambda rows, smc: sorted(m for m in metrics(rows) if (m[3] == 'smcvae') == smc)  # noqa: E731
    half = read_rows(tmp_path / 'c' / 'samples.csv')
    assert by(half, False) == by(again, False) and by(half, True) != by(again, True)


def test_eval_cli_errors(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit, match='model not found'):
        cli.main(['eval', '--model', str(tmp_path / 'none.safetensors'), '--clips', str(tmp_path)])
    with pytest.raises(SystemExit, match='clip folder not found'):
        cli.main(['eval', '--model', str(tiny_model), '--clips', str(tmp_path / 'missing')])
    with pytest.raises(SystemExit) as e:
        cli.main(['eval', '--model', str(tiny_model), '--clips', str(tmp_path), '--process-scale', '0'])
    assert e.value.code == 2 and '--process-scale: must be in 0.25..1.0' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(['eval', '--model', str(tiny_model), '--clips', str(tmp_path), '--flow-scale', '2'])
    assert e.value.code == 2 and '--flow-scale: must be in 0.25..1.0' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(['eval', '--model', str(tiny_model), '--clips', str(tmp_path), '--size', '1280'])
    assert e.value.code == 2 and 'expected WxH' in capsys.readouterr().err


def test_ablate_tiny_budget(clip_dir, tmp_path):
    tiny = ['model.img_size=32', 'model.enc_dim=32', 'model.enc_depth=1', 'model.enc_heads=2', 'model.dec_dim=32',
            'model.dec_depth=1', 'model.dec_heads=2', 'model.latent_dim=16', 'batch_size=2', 'workers=0',
            'val_samples=2', 'warmup=1', 'data.scale=[1.0,1.0]', f'train_dir={clip_dir}', f'val_dir={clip_dir}']
    argv = ['ablate', '--steps', '2', '--out', str(tmp_path), '--variants', 'base,no_reparam',
            '--clips', str(clip_dir), '--pairs', '2', '--config', '', *tiny]
    assert cli.main(argv) == 0
    table = read_rows(tmp_path / 'ablation.csv')
    assert [r['variant'] for r in table] == ['base', 'no_reparam', 'copy', 'telea', 'flow', 'blend']
    for r in table[:2]:
        info = json.loads((tmp_path / r['variant'] / 'ablation_train.json').read_text())
        assert info['steps'] == 2 and int(r['params']) == info['params'] > 0
        assert np.isfinite(float(r['psnr_masked']))
    assert int(table[1]['params']) < int(table[0]['params'])          # no reparameterization: no W_s
    md = (tmp_path / 'ablation.md').read_text()
    assert '| no_reparam |' in md and 'Δ vs base' in md
    mtime = (tmp_path / 'base' / 'best.safetensors').stat().st_mtime
    assert cli.main(argv) == 0                                          # finished variants are not retrained
    assert (tmp_path / 'base' / 'best.safetensors').stat().st_mtime == mtime
    with pytest.raises(SystemExit, match='unknown variant'):
        cli.main(['ablate', '--steps', '1', '--out', str(tmp_path), '--variants', 'nope'])
