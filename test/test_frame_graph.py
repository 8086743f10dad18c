"""The tensor cues (model.cues) and the one frame graph (model.frame, engine.frame_export): what they
compute, that onnxruntime agrees with PyTorch on them at sizes other than the traced one, and that the
restorer's frame path keeps the contract (healthy pixels bit-exact, mask = written pixels)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from smcvae_ros.engine import create_backend
from smcvae_ros.engine.frame_export import compare_frames, example_frames, export_frame_onnx
from smcvae_ros.engine.graph import META_MODEL_CONFIG, onnx_metadata, onnx_path_for
from smcvae_ros.model import SMCVAE, SMCVAEConfig, save_model
from smcvae_ros.model import cues as C
from smcvae_ros.model.frame import FrameGraph
from smcvae_ros.restoration import RestorationSettings, Restorer
from smcvae_ros.restoration.masks import pixel_failure_mask


@pytest.fixture(scope='module')
def tensor_model(tmp_path_factory):
    """A random full-size `cues: tensor` SMCVAE with all four cues (non-zero heads), its frame ONNX exported."""
    torch.manual_seed(2)
    model = SMCVAE(SMCVAEConfig(ref_raw=True, ref_hom=True, cues='tensor'))
    with torch.no_grad():
        model.head.weight.normal_(std=0.01)
        model.gate.weight.normal_(std=0.01)
    weights = save_model(model, tmp_path_factory.mktemp('tensor_model') / 'tensor.safetensors')
    export_frame_onnx(weights)
    return weights


def shifted_pair(frames, dx=5.3, dy=-2.6):
    """A real frame and the reference it came from by a known translation: img(p) = ref(p + (dx, dy))."""
    img = frames[0]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    ref = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return ref, img


def test_push_pull_keeps_known_values_and_fills_holes_smoothly():
    x = torch.rand(1, 3, 40, 50)
    w = torch.ones(1, 1, 40, 50)
    w[..., 10:30, 15:35] = 0
    out = C.push_pull(x, w)
    assert torch.equal(out[..., w[0, 0] > 0], x[..., w[0, 0] > 0])
    const = C.push_pull(torch.full_like(x, 0.3), w)          # a constant field stays constant in the hole
    assert torch.allclose(const, torch.full_like(x, 0.3), atol=1e-5)


def test_onion_fill_takes_each_holes_own_edge_and_fill_flow_keeps_the_healthy_flow():
    x = torch.zeros(1, 2, 16, 40)
    x[..., :10] = 1.0                                        # left of the hole 1, right of it 0
    known = torch.ones(1, 1, 16, 40)
    known[..., 10:30] = 0
    out, reached = C.onion_fill(x, known, 12)
    assert torch.equal(out[..., :10], x[..., :10]) and torch.equal(out[..., 30:], x[..., 30:])
    assert bool((reached == 1).all())                        # 20 px wide: reached from both edges in 10 steps
    assert torch.allclose(out[..., 10], torch.ones_like(out[..., 10])) and float(out[..., 29].abs().max()) == 0.0
    assert float(out[..., 12].min()) > 0.9 and float(out[..., 27].max()) < 0.1   # edges, not the hole's mean
    # fill_flow: healthy flow exact; a hole beyond the onion's reach still gets a (push-pull) value
    flow = torch.linspace(0, 5, 96).view(1, 1, 1, 96).expand(1, 2, 64, 96).contiguous()
    full = torch.ones(1, 1, 64, 96)
    full[..., 8:56, 8:88] = 0
    filled = C.fill_flow(flow, full, steps=2)
    assert torch.equal(filled[..., full[0, 0] > 0], flow[..., full[0, 0] > 0]) and bool(torch.isfinite(filled).all())
    edge = (filled - flow)[..., 10:54, 10]                   # near the hole's left edge: the edge's flow
    assert float(edge.abs().max()) < 0.5


@pytest.mark.parametrize('ratio, pattern', [(0.0, 'random'), (0.3, 'random'), (0.5, 'blocks')])
def test_flow_recovers_a_translation_with_holes(frames, ratio, pattern):
    ref, img = shifted_pair(frames)
    failed = pixel_failure_mask(np.random.default_rng(0), *img.shape[:2], ratio, pattern) if ratio else \
        np.zeros(img.shape[:2], bool)
    damaged = np.where(failed[..., None], 0, img).astype(np.uint8)
    with torch.no_grad():
        flow = C.estimate_flow(C.to_tensor(ref), C.to_tensor(damaged), C.to_tensor(failed))[0].permute(1, 2, 0).numpy()
    inner = (slice(20, -20), slice(20, -20))                  # frame borders: reflect padding, no true motion
    err = np.abs(flow[inner] - [5.3, -2.6])
    assert np.median(err) < 0.5                               # a copy is 5.9 px off
    assert err.mean() < 1.5


def test_large_failure_is_judged_by_reach_not_by_share():
    """70 % failed in 16-px cells leaves most 32-px cells partly healthy (0.7^4 ~ 24 % unreached,
    under LARGE_FROM); one block over 70 % of the frame leaves its inside unreached."""
    rng = np.random.default_rng(0)
    cells = (rng.random((16, 24)) < 0.7).repeat(16, 0).repeat(16, 1)
    block = np.zeros((256, 384), bool)
    block[:, :269] = True
    for failed, lo, hi in ((cells, 0.0, 0.35), (block, 0.6, 0.72)):
        t = torch.from_numpy(failed.astype(np.float32))[None, None]
        assert lo <= float(C._unreached(t)) <= hi, float(C._unreached(t))
    assert 0.35 < C.LARGE_FROM
    assert float(C._unreached(torch.zeros(1, 1, 5, 7))) == 0.0      # smaller than a cell


def test_homography_fit_recovers_a_plane(frames):
    ref, img = shifted_pair(frames, 3.0, 1.5)
    with torch.no_grad():
        flow = torch.zeros(1, 2, *img.shape[:2])
        flow[:, 0], flow[:, 1] = 3.0, 1.5
        weight = torch.ones(1, 1, *img.shape[:2])
        weight[..., :100, :] = 0                              # outliers where the weight is 0 do not count
        flow[..., :100, :] = 40.0
        hom = C.fit_homography(flow, weight)[0]
    expected = torch.tensor([[1, 0, 3.0], [0, 1, 1.5], [0, 0, 1]])
    assert torch.allclose(hom / hom[2, 2], expected, atol=1e-2)


def test_tensor_cues_warp_better_than_a_copy(frames):
    ref, img = shifted_pair(frames)
    failed = pixel_failure_mask(np.random.default_rng(1), *img.shape[:2], 0.3, 'blocks')
    damaged = np.where(failed[..., None], 0, img).astype(np.uint8)
    refs, fill = C.numpy_cues(ref, damaged, failed, 3)
    assert [r.shape for r in refs] == [img.shape] * 3 and fill.shape == img.shape
    assert np.array_equal(fill[~failed], img[~failed])        # the fill keeps every healthy pixel
    err = lambda a: np.abs(a[failed].astype(float) - img[failed]).mean()  # noqa: E731
    assert err(refs[0]) < 0.5 * err(ref) and err(refs[2]) < 0.5 * err(ref)
    assert np.array_equal(refs[1], ref)


def test_frame_graph_needs_a_tensor_cue_model(tiny_model):
    from smcvae_ros.model import load_model
    with pytest.raises(ValueError, match='cues: tensor'):
        FrameGraph(load_model(tiny_model))


def test_frame_onnx_agrees_with_torch_at_untraced_sizes(tensor_model):
    path = onnx_path_for(tensor_model, frame=True)
    meta = onnx_metadata(path)
    assert meta['smcvae_graph'] == 'frame' and 'GridSample' in meta['smcvae_frame_ops'].split(',')
    assert '"cues": "tensor"' in meta[META_MODEL_CONFIG]
    import onnxruntime as ort

    from smcvae_ros.model import load_model
    graph = FrameGraph(load_model(tensor_model)).eval()
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for (h, w), seed in (((150, 230), 3), ((97, 301), 4)):   # odd sizes, neither the traced one
        arrays = example_frames(h, w, ratio=0.3, seed=seed)
        with torch.no_grad():
            expected = graph(*(torch.from_numpy(a) for a in arrays)).numpy()
        got = sess.run(None, dict(zip(('reference', 'damaged', 'failed', 'origins'), arrays)))[0]
        assert compare_frames(got, expected, arrays[1], arrays[2]) <= 2


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_restorer_frame_path_keeps_the_contract(tensor_model, frames, backend):
    be, _ = create_backend(backend, tensor_model, 'cpu', fallback=False)
    r = Restorer(be, RestorationSettings(max_reference_age_s=1e9))
    r.process('cam', frames[0], 'bgr8', 0.0)
    h, w = frames[1].shape[:2]
    failed = np.zeros((h, w), bool)
    failed[101:163, 207:290] = True                           # off any grid
    failed[300:311, 13:700] = True
    damaged = frames[1].copy()
    damaged[failed] = 0
    res = r.process('cam', damaged, 'bgr8', 0.1, failed=failed)
    assert res.status == 'restored'
    assert np.array_equal(res.image[~failed], damaged[~failed])
    assert np.array_equal(res.mask > 0, failed)
    assert res.timings['tiles'] > 0
    if backend == 'torch':                                    # torch sees inside its graph: the cues apart
        assert {'align', 'tile', 'infer', 'merge'} <= set(res.timings)
        assert res.timings['align'] > 0 and res.timings['infer'] > 0
    else:                                                     # onnxruntime: one opaque graph, no align
        assert 'align' not in res.timings and res.timings['infer'] > 0
    err = np.abs(res.image[failed].astype(float) - frames[1][failed]).mean()
    assert err < 20                                           # a random model still starts at the cues' mean


def test_frame_path_pads_frames_smaller_than_a_tile(tensor_model, monkeypatch):
    import smcvae_ros.engine.onnxruntime_backend as ob
    monkeypatch.setattr(ob, 'cpu_has_int8_dot', lambda: True)
    be, _ = create_backend('onnxruntime', tensor_model, 'cpu', fallback=False)
    assert be.precision == 'fp32'            # precision auto: the frame graph runs fp32, so the backend says so
    r = Restorer(be, RestorationSettings(max_reference_age_s=1e9))
    ref, damaged, failed, _ = example_frames(48, 90, ratio=0.2)
    r.process('cam', ref, 'rgb8', 0.0)
    res = r.process('cam', damaged, 'rgb8', 0.1, failed=failed > 0)
    assert res.status == 'restored' and res.image.shape == damaged.shape
    assert np.array_equal(res.image[failed == 0], damaged[failed == 0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_frame_graph_on_cuda_agrees_with_cpu(tensor_model):
    from smcvae_ros.model import load_model
    arrays = example_frames(360, 640, ratio=0.2, seed=5)
    outs = {}
    for device, fp16 in (('cpu', False), ('cuda', False), ('cuda', True)):
        graph = FrameGraph(load_model(tensor_model, device)).to(device).eval()
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16, enabled=fp16):
            outs[device, fp16] = graph(*(torch.from_numpy(a).to(device) for a in arrays)).cpu().numpy()
    assert compare_frames(outs['cuda', False], outs['cpu', False], arrays[1], arrays[2]) <= 2
    f = arrays[2] > 0
    err = np.abs(outs['cuda', True].astype(int) - outs['cpu', False])[f].mean()
    assert err < 1.0                                          # fp16 model, fp32 cues: within a grey level on average


def test_uncertainty_runs_the_tile_graph_on_the_tensor_cues(tensor_model):
    be, _ = create_backend('torch', tensor_model, 'cpu', fallback=False)
    r = Restorer(be, RestorationSettings(max_reference_age_s=1e9, uncertainty_samples=2))
    ref, damaged, failed, _ = example_frames(128, 192, ratio=0.2)
    r.process('cam', ref, 'rgb8', 0.0)
    res = r.process('cam', damaged, 'rgb8', 0.1, failed=failed > 0)
    assert res.status == 'restored' and res.uncertainty is not None
    assert np.array_equal(res.image[failed == 0], damaged[failed == 0])
    assert res.timings['align'] > 0                           # cues made on the host for the tile graph


def test_a_config_without_the_cues_key_is_an_opencv_cue_config():
    """An export recording `cues: opencv` and a JSON written before the key agree (the CI cache case);
    `cues: tensor` against either does not."""
    from smcvae_ros.engine.graph import config_mismatch
    assert config_mismatch({'enc_dim': 32, 'cues': 'opencv'}, {'enc_dim': 32}) == ''
    assert 'cues' in config_mismatch({'enc_dim': 32, 'cues': 'tensor'}, {'enc_dim': 32})


def test_export_cli_writes_a_checked_frame_graph(tensor_model, tmp_path, capsys):
    from smcvae_ros.cli import main as smcvae
    out = tmp_path / 'cli.frame.onnx'
    assert smcvae(['export', '--frame', '--model', str(tensor_model), '--out', str(out)]) == 0
    assert 'GridSample' in onnx_metadata(out)['smcvae_frame_ops']
    assert 'bit-exact' in capsys.readouterr().out
