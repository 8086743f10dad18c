"""ONNX export: verified against PyTorch with onnxruntime on real tiles, metadata, consistency, CLI."""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from smcvae_ros.engine.base import BackendError
from smcvae_ros.engine.export import RestoreGraph, example_inputs, export_onnx, verification_batch, verify_onnx
from smcvae_ros.engine.graph import META_WEIGHTS_SHA, ensure_onnx, file_sha256, onnx_metadata, onnx_path_for
from smcvae_ros.model import load_model


@pytest.fixture(scope='module')
def exported(default_size_model, tmp_path_factory):
    return export_onnx(default_size_model, tmp_path_factory.mktemp('onnx') / 'default.onnx', check=False)


def test_export_matches_pytorch_on_real_tiles(exported, default_size_model, val_frames):
    err, source = verify_onnx(exported, default_size_model, clips=val_frames[0].parent, require_real=True)
    assert err <= 1e-4 and source.startswith('real tiles')


def test_export_tiny_model_checked_on_export(tiny_model, val_frames, tmp_path):
    out = export_onnx(tiny_model, tmp_path / 'tiny.onnx', check=True, clips=val_frames[0].parent)
    meta = onnx_metadata(out)
    assert float(meta['smcvae_check_max_abs_error']) <= 1e-4 and meta['smcvae_check_tiles'].startswith('real tiles')
    with pytest.raises(BackendError, match='no clip folder'):
        export_onnx(tiny_model, tmp_path / 'x.onnx', clips=tmp_path / 'missing', require_real=True)
    assert not (tmp_path / 'x.onnx').exists()  # nothing written when the check cannot run


def test_graph_ops_io_and_metadata(exported, default_size_model):
    proto = onnx.load(str(exported))
    ops = Counter(n.op_type for n in proto.graph.node)
    cfg = load_model(default_size_model).cfg
    # one op per LayerNorm / attention; the two Siamese streams go through the encoder as one batch
    assert ops['LayerNormalization'] == (cfg.enc_depth * 2 + 1) + cfg.dec_depth * 2 + 1
    assert ops['Softmax'] == cfg.enc_depth + cfg.dec_depth
    assert 'Tile' not in ops            # the per-pixel gate broadcasts over channels
    assert max(o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')) >= 17
    assert [i.name for i in proto.graph.input] == ['ref', 'damaged', 'patch_mask']
    io = list(proto.graph.input) + list(proto.graph.output)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    assert onnx_metadata(exported)[META_WEIGHTS_SHA] == file_sha256(default_size_model)


def test_dynamic_batch_and_exact_healthy_patches(exported, default_size_model):
    sess = ort.InferenceSession(str(exported), providers=['CPUExecutionProvider'])
    model = load_model(default_size_model)
    for b in (1, 5):
        ref, dmg, mask = (t.numpy() for t in example_inputs(model.cfg, batch=b, seed=b))
        out = sess.run(['restored'], {'ref': ref, 'damaged': dmg, 'patch_mask': mask})[0]
        assert out.shape == ref.shape
        px = (dmg[:, 3:4] > 0.5).repeat(3, 1)
        assert np.array_equal(out[~px], dmg[:, :3][~px])          # healthy pixels bit-exact
        assert np.abs(out[px] - dmg[:, :3][px]).max() > 1e-3      # failed pixels really restored


def test_restore_graph_equals_model_forward(default_size_model, val_frames):
    model = load_model(default_size_model)
    ref, dmg, mask, _ = verification_batch(model.cfg, val_frames[0].parent, n=4)
    with torch.no_grad():
        expected = model(ref, dmg, mask.bool(), sample=False)['restored']
        assert torch.equal(RestoreGraph(model)(ref, dmg, mask), expected)
        noise = torch.randn(4, 3, model.cfg.num_patches, model.cfg.latent_dim,
                            generator=torch.Generator().manual_seed(3))
        restored, var = RestoreGraph(model)(ref, dmg, mask, noise)
        samples = torch.stack([model.restore(ref, dmg, mask.bool(), noise[:, k])['restored'] for k in range(3)], 1)
        assert torch.allclose(restored, expected, atol=1e-5)   # the Z = M pass shares the encoder pass
        assert torch.allclose(var, samples.var(1, unbiased=False).mean(1, keepdim=True), atol=1e-6)


def test_sampling_graph_export(default_size_model, val_frames, tmp_path):
    out = export_onnx(default_size_model, tmp_path / 's.onnx', sampling=True, check=True, clips=val_frames[0].parent)
    assert 'noise' in [i.name for i in onnx.load(str(out)).graph.input]


def test_ensure_onnx_uses_matching_and_rebuilds_stale(default_size_model, tmp_path, caplog):
    weights = tmp_path / 'm.safetensors'
    weights.write_bytes(default_size_model.read_bytes())
    weights.with_suffix('.json').write_text(default_size_model.with_suffix('.json').read_text())
    shipped = export_onnx(weights, check=False)
    assert shipped == onnx_path_for(weights)
    assert ensure_onnx(weights, tmp_path / 'cache') == shipped            # hash matches: used as is
    model = load_model(weights)
    with torch.no_grad():
        model.head.bias.add_(0.1)
    from smcvae_ros.model import save_model
    save_model(model, weights)                                            # weights changed after export
    with caplog.at_level(logging.WARNING):
        got = ensure_onnx(weights, tmp_path / 'cache')
    assert got != shipped and got.parent == tmp_path / 'cache' / 'onnx'
    assert 'does not match' in caplog.text
    assert onnx_metadata(got)[META_WEIGHTS_SHA] == file_sha256(weights)
    shipped.write_bytes(b'not an onnx file')                              # corrupt shipped file: never used
    assert ensure_onnx(weights, tmp_path / 'cache') == got


def test_verify_rejects_a_mismatching_onnx(tiny_model, default_size_model, exported):
    with pytest.raises(BackendError, match='max abs error'):
        # the default-size ONNX against other weights of the same shape -> large error
        other = default_size_model.parent / 'other.safetensors'
        model = load_model(default_size_model)
        with torch.no_grad():
            model.head.weight.mul_(3)
        from smcvae_ros.model import save_model
        save_model(model, other)
        verify_onnx(exported, other)


def test_cli_export_and_opset_check(default_size_model, tmp_path, val_frames, capsys):
    from smcvae_ros.cli import main
    out = tmp_path / 'cli.onnx'
    rc = main(['export', '--model', str(default_size_model), '--out', str(out), '--check',
               '--clips', str(val_frames[0].parent)])
    assert rc == 0 and out.is_file()
    assert 'max abs error' in capsys.readouterr().out and 'real tiles' in onnx_metadata(out)['smcvae_check_tiles']
    assert main(['export', '--model', str(default_size_model), '--out', str(tmp_path / 'x.onnx'), '--opset', '16']) == 1
    assert 'opset must be >= 17' in capsys.readouterr().err
