"""Shared fixtures. DDS stays on this machine, on a per-session domain id (no cross-talk)."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest

from smcvae_ros.ros.env import ros_env  # imports no rclpy: the env is set before rclpy loads

if 'SMCVAE_TEST_DOMAIN_ID' not in os.environ:  # one domain per test session, inherited by subprocesses
    os.environ['SMCVAE_TEST_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
ros_env(int(os.environ['SMCVAE_TEST_DOMAIN_ID']))
# one ONNX/engine cache per test session: exports left in ~/.cache by other versions are never read
os.environ.setdefault('SMCVAE_CACHE_DIR', tempfile.mkdtemp(prefix='smcvae-test-cache-'))

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / 'data'
TEST_TIMEOUT_S = 600  # per test, when pytest-timeout is installed (package.xml: python3-pytest-timeout)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Per-test timeout without making pytest-timeout a hard requirement: `colcon test` must not die on
    an unknown `--timeout` option where the plugin is missing (the `timeout` marks then do nothing)."""
    if not config.pluginmanager.hasplugin('timeout'):
        config.addinivalue_line('markers', 'timeout(seconds): per-test limit (needs pytest-timeout)')
    elif config.getoption('timeout') is None and 'PYTEST_TIMEOUT' not in os.environ:
        config.option.timeout = TEST_TIMEOUT_S


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory) -> Path:
    """A small randomly initialised SMCVAE saved as safetensors + JSON (fast on CPU)."""
    import torch

    from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model
    torch.manual_seed(0)
    cfg = SMCVAEConfig(img_size=32, patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32,
                       dec_depth=1, dec_heads=2, latent_dim=16, align='flow')
    model = SMCVAE(cfg)
    with torch.no_grad():  # non-zero head so the model really changes pixels
        model.head.weight.normal_(std=0.01)
    return save_model(model, tmp_path_factory.mktemp('model') / 'tiny.safetensors')


@pytest.fixture(scope='session')
def shipped_model() -> Path:
    from smcvae_ros.engine.base import default_model_path
    path = default_model_path()
    if not path.is_file():
        pytest.fail(f'shipped model missing: {path}')
    return path


@pytest.fixture(scope='session')
def val_frames() -> list[Path]:
    """12 consecutive real 960x540 frames shipped with the tests (test/data/README.md: source, MIT licence)."""
    frames = sorted((TEST_DATA / 'udacity_solidwhiteright').glob('*.jpg'))
    assert len(frames) == 12, f'test frames missing under {TEST_DATA}'
    return frames


@pytest.fixture(scope='session')
def frames(val_frames) -> list[np.ndarray]:
    """The first 4 test frames as RGB arrays."""
    from smcvae_ros.data.clips import read_rgb
    return [read_rgb(p) for p in val_frames[:4]]


@pytest.fixture(scope='module')
def ros(request, tiny_model):
    """(NodeProcess, Client): a tiny-model restore_node for the test module's CAMERAS (with the module's
    NODE_OVERRIDES parameters, if any), one per module."""
    from ros_helpers import tiny_node
    with tiny_node('restore_' + request.module.__name__.rpartition('.')[2], tiny_model, request.module.CAMERAS,
                   getattr(request.module, 'NODE_OVERRIDES', None)) as node_client:
        yield node_client


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope='session')
def default_size_model(tmp_path_factory) -> Path:
    """A random SMCVAE at the shipped size (SMCVAEConfig() defaults), non-zero head; for engine tests."""
    import torch

    from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model
    torch.manual_seed(1)
    model = SMCVAE(SMCVAEConfig())
    with torch.no_grad():
        model.head.weight.normal_(std=0.01)
    return save_model(model, tmp_path_factory.mktemp('default_model') / 'default.safetensors')
