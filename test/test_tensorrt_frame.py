"""The frame graph's TensorRT path through the test double (TensorRT cannot be installed here): what
the builder is asked for (profile over frame size and tile count, uint8 / int64 I/O, the cues in FP32
under FP16), the bindings, the cache key, and the backend building both engines where CUDA exists."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from smcvae_ros.engine.base import BackendError
from smcvae_ros.engine.cache import EngineCache
from smcvae_ros.engine.frame_export import export_frame_onnx
from smcvae_ros.engine.tensorrt_backend import EngineRunner, build_engine
from smcvae_ros.engine.tensorrt_frame import FRAME_IO, build_frame_engine, frame_key, frame_profile_shapes
from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model

from trt_double import FakeTensorRT  # test/ is on sys.path (rootdir conftest)


@pytest.fixture(scope='module')
def small_tensor_model(tmp_path_factory):
    torch.manual_seed(3)
    cfg = SMCVAEConfig(img_size=32, patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1,
                       dec_heads=2, latent_dim=16, ref_raw=True, ref_hom=True, cues='tensor')
    weights = save_model(SMCVAE(cfg), tmp_path_factory.mktemp('trt_frame') / 'small.safetensors')
    return weights, export_frame_onnx(weights)


def test_frame_build_asks_for_frame_and_tile_ranges_with_integer_io(small_tensor_model):
    _, onnx = small_tensor_model
    spec = json.loads(build_frame_engine(FakeTensorRT(), onnx, 'fp16', 32, workspace_mb=512))
    prof = spec['profiles'][0]
    assert prof['reference'] == [[32, 32, 3], [720, 1280, 3], [2160, 3840, 3]] == prof['damaged']
    assert prof['failed'] == [[32, 32], [720, 1280], [2160, 3840]]
    assert prof['origins'] == [[1, 2], [64, 2], [4096, 2]]
    assert {n: d for n, _, d in spec['io']} == FRAME_IO
    assert 'FP16' in spec['flags'] and 'OBEY_PRECISION_CONSTRAINTS' in spec['flags']
    assert spec['pools']['WORKSPACE'] == 512 << 20


def test_fp16_frame_build_keeps_the_cues_in_fp32(small_tensor_model, tiny_model, tmp_path):
    """The tile engine pins only LayerNorm / softmax; the frame engine pins the unscoped float layers too
    (the cues, gather and blend), not the model's scoped ones."""
    import onnx as onnx_lib
    from smcvae_ros.engine.export import export_onnx
    _, onnx = small_tensor_model
    nodes = onnx_lib.load(str(onnx)).graph.node
    scoped = [n for n in nodes if n.name.lstrip('/').count('/') > 0]
    assert scoped and len(scoped) < len(nodes)
    frame = json.loads(build_frame_engine(FakeTensorRT(), onnx, 'fp16', 32, 256))
    tile = json.loads(build_engine(FakeTensorRT(), export_onnx(tiny_model, tmp_path / 't.onnx'), 'fp16',
                                   (1, 2, 2), 32, 16))
    norm_softmax = sum(n.op_type in ('LayerNormalization', 'Softmax') for n in scoped)
    assert frame['fp32_layers'] > norm_softmax + 100 and tile['fp32_layers'] < frame['fp32_layers']
    assert json.loads(build_frame_engine(FakeTensorRT(), onnx, 'fp32', 32, 256))['fp32_layers'] == 0


def test_frame_runner_binds_uint8_frames_and_int64_origins(small_tensor_model):
    _, onnx = small_tensor_model
    trt = FakeTensorRT()
    engine = trt.Runtime(None).deserialize_cuda_engine(build_frame_engine(trt, onnx, 'fp16', 32, 256))
    runner = EngineRunner(trt, engine, 'cpu', SimpleNamespace(cuda_stream=7), FRAME_IO)
    u8 = dict(dtype=torch.uint8)
    feeds = {'reference': torch.zeros(48, 80, 3, **u8), 'damaged': torch.zeros(48, 80, 3, **u8),
             'failed': torch.zeros(48, 80, **u8), 'origins': torch.zeros(3, 2, dtype=torch.int64)}
    out = runner(feeds)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (48, 80, 3)
    assert engine.contexts[0].executed == [7]
    with pytest.raises(BackendError, match='contiguous int64'):
        runner({**feeds, 'origins': torch.zeros(3, 2, dtype=torch.int32)})
    with pytest.raises(BackendError, match='outside the optimization profile'):
        runner({**feeds, 'failed': torch.zeros(16, 80, dtype=torch.uint8)})     # under one tile
    with pytest.raises(BackendError, match='does not match'):
        EngineRunner(trt, engine, 'cpu', SimpleNamespace(cuda_stream=7))         # the tile graph's I/O


def test_frame_engine_key_and_cache_path_differ_from_the_tile_engine(small_tensor_model, tmp_path):
    _, onnx = small_tensor_model
    key = frame_key(FakeTensorRT('10.7.0'), onnx, 'fp16', 32, ('NVIDIA Orin', '8.7'))
    assert key.profile[:3] == (1, 64, 4096) and key.profile[3:] == (32, 32, 720, 1280, 2160, 3840)
    assert EngineCache(tmp_path).paths(onnx.stem, key)[0].name == 'small.frame.fp16.b4096.engine'
    assert frame_profile_shapes(64)['failed'][0] == (64, 64)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='no CUDA GPU: TensorRTBackend needs one (TensorRT itself is doubled)')
def test_tensorrt_backend_builds_the_frame_engine_for_a_tensor_model(small_tensor_model, tmp_path):
    from smcvae_ros.engine.tensorrt_backend import TensorRTBackend
    weights, _ = small_tensor_model
    trt = FakeTensorRT()
    be = TensorRTBackend(weights, max_batch=4, engine_cache_dir=tmp_path, trt_module=trt)
    assert trt.builds == 2 and be.frame_engine_status.startswith('built') and 'frame engine' in be.describe()
    again = TensorRTBackend(weights, max_batch=4, engine_cache_dir=tmp_path, trt_module=trt)
    assert trt.builds == 2 and again.frame_engine_status == 'cached'
