"""Backends: torch-cpu vs onnxruntime equality, fallback with notes, TensorRT logic (via FakeTensorRT),
engine cache decisions, and (CUDA only) torch fp16 vs fp32 quality."""
from __future__ import annotations

import importlib.util
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from smcvae_ros.engine.base import MAX_BATCH, BackendError
from smcvae_ros.engine.factory import auto_order, create_backend
from smcvae_ros.engine.cache import EngineCache, EngineKey
from smcvae_ros.engine.export import export_onnx, verification_batch
from smcvae_ros.engine.tensorrt_backend import (EngineRunner, build_engine, engine_key, load_or_build,
                                                profile_shapes)
from smcvae_ros.evaluation.metrics import psnr
from smcvae_ros.model import load_model

from trt_double import FakeTensorRT  # test/ is on sys.path (rootdir conftest)

HAS_TRT = importlib.util.find_spec('tensorrt') is not None


@pytest.fixture(scope='module')
def real_tiles(default_size_model, val_frames):
    cfg = load_model(default_size_model).cfg
    ref, dmg, mask, _ = verification_batch(cfg, val_frames[0].parent, n=8, seed=5)
    return ref.numpy(), dmg.numpy(), mask.numpy()


@pytest.fixture(scope='module')
def tiny_onnx(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp('tiny_onnx') / 'tiny.onnx', check=False)


# --- torch vs onnxruntime -------------------------------------------------------------------------
def test_torch_cpu_and_onnxruntime_restore_the_same_pixels(default_size_model, real_tiles, tmp_path):
    torch_b, notes_t = create_backend('torch', default_size_model, device='cpu', fallback=False)
    ort_b, notes_o = create_backend('onnxruntime', default_size_model, device='cpu', fallback=False,
                                    engine_cache_dir=tmp_path, intra_op_threads=1, precision='fp32')
    assert (torch_b.name, ort_b.name, notes_t, notes_o) == ('torch', 'onnxruntime', [], [])
    ref, dmg, mask = real_tiles
    a, b = torch_b.restore(ref, dmg, mask.astype(bool)), ort_b.restore(ref, dmg, mask)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == ref.shape
    assert np.abs(a - b).max() <= 1e-4
    assert np.abs(a - dmg[:, :3]).max() > 1e-2  # the model really changed failed pixels


def test_onnxruntime_uncertainty(default_size_model, real_tiles, tmp_path):
    backend, _ = create_backend('onnxruntime', default_size_model, device='cpu', fallback=False,
                                engine_cache_dir=tmp_path, precision='fp32')
    ref, dmg, mask = real_tiles
    restored, var = backend.restore_with_uncertainty(ref[:3], dmg[:3], mask[:3], samples=4, seed=0)
    assert restored.shape == ref[:3].shape and var.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(restored, backend.restore(ref[:3], dmg[:3], mask[:3]), atol=1e-5)  # Z = M pass
    px = dmg[:3, 3:4] > 0.5
    assert np.all(var[~px] == 0) and var[px].mean() > 0  # sampled only where pixels failed


def test_tiles_go_in_max_batch_chunks_with_the_same_pixels(tiny_model, tmp_path):
    """The node's default max_batch (32: one call for ~59 tiles of a 10 % failed 720p frame, not eight)
    chunks the tiles, and chunking changes no pixel."""
    from smcvae_ros.ros.params import defaults
    assert defaults()['max_batch'] == MAX_BATCH == 32
    rng = np.random.default_rng(0)
    ref, dmg = rng.random((70, 3, 32, 32), np.float32), rng.random((70, 4, 32, 32), np.float32)
    dmg[:, 3] = dmg[:, 3] > 0.5
    mask = dmg[:, 3].reshape(70, 4, 8, 4, 8).any(axis=(2, 4)).reshape(70, -1).astype(np.float32)
    outs = {}
    for mb in (MAX_BATCH, 8, 70):
        be, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path,
                               max_batch=mb, intra_op_threads=1, precision='fp32')
        calls = []
        run = be._run
        be._run = lambda r, d, m: calls.append(len(r)) or run(r, d, m)
        outs[mb] = be.restore(ref, dmg, mask)
        assert calls == [mb] * (70 // mb) + ([70 % mb] if 70 % mb else [])
    for mb in (8, 70):                                  # same tiles, same outputs (up to GEMM summation order)
        assert np.abs(outs[mb] - outs[MAX_BATCH]).max() <= 1e-6


def test_auto_order_on_cpu_prefers_measured_fastest():
    if torch.cuda.is_available():
        pytest.skip('CPU-only ordering')
    assert auto_order('auto') == ['onnxruntime', 'torch']


# --- fallback -------------------------------------------------------------------------------------
def test_failing_tensorrt_falls_back_with_reason(tiny_model, tmp_path, caplog):
    if HAS_TRT and torch.cuda.is_available():
        pytest.skip('TensorRT really works here')
    with caplog.at_level(logging.WARNING):
        backend, notes = create_backend('tensorrt', tiny_model, device='auto', engine_cache_dir=tmp_path)
    assert backend.name in ('torch', 'onnxruntime')
    assert len(notes) == 1 and notes[0].startswith('tensorrt backend unavailable: BackendError')
    assert notes[0].split(': ', 1)[1] in caplog.text
    with pytest.raises(BackendError, match='no backend could be loaded'):
        create_backend('tensorrt', tiny_model, fallback=False)


def test_tensorrt_without_cuda_is_refused_even_with_tensorrt(tiny_model, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('needs a machine without CUDA')
    backend, notes = create_backend('tensorrt', tiny_model, device='auto', trt_module=FakeTensorRT(),
                                    engine_cache_dir=tmp_path)
    assert 'TensorRT needs a CUDA GPU' in notes[0] and backend.name != 'tensorrt'


def test_corrupt_onnx_falls_back_to_torch(tiny_model, tmp_path):
    bad = tmp_path / 'corrupt.onnx'
    bad.write_bytes(b'\x08\x07garbage')
    backend, notes = create_backend('onnxruntime', tiny_model, device='cpu', onnx_path=bad)
    assert backend.name == 'torch'
    assert notes and 'onnxruntime cannot load' in notes[0] and str(bad) in notes[0]


def test_backend_that_loads_but_cannot_run_falls_back(default_size_model, tiny_onnx):
    # a valid ONNX of a 32x32 model loads fine but cannot take the 64x64 tiles of this model
    backend, notes = create_backend('onnxruntime', default_size_model, device='cpu', onnx_path=tiny_onnx)
    assert backend.name == 'torch'
    assert len(notes) == 1 and notes[0].startswith('onnxruntime backend unavailable')


# --- engine cache ---------------------------------------------------------------------------------
def _key(**kw) -> EngineKey:
    base = dict(onnx_sha256='a' * 64, tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7',
                precision='fp16', profile=(1, 8, 8), img_size=64)
    return EngineKey(**{**base, **kw})


def test_cache_hit_stale_and_corrupt(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.load('m', _key())[0] is None
    path = cache.store('m', _key(), b'engine-bytes' * 100)
    assert cache.load('m', _key()) == (b'engine-bytes' * 100, '')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.fp16.b8.engine', 'm.fp16.b8.json']  # no temp files
    for change, field in ((dict(tensorrt_version='10.7.0'), 'tensorrt_version'),
                          (dict(gpu_name='RTX 4090'), 'gpu_name'),
                          (dict(compute_capability='8.9'), 'compute_capability'),
                          (dict(onnx_sha256='b' * 64), 'onnx_sha256'),
                          (dict(profile=(1, 4, 8)), 'profile'), (dict(img_size=32), 'img_size')):
        data, reason = cache.load('m', _key(**change))
        assert data is None and 'stale' in reason and field in reason
    path.write_bytes(path.read_bytes()[:-10])                        # truncated
    assert 'corrupt or truncated' in cache.load('m', _key())[1]
    path.write_bytes(b'X' * len(b'engine-bytes' * 100))              # same size, different bytes
    assert 'corrupt or truncated' in cache.load('m', _key())[1]
    path.with_suffix('.json').write_text('{')
    assert 'unreadable engine sidecar' in cache.load('m', _key())[1]


def test_load_or_build_decisions(tmp_path, caplog):
    cache, builds = EngineCache(tmp_path), []
    build = lambda: builds.append(1) or b'engine-%d' % len(builds)  # noqa: E731
    assert load_or_build(None, cache, 'm', _key(), build)[1].startswith('built: no cached engine')
    assert load_or_build(None, cache, 'm', _key(), build) == (b'engine-1', 'cached')
    with caplog.at_level(logging.WARNING):
        data, how = load_or_build(None, cache, 'm', _key(tensorrt_version='10.8.0'), build)
    assert (data, len(builds)) == (b'engine-2', 2) and 'stale' in how and 'tensorrt_version' in caplog.text
    (tmp_path / 'm.fp16.b8.engine').write_bytes(b'engine-X')        # corrupted on disk
    assert 'corrupt' in load_or_build(None, cache, 'm', _key(tensorrt_version='10.8.0'), build)[1]
    assert load_or_build(None, cache, 'm', _key(tensorrt_version='10.8.0'), build, force=True)[1] == \
        'built: force_engine_rebuild is set'
    assert len(builds) == 4


# --- TensorRT build and bindings through the test double --------------------------------------------
def test_build_engine_fp16_requests(tiny_onnx):
    trt = FakeTensorRT()
    spec = json.loads(build_engine(trt, tiny_onnx, 'fp16', (1, 4, 4), img_size=32, num_patches=16, workspace_mb=256))
    import onnx
    ops = [n.op_type for n in onnx.load(str(tiny_onnx)).graph.node]
    assert set(spec['flags']) == {'FP16', 'OBEY_PRECISION_CONSTRAINTS'}
    assert spec['fp32_layers'] == ops.count('LayerNormalization') + ops.count('Softmax') > 0
    assert spec['pools'] == {'WORKSPACE': 256 << 20}
    assert spec['profiles'] == [{'ref': [[1, 3, 32, 32], [4, 3, 32, 32], [4, 3, 32, 32]],
                                 'damaged': [[1, 4, 32, 32], [4, 4, 32, 32], [4, 4, 32, 32]],
                                 'patch_mask': [[1, 16], [4, 16], [4, 16]]}]
    assert all(dtype == 'float32' for _, _, dtype in spec['io'])


def test_build_engine_fp32_and_failures(tiny_onnx, tmp_path):
    trt = FakeTensorRT()
    spec = json.loads(build_engine(trt, tiny_onnx, 'fp32', (1, 2, 2), 32, 16))
    assert spec['flags'] == [] and spec['fp32_layers'] == 0
    with pytest.raises(BackendError, match='precision'):
        build_engine(trt, tiny_onnx, 'int8', (1, 2, 2), 32, 16)
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'garbage')
    with pytest.raises(BackendError, match='could not parse'):
        build_engine(trt, bad, 'fp16', (1, 2, 2), 32, 16)
    trt.fail_build = True
    with pytest.raises(BackendError, match='engine build failed'):
        build_engine(trt, tiny_onnx, 'fp16', (1, 2, 2), 32, 16)


def test_bool_io_onnx_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node('Not', ['patch_mask'], ['restored'])], 'g',
                              [helper.make_tensor_value_info('patch_mask', TensorProto.BOOL, ['b', 4])],
                              [helper.make_tensor_value_info('restored', TensorProto.BOOL, ['b', 4])])
    path = tmp_path / 'bool.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(path))
    with pytest.raises(BackendError, match='expected FP32'):
        build_engine(FakeTensorRT(), path, 'fp16', (1, 2, 2), 32, 4)


def test_engine_key_fields(tiny_onnx):
    key = engine_key(FakeTensorRT('10.7.0'), tiny_onnx, 'fp16', 6, 32, ('NVIDIA Orin', '8.7'))
    assert (key.tensorrt_version, key.gpu_name, key.compute_capability, key.profile) == \
        ('10.7.0', 'NVIDIA Orin', '8.7', (1, 6, 6))
    import hashlib
    assert key.onnx_sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert profile_shapes((1, 6, 6), 32, 16)['patch_mask'] == ((1, 16), (6, 16), (6, 16))


def test_engine_runner_bindings(tiny_onnx):
    trt = FakeTensorRT()
    engine = trt.Runtime(None).deserialize_cuda_engine(build_engine(trt, tiny_onnx, 'fp16', (1, 4, 4), 32, 16))
    stream = SimpleNamespace(cuda_stream=1234)  # the handle the engine must be enqueued on
    runner = EngineRunner(trt, engine, 'cpu', stream)
    feeds = {'ref': torch.zeros(3, 3, 32, 32), 'damaged': torch.zeros(3, 4, 32, 32), 'patch_mask': torch.ones(3, 16)}
    out = runner(feeds)
    ctx = engine.contexts[0]
    assert ctx.shapes == {'ref': (3, 3, 32, 32), 'damaged': (3, 4, 32, 32), 'patch_mask': (3, 16)}
    assert {k: ctx.addresses[k] for k in feeds} == {k: t.data_ptr() for k, t in feeds.items()}
    assert ctx.addresses['restored'] == out.data_ptr() and out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    assert ctx.executed == [1234]
    too_big = {k: torch.zeros((5,) + tuple(t.shape[1:])) for k, t in feeds.items()}
    with pytest.raises(BackendError, match='outside the optimization profile'):
        runner(too_big)
    with pytest.raises(BackendError, match='contiguous float32'):
        runner({**feeds, 'patch_mask': torch.ones(3, 16, dtype=torch.bool)})
    assert trt.Runtime(None).deserialize_cuda_engine(b'\x00corrupt') is None


def test_build_engine_cli_reports_missing_tensorrt(tiny_model, tmp_path, capsys):
    if HAS_TRT:
        pytest.skip('tensorrt is installed here')
    from smcvae_ros.cli import main
    assert main(['build-engine', '--model', str(tiny_model), '--cache-dir', str(tmp_path)]) == 1
    assert 'TensorRT is not installed' in capsys.readouterr().err


# --- CUDA -----------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU: torch fp16 vs fp32 check needs one')
def test_torch_cuda_fp16_within_0p1_db_of_fp32(default_size_model, val_frames):
    cfg = load_model(default_size_model).cfg
    ref, dmg, target, mask = (t.numpy() for t in _val_batch(cfg, val_frames))
    fp32, _ = create_backend('torch', default_size_model, device='cuda', precision='fp32', fallback=False)
    fp16, _ = create_backend('torch', default_size_model, device='cuda', precision='fp16', fallback=False)
    px = np.repeat(np.repeat(mask.reshape(len(mask), 1, 8, 8), 8, 2), 8, 3).repeat(3, 1)
    p32 = psnr(fp32.restore(ref, dmg, mask) * 255, target * 255, px)
    p16 = psnr(fp16.restore(ref, dmg, mask) * 255, target * 255, px)
    assert abs(p32 - p16) <= 0.1, (p32, p16)


def _val_batch(cfg, val_frames):
    from smcvae_ros.data.clips import list_clips
    from smcvae_ros.training.pairs import PairSpec, fixed_batch
    spec = PairSpec(img_size=cfg.img_size, patch_size=cfg.patch_size, align=cfg.align)
    return fixed_batch(list_clips(val_frames[0].parent), spec, 32, seed=0, ratio=0.3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='no CUDA GPU: TensorRTBackend needs one (TensorRT itself is doubled)')
def test_tensorrt_backend_cache_and_warmup_with_double(tiny_model, tmp_path):
    from smcvae_ros.engine.tensorrt_backend import TensorRTBackend
    trt = FakeTensorRT('10.3.0')

    def make(t, **kw):
        return TensorRTBackend(tiny_model, max_batch=4, engine_cache_dir=tmp_path, trt_module=t, **kw)
    first = make(trt)
    assert first.engine_status.startswith('built: no cached engine') and trt.builds == 1 and first.engine_path.is_file()
    assert first.runner.context.executed == [first.stream.cuda_stream] * 2   # warm-up: batch 1 and max_batch
    assert make(trt).engine_status == 'cached' and trt.builds == 1
    assert 'tensorrt_version' in make(FakeTensorRT('10.7.0')).engine_status
    assert make(trt, force_engine_rebuild=True).engine_status == 'built: force_engine_rebuild is set'


def test_onnxruntime_int8_is_close_to_fp32_and_cached(tiny_model, tmp_path):
    from smcvae_ros.engine.export import example_inputs
    fp32, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path,
                             precision='fp32')
    int8, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path,
                             precision='int8')
    assert int8.precision == 'int8' and int8.onnx_path.name.endswith('.int8-matmul.onnx') and int8.onnx_path.is_file()
    import onnx
    ops = {n.op_type for n in onnx.load(str(int8.onnx_path)).graph.node}
    assert 'MatMulInteger' in ops and 'Conv' in ops and 'ConvInteger' not in ops   # the weight MatMuls only
    ref, dmg, mask = (t.numpy() for t in example_inputs(load_model(tiny_model).cfg, batch=4, seed=2))
    a, b = fp32.restore(ref, dmg, mask), int8.restore(ref, dmg, mask)
    healthy = np.broadcast_to(dmg[:, 3:4] < 0.5, a.shape)
    np.testing.assert_array_equal(b[healthy], dmg[:, :3][healthy])   # the merge stays exact
    assert 0 < np.abs(a - b).max() < 0.1
    # activations are quantized per call: a tile's pixels depend (slightly) on the others in its call
    int8.max_batch = 1
    assert np.abs(int8.restore(ref, dmg, mask) - b).max() < 0.02


@pytest.mark.parametrize('has_dot', [True, False])
def test_auto_precision_is_int8_on_cpus_with_int8_dot_products(tiny_model, tmp_path, monkeypatch, has_dot):
    import smcvae_ros.engine.onnxruntime_backend as ob
    monkeypatch.setattr(ob, 'cpu_has_int8_dot', lambda: has_dot)
    be, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path)
    assert be.precision == ('int8' if has_dot else 'fp32')
    assert be.onnx_path.name.endswith('.int8-matmul.onnx') == has_dot
    torch_b, _ = create_backend('torch', tiny_model, device='cpu', fallback=False)
    assert torch_b.precision == 'fp32'                       # torch CPU always runs fp32
    with pytest.raises(BackendError, match='precision must be one of'):
        create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, precision='int4')


def test_auto_precision_runs_fp32_where_int8_cannot_be_made(tiny_model, tmp_path, monkeypatch):
    """The runtime set has no `onnx` package (onnxruntime's quantizer needs it): `auto` runs the fp32
    graph there, an explicit `int8` is a backend failure; a cached int8 graph needs no quantizer."""
    import sys

    import smcvae_ros.engine.onnxruntime_backend as ob
    made, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path / 'c',
                             precision='int8')
    monkeypatch.setattr(ob, 'cpu_has_int8_dot', lambda: True)
    monkeypatch.setitem(sys.modules, 'onnxruntime.quantization', None)      # import fails, as without onnx
    be, notes = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path)
    assert (be.name, be.precision, notes) == ('onnxruntime', 'fp32', [])
    assert not be.onnx_path.name.endswith('.int8-matmul.onnx')
    with pytest.raises(BackendError, match='precision int8'):
        create_backend('onnxruntime', tiny_model, device='cpu', fallback=False, engine_cache_dir=tmp_path,
                       precision='int8')
    cached, _ = create_backend('onnxruntime', tiny_model, device='cpu', fallback=False,
                               engine_cache_dir=tmp_path / 'c')
    assert cached.precision == 'int8' and cached.onnx_path == made.onnx_path
