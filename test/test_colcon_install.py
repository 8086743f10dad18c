"""The vehicle install path: `colcon build` in a fresh workspace, `source install/setup.bash`, and the
installed restore_node starting on the model from share/ with the source tree moved away."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_INPUTS = ['package.xml', 'setup.py', 'setup.cfg', 'resource', 'smcvae_ros', 'launch', 'config', 'models']

pytestmark = pytest.mark.skipif(importlib.util.find_spec('colcon_core') is None,
                                reason='colcon is not installed (package.xml: python3-colcon-common-extensions)')


def _bash(script: str, cwd: Path, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run in bash with this Python's environment minus PYTHONPATH (the workspace provides it)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])
    return subprocess.Popen(['bash', '-c', script], cwd=cwd, env=env, **kw)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """ws/src/smcvae_ros holding what setup.py installs, built with `python -m colcon build`."""
    ws = tmp_path_factory.mktemp('colcon_ws')
    src = ws / 'src' / 'smcvae_ros'
    src.mkdir(parents=True)
    for name in PACKAGE_INPUTS:
        item = REPO / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(item, src / name)
    proc = _bash(f'{sys.executable} -m colcon build --packages-select smcvae_ros', ws,
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    shutil.move(str(ws / 'src'), str(ws / 'src_moved_away'))   # nothing may depend on the source tree
    return ws


def test_install_layout(workspace):
    prefix = workspace / 'install' / 'smcvae_ros'
    for script in ('restore_node', 'smcvae'):
        exe = prefix / 'lib' / 'smcvae_ros' / script
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        assert exe.read_text().splitlines()[0] == f'#!{sys.executable}'   # the Python colcon ran with
    share = prefix / 'share' / 'smcvae_ros'
    for rel in ('package.xml', 'launch/restore.launch.py', 'config/restore.yaml', 'models/smcvae_tile64.safetensors',
                'models/smcvae_tile64.json', 'models/smcvae_tile64.onnx'):
        assert (share / rel).is_file(), rel
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'smcvae_ros').is_file()
    site = list(prefix.glob('lib/python3*/site-packages/smcvae_ros/ros/node.py'))
    assert len(site) == 1


def test_installed_node_starts_on_shipped_model_and_exits_0_on_sigint(workspace, tmp_path):
    log = tmp_path / 'node.log'
    with open(log, 'w') as out:
        node = _bash(f'source {workspace}/install/setup.bash && exec {workspace}/install/smcvae_ros/lib/smcvae_ros/'
                     "restore_node --ros-args -p \"image_topics:=['/cam/image_raw']\"", tmp_path,
                     stdout=out, stderr=subprocess.STDOUT)
        try:
            end = time.monotonic() + 120
            while '/cam/image_raw -> /cam/image_restored' not in log.read_text() and time.monotonic() < end:
                assert node.poll() is None, log.read_text()
                time.sleep(0.2)
            text = log.read_text()
            assert '/cam/image_raw -> /cam/image_restored' in text, text
            shared_model = workspace / 'install' / 'smcvae_ros' / 'share' / 'smcvae_ros' / 'models'
            assert f'model {shared_model}/smcvae_tile64.safetensors' in text, text
        finally:
            node.send_signal(signal.SIGINT)
            rc = node.wait(timeout=30)
    assert rc == 0, log.read_text()
