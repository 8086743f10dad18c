"""Extra reference cues: `ref_raw` (the unwarped reference as a third cue) and `ref_hom` (the
homography-warped reference as a fourth): model, warm start, training tiles, tiles, ONNX export,
backends and the Restorer, end to end on a tiny model."""
import numpy as np
import pytest
import torch

from smcvae_ros.engine import create_backend
from smcvae_ros.engine.export import export_onnx, verify_onnx
from smcvae_ros.model import SMCVAE, SMCVAEConfig, load_model, save_model
from smcvae_ros.restoration.align import prepare_cues
from smcvae_ros.restoration.restorer import RestorationSettings, Restorer
from smcvae_ros.restoration.tiles import plan_tiles
from smcvae_ros.training.pairs import PairSpec, frame_tiles
from smcvae_ros.training.train import warm_start

SMALL = dict(img_size=32, patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2,
             latent_dim=16)


@pytest.fixture(scope='module')
def road():
    from smcvae_ros.data.synthetic import generate_sequence
    return generate_sequence(4, 160, 96, seed=3)


@pytest.fixture(scope='module')
def raw_model(tmp_path_factory):
    torch.manual_seed(0)
    model = SMCVAE(SMCVAEConfig(**SMALL, ref_raw=True))
    with torch.no_grad():  # a gate that really mixes the three cues, a non-zero residual
        model.gate.weight.normal_(std=0.5)
        model.head.weight.normal_(std=0.01)
    return save_model(model, tmp_path_factory.mktemp('raw') / 'raw.safetensors')


def _inputs(b=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref, dmg = torch.rand(b, 6, s, s, generator=g), torch.rand(b, 4, s, s, generator=g)
    dmg[:, 3] = (dmg[:, 3] < 0.3).float()
    return ref, dmg, torch.nn.functional.max_pool2d(dmg[:, 3:4], 8).flatten(1) > 0


def test_config_and_the_raw_reference_changes_only_failed_pixels(raw_model):
    with pytest.raises(ValueError, match='ref_raw needs'):
        SMCVAEConfig(**SMALL, ref_raw=True, gate=False)
    model = load_model(raw_model).eval()
    assert model.cfg.ref_chans == 6 and model.cfg.stream_chans == 8
    ref, dmg, mask = _inputs()
    a = model(ref, dmg, mask)['restored']
    ref2 = ref.clone()
    ref2[:, 3:] = 1 - ref2[:, 3:]
    b = model(ref2, dmg, mask)['restored']
    healthy = (dmg[:, 3:4] < 0.5).expand_as(a)
    assert torch.equal(a[healthy], dmg[:, :3][healthy]) and torch.equal(b[healthy], dmg[:, :3][healthy])
    assert (a - b)[~healthy].abs().max() > 1e-3          # the raw reference is used where pixels failed


def test_warm_start_from_a_model_without_it_begins_close_to_that_model(tmp_path):
    torch.manual_seed(1)
    old = SMCVAE(SMCVAEConfig(**SMALL))
    with torch.no_grad():
        old.gate.weight.normal_(std=0.5)
        old.head.weight.normal_(std=0.01)
    path = save_model(old, tmp_path / 'old.safetensors')
    new = SMCVAE(SMCVAEConfig(**SMALL, ref_raw=True))
    assert warm_start(new, path) == []
    assert torch.equal(new.encoder.stem.net[0].weight[:, :4], old.encoder.stem.net[0].weight)
    assert not new.encoder.stem.net[0].weight[:, 4:].any()
    ref, dmg, mask = _inputs()
    a = old.eval()(ref[:, :3], dmg, mask)['restored']
    b = new.eval()(ref, dmg, mask)['restored']
    failed = (dmg[:, 3:4] > 0.5).expand_as(a)
    assert 0 < (a - b)[failed].abs().mean() < 0.02       # ~2 % raw-reference share at the start


def test_training_tiles_and_run_time_tiles_hold_the_raw_reference(road):
    ref, target = road[0], road[3]
    spec = PairSpec(img_size=32, patch_size=8, ref_raw=True, tiles_per_frame=4, flip=False)
    tiles = frame_tiles(ref, target, spec, np.random.default_rng(0), ratio=0.2, scale=1.0)
    assert tiles[0]['ref'].shape == (32, 32, 6)
    failed = np.zeros(target.shape[:2], bool)
    failed[40:57, 33:70] = True
    damaged = np.where(failed[..., None], 0, target).astype(np.uint8)
    cues = prepare_cues(ref, damaged, failed)
    ts = plan_tiles([cues.warped, ref], cues.fill, failed, 32, 8, 8)
    (y, x) = ts.origins[0]
    assert ts.ref.shape[1] == 6
    np.testing.assert_array_equal(ts.ref[0, 3:], ref[y:y + 32, x:x + 32].transpose(2, 0, 1) / np.float32(255))


def test_export_backends_and_restorer(raw_model, tmp_path, road):
    onnx = export_onnx(raw_model, tmp_path / 'raw.onnx', check=False)
    err, _ = verify_onnx(onnx, raw_model)
    assert err < 1e-4
    ref, dmg, mask = (t.numpy() for t in _inputs())
    outs = {}
    for name in ('torch', 'onnxruntime'):
        be, notes = create_backend(name, raw_model, device='cpu', fallback=False, engine_cache_dir=tmp_path,
                                   precision='fp32')
        assert be.ref_chans == 6, notes
        with pytest.raises(ValueError, match='must be'):
            be.restore(ref[:, :3], dmg, mask)
        outs[name] = be.restore(ref, dmg, mask)
        restorer = Restorer(be, RestorationSettings())
        restorer.process('cam', road[0], 'rgb8', 0.0)
        failed = np.zeros(road[1].shape[:2], bool)
        failed[21:60, 45:90] = True
        res = restorer.process('cam', road[1], 'rgb8', 0.1, failed=failed)
        assert res.status == 'restored'
        np.testing.assert_array_equal(res.image[~failed], road[1][~failed])
        assert (res.mask > 0).sum() == failed.sum()
    np.testing.assert_allclose(outs['torch'], outs['onnxruntime'], atol=1e-4)


def test_an_export_from_before_the_key_matches_a_config_without_the_raw_reference():
    from smcvae_ros.engine.graph import config_mismatch
    assert config_mismatch({'enc_dim': 32}, {'enc_dim': 32, 'ref_raw': False}) == ''
    assert 'ref_raw' in config_mismatch({'enc_dim': 32}, {'enc_dim': 32, 'ref_raw': True})


def test_tensorrt_profile_takes_the_six_channel_reference():
    from smcvae_ros.engine.tensorrt_backend import profile_shapes
    shapes = profile_shapes((1, 32, 32), 64, 64, ref_chans=6)
    assert shapes['ref'] == ((1, 6, 64, 64), (32, 6, 64, 64), (32, 6, 64, 64))
    assert shapes['damaged'][0] == (1, 4, 64, 64)


# --- `ref_hom`: the homography-warped reference as a fourth cue -----------------------------------
def test_homography_warp_recovers_a_plane_motion_and_fills_large_holes(road):
    from smcvae_ros.restoration.align import hole_margin, homography_warp, warp
    ref = road[0]
    h, w = ref.shape[:2]
    hom = np.array([[1.02, 0.01, -3.0], [0.005, 1.03, 2.0], [1e-5, 2e-5, 1.0]])
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([gx, gy, np.ones_like(gx)], -1) @ hom.T
    flow = (pts[..., :2] / pts[..., 2:] - np.stack([gx, gy], -1)).astype(np.float32)
    failed = np.zeros((h, w), bool)
    failed[20:80, 40:120] = True                   # a hole larger than the smooth flow fill can follow
    got = homography_warp(ref, flow, hole_margin(failed))
    inside = np.abs(got[failed].astype(int) - warp(ref, flow)[failed].astype(int))
    assert got.shape == ref.shape and inside.mean() < 1.0
    assert homography_warp(ref, flow, np.ones((h, w), bool)) is None     # nothing healthy to fit


def test_hom_config_warm_start_tiles_and_restorer(raw_model, tmp_path, road):
    with pytest.raises(ValueError, match='ref_hom needs'):
        SMCVAEConfig(**SMALL, ref_hom=True)
    new = SMCVAE(SMCVAEConfig(**SMALL, ref_raw=True, ref_hom=True))
    assert new.cfg.ref_chans == 9 and new.cfg.stream_chans == 12
    assert warm_start(new, raw_model) == []
    old = load_model(raw_model).eval()
    ref, dmg, mask = _inputs()
    ref9 = torch.cat([ref, ref[:, :3].flip(-1)], 1)
    a, b = old(ref, dmg, mask)['restored'], new.eval()(ref9, dmg, mask)['restored']
    failed = (dmg[:, 3:4] > 0.5).expand_as(a)
    assert 0 < (a - b)[failed].abs().mean() < 0.02       # begins as the ref_raw model, ~2 % hom share
    spec = PairSpec(img_size=32, patch_size=8, ref_raw=True, ref_hom=True, tiles_per_frame=2, flip=False)
    assert frame_tiles(road[0], road[3], spec, np.random.default_rng(0), ratio=0.2, scale=1.0)[0]['ref'].shape == (
        32, 32, 9)
    path = save_model(new, tmp_path / 'hom.safetensors')
    be, notes = create_backend('onnxruntime', path, device='cpu', fallback=False, engine_cache_dir=tmp_path)
    assert be.ref_chans == 9, notes
    restorer = Restorer(be, RestorationSettings())
    restorer.process('cam', road[0], 'rgb8', 0.0)
    failed = np.zeros(road[1].shape[:2], bool)
    failed[21:60, 45:90] = True
    res = restorer.process('cam', road[1], 'rgb8', 0.1, failed=failed)
    assert res.status == 'restored' and (res.mask > 0).sum() == failed.sum()
    np.testing.assert_array_equal(res.image[~failed], road[1][~failed])
