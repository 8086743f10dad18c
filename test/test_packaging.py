"""Packaging for a colcon workspace: package.xml declares what the code and the tests import; `colcon build`
in a fresh workspace, `source install/setup.bash`, and the installed restore_node starting on the model
from share/ with the source tree moved away."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_INPUTS = ['package.xml', 'setup.py', 'setup.cfg', 'resource', 'smcvae_ros', 'launch', 'config', 'models']

needs_colcon = pytest.mark.skipif(importlib.util.find_spec('colcon_core') is None,
                                  reason='colcon is not installed (package.xml: python3-colcon-common-extensions)')

# import name -> rosdep key declared in package.xml (checked against ros/rosdistro rosdep/*.yaml)
ROSDEP_KEYS = {'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'yaml': 'python3-yaml', 'tqdm': 'python3-tqdm',
               'pytest': 'python3-pytest', 'pytest_timeout': 'python3-pytest-timeout',
               'colcon_core': 'python3-colcon-common-extensions', 'matplotlib': 'python3-matplotlib',
               'onnxruntime': 'python3-onnxruntime-pip', 'rclpy': 'rclpy', 'sensor_msgs': 'sensor_msgs',
               'std_msgs': 'std_msgs', 'diagnostic_msgs': 'diagnostic_msgs', 'rcl_interfaces': 'rcl_interfaces',
               'ament_index_python': 'ament_index_python', 'launch': 'launch', 'launch_ros': 'launch_ros',
               'lifecycle_msgs': 'lifecycle_msgs', 'flake8': 'python3-flake8', 'pydocstyle': 'python3-pydocstyle'}
# import name -> pip package: no rosdep key exists, so requirements-vehicle.txt and package.xml's comment name them
PIP_ONLY = {'torch': 'torch', 'onnx': 'onnx', 'rosbags': 'rosbags', 'safetensors': 'safetensors',
            'tensorrt': 'tensorrt'}
NOT_IMPORTED_BUT_USED = {'pytest_timeout', 'colcon_core'}   # a pytest plugin; test_colcon_* run colcon


def third_party_imports() -> set[str]:
    files = [*(REPO / 'smcvae_ros').rglob('*.py'), *(REPO / 'test').glob('*.py'), *(REPO / 'launch').glob('*.py')]
    local = {'smcvae_ros'} | {f.stem for f in (REPO / 'test').glob('*.py')}
    names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split('.')[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def test_package_xml_declares_every_dependency():
    """rosdep installs from package.xml: every import of the package, its launch file and its tests has a
    declared key, or is a pip-only package named in requirements-vehicle.txt."""
    imports = third_party_imports() | NOT_IMPORTED_BUT_USED
    unknown = imports - set(ROSDEP_KEYS) - set(PIP_ONLY)
    assert not unknown, f'new dependencies {sorted(unknown)}: declare them in package.xml (or, pip only, ' \
                        'in requirements-vehicle.txt) and add them to this test'
    root = ET.parse(REPO / 'package.xml').getroot()
    declared = {e.text for tag in ('depend', 'exec_depend', 'test_depend') for e in root.iter(tag)}
    missing = {ROSDEP_KEYS[n] for n in imports if n in ROSDEP_KEYS} - declared
    assert not missing, f'package.xml lacks {sorted(missing)}'
    vehicle = (REPO / 'requirements-vehicle.txt').read_text()
    package_xml = (REPO / 'package.xml').read_text()
    for name in imports & set(PIP_ONLY):
        assert re.search(rf'(?m)^#?.*\b{PIP_ONLY[name]}\b', vehicle), f'requirements-vehicle.txt does not name {name}'
        assert PIP_ONLY[name] in package_xml, f"package.xml's pip-only comment does not name {name}"


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


@needs_colcon
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


@needs_colcon
def test_installed_node_starts_on_shipped_model_and_exits_0_on_sigint(workspace, tmp_path):
    log = tmp_path / 'node.log'
    with open(log, 'w') as out:
        node = _bash(f'source {workspace}/install/setup.bash && exec {workspace}/install/smcvae_ros/lib/smcvae_ros/'
                     "restore_node --ros-args -p \"image_topics:=['/cam/image_raw']\"", tmp_path,
                     stdout=out, stderr=subprocess.STDOUT)
        try:
            end = time.monotonic() + 120
            ready = ('/cam/image_raw -> /cam/image_restored', 'configured: backend')   # either may log first
            while not all(r in log.read_text() for r in ready) and time.monotonic() < end:
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


@pytest.mark.parametrize('plugin', ['with', 'without'])
def test_suite_runs_with_and_without_pytest_timeout(plugin):
    """`colcon test` on a machine without pytest-timeout must not stop at an unknown `--timeout`; with it,
    every test gets the 600 s default."""
    args = [sys.executable, '-m', 'pytest', '--collect-only', 'test/test_compat.py']
    if plugin == 'without':
        args += ['-p', 'no:timeout']
    env = {k: v for k, v in os.environ.items() if k != 'PYTEST_TIMEOUT'}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ('timeout: 600' in proc.stdout) is (plugin == 'with'), proc.stdout
