"""End-to-end consistency: a bag replayed through a live restore_node gives exactly the pixels bag-eval
computes offline, one output frame per input frame.

bag-make (8 val frames at 2 fps, 480x270 to keep CPU inference short) -> bag-eval (injects blocks failures: writes
/camera_health diagnostics that lead every frame by 50 ms, and the offline restoration) -> bag-play of
/cam_front/image_raw + /camera_health into restore_node -> bag-record of its outputs -> compare.
The node applies the latest health status when its worker takes a frame, so the replay rate is chosen
from the measured offline latency: a frame must be done before the next frame's status arrives.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from smcvae_ros.bag.io import IMAGE_TYPE, deserialize, open_bag, stamp_ns
from smcvae_ros.cli import main as smcvae
from smcvae_ros.cli.harness import command, params_file
from smcvae_ros.ros.messages import image_msg_to_array

FPS, FRAMES, LEAD_S = 2.0, 8, 0.05


def images_by_stamp(bag, topic) -> dict[int, list[np.ndarray]]:
    out: dict[int, list[np.ndarray]] = {}
    with open_bag(bag) as r:
        conns = [c for c in r.connections if c.topic == topic]
        for c, _, data in r.messages(connections=conns):
            msg = deserialize(data, IMAGE_TYPE, topic, bag)
            out.setdefault(stamp_ns(msg.header), []).append(image_msg_to_array(msg).copy())
    return out


def wait_for_line(path: Path, text: str, proc, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text(errors='replace'):
            return
        assert proc.poll() is None, path.read_text(errors='replace')
        time.sleep(0.2)
    raise AssertionError(f'no {text!r} within {timeout}s:\n' + path.read_text(errors='replace'))


def test_replay_through_node_matches_offline(tmp_path, val_frames, tiny_model):
    bag, ev = tmp_path / 'in', tmp_path / 'ev'
    assert smcvae(['bag-make', str(val_frames[0].parent), str(bag), '--max-frames', str(FRAMES), '--fps', str(FPS),
                   '--resize', '480x270']) == 0
    assert smcvae(['bag-eval', str(bag), str(ev), '--model', str(tiny_model), '--backend', 'torch', '--device', 'cpu',
                   '--pattern', 'blocks', '--mask-ratio', '0.1', '--seed', '0', '--max-reference-age-s', '2.0',
                   '--examples', '0', '--quiet']) == 0
    report = json.loads((ev / 'report.json').read_text())
    assert report['cameras']['/cam_front/image_raw']['restored'] >= 3
    max_latency_s = max(r['latency_ms'] for r in report['frames']) * 1e-3
    rate = min(1.0, (1.0 / FPS - LEAD_S) / (3.0 * max_latency_s + 0.1))
    play_s = (FRAMES - 1) / FPS / rate

    node_log, rec_log, rec = tmp_path / 'node.log', tmp_path / 'record.log', tmp_path / 'rec'
    node_cmd = command('restore_node') + [
                '--ros-args', '--params-file', str(params_file()), '-p', f'model_path:={tiny_model}',
                '-p', "image_topics:=['/cam_front/image_raw']", '-p', 'diagnostics_topic:=/camera_health',
                '-p', 'backend:=torch', '-p', 'device:=cpu', '-p', 'max_reference_age_s:=2.0']
    cli = command('smcvae')
    procs = []
    try:
        with open(node_log, 'w') as nl, open(rec_log, 'w') as rl:
            procs.append(subprocess.Popen(node_cmd, stdout=nl, stderr=subprocess.STDOUT))
            recorder = subprocess.Popen(cli + ['bag-record', str(rec), '--topics', '/cam_front/image_restored',
                                               '/cam_front/restoration_mask', '--wait', '60',
                                               '--duration', str(int(play_s + 180))],
                                        stdout=rl, stderr=subprocess.STDOUT)
            procs.append(recorder)
            wait_for_line(rec_log, 'recording', recorder, 60)
            play = subprocess.run(cli + ['bag-play', str(ev / 'restored_bag'), '--rate', f'{rate:.4f}',
                                         '--topics', '/cam_front/image_raw', '/camera_health',
                                         '--wait-for-subscribers', '30'],
                                  capture_output=True, text=True, timeout=play_s + 60)
            assert play.returncode == 0, play.stdout + play.stderr
            assert f'/cam_front/image_raw: {FRAMES}' in play.stdout and f'/camera_health: {FRAMES}' in play.stdout
            time.sleep(3 * max_latency_s + 3)  # the node publishes the last frame's outputs
            recorder.send_signal(2)             # Ctrl-C: the recorder finalizes the bag
            assert recorder.wait(timeout=30) == 0, rec_log.read_text() + node_log.read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(2)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    inputs = images_by_stamp(ev / 'restored_bag', '/cam_front/image_raw')
    for topic in ('/cam_front/image_restored', '/cam_front/restoration_mask'):
        offline, live = images_by_stamp(ev / 'restored_bag', topic), images_by_stamp(rec, topic)
        assert sorted(live) == sorted(offline) and all(len(v) == 1 for v in live.values()), node_log.read_text()
        for stamp, (img,) in offline.items():
            np.testing.assert_array_equal(live[stamp][0], img, err_msg=f'{topic} differs at stamp {stamp}')
    assert sorted(images_by_stamp(rec, '/cam_front/image_restored')) == sorted(inputs)  # one output per input
    masks = images_by_stamp(rec, '/cam_front/restoration_mask')  # only frames with synthesized pixels
    assert len(masks) == report['cameras']['/cam_front/image_raw']['restored']
    assert all(m.any() for (m,) in masks.values())
