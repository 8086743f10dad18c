"""Rosbag tools: bag-make, bag-eval (injection, output bag, report), bad input, bag-play/bag-record."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from smcvae_ros.bag.inject import FailureSchedule
from smcvae_ros.restoration.frames import grid_to_rois
from smcvae_ros.bag.io import (DIAG_TYPE, IMAGE_TYPE, BagWriter, Header, deserialize, failure_diagnostics, image_msg,
                               open_bag, stamp_ns, to_time)
from smcvae_ros.cli import main as smcvae
from smcvae_ros.restoration import rois_to_mask
from smcvae_ros.restoration.frames import grid_to_pixels
from smcvae_ros.cli.harness import command
from smcvae_ros.ros.health import failure_from_status
from smcvae_ros.ros.messages import image_msg_to_array


def read_all(path):
    """[(topic, bag time, deserialized msg or raw bytes)] in bag order."""
    out = []
    with open_bag(path) as r:
        for c, t, data in r.messages():
            msg = deserialize(data, c.msgtype, c.topic, path) if c.msgtype in (IMAGE_TYPE, DIAG_TYPE) else data
            out.append((c.topic, t, msg))
    return out


@pytest.fixture(scope='module')
def small_bag(tmp_path_factory, val_frames) -> Path:
    """8 real frames at 96x64 (3x2 tiles of the tiny model) on /cam_front/image_raw."""
    out = tmp_path_factory.mktemp('bags') / 'small'
    assert smcvae(['bag-make', str(val_frames[0].parent), str(out), '--max-frames', '8', '--resize', '96x64']) == 0
    return out


@pytest.fixture(scope='module')
def odd_bag(tmp_path_factory, val_frames) -> Path:
    """8 real frames at 97x63 (odd sizes: failures and tiles fall on no grid) on /cam_front/image_raw."""
    out = tmp_path_factory.mktemp('bags') / 'small'
    assert smcvae(['bag-make', str(val_frames[0].parent), str(out), '--max-frames', '8', '--resize', '97x63']) == 0
    return out


def test_grid_to_rois_covers_exactly_the_grid(rng):
    for _ in range(30):
        gh, gw = rng.integers(1, 12, 2)
        grid = rng.random((gh, gw)) < rng.random()
        h, w = gh * 8 - int(rng.integers(0, 8)), gw * 8 - int(rng.integers(0, 8))  # partial last patch
        rois = grid_to_rois(grid, 8, h, w)
        assert all(x + rw <= w and y + rh <= h and rw > 0 and rh > 0 for x, y, rw, rh in rois)
        np.testing.assert_array_equal(rois_to_mask(rois, h, w), grid_to_pixels(grid, 8, h, w))
        assert len(rois) <= grid.sum()


def test_failure_schedule_deterministic_and_ratio_independent():
    def damaged(ratio, seed=3, topic='/a/image_raw'):
        s = FailureSchedule(topic, seed, ratio, 'blocks', damage_prob=0.5)
        return [s.next(241, 321) for _ in range(40)]
    a, b, c = damaged(0.1), damaged(0.1), damaged(0.5)
    assert a == b and a[0] == []
    assert [bool(x) for x in a] == [bool(x) for x in c]   # the same frames are damaged at every ratio
    assert 5 < sum(map(bool, a)) < 35
    assert damaged(0.1, topic='/b/image_raw') != a and damaged(0.1, seed=4) != a
    assert rois_to_mask(c[next(i for i, x in enumerate(c) if x)], 241, 321).sum() > \
        rois_to_mask(a[next(i for i, x in enumerate(a) if x)], 241, 321).sum()


def make_two_camera_bag(tmp_path, storage='sqlite3'):
    """3 frames each of two synthetic 24x16 cameras, bgr8, 20 fps, stamps from t=100 s."""
    dirs = []
    for cam in range(2):
        d = tmp_path / f'cam{cam}'
        d.mkdir()
        for k in range(3):
            img = np.full((16, 24, 3), 40 * k + cam, np.uint8)
            img[..., 0] = np.arange(24, dtype=np.uint8)
            cv2.imwrite(str(d / f'{k:06d}.png'), img[..., ::-1])
        dirs.append(str(d))
    out = tmp_path / 'two'
    rc = smcvae(['bag-make', *dirs, str(out), '--topic', '/cam_front/image_raw', '--topic', '/cam_left/image_raw',
                 '--fps', '20', '--encoding', 'bgr8', '--storage', storage, '--start-time', '100'])
    assert rc == 0
    return out, dirs


def test_bag_make_two_cameras(tmp_path):
    out, dirs = make_two_camera_bag(tmp_path)
    assert (out / 'two.db3').is_file() and not list(tmp_path.glob('.two*'))
    msgs = read_all(out)
    assert [t for t, _, _ in msgs] == ['/cam_front/image_raw', '/cam_left/image_raw'] * 3
    times = [t for _, t, _ in msgs]
    assert times == sorted(times)
    for i, (topic, t, m) in enumerate(msgs):
        cam, k = i % 2, i // 2
        assert m.header.frame_id == ('cam_front_optical_frame', 'cam_left_optical_frame')[cam]
        assert stamp_ns(m.header) == 100 * 10**9 + k * 50_000_000 + cam * 1_000_000 < t
        img = image_msg_to_array(m)
        assert m.encoding == 'bgr8' and img.shape == (16, 24, 3)
        assert img[0, 5, 2] == 5 and img[0, 0, 1] == 40 * k + cam   # bgr8: R is channel 2
    assert smcvae(['bag-make', dirs[0], str(out)]) == 2               # exists: refused
    assert smcvae(['bag-make', *dirs, str(tmp_path / 'x'), '--topic', '/a/image_raw']) == 2  # 2 dirs, 1 topic


def test_bag_eval_two_cameras(tmp_path, tiny_model):
    bag, _ = make_two_camera_bag(tmp_path, 'mcap')
    assert smcvae(['bag-eval', str(bag), str(tmp_path / 'ev'), '--model', str(tiny_model), '--quiet',
                   '--damage-prob', '1', '--examples', '0', '--storage', 'sqlite3']) == 0
    report = json.loads((tmp_path / 'ev' / 'report.json').read_text())
    assert set(report['cameras']) == {'/cam_front/image_raw', '/cam_left/image_raw', 'all'}
    assert all(c['restored'] == 2 for c in report['cameras'].values() if c['frames'] == 3)
    topics = [t for t, _, _ in read_all(tmp_path / 'ev' / 'restored_bag')]
    for cam in ('/cam_front', '/cam_left'):
        assert topics.count(f'{cam}/image_raw') == topics.count(f'{cam}/image_restored') == 3
        assert topics.count(f'{cam}/restoration_mask') == 2  # only frames with synthesized pixels
    assert topics.count('/camera_health') == 6


def run_eval(bag, out_dir, model, *extra):
    return smcvae(['bag-eval', str(bag), str(out_dir), '--model', str(model), '--quiet', '--seed', '1',
                   '--pattern', 'blocks', '--mask-ratio', '0.2', *extra])


def test_bag_eval_process_scale_is_the_node_parameter(odd_bag, tiny_model, tmp_path):
    out = tmp_path / 'half'
    assert run_eval(odd_bag, out, tiny_model, '--process-scale', '0.5', '--examples', '0') == 0
    report = json.loads((out / 'report.json').read_text())
    assert report['config']['process_scale'] == 0.5
    cam = report['cameras']['/cam_front/image_raw']
    assert cam['restored'] >= 3 and 5 < cam['smcvae']['psnr_failed'] < cam['smcvae']['psnr_frame']


def test_bag_eval_outputs_and_contract(odd_bag, tiny_model, tmp_path):
    out = tmp_path / 'ev'
    assert run_eval(odd_bag, out, tiny_model, '--sweep-ratios', '0.2,0.4', '--examples', '2') == 0
    report = json.loads((out / 'report.json').read_text())
    cam = report['cameras']['/cam_front/image_raw']
    assert cam['frames'] == 8 and cam['restored'] + cam['healthy'] + cam['passthrough'] == 8 and cam['restored'] >= 3
    for k in ('smcvae', 'copy'):
        assert 5 < cam[k]['psnr_failed'] < cam[k]['psnr_frame'] and 0 < cam[k]['ssim_failed'] <= cam[k]['ssim_frame']
    assert [s['mask_ratio'] for s in report['sweep']] == [0.2, 0.4]
    assert (out / 'psnr_over_time.png').is_file() and (out / 'psnr_vs_ratio.png').is_file()
    assert len(list((out / 'examples').glob('*.png'))) == 2
    assert len((out / 'frames.csv').read_text().splitlines()) == 1 + 16
    with open(out / 'cameras.csv', newline='') as f:   # one line per ratio, camera and method
        lines = {(r['mask_ratio'], r['method']): r for r in csv.DictReader(f)}
    assert set(lines) == {(r, m) for r in ('0.2', '0.4') for m in ('smcvae', 'copy')}
    assert float(lines[('0.2', 'smcvae')]['psnr_failed']) == pytest.approx(
        report['sweep'][0]['cameras']['/cam_front/image_raw']['smcvae']['psnr_failed'], abs=1e-4)
    assert lines[('0.2', 'smcvae')]['latency_ms_mean'] and not lines[('0.2', 'copy')]['latency_ms_mean']
    frames = {r['index']: r for r in report['frames']}
    assert frames[0]['status'] == 'healthy'

    msgs = read_all(out / 'restored_bag')
    by_topic = {}
    for topic, t, m in msgs:
        by_topic.setdefault(topic, []).append((t, m))
    assert {k: len(v) for k, v in by_topic.items()} == {'/cam_front/image_raw': 8, '/cam_front/image_restored': 8,
                                                        '/cam_front/restoration_mask': cam['restored'],
                                                        '/camera_health': 8}
    masks = {stamp_ns(m.header): m for _, m in by_topic['/cam_front/restoration_mask']}
    for i in range(8):
        (t_in, raw), (t_out, rest), (t_diag, diag) = (by_topic[k][i] for k in
                                                      ('/cam_front/image_raw', '/cam_front/image_restored',
                                                       '/camera_health'))
        assert t_in == t_out and t_in - 60_000_000 < t_diag < t_in         # diagnostics lead the frame
        assert stamp_ns(diag.header) == stamp_ns(raw.header) == stamp_ns(rest.header)
        failure = failure_from_status(diag.status[0])
        assert diag.status[0].hardware_id == '/cam_front/image_raw' and not failure.whole_frame
        failed = rois_to_mask(failure.rois, 63, 97)
        mask = masks.get(stamp_ns(raw.header))
        m = image_msg_to_array(mask) > 0 if mask is not None else np.zeros((63, 97), bool)
        np.testing.assert_array_equal(m, failed if frames[i]['status'] == 'restored' else np.zeros_like(m))
        a, b = image_msg_to_array(raw), image_msg_to_array(rest)
        np.testing.assert_array_equal(a[~m], b[~m])                      # healthy pixels bit-exact
        assert (frames[i]['status'] == 'restored') == bool(m.any()) and (not m.any() or (a[m] != b[m]).any())

    # deterministic, and the recorded diagnostics reproduce the injected run exactly
    again = tmp_path / 'again'
    assert run_eval(odd_bag, again, tiny_model, '--examples', '0') == 0
    rec = tmp_path / 'rec'
    assert run_eval(out / 'restored_bag', rec, tiny_model, '--use-recorded-diagnostics', '--examples', '0') == 0
    ref = [m for t, _, m in msgs if t == '/cam_front/image_restored']
    for other in (again, rec):
        got = [m for t, _, m in read_all(other / 'restored_bag') if t == '/cam_front/image_restored']
        assert len(got) == 8
        for x, y in zip(ref, got):
            np.testing.assert_array_equal(image_msg_to_array(x), image_msg_to_array(y))
    r2 = json.loads((rec / 'report.json').read_text())['cameras']['/cam_front/image_raw']
    assert r2['smcvae']['psnr_failed'] == pytest.approx(cam['smcvae']['psnr_failed'])


def write_bag(path, items, storage='mcap'):
    """items: [(topic, msgtype, t_ns, msg)]"""
    with BagWriter(path, storage) as w:
        for topic, msgtype, t, msg in items:
            w.write_msg(topic, msgtype, t, msg)


def test_bad_input(small_bag, tiny_model, tmp_path, capsys):
    def fails(args, *words):
        assert smcvae(args) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err

    ev = ['--model', str(tiny_model), '--quiet']
    fails(['bag-eval', str(tmp_path / 'nope'), str(tmp_path / 'o1'), *ev], 'nope', 'not found')
    fails(['bag-eval', str(small_bag), str(tmp_path / 'o2'), '--topics', '/cam_rear/image_raw', *ev],
          '/cam_rear/image_raw', 'not in bag')
    diag = tmp_path / 'diag_only'
    health = failure_diagnostics(Header(stamp=to_time(5), frame_id=''), '/x', [])
    write_bag(diag, [('/camera_health', DIAG_TYPE, 5, health)])
    fails(['bag-eval', str(diag), str(tmp_path / 'o3'), '--topics', '/camera_health', *ev], '/camera_health',
          'expected sensor_msgs/msg/Image')
    fails(['bag-eval', str(diag), str(tmp_path / 'o3'), *ev],
          'no sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage camera topics')
    bayer = tmp_path / 'bayer'
    msg = image_msg(np.zeros((16, 16), np.uint8), 'mono8', Header(stamp=to_time(1), frame_id='c'))
    msg.encoding = 'bayer_rggb8'
    write_bag(bayer, [('/cam/image_raw', IMAGE_TYPE, 1, msg)])
    fails(['bag-eval', str(bayer), str(tmp_path / 'o4'), *ev], '/cam/image_raw', 'bayer_rggb8')
    assert not (tmp_path / 'o4' / 'restored_bag').exists() and not list((tmp_path / 'o4').glob('.restored_bag*'))
    empty = tmp_path / 'empty'
    with BagWriter(empty) as w:
        w.connection('/cam/image_raw', IMAGE_TYPE)
    fails(['bag-eval', str(empty), str(tmp_path / 'o5'), *ev], 'empty', 'empty')
    fails(['bag-play', str(empty)], 'empty')

    # a truncated copy of a real bag: error naming the file, and no output bag left behind
    trunc = tmp_path / 'trunc'
    trunc.mkdir()
    (trunc / 'metadata.yaml').write_text((small_bag / 'metadata.yaml').read_text().replace('small.mcap', 'trunc.mcap'))
    data = (small_bag / 'small.mcap').read_bytes()
    (trunc / 'trunc.mcap').write_bytes(data[:len(data) // 2])
    fails(['bag-eval', str(trunc), str(tmp_path / 'o6'), *ev], str(trunc))
    assert not (tmp_path / 'o6' / 'restored_bag').exists() and not list((tmp_path / 'o6').glob('.restored_bag*'))
    fails(['bag-make', str(tmp_path / 'no_frames'), str(tmp_path / 'o7')], 'no_frames')
    assert not (tmp_path / 'o7').exists()


def _cli(*args):
    return command('smcvae') + list(args)


def test_play_record_roundtrip(tmp_path, small_bag):
    """bag-record captures exactly what bag-play publishes (bytes, count, order), with the bag's timing."""
    rec = tmp_path / 'rec'
    recorder = subprocess.Popen(_cli('bag-record', str(rec), '--topics', '/cam_front/image_raw', '--count', '8',
                                     '--wait', '30'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        player = subprocess.Popen(_cli('bag-play', str(small_bag), '--rate', '2', '--wait-for-subscribers', '30'),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = player.communicate(timeout=60)
        assert player.returncode == 0, out
        assert 'published /cam_front/image_raw: 8' in out
        rec_out, _ = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, rec_out
    finally:
        for p in (recorder,):
            if p.poll() is None:
                p.kill()
    with open_bag(small_bag) as r:
        original = [bytes(d) for _, _, d in r.messages()]
    with open_bag(rec) as r:
        got = [(t, bytes(d)) for _, t, d in r.messages()]
    assert [d for _, d in got] == original
    gaps = np.diff([t for t, _ in got]) * 1e-9
    assert np.median(gaps) == pytest.approx(0.05, abs=0.02)   # 10 fps bag played at rate 2
