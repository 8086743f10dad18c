"""restore_node over real DDS (loopback, reliable QoS), started as launch_ros would start it."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_helpers import (NodeProcess, assert_same_header, clear, damage, next_stamp, pixels, running_node, send,
                         settled_status)

from smcvae_ros.data.clips import read_rgb
from smcvae_ros.restoration import rois_to_mask
from smcvae_ros.restoration.masks import random_rois
from smcvae_ros.cli.harness import dds_env, health_array, image_msg, params_file, stamp_key
from smcvae_ros.ros.diagnostics import parse_stages
from smcvae_ros.ros.topics import output_topic

pytestmark = pytest.mark.timeout(240)

CAM_A, CAM_B = '/cam_a/image_raw', '/cam_b/image_raw'
CAMERAS = [CAM_A, CAM_B]             # of the module's `ros` node (conftest)
CAM_Q = '/cam_q/image_raw'  # own topic: the module's `ros` node must not answer for it
ROIS = [(100, 300, 64, 48), (500, 200, 40, 40)]


def test_passthrough_when_healthy(ros, frames):
    node, client = ros
    clear(client, CAM_A, frames[0])
    msg, out, mask = send(client, CAM_A, frames[1])
    assert bytes(out.data) == bytes(msg.data) and out.step == msg.step and mask is None
    assert settled_status(client, CAM_A)['last_status'] == 'healthy'


def test_restores_failed_rois_keeping_healthy_pixels_bit_exact(ros, frames):
    node, client = ros
    clear(client, CAM_A, frames[0])
    st = client.send_health('/cam_a', CAM_A, rois=ROIS)      # hardware_id = the camera namespace
    assert st['failure'] == 'rois' and st['failed_rois'] == '100,300,64,48;500,200,40,40'
    dmg = damage(frames[1], ROIS)
    msg, out, mask = send(client, CAM_A, dmg)
    img, px = pixels(out), mask > 0
    roi_px = damage(np.zeros(dmg.shape[:2], np.uint8), ROIS, 1) > 0
    assert np.array_equal(px, roi_px)                           # the mask is exactly the failed pixels
    assert np.array_equal(img[~px], dmg[~px])                   # every healthy pixel bit-exact
    assert not np.array_equal(img[roi_px], dmg[roi_px])         # the dead region was synthesized
    st = settled_status(client, CAM_A)
    assert st['last_status'] == 'restored' and int(st['failed_pixels']) == px.sum()
    assert float(st['reference_age_s']) == pytest.approx(0.1, abs=1e-3)
    stages = parse_stages(st['last_stage_ms'])                  # where the node's time went, per stage
    assert list(stages) == ['wait', 'align', 'tile', 'infer', 'merge', 'publish']
    assert all(v >= 0 for v in stages.values()) and stages['infer'] > 0
    assert sum(stages.values()) <= float(st['last_latency_ms']) + 0.5   # rounding
    client.send_health(CAM_A, CAM_A)                            # OK clears: the next frame passes through
    msg, out, mask = send(client, CAM_A, frames[2])
    assert bytes(out.data) == bytes(msg.data) and mask is None


def test_off_grid_rois_on_an_odd_width_frame_change_only_their_pixels(ros, frames):
    """ROIs with odd x, y, w, h (on no patch or tile grid) on a 957 x 539 frame (odd sizes, like KITTI's
    1241): only the ROI pixels change, and the mask marks exactly them."""
    node, client = ros
    odd = [np.ascontiguousarray(f[:539, :957]) for f in frames[:2]]
    rois = [(101, 301, 63, 47), (503, 199, 41, 39), (950, 0, 7, 539)]
    outputs = []
    for scale in (1.0, 0.5):        # also with cues and model on a downscaled frame (process_scale)
        assert client.set_parameters(node.name, {'process_scale': scale})[0].successful
        clear(client, CAM_A, odd[0])
        client.send_health(CAM_A, CAM_A, rois=rois)
        dmg = damage(odd[1], rois)
        msg, out, mask = send(client, CAM_A, dmg)
        img, roi_px = pixels(out), damage(np.zeros(dmg.shape[:2], np.uint8), rois, 1) > 0
        assert img.shape == dmg.shape and np.array_equal(mask > 0, roi_px)
        assert np.array_equal(img[~roi_px], dmg[~roi_px])
        assert (img[roi_px] != dmg[roi_px]).any(-1).mean() > 0.5
        client.send_health(CAM_A, CAM_A)
        outputs.append(img)
    assert not np.array_equal(outputs[0], outputs[1])     # the parameter took effect
    assert client.set_parameters(node.name, {'process_scale': 1.0})[0].successful


def test_stale_reference_passes_through_until_max_age_is_raised(ros, frames):
    node, client = ros
    clear(client, CAM_A, frames[0])
    client.send_health(CAM_A, CAM_A, rois=ROIS)
    dmg = damage(frames[1], ROIS)
    msg, out, mask = send(client, CAM_A, dmg, stamp=next_stamp(jump_s=5.0))   # reference 5 s old > 2 s
    assert bytes(out.data) == bytes(msg.data) and mask is None
    st = settled_status(client, CAM_A)
    assert st['last_status'] == 'passthrough_stale_reference' and st['_level'] == 1
    try:
        res = client.set_parameters(node.name, {'max_reference_age_s': 30.0})
        assert res[0].successful, res[0].reason
        msg, out, mask = send(client, CAM_A, dmg)                 # same reference, now young enough
        assert mask.any() and bytes(out.data) != bytes(msg.data)
        assert settled_status(client, CAM_A)['last_status'] == 'restored'
    finally:
        assert client.set_parameters(node.name, {'max_reference_age_s': 2.0})[0].successful


def test_set_parameters_rejected_with_reason(ros):
    node, client = ros
    cases = {'max_reference_age_s': (-1.0, 'range'), 'dark_level': (255, 'bright_level'),
             'backend': ('torch', 'read-only'), 'image_topics': (['/x/image_raw'], 'read-only'),
             'uncertainty_samples': (1, 'range'), 'publish_mask': ('yes', 'type')}
    for name, (value, why) in cases.items():
        res = client.set_parameters(node.name, {name: value})[0]
        assert not res.successful and res.reason, (name, value)
        assert why in res.reason or name in res.reason, res.reason
    accepted = client.set_parameters(node.name, {'self_detect': True, 'frozen_min_std': 4.0})
    assert all(r.successful for r in accepted)
    assert client.set_parameters(node.name, {'self_detect': False})[0].successful


def test_malformed_inputs_are_published_and_flagged(ros, frames):
    node, client = ros
    f = frames[0]
    clear(client, CAM_A, f)
    h, w = f.shape[:2]
    bad_step = image_msg(f, 'rgb8', next_stamp())
    bad_step.step = w * 3 - 1
    short = image_msg(f, 'rgb8', next_stamp())
    short.data = bytes(short.data)[: len(short.data) // 2]
    odd_encoding = image_msg(f[..., :2].copy(), '16UC1', next_stamp())  # 2 bytes per pixel
    for msg, status in ((bad_step, 'passthrough_invalid'), (short, 'passthrough_invalid'),
                        (odd_encoding, 'passthrough_unsupported_encoding')):
        out, _, _ = client.send_frame(CAM_A, msg)
        assert_same_header(out, msg)
        assert bytes(out.data) == bytes(msg.data) and out.step == msg.step
        assert settled_status(client, CAM_A)['last_status'] == status
    # garbage health statuses: unknown level, non-numeric ROIs, unknown camera
    for kw in ({'level': 9, 'rois': ROIS}, {'rois_text': 'abc;1,2'}):
        st = client.send_health(CAM_A, CAM_A, **kw)
        assert st['failure'] == 'invalid' and st['failure_error']
        msg, out, _ = send(client, CAM_A, damage(frames[1], ROIS))
        assert bytes(out.data) == bytes(msg.data)
        assert settled_status(client, CAM_A)['last_status'] == 'passthrough_invalid'
    client.health_pub.publish(health_array('/no_such_camera', rois=ROIS))
    # an ROI outside this camera's image
    client.send_health(CAM_A, CAM_A, rois=[(w - 10, h - 10, 64, 64)])
    msg, out, _ = send(client, CAM_A, frames[1])
    assert bytes(out.data) == bytes(msg.data)
    st = settled_status(client, CAM_A)
    assert st['last_status'] == 'passthrough_invalid' and 'exceed' in st['last_message']
    assert node.alive
    clear(client, CAM_A, frames[2])
    assert settled_status(client, CAM_A)['last_status'] == 'healthy'
    assert 'Traceback' not in node.log()


def test_two_cameras_at_once(ros, frames):
    node, client = ros
    for cam in (CAM_A, CAM_B):
        clear(client, cam, frames[0])
        client.send_health(cam, cam, rois=ROIS)
    dmg = damage(frames[1], ROIS)
    msgs = {cam: image_msg(dmg, 'rgb8', next_stamp(), cam) for cam in (CAM_A, CAM_B)}
    for cam, msg in msgs.items():                                # back to back: one batch when they meet
        client.publisher(cam).publish(msg)
    for cam, msg in msgs.items():
        out_topic = cam.replace('image_raw', 'image_restored')
        out = client.wait_for(lambda: client.output(out_topic, (msg.header.stamp.sec, msg.header.stamp.nanosec)), 30)
        assert out is not None, f'no output on {out_topic}'
        assert_same_header(out, msg)
        assert bytes(out.data) != bytes(msg.data)
        assert settled_status(client, cam)['last_status'] == 'restored'
    for cam in (CAM_A, CAM_B):
        client.send_health(cam, cam)


def test_a_burst_of_damaged_frames_is_answered_once_each_in_order(ros, frames):
    """Frames replaced in the pending slot while the worker is busy are still published, unchanged and
    flagged (frames_superseded), before the newer frame: every input out once, stamps in order."""
    node, client = ros
    clear(client, CAM_A, frames[0])
    client.send_health(CAM_A, CAM_A, rois=ROIS)
    before = settled_status(client, CAM_A)
    out_topic, mask_topic = output_topic(CAM_A, 'image_restored'), output_topic(CAM_A, 'restoration_mask')
    burst = [image_msg(damage(frames[1 + i % 3], ROIS), 'rgb8', next_stamp(), 'cam_a') for i in range(10)]
    pub = client.publisher(CAM_A, 16)
    for msg in burst:                  # 20 Hz: faster than the worker, slow enough for the DDS history (qos_depth)
        pub.publish(msg)
        time.sleep(0.05)
    keys = [stamp_key(m) for m in burst]
    got = client.wait_for(lambda: all(client.output(out_topic, k) for k in keys), 60)
    assert got, f'{sum(client.output(out_topic, k) is None for k in keys)} of 10 unanswered: {client.status(CAM_A)}'
    st = settled_status(client, CAM_A)
    delta = {k: int(st[k]) - int(before[k]) for k in ('frames_in', 'frames_out', 'frames_restored',
                                                      'frames_superseded', 'frames_flagged', 'frames_dropped')}
    assert delta['frames_in'] == delta['frames_out'] == 10 and delta['frames_dropped'] == 0
    assert delta['frames_superseded'] > 0, delta                  # ten at once cannot all reach the model
    assert delta['frames_restored'] + delta['frames_superseded'] == 10
    assert delta['frames_flagged'] == delta['frames_superseded']
    with client.lock:
        order = [stamp_key(m) for _, m in client.received[out_topic]][-10:]
    assert order == keys                                         # published in arrival order
    assert client.wait_for(lambda: sum(client.output(mask_topic, k) is not None for k in keys)
                           == delta['frames_restored'], 10)
    for msg in burst:                                            # restored (with a mask) or the input unchanged
        out, mask = client.output(out_topic, stamp_key(msg)), client.output(mask_topic, stamp_key(msg))
        assert (mask is not None) == (bytes(out.data) != bytes(msg.data))
    client.send_health(CAM_A, CAM_A)


@pytest.mark.parametrize('encoding', ['bgr8', 'mono8'])
def test_encodings_and_step_padding(ros, frames, encoding):
    node, client = ros
    conv = (lambda a: a[..., ::-1].copy()) if encoding == 'bgr8' else (lambda a: a.mean(-1).astype(np.uint8))
    clear(client, CAM_B, conv(frames[0]), encoding)               # encoding change: new reference
    client.send_health(CAM_B, CAM_B, rois=ROIS)
    dmg = damage(conv(frames[1]), ROIS)
    ch = 1 if dmg.ndim == 2 else 3
    padded = np.zeros((dmg.shape[0], dmg.shape[1] * ch + 32), np.uint8)   # rows padded by 32 bytes
    padded[:, :dmg.shape[1] * ch] = dmg.reshape(dmg.shape[0], -1)
    msg = image_msg(dmg, encoding, next_stamp(), 'cam_b_optical')
    msg.step, msg.data = padded.shape[1], padded.tobytes()
    out, mask, _ = client.send_frame(CAM_B, msg)
    assert_same_header(out, msg)
    img, px = pixels(out), pixels(mask) > 0
    assert img.shape == dmg.shape and px.any()
    assert np.array_equal(img[~px], dmg[~px]) and not np.array_equal(img[px], dmg[px])
    client.send_health(CAM_B, CAM_B)


@pytest.mark.parametrize('profile', ['', 'cpu'])
def test_restoration_beats_reference_copy(shipped_model, val_frames, profile):
    """With the shipped model (or a shipped profile's, started as `ros2 launch ... profile:=cpu` does) the
    failed regions are closer to ground truth than copying the reference, and healthy pixels stay exact:
    squared error pooled over 4 frames (reference = frame k, damaged = frame k+2, ~10% dead rectangles anywhere)."""
    rng = np.random.default_rng(0)
    err_restored = err_copy = n = 0.0
    config = params_file()
    params = [config] + ([config.parent / f'profile_{profile}.yaml'] if profile else [])
    overrides = {'device': 'cpu'} if profile else {'model_path': str(shipped_model), 'device': 'cpu'}
    with running_node(f'restore_quality{profile}', overrides, [CAM_Q], params=params) as (node, client):
        for k in (0, 3, 6, 9):
            reference, truth = read_rgb(val_frames[k]), read_rgb(val_frames[k + 2])
            h, w = truth.shape[:2]
            rois = random_rois(rng, h, w, 0.1)
            clear(client, CAM_Q, reference)
            client.send_health(CAM_Q, CAM_Q, rois=rois)
            _, out, mask = send(client, CAM_Q, damage(truth, rois))
            assert mask is not None, settled_status(client, CAM_Q)
            px = mask > 0
            assert np.array_equal(pixels(out)[~px], truth[~px]) and np.array_equal(px, rois_to_mask(rois, h, w))
            err_restored += ((pixels(out)[px].astype(float) - truth[px]) ** 2).sum()
            err_copy += ((reference[px].astype(float) - truth[px]) ** 2).sum()
            n += px.sum() * 3
        if profile:
            model_line = next(line for line in node.log().splitlines() if 'configured: backend' in line)
            assert 'smcvae_tile64_small.safetensors' in model_line, model_line
    got, baseline = (10 * np.log10(255 ** 2 * n / e) for e in (err_restored, err_copy))
    assert got > baseline, f'restored {got:.2f} dB vs reference copy {baseline:.2f} dB'


def test_runtime_toggles_self_detect_and_uncertainty(ros, frames):
    """self_detect finds a dead block without any health status; publish_uncertainty adds a 32FC1 map."""
    node, client = ros
    clear(client, CAM_B, frames[0])
    res = client.set_parameters(node.name, {'self_detect': True, 'publish_uncertainty': True, 'uncertainty_samples': 2})
    assert all(r.successful for r in res), [r.reason for r in res]
    try:
        dead = [(208, 104, 48, 40)]                                 # patch-aligned black block
        msg, out, mask = send(client, CAM_B, damage(frames[1], dead))
        px = mask > 0
        assert px[104:144, 208:256].all() and px.mean() < 0.03      # (plus any saturated patches)
        assert bytes(out.data) != bytes(msg.data)
        unc_topic = '/cam_b/restoration_uncertainty'
        unc = client.wait_for(lambda: client.output(unc_topic, (msg.header.stamp.sec, msg.header.stamp.nanosec)), 10)
        assert unc is not None and unc.encoding == '32FC1' and unc.header.frame_id == msg.header.frame_id
        var = np.frombuffer(bytes(unc.data), np.float32).reshape(unc.height, unc.width)
        assert (var >= 0).all() and not var[~px].any() and var[px].any()
    finally:
        res = client.set_parameters(node.name, {'self_detect': False, 'publish_uncertainty': False})
        assert all(r.successful for r in res)


def test_incompatible_best_effort_camera_is_reported(ros):
    """A reliable input subscription cannot match a best_effort driver: the node says what to change."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    node, client = ros
    pub = client.node.create_publisher(Image, CAM_B, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        assert client.wait_for(lambda: 'input_qos_reliability: best_effort' in node.log(), 20, 0.2), node.log()
    finally:
        client.node.destroy_publisher(pub)


@pytest.mark.parametrize('override,fragment', [({'backend': 'cuda_magic'}, 'backend'),
                                               ({'max_reference_age_s': -3.0}, 'max_reference_age_s'),
                                               ({'model_path': '/nonexistent/model.safetensors'}, 'model')])
def test_bad_startup_parameters_end_the_process_clearly(tiny_model, override, fragment):
    node = NodeProcess('restore_bad', {'model_path': str(tiny_model), 'backend': 'torch', **override})
    try:
        rc = node.proc.wait(90)
    finally:
        node.stop()
    assert rc == 1 and 'cannot start' in node.log() and fragment in node.log(), node.log()


CAMERA_DRIVER = '''
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from smcvae_ros.cli.harness import image_msg
rclpy.init()
node = rclpy.create_node('profile_camera')
pub = node.create_publisher(Image, sys.argv[1], QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
deadline = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
pub.publish(image_msg(np.load(sys.argv[2]), 'rgb8', float(sys.argv[3]), 'cam_optical'))
time.sleep(5.0)  # reliable delivery finishes before the participant goes
'''


def test_a_camera_on_the_shipped_dds_profile_reaches_the_node(ros, tmp_path):
    """The node runs with config/fastdds_large_images.xml (as the launch file gives it); a camera
    driver process on the same profile sends it a 1280x720 frame (shared memory, one sample), and a
    default participant (this test's client) gets the pass-through back bit-exact."""
    node, client = ros
    env = dds_env()
    assert node.env == env and env['FASTRTPS_DEFAULT_PROFILES_FILE'].endswith('config/fastdds_large_images.xml')
    client.send_health(CAM_A, CAM_A)
    big = np.random.default_rng(5).integers(0, 256, (720, 1280, 3), np.uint8)
    np.save(tmp_path / 'frame.npy', big)
    stamp = next_stamp()
    key = stamp_key(image_msg(big, 'rgb8', stamp, 'cam_optical'))
    proc = subprocess.Popen([sys.executable, '-c', CAMERA_DRIVER, CAM_A, str(tmp_path / 'frame.npy'), str(stamp)],
                            env={**os.environ, **env})
    try:
        out = client.wait_for(lambda: client.output('/cam_a/image_restored', key), 60)
    finally:
        proc.wait(30)
    assert out is not None, f'no output for the profile camera\'s frame:\n{node.log()[-3000:]}'
    assert bytes(out.data) == big.tobytes() and (out.height, out.width) == (720, 1280)
    assert proc.returncode == 0
    if shutil.disk_usage('/dev/shm').free >= 256 << 20:    # room for the segments (else Fast DDS falls back to UDP)
        assert 'SHM Transport' not in node.log()         # shared memory registered: no fallback error
