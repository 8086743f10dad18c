"""sensor_msgs/CompressedImage: format parsing and decoding, restore_node over real DDS on a
'/compressed' topic, and bag-eval on a compressed bag against the raw bag of the same frames."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from ros_helpers import NodeProcess, damage, next_stamp, pixels, settled_status

from smcvae_ros.bag.io import COMPRESSED_TYPE, IMAGE_TYPE, deserialize, open_bag, stamp_ns, topic_types
from smcvae_ros.cli import main as smcvae
from smcvae_ros.data.synthetic import generate_sequence
from smcvae_ros.cli.harness import Client, stamp_key
from smcvae_ros.ros.messages import MalformedMessage, decode_compressed, encode_compressed, parse_compressed_format

CAM = '/cam_front/image_raw/compressed'
RESTORED, MASK = '/cam_front/image_restored', '/cam_front/restoration_mask'
ROIS = [(64, 64, 48, 32), (200, 120, 40, 40)]


@pytest.fixture(scope='module')
def road():
    return generate_sequence(6, 320, 192, seed=4)


@pytest.mark.parametrize('fmt,expected', [('rgb8; jpeg compressed bgr8', ('jpeg', 'rgb8')),
                                          ('bgr8; png compressed bgr8', ('png', 'bgr8')),
                                          ('mono8; jpeg compressed mono8', ('jpeg', 'mono8')),
                                          ('jpeg', ('jpeg', '')), ('PNG', ('png', '')), ('jpg', ('jpeg', ''))])
def test_parse_compressed_format(fmt, expected):
    assert parse_compressed_format(fmt) == expected


def test_decode_compressed_encodings_and_errors(road):
    rgb = road[0]
    variants = {'rgb8': rgb, 'bgr8': rgb[..., ::-1].copy(), 'mono8': rgb[..., 1].copy(),
                'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])}
    for enc, array in variants.items():
        fmt, data = encode_compressed(array, enc, 'png')
        out, out_enc = decode_compressed(fmt, data)
        assert out_enc == enc and np.array_equal(out, array), enc           # png: lossless, original encoding
        out, out_enc = decode_compressed('png', data)                        # plain format: what the codec holds
        assert out_enc == {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}[array.ndim == 2 and 1 or array.shape[2]]
    fmt, data = encode_compressed(rgb, 'rgb8', 'jpeg', 95)
    out, enc = decode_compressed(fmt, data)
    assert fmt == 'rgb8; jpeg compressed bgr8' and enc == 'rgb8' and np.abs(out.astype(int) - rgb).mean() < 3
    ok, png16 = cv2.imencode('.png', np.zeros((8, 8), np.uint16))
    for fmt, data, words in (('tiff', data, 'unsupported'), ('jpeg', b'', 'empty'),
                             ('rgb8; jpeg compressed bgr8', data[:40], 'undecodable'),
                             ('jpeg', b'\x00' * 100, 'undecodable'), ('png', png16.tobytes(), '8-bit')):
        with pytest.raises(MalformedMessage, match=words):
            decode_compressed(fmt, data)


def compressed(frame: np.ndarray, stamp: float, codec: str = 'jpeg'):
    from sensor_msgs.msg import CompressedImage
    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    msg.header.frame_id = 'cam_front_optical_frame'
    msg.format, data = encode_compressed(frame, 'rgb8', codec, 90)
    msg.data = data
    return msg


@pytest.mark.timeout(240)
def test_node_restores_jpeg_compressed_topic_to_raw_image(tiny_model, road):
    """JPEG CompressedImage in, raw Image out on the camera's image_restored: one per decodable input,
    header kept, healthy pixels equal to the decoded JPEG, failed ROIs restored; garbage is counted."""
    from sensor_msgs.msg import CompressedImage
    node = NodeProcess('restore_compressed', {'image_topics': [CAM], 'diagnostics_period_s': 0.2,
                                              'model_path': str(tiny_model), 'backend': 'torch', 'device': 'cpu'})
    client = Client('restore_compressed_client')
    try:
        client.received[RESTORED] = []
        client.subscribe(RESTORED)
        client.subscribe(MASK)
        pub = client.node.create_publisher(CompressedImage, CAM, 10)
        up = client.wait_for(lambda: pub.get_subscription_count() > 0 and client.node.count_publishers(RESTORED) > 0
                             and client.health_pub.get_subscription_count() > 0, 90, 0.05)
        assert up, f'restore_node did not come up:\n{node.log()}'

        def send(msg, expect_output=True):
            pub.publish(msg)
            if not expect_output:
                return None
            out = client.wait_for(lambda: client.output(RESTORED, stamp_key(msg)), 30)
            assert out is not None, node.log()
            assert out.header.frame_id == msg.header.frame_id and out.encoding == 'rgb8'
            return out

        client.send_health('/cam_front/image_raw', CAM)            # hardware_id may name the camera topic
        healthy = compressed(road[0], next_stamp())
        out = send(healthy)
        assert np.array_equal(pixels(out), decode_compressed(healthy.format, bytes(healthy.data))[0])
        assert settled_status(client, CAM)['last_status'] == 'healthy'

        st = client.send_health(CAM, CAM, rois=ROIS)                # ... or the compressed topic
        assert st['failure'] == 'rois'
        damaged = compressed(damage(road[1], ROIS), next_stamp())
        out = send(damaged)
        decoded = decode_compressed(damaged.format, bytes(damaged.data))[0]
        mask = client.wait_for(lambda: client.output(MASK, stamp_key(damaged)), 10)
        assert mask is not None
        img, px = pixels(out), pixels(mask) > 0
        roi_px = damage(np.zeros(decoded.shape[:2], np.uint8), ROIS, 1) > 0
        assert px[roi_px].all() and np.array_equal(img[~px], decoded[~px])
        assert not np.array_equal(img[roi_px], decoded[roi_px])
        assert settled_status(client, CAM)['last_status'] == 'restored'

        garbage = compressed(road[2], next_stamp())
        garbage.data = b'\xff\xd8' + bytes(200)                     # a JPEG start marker, then nothing valid
        send(garbage, expect_output=False)
        assert client.wait_for(lambda: client.status(CAM).get('frames_undecodable') == '1', 10), client.status(CAM)
        st = client.status(CAM)
        assert st['last_status'] == 'undecodable' and st['_level'] == 1 and 'undecodable' in st['last_message']

        after = send(compressed(damage(road[3], ROIS), next_stamp(), 'png'))
        assert after is not None and node.alive
        st = settled_status(client, CAM)
        assert (st['frames_in'], st['frames_out'], st['frames_undecodable']) == ('4', '3', '1')
        assert len(client.received[RESTORED]) == 3 and client.output(RESTORED, stamp_key(garbage)) is None
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()


@pytest.fixture(scope='module')
def raw_and_compressed_bags(tmp_path_factory):
    """The same 12 generated frames as a raw rgb8 bag and a JPEG (quality 95) CompressedImage bag."""
    root = tmp_path_factory.mktemp('cbags')
    (root / 'frames').mkdir()
    for i, f in enumerate(generate_sequence(12, 160, 96, seed=5)):
        cv2.imwrite(str(root / 'frames' / f'{i:04d}.png'), f[..., ::-1])
    assert smcvae(['bag-make', str(root / 'frames'), str(root / 'raw')]) == 0
    assert smcvae(['bag-make', str(root / 'frames'), str(root / 'jpeg'), '--compressed', '--jpeg-quality', '95']) == 0
    return root


JPEG_TOLERANCE_DB = 0.5   # PSNR difference allowed between the raw and the JPEG-95 bag's reports (0.2 measured)


def test_bag_eval_on_compressed_bag_matches_raw_bag(raw_and_compressed_bags, tiny_model):
    root = raw_and_compressed_bags
    reports = {}
    for kind in ('raw', 'jpeg'):
        args = ['bag-eval', str(root / kind), str(root / f'eval_{kind}'), '--model', str(tiny_model), '--backend',
                'torch', '--device', 'cpu', '--pattern', 'blocks', '--mask-ratio', '0.2', '--quiet', '--examples', '1']
        assert smcvae(args) == 0
        reports[kind] = json.loads((root / f'eval_{kind}' / 'report.json').read_text())
    raw = reports['raw']['cameras']['/cam_front/image_raw']
    jpg = reports['jpeg']['cameras']['/cam_front/image_raw/compressed']
    assert (jpg['frames'], jpg['restored'], jpg['healthy']) == (raw['frames'], raw['restored'], raw['healthy'])
    assert raw['restored'] >= 5 and jpg['mean_failed_fraction'] == raw['mean_failed_fraction']  # same failures
    for method in ('smcvae', 'copy'):
        for metric in ('psnr_failed', 'psnr_frame'):
            assert abs(jpg[method][metric] - raw[method][metric]) < JPEG_TOLERANCE_DB, (method, metric)
        assert abs(jpg[method]['ssim_failed'] - raw[method]['ssim_failed']) < 0.03
    with open_bag(root / 'eval_jpeg' / 'restored_bag') as r:                  # raw restored images out
        types = topic_types(r)
        restored = [m for c, _, m in r.messages() if c.topic == RESTORED]
    assert types[CAM] == COMPRESSED_TYPE and types[RESTORED] == IMAGE_TYPE and types[MASK] == IMAGE_TYPE
    assert len(restored) == 12


def test_play_and_record_compressed_topic(raw_and_compressed_bags, tmp_path):
    """bag-play publishes CompressedImage as stored, bag-record writes back the same messages (CDR
    trailing padding of odd-length JPEG payloads may differ, so messages are compared decoded)."""
    bag, rec = raw_and_compressed_bags / 'jpeg', tmp_path / 'rec'
    cli = [sys.executable, '-m', 'smcvae_ros.cli']
    recorder = subprocess.Popen([*cli, 'bag-record', str(rec), '--topics', CAM, '--count', '12', '--wait', '30'],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        player = subprocess.run([*cli, 'bag-play', str(bag), '--rate', '4', '--wait-for-subscribers', '30'],
                                capture_output=True, text=True, timeout=90)
        assert player.returncode == 0 and f'published {CAM}: 12' in player.stdout, player.stdout + player.stderr
        out, _ = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, out
    finally:
        if recorder.poll() is None:
            recorder.kill()

    def decoded(path):
        with open_bag(path) as r:
            msgs = [deserialize(d, c.msgtype, c.topic, path) for c, _, d in r.messages()]
            return topic_types(r), [(stamp_ns(m.header), m.header.frame_id, m.format, bytes(m.data)) for m in msgs]
    types, original = decoded(bag)
    assert decoded(rec) == (types, original) and len(original) == 12


def test_bag_eval_skips_an_undecodable_compressed_frame(tmp_path, tiny_model, caplog):
    from smcvae_ros.bag.io import BagWriter, Header, compressed_msg, to_time
    frames = generate_sequence(4, 96, 64, seed=6)
    with BagWriter(tmp_path / 'bag') as w:
        for k, f in enumerate(frames):
            msg = compressed_msg(f, 'rgb8', Header(stamp=to_time(10**9 * (50 + k)), frame_id='c'))
            if k == 2:
                msg.data = msg.data[:30]                                  # truncated JPEG
            w.write_msg(CAM, COMPRESSED_TYPE, 10**9 * (50 + k), msg)
    assert smcvae(['bag-eval', str(tmp_path / 'bag'), str(tmp_path / 'eval'), '--model', str(tiny_model),
                   '--backend', 'torch', '--device', 'cpu', '--quiet', '--examples', '0']) == 0
    report = json.loads((tmp_path / 'eval' / 'report.json').read_text())
    assert report['cameras'][CAM]['frames'] == 3 and 'undecodable' in caplog.text
    with open_bag(tmp_path / 'eval' / 'restored_bag') as r:
        assert sum(c.topic == RESTORED for c, _, _ in r.messages()) == 3
