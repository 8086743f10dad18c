"""Runtime set: the node restores on the shipped ONNX where torch cannot be imported; model/ONNX consistency."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ros_helpers import NodeProcess, damage, running_node, send, settled_status

from smcvae_ros.data.clips import read_rgb
from smcvae_ros.engine import create_backend, resolve_model
from smcvae_ros.engine.graph import (META_MODEL_CONFIG, META_SAMPLING, ModelConfigMismatch, check_onnx, ensure_onnx,
                                     onnx_metadata, onnx_path_for)

pytestmark = pytest.mark.timeout(240)

CAM = '/rt_cam/image_raw'
ROIS = [(96, 96, 64, 48)]
RUNTIME_MODULES = ['smcvae_ros.ros.node', 'smcvae_ros.engine.onnxruntime_backend', 'smcvae_ros.engine.tensorrt_backend',
                   'smcvae_ros.evaluation.metrics', 'smcvae_ros.bag.evaluate', 'smcvae_ros.restoration']


@pytest.fixture(scope='module')
def no_torch(tmp_path_factory) -> dict:
    """Environment of the runtime set (requirements-runtime.txt): `import torch` and `import onnx` fail
    (packages of those names that raise ImportError)."""
    root = tmp_path_factory.mktemp('no_torch')
    for name in ('torch', 'onnx'):
        (root / name).mkdir()
        (root / name / '__init__.py').write_text(f"raise ImportError('{name} is not installed on this vehicle')\n")
    return {'PYTHONPATH': os.pathsep.join(filter(None, [str(root), os.environ.get('PYTHONPATH')]))}


def test_runtime_modules_import_without_torch(no_torch):
    code = ('import sys\nimport ' + ', '.join(RUNTIME_MODULES) +
            "\nassert 'torch' not in sys.modules or sys.modules['torch'] is None\nprint('ok')")
    res = subprocess.run([sys.executable, '-c', code], env={**os.environ, **no_torch}, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == 'ok', res.stderr
    blocked = subprocess.run([sys.executable, '-c', 'import torch'], env={**os.environ, **no_torch},
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and 'not installed on this vehicle' in blocked.stderr


def test_node_restores_on_the_shipped_onnx_without_torch(no_torch, val_frames, tmp_path):
    """precision auto there: no onnx package to make the int8 graph with (a fresh cache), so fp32."""
    frames = [read_rgb(p) for p in val_frames[:2]]
    params = {'backend': 'auto', 'device': 'cpu', 'engine_cache_dir': str(tmp_path)}
    with running_node('restore_no_torch', params, [CAM], env=no_torch) as (node, client):
        client.send_health(CAM, CAM)
        send(client, CAM, frames[0])
        client.send_health(CAM, CAM, rois=ROIS)
        msg, out, mask = send(client, CAM, damage(frames[1], ROIS))
        assert mask is not None and mask.any() and bytes(out.data) != bytes(msg.data)
        st = settled_status(client, CAM)
        assert st['last_status'] == 'restored' and st['backend'] == 'onnxruntime(cpu, fp32)' and not st['backend_notes']
    assert 'torch is not installed on this vehicle' not in node.log()        # torch was never even tried


@pytest.fixture
def disagreeing_model(shipped_model, tmp_path):
    """The shipped weights and ONNX files with a JSON that says align: none, gate: false."""
    for f in shipped_model.parent.glob(shipped_model.stem + '.*'):
        if f.suffix in ('.safetensors', '.json', '.onnx'):
            shutil.copy(f, tmp_path / f.name)
    weights = tmp_path / shipped_model.name
    cfg = json.loads(weights.with_suffix('.json').read_text())
    cfg['model'].update(align='none', gate=False)
    weights.with_suffix('.json').write_text(json.dumps(cfg))
    return weights


def test_json_onnx_disagreement_is_a_startup_error(disagreeing_model, shipped_model, tmp_path):
    assert json.loads(onnx_metadata(ensure_onnx(shipped_model))[META_MODEL_CONFIG]) == \
        json.loads(shipped_model.with_suffix('.json').read_text())['model']
    for backend in ('onnxruntime', 'torch', 'auto'):                 # never a fallback, never a silent start
        with pytest.raises(ModelConfigMismatch, match=r"align: 'flow' -> 'none'.*gate: True -> False"):
            create_backend(backend, disagreeing_model, 'cpu', fallback=True, engine_cache_dir=tmp_path / 'cache')
    node = NodeProcess('restore_mismatch', {'model_path': str(disagreeing_model), 'image_topics': [CAM]})
    try:
        rc = node.proc.wait(90)
    finally:
        node.stop()
    assert rc == 1 and 'cannot start' in node.log() and 'disagrees with' in node.log(), node.log()


def test_every_shipped_model_has_current_onnx_files(shipped_model):
    """Each shipped weights file has its JSON and both ONNX graphs (a `cues: tensor` model also its frame
    graph), exported from exactly these weights and this JSON (a stale file would be re-exported or
    refused at start-up)."""
    models = sorted(shipped_model.parent.glob('*.safetensors'))
    assert shipped_model in models
    for weights in models:
        cfg = json.loads(weights.with_suffix('.json').read_text())['model']
        for sampling in (False, True):
            graph = onnx_path_for(weights, sampling)
            assert check_onnx(graph, weights), graph                     # these weights (sha256), this JSON
            meta = onnx_metadata(graph)
            assert json.loads(meta[META_MODEL_CONFIG]) == cfg, graph     # and the JSON exactly, key for key
            assert meta[META_SAMPLING] == str(int(sampling)), graph
        if cfg.get('cues') == 'tensor':                                  # and the frame graph
            frame = onnx_path_for(weights, frame=True)
            assert check_onnx(frame, weights), frame
            assert onnx_metadata(frame)['smcvae_graph'] == 'frame'


def test_model_path_names_a_shipped_model_or_a_file(shipped_model, tmp_path, monkeypatch):
    assert resolve_model('') == resolve_model(None) == shipped_model
    assert resolve_model(shipped_model.name) == shipped_model         # a bare shipped name
    own = tmp_path / 'mine.safetensors'
    assert resolve_model(own) == resolve_model(str(own)) == own        # a path stays a path
    monkeypatch.chdir(tmp_path)
    own.write_bytes(b'')
    assert resolve_model('mine.safetensors') == Path('mine.safetensors')   # a file here wins
