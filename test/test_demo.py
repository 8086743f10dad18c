"""`smcvae demo` end to end on the generated sequence (real node over DDS), and its helpers."""
import csv
import math
import subprocess

import cv2
import numpy as np
import pytest

from smcvae_ros.data.synthetic import generate_sequence
from smcvae_ros.cli.harness import command


def test_generated_sequence_is_deterministic_and_moves():
    a, b = generate_sequence(3, 320, 180, seed=1), generate_sequence(3, 320, 180, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (180, 320, 3) and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], a[1]) and a[0].std() > 20          # ego-motion, textured scene
    assert not np.array_equal(a[0], generate_sequence(1, 320, 180, seed=2)[0])


@pytest.mark.timeout(180)
def test_demo_runs_the_node_on_the_generated_sequence(tiny_model, tmp_path):
    out = tmp_path / 'demo'
    cmd = command('smcvae') + ['demo', '--generated', '--num-frames', '6', '--size', '320x180',
                               '--model', str(tiny_model), '--backend', 'torch', '--out', str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'failed-region PSNR over 4 damaged frames' in proc.stdout, proc.stdout
    rows = list(csv.DictReader(open(out / 'frames.csv')))
    assert [r['state'] for r in rows] == ['healthy'] + ['damaged'] * 4 + ['healthy']
    for r in rows[1:5]:
        assert 0 < float(r['failed_pct']) < 50 and math.isfinite(float(r['psnr_restored']))
        assert float(r['latency_ms']) > 0
    png = cv2.imread(str(out / 'side_by_side.png'))
    assert png.shape == (180, 4 * 320, 3)
