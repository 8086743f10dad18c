"""Restoration core: reference keeping, policies, encodings, tiling at native resolution, merge."""
import numpy as np
import pytest

from smcvae_ros.engine import create_backend
from smcvae_ros.restoration import DetectSettings, RestorationSettings, Restorer, rois_to_mask
from smcvae_ros.restoration.detect import detect_failed_patches


@pytest.fixture(scope='module')
def backend(tiny_model):
    return create_backend('torch', tiny_model, device='cpu')[0]


def frames(h=72, w=100, n=3, seed=0):
    rng = np.random.default_rng(seed)
    world = rng.integers(0, 256, (h, w + 4 * n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(world[:, 2 * i:2 * i + w]) for i in range(n)]


def restorer(backend, **kw):
    return Restorer(backend, RestorationSettings(**kw))


def test_healthy_passthrough_then_restore_bit_exact(backend):
    r = restorer(backend)
    f0, f1, _ = frames()
    res = r.process('cam', f0, 'rgb8', 0.0)
    assert res.status == 'healthy' and res.image is f0 and not res.mask.any()
    failed = rois_to_mask([(10, 5, 20, 12), (90, 60, 30, 30)], *f1.shape[:2])
    res = r.process('cam', f1, 'rgb8', 0.1, failed)
    assert res.status == 'restored' and not res.flagged
    px = res.mask > 0
    assert np.array_equal(px, failed)             # the mask marks exactly the synthesized pixels
    assert np.array_equal(res.image[~px], f1[~px])  # every other pixel bit-exact
    assert res.image.shape == f1.shape and res.image.dtype == np.uint8
    assert res.failed_pixels == int(failed.sum())
    assert res.reference_age_s == pytest.approx(0.1)
    assert not np.array_equal(res.image[px], f1[px])


@pytest.mark.parametrize('encoding,shape', [('bgr8', (72, 100, 3)), ('rgba8', (72, 100, 4)),
                                            ('bgra8', (72, 100, 4)), ('mono8', (72, 100))])
def test_encodings(backend, encoding, shape):
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    r = restorer(backend)
    assert r.process('c', a, encoding, 0).status == 'healthy'
    failed = rois_to_mask([(30, 20, 16, 16)], 72, 100)
    res = r.process('c', b, encoding, 0.05, failed)
    assert res.status == 'restored' and res.image.shape == shape
    px = res.mask > 0
    assert np.array_equal(res.image[~px], b[~px])
    if shape[-1] == 4:
        assert np.array_equal(res.image[..., 3], b[..., 3])  # alpha untouched


def test_matches_rgb_path_for_bgr(backend):
    f0, f1, _ = frames()
    failed = rois_to_mask([(20, 20, 24, 24)], *f1.shape[:2])
    rgb = restorer(backend)
    rgb.process('c', f0, 'rgb8', 0)
    bgr = restorer(backend)
    bgr.process('c', np.ascontiguousarray(f0[..., ::-1]), 'bgr8', 0)
    a = rgb.process('c', f1, 'rgb8', 0.1, failed).image
    b = bgr.process('c', np.ascontiguousarray(f1[..., ::-1]), 'bgr8', 0.1, failed).image
    assert np.array_equal(a, b[..., ::-1])


def test_policies_no_reference_stale_and_reset(backend):
    r = restorer(backend, max_reference_age_s=0.5)
    f0, f1, f2 = frames()
    failed = rois_to_mask([(0, 0, 8, 8)], *f0.shape[:2])
    res = r.process('c', f1, 'rgb8', 0.0, failed)
    assert res.status == 'passthrough_no_reference' and res.flagged and res.image is f1
    r.process('c', f0, 'rgb8', 1.0)
    res = r.process('c', f1, 'rgb8', 2.0, failed)
    assert res.status == 'passthrough_stale_reference' and res.reference_age_s == pytest.approx(1.0)
    assert r.process('c', f2, 'rgb8', 2.1, whole_frame=True).status == 'passthrough_stale_reference'
    r.process('c', f0, 'rgb8', 3.0)
    small = np.ascontiguousarray(f1[:64, :64])
    res = r.process('c', small, 'rgb8', 3.1, failed[:64, :64])  # resolution change resets the reference
    assert res.status == 'passthrough_no_reference'


def test_invalid_inputs_pass_through(backend):
    r = restorer(backend)
    f0 = frames()[0]
    assert r.process('c', f0, 'yuv422', 0).status == 'passthrough_invalid'
    assert r.process('c', f0[..., 0], 'rgb8', 0).status == 'passthrough_invalid'
    res = r.process('c', f0, 'rgb8', 0, np.zeros((5, 5), bool))
    assert res.status == 'passthrough_invalid' and 'does not match' in res.message


def test_batch_across_cameras_equals_single(backend):
    fa, fb = frames(seed=1), frames(h=50, w=130, seed=2)
    ma, mb = rois_to_mask([(5, 5, 30, 20)], 72, 100), rois_to_mask([(60, 10, 40, 30)], 50, 130)
    single = restorer(backend)
    single.process('a', fa[0], 'rgb8', 0)
    single.process('b', fb[0], 'rgb8', 0)
    ra, rb = single.process('a', fa[1], 'rgb8', 0.1, ma), single.process('b', fb[1], 'rgb8', 0.1, mb)
    batched = restorer(backend)
    batched.process_batch([('a', fa[0], 'rgb8', 0, None, False), ('b', fb[0], 'rgb8', 0, None, False)])
    ba, bb = batched.process_batch([('a', fa[1], 'rgb8', 0.1, ma, False), ('b', fb[1], 'rgb8', 0.1, mb, False)])
    assert np.array_equal(ra.image, ba.image) and np.array_equal(rb.image, bb.image)


@pytest.mark.parametrize('encoding,scale', [('rgb8', 1.0), ('bgr8', 1.0), ('rgba8', 1.0), ('mono8', 1.0),
                                            ('rgb8', 0.5), ('rgba8', 0.37)])
def test_off_grid_rois_on_odd_frames_write_exactly_the_failed_pixels(backend, encoding, scale):
    """ROIs with odd x, y, w, h on a 93 x 241 frame (width like KITTI's 1241): only their pixels change,
    also when cues and model run on a downscaled frame (process_scale)."""
    rng = np.random.default_rng(4)
    shape = (93, 241) + ({'rgb8': (3,), 'bgr8': (3,), 'rgba8': (4,), 'mono8': ()}[encoding])
    world = rng.integers(0, 256, (93, 260) + shape[2:], dtype=np.uint8)
    f0, f1 = np.ascontiguousarray(world[:, :241]), np.ascontiguousarray(world[:, 3:244])
    rois = [(31, 17, 45, 23), (101, 51, 3, 1), (199, 0, 42, 93), (0, 87, 9, 6)]
    failed = rois_to_mask(rois, 93, 241)
    r = restorer(backend, process_scale=scale)
    r.process('c', f0, encoding, 0)
    res = r.process('c', f1, encoding, 0.1, failed)
    assert res.status == 'restored'
    assert np.array_equal(res.mask > 0, failed)
    changed = (res.image != f1).reshape(93, 241, -1).any(-1)
    assert not changed[~failed].any()
    assert changed[failed].mean() > 0.5


def test_downscaled_processing_keeps_failed_values_out_of_healthy_pixels():
    """at_scale: a low-resolution pixel over any failed pixel is failed, so whatever the failed pixels
    hold (a dead sensor's black, garbage) changes no healthy low-resolution pixel."""
    from smcvae_ros.restoration.restorer import at_scale, upscale_at
    f0, f1, _ = frames(h=93, w=241)
    failed = rois_to_mask([(31, 17, 45, 23), (101, 51, 3, 1)], 93, 241)
    black, white = (np.where(failed[..., None], v, f1).astype(np.uint8) for v in (0, 255))
    _, low_b, low_failed = at_scale(f0, black, failed, 0.37)
    _, low_w, _ = at_scale(f0, white, failed, 0.37)
    assert low_failed.shape == (34, 89) and low_failed.sum() < failed.sum()
    assert np.array_equal(low_b[~low_failed], low_w[~low_failed]) and not np.array_equal(low_b, low_w)
    # the upscaled fill of a uniform restoration is that value at every failed pixel
    ys, xs = np.nonzero(low_failed)
    fy, fx = np.nonzero(failed)
    flat = np.full(low_b.shape, 77, np.uint8)
    vals = upscale_at(flat, ys, xs, np.full((len(ys), 3), 77, np.uint8), failed.shape, fy, fx)
    assert vals.shape == (len(fy), 3) and (vals == 77).all()


def test_downscaled_uncertainty_covers_the_failed_pixels(backend):
    f0, f1, _ = frames(h=93, w=241)
    failed = rois_to_mask([(31, 17, 45, 23)], 93, 241)
    r = restorer(backend, process_scale=0.5, uncertainty_samples=4)
    r.process('c', f0, 'rgb8', 0)
    res = r.process('c', f1, 'rgb8', 0.1, failed)
    assert res.uncertainty.shape == failed.shape and not res.uncertainty[~failed].any()
    assert (res.uncertainty[failed] >= 0).all() and res.uncertainty[failed].any()


def test_tiles_cover_every_failed_pixel_and_blend_without_seams():
    from smcvae_ros.restoration.tiles import blend_tiles, plan_tiles
    h, w = 93, 241
    img = np.zeros((h, w, 3), np.uint8)
    failed = rois_to_mask([(31, 17, 45, 23), (199, 0, 42, 93)], h, w)
    tiles = plan_tiles([img], img, failed, 32, 8, 8)
    cover = np.zeros((h, w), int)
    for y, x in tiles.origins:
        cover[y:y + 32, x:x + 32] += 1
    assert (cover[failed] >= 1).all()
    assert len(tiles.origins) < np.ceil(h / 24) * np.ceil(w / 24)   # only tiles over failures run
    assert tiles.damaged.shape == (len(tiles.origins), 4, 32, 32)
    crops = np.stack([failed[y:y + 32, x:x + 32] for y, x in tiles.origins])
    np.testing.assert_array_equal(tiles.damaged[:, 3] > 0, crops)
    # neighbouring tiles with different outputs: the blend ramps across the 8-px overlap, no step
    out = np.stack([np.full((3, 32, 32), k % 2, np.float32) for k in range(len(tiles.origins))])
    ys, xs = np.mgrid[tiles.box]
    rgb, _ = blend_tiles(tiles, out, ys.ravel(), xs.ravel())
    rgb = rgb.reshape(ys.shape + (3,))
    inside = cover[tiles.box] > 0
    steps = np.abs(np.diff(rgb[..., 0].astype(int), axis=1))[inside[:, 1:] & inside[:, :-1]]
    assert 0 < steps.max() <= 255 // 8 + 1


def test_tiles_follow_scattered_failures_with_context():
    """Small failures off any grid get one centred tile each (not the 2-4 a fixed grid would
    cut through them); every failed pixel is >= overlap/2 px inside a tile unless at a frame border."""
    from smcvae_ros.restoration.masks import random_rois
    from smcvae_ros.restoration.tiles import tile_origins
    s, ov = 64, 8
    rois = [(37 + 150 * k, 29 + 61 * (k % 3), 9 + 5 * k, 41 - 3 * k) for k in range(7)]   # odd, off-grid
    failed = rois_to_mask(rois, 301, 1241)
    assert len(tile_origins(failed, s, ov)) == len(tile_origins(failed, s, ov, 'groups')) == len(rois)
    assert len(tile_origins(failed, s, ov, 'frame')) > len(rois)     # a fixed grid cuts through them
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:s, 0:s]
    border = 99   # pixels at a frame border have no context to keep
    for h, w, ratio in ((376, 1241, 0.1), (720, 1280, 0.5), (64, 97, 0.3)):
        failed = rois_to_mask(random_rois(rng, h, w, ratio), h, w)
        layouts = {layout: tile_origins(failed, s, ov, layout) for layout in ('auto', 'frame', 'groups')}
        assert len(layouts['auto']) == min(len(layouts['frame']), len(layouts['groups']))
        for origins in layouts.values():
            ctx = np.full((h, w), -1)
            for y, x in origins:
                assert 0 <= y <= h - s and 0 <= x <= w - s
                d = np.minimum.reduce([yy + border * (y == 0), xx + border * (x == 0),
                                       s - 1 - yy + border * (y == h - s), s - 1 - xx + border * (x == w - s)])
                ctx[y:y + s, x:x + s] = np.maximum(ctx[y:y + s, x:x + s], d)
            assert ctx[failed].min() >= ov // 2


def test_tiny_frame_smaller_than_a_tile(backend):
    f0, f1 = frames(h=20, w=27, n=2)
    failed = rois_to_mask([(3, 5, 7, 9)], 20, 27)
    r = restorer(backend)
    r.process('c', f0, 'rgb8', 0)
    res = r.process('c', f1, 'rgb8', 0.1, failed)
    assert res.status == 'restored' and np.array_equal(res.mask > 0, failed)
    assert np.array_equal(res.image[~failed], f1[~failed])


def test_cost_scales_with_failed_area(backend):
    calls = []
    orig = backend.restore
    r = restorer(backend)
    r.backend = type('Counting', (), {'__getattr__': lambda s, k: getattr(backend, k),
                                      'restore': lambda s, *a: calls.append(a[0].shape[0]) or orig(*a)})()
    big = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for i in range(2)]
    r.process('c', big[0], 'rgb8', 0)
    r.process('c', big[1], 'rgb8', 0.1, rois_to_mask([(100, 100, 20, 20)], 720, 1280))
    assert len(calls) == 1 and calls[0] <= 4  # the tiles around the failure; the rest of the frame never runs


def test_uncertainty_map(backend):
    r = restorer(backend, uncertainty_samples=4)
    f0, f1, _ = frames()
    r.process('c', f0, 'rgb8', 0)
    res = r.process('c', f1, 'rgb8', 0.1, rois_to_mask([(10, 10, 20, 20)], 72, 100))
    assert res.uncertainty.shape == (72, 100) and res.uncertainty.dtype == np.float32
    assert (res.uncertainty[res.mask == 0] == 0).all() and (res.uncertainty >= 0).all()


def test_self_detection_black_saturated_frozen(backend):
    s = DetectSettings()
    img = np.random.default_rng(0).integers(20, 230, (32, 48, 3), dtype=np.uint8)
    img[0:8, 0:8] = 0
    img[8:16, 8:16] = 255
    grid = detect_failed_patches(img, None, 8, s)
    assert grid.shape == (4, 6) and grid[0, 0] and grid[1, 1] and grid.sum() == 2
    nxt = np.random.default_rng(1).integers(20, 230, (32, 48, 3), dtype=np.uint8)
    nxt[16:24, 16:24] = img[16:24, 16:24]  # frozen textured patch
    assert detect_failed_patches(nxt, img, 8, s)[2, 2]
    assert not detect_failed_patches(nxt, img, 8, DetectSettings(frozen=False))[2, 2]
    r = restorer(backend, self_detect=True)
    clean = np.random.default_rng(2).integers(20, 230, (32, 48, 3), dtype=np.uint8)
    r.process('c', clean, 'rgb8', 0)
    dead = np.random.default_rng(3).integers(20, 230, (32, 48, 3), dtype=np.uint8)
    dead[8:16, 24:32] = 0
    res = r.process('c', dead, 'rgb8', 0.1)
    assert res.status == 'restored' and res.mask[8:16, 24:32].all() and res.mask.sum() == 64 * 255
