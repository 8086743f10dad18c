"""Clip reading, masks, alignment and training-pair generation."""
import cv2
import numpy as np
import pytest

from smcvae_ros.data.clips import list_clips, read_rgb
from smcvae_ros.training.pairs import PairSpec, fixed_batch, frame_tiles, pick_pair
from smcvae_ros.restoration.align import prepare_cues, telea_fill
from smcvae_ros.restoration.frames import rois_to_mask
from smcvae_ros.restoration.masks import PIXEL_PATTERNS, pixel_failure_mask, random_rois


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(base, (3, 3), 0)


@pytest.fixture
def clip_dir(tmp_path):
    """Two tiny clips of a texture panning right by 2 px per frame."""
    world = textured(200, 400)
    for c in ('a', 'b'):
        (tmp_path / c).mkdir()
        for i in range(6):
            frame = world[20:180, 10 + 2 * i:10 + 2 * i + 200]
            cv2.imwrite(str(tmp_path / c / f'{i:06d}.png'), frame[..., ::-1])
    return tmp_path


@pytest.mark.parametrize('pattern', PIXEL_PATTERNS + ('mixed',))
@pytest.mark.parametrize('ratio', [0.1, 0.5, 0.9])
def test_pixel_masks_ratio_off_grid_and_reproducible(pattern, ratio):
    a = pixel_failure_mask(np.random.default_rng(3), 121, 203, ratio, pattern)
    b = pixel_failure_mask(np.random.default_rng(3), 121, 203, ratio, pattern)
    assert a.shape == (121, 203) and a.dtype == bool and np.array_equal(a, b) and a.any()
    if pattern != 'mixed':
        assert abs(a.mean() - ratio) < 0.2, a.mean()
    with pytest.raises(ValueError, match='unknown pixel mask pattern'):
        pixel_failure_mask(np.random.default_rng(0), 8, 8, 0.5, 'zigzag')


def test_random_rois_cover_the_ratio_inside_the_frame():
    """The demo's and benches' "~10 % dead blocks": rectangles of 24-120 px until the ratio is reached,
    overshooting by at most one rectangle; rectangles larger than a tiny frame are clipped to it."""
    rng = np.random.default_rng(0)
    for h, w in ((720, 1280), (360, 640), (97, 63)):
        rois = random_rois(rng, h, w, 0.1)
        assert all(0 <= x and 0 <= y and x + rw <= w and y + rh <= h and rw >= min(24, w) and rh >= min(24, h)
                   for x, y, rw, rh in rois)
        assert 0.1 <= rois_to_mask(rois, h, w).mean() < 0.1 + 120 ** 2 / (h * w)
    tiny = random_rois(rng, 20, 30, 0.5)
    assert all(rh == 20 and 24 <= rw <= 30 and x + rw <= 30 for x, _, rw, rh in tiny)
    assert rois_to_mask(tiny, 20, 30).mean() >= 0.5


def test_random_cells_fall_on_no_fixed_grid():
    """Over many draws, cell edges land on every column offset modulo 8 (not only on the patch grid)."""
    offsets = set()
    for seed in range(40):
        m = pixel_failure_mask(np.random.default_rng(seed), 64, 96, 0.5, 'random', cell=16)
        edges = np.flatnonzero(np.diff(m[:, :].any(0).astype(int) + m[0].astype(int)))
        offsets |= set(((edges + 1) % 8).tolist())
    assert len(offsets) == 8


def test_flow_alignment_recovers_shift():
    world = textured(160, 220)
    ref, cur = world[:, 0:200].copy(), world[:, 6:206].copy()  # camera moved 6 px right
    failed = np.zeros((160, 200), bool)
    failed[60:100, 80:120] = True
    damaged = np.where(failed[..., None], 0, cur).astype(np.uint8)
    cues = prepare_cues(ref, damaged, failed)
    err_copy = np.abs(ref.astype(int) - cur)[failed].mean()
    err_warp = np.abs(cues.warped.astype(int) - cur)[failed].mean()
    assert err_warp < 0.5 * err_copy
    np.testing.assert_array_equal(cues.fill[~failed], cur[~failed])     # the fill keeps healthy pixels
    assert np.abs(cues.fill.astype(int) - cur)[failed].mean() < np.abs(cur.astype(int) - 0)[failed].mean()


def test_flow_does_not_depend_on_earlier_calls():
    """A frame smaller than DIS's patch pyramid must not change the flow of later frames."""
    from smcvae_ros.restoration.align import estimate_flow
    world = textured(160, 220)
    ref, cur = world[:, 0:200].copy(), world[:, 6:206].copy()
    failed = np.zeros((160, 200), bool)
    failed[60:100, 80:120] = True
    before = estimate_flow(ref, cur, failed)
    estimate_flow(ref[:16, :24], cur[:16, :24], failed[:16, :24])
    np.testing.assert_array_equal(estimate_flow(ref, cur, failed), before)


@pytest.mark.parametrize('shift', [0, 8])
def test_flow_stays_right_when_most_of_the_frame_failed(frames, shift):
    """90 % of a real frame in blocks: DIS on the Telea-filled frame goes wrong at the healthy pixels
    too, so the reference-filled flow is taken instead (static scene: exactly the reference; a pan:
    better than a copy). At 30 % the Telea-filled flow is kept and follows the pan."""
    from smcvae_ros.evaluation.evaluate import pair_failure_mask
    from smcvae_ros.restoration.align import prepare_cues
    w = frames[0].shape[1] - 8
    ref, cur = frames[0][:, :w], frames[0][:, shift:shift + w]
    for ratio in (0.9, 0.3):
        failed = pair_failure_mask(*cur.shape[:2], ratio, 'blocks', seed=0, index=0)
        damaged = np.where(failed[..., None], 0, cur).astype(np.uint8)
        err = np.abs(prepare_cues(ref, damaged, failed).warped.astype(int) - cur)[failed].mean()
        err_copy = np.abs(ref.astype(int) - cur)[failed].mean()
        if shift == 0:
            assert err == 0.0
        else:
            assert err < (0.8 if ratio > 0.5 else 0.3) * err_copy


def test_reference_filled_flow_is_favoured_in_proportion_beyond_half_failed(monkeypatch):
    """The choice rule alone: a reference-filled flow 15 % worse on the healthy pixels is kept only when
    so much failed that REF_FILL_FAVOUR * (fraction - 0.5) covers it."""
    from smcvae_ros.restoration import align
    calls = []

    def fake_dis(a, b, scale):          # 1st call: Telea-filled frame, 2nd: reference-filled
        calls.append(a)
        return np.full(a.shape + (2,), float(len(calls)), np.float32)
    monkeypatch.setattr(align, '_dis_flow', fake_dis)
    monkeypatch.setattr(align, '_healthy_error', lambda ref, cur, flow, healthy: 1.0 if flow[0, 0, 0] == 1 else 1.15)
    img = np.zeros((64, 64, 3), np.uint8)
    for frac, expect in ((0.4, 1.0), (0.7, 1.0), (0.9, 2.0)):    # favour 1.0, 1.1, 1.2 x at 0.4, 0.7, 0.9
        failed = np.zeros((64, 64), bool)
        failed[:, :int(round(64 * frac))] = True
        calls.clear()
        flow = align.estimate_flow(img, img, failed)
        assert len(calls) == 2 and flow[0, -1, 0] == expect      # a healthy pixel keeps the chosen flow


def test_telea_fill_by_hole_groups_equals_whole_frame_inpaint():
    world = textured(120, 180)
    failed = np.zeros((120, 180), bool)
    failed[30:47, 51:90] = True
    failed[80:83, 100:133] = True     # its own group
    failed[49:52, 60:64] = True       # 2 px below the first hole: inpainted with it
    failed[0:5, 170:180] = True       # at the frame corner
    whole = cv2.inpaint(world, failed.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    np.testing.assert_array_equal(telea_fill(world, failed), whole)


def test_telea_fill_works_in_a_forked_child():
    """DataLoader workers are forked after the parent has used the cue thread pool: the child must
    not wait forever on the parent's (thread-less) pool."""
    import multiprocessing as mp
    import time
    from smcvae_ros.restoration.align import _pool
    world = textured(120, 180)
    failed = np.zeros((120, 180), bool)
    failed[10:20, 10:20] = failed[60:70, 100:120] = True
    expected = telea_fill(world, failed)
    list(_pool().map(time.sleep, [0.05] * _pool()._max_workers))   # every pool thread started, now idle
    with mp.get_context('fork').Pool(1) as pool:
        child = pool.apply_async(telea_fill, (world, failed)).get(timeout=60)
    np.testing.assert_array_equal(child, expected)


def test_list_clips_and_read(clip_dir):
    clips = list_clips(clip_dir)
    assert [c.name for c in clips] == ['a', 'b'] and len(clips[0]) == 6
    np.testing.assert_array_equal(clips[0].read(0), read_rgb(clips[0].frames[0]))
    assert read_rgb(clips[0].frames[0]).shape == (160, 200, 3)
    with pytest.raises(FileNotFoundError):
        list_clips(clip_dir / 'missing')
    with pytest.raises(ValueError, match='cannot read image'):
        read_rgb(clip_dir / 'a' / 'nope.png')


def test_frame_tiles_shapes_and_cue_semantics(clip_dir):
    spec = PairSpec(img_size=32, patch_size=8, gap=(1, 3), scale=(1.0, 1.0), tiles_per_frame=5)
    rng = np.random.default_rng(0)
    tiles = frame_tiles(*pick_pair(list_clips(clip_dir), spec, rng), spec, rng)
    assert len(tiles) == 5
    for t in tiles:
        assert t['ref'].shape == t['target'].shape == (32, 32, 3) and t['damaged'].shape == (32, 32, 4)
        failed = t['damaged'][..., 3] == 255
        assert failed.any() and set(np.unique(t['damaged'][..., 3])) <= {0, 255}
        np.testing.assert_array_equal(t['damaged'][..., :3][~failed], t['target'][~failed])


def test_camera_look_rerenders_both_frames_alike(clip_dir):
    from smcvae_ros.training.pairs import camera_look
    clip = list_clips(clip_dir)[0]
    ref, tgt = clip.read(0), clip.read(1)
    looks = [camera_look(ref, tgt, np.random.default_rng(s)) for s in range(12)]
    for r, t in looks:
        assert r.shape == ref.shape and t.shape == tgt.shape and r.dtype == t.dtype == np.uint8
    # a new look each draw, reproducible from the generator; the target follows the reference's
    # look (same gain/gamma up to the few-% exposure drift), not the original frame
    assert len({r.tobytes() for r, _ in looks}) == len(looks)
    np.testing.assert_array_equal(looks[3][1], camera_look(ref, tgt, np.random.default_rng(3))[1])
    r, t = camera_look(ref, ref, np.random.default_rng(7))
    assert np.abs(r.astype(int) - t.astype(int)).mean() < 0.25 * np.abs(r.astype(int) - ref.astype(int)).mean() + 4


def test_ratio_power_tilts_the_failed_ratio_within_its_range():
    from smcvae_ros.training.pairs import draw_ratio
    draws = lambda k: np.array([draw_ratio(PairSpec(ratio=(0.1, 0.9), ratio_power=k), rng)  # noqa: E731
                                for rng in [np.random.default_rng(0)] for _ in range(4000)])
    flat, tilted = draws(0.0), draws(1.0)
    assert 0.1 <= flat.min() and flat.max() <= 0.9 and 0.1 <= tilted.min() and tilted.max() <= 0.9
    assert abs(flat.mean() - 0.5) < 0.02 and abs((flat >= 0.8).mean() - 0.125) < 0.02   # uniform
    assert abs((tilted >= 0.8).mean() - 0.17 / 0.8) < 0.02                      # P(r >= 0.8) = (0.81 - 0.64) / 0.8
    assert abs((tilted <= 0.3).mean() - 0.08 / 0.8) < 0.02                      # P(r <= 0.3) = (0.09 - 0.01) / 0.8


def test_validation_tiles_ignore_camera_aug_and_sampling_tilts(clip_dir):
    from smcvae_ros.training.train import validation_batch
    spec = PairSpec(img_size=32, patch_size=8, scale=(1.0, 1.0), tiles_per_frame=2)
    aug = PairSpec(**{**spec.__dict__, 'camera_aug': 1.0, 'ratio_power': 2.0, 'gap_power': 1.0})
    for x, y in zip(validation_batch(spec, clip_dir, 4), validation_batch(aug, clip_dir, 4)):
        assert __import__('torch').equal(x, y)


def test_frame_tiles_without_alignment_hold_the_raw_reference(clip_dir):
    """align: none (the `no_align` ablation): the tile's reference is the unwarped last frame."""
    spec = PairSpec(img_size=32, patch_size=8, align='none', scale=(1.0, 1.0), tiles_per_frame=3, flip=False)
    rng = np.random.default_rng(0)
    ref, target = pick_pair(list_clips(clip_dir), spec, rng)
    tiles = frame_tiles(ref, target, spec, rng)
    assert len(tiles) == 3 and all(t['ref'].shape == (32, 32, 3) for t in tiles)
    assert any(np.array_equal(t['ref'], ref[y:y + 32, x:x + 32]) for t in tiles[:1]
               for y in range(ref.shape[0] - 31) for x in range(ref.shape[1] - 31))


def test_fixed_batch_is_reproducible(clip_dir):
    spec = PairSpec(img_size=32, patch_size=8, scale=(1.0, 1.0), tiles_per_frame=2)
    a = fixed_batch(list_clips(clip_dir), spec, 4, seed=5, ratio=0.5, gap=2)
    b = fixed_batch(list_clips(clip_dir), spec, 4, seed=5, ratio=0.5, gap=2)
    for x, y in zip(a, b):
        assert x.shape[0] == 4 and __import__('torch').equal(x, y)
    ref, dmg, tgt, mask = a
    assert ref.shape == (4, 3, 32, 32) and dmg.shape == (4, 4, 32, 32) and mask.shape == (4, 16)
    assert bool(mask.any(1).all())


# --- clip sources: videos, rosbag2 topics, lists of sources, bounded memory ------------------------
@pytest.fixture(scope='module')
def road():
    from smcvae_ros.data.synthetic import generate_sequence
    return generate_sequence(12, 160, 96, seed=3)


def write_video(path, frames, fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, frames[0].shape[1::-1])
    for f in frames:
        w.write(f[..., ::-1])
    w.release()
    return path


def test_video_clip_random_access_equals_sequential_decoding(tmp_path, road):
    from smcvae_ros.data import clips as C
    path = write_video(tmp_path / 'drive.mp4', road)
    cap, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(bgr[..., ::-1])
    (clip,) = list_clips(path)
    assert clip.name == 'drive' and len(clip) == len(road) == len(decoded)
    C.set_frame_cache_mb(0)                       # no cache: every read decodes (seek or grab forward)
    try:
        for i in (7, 2, 11, 0, 5, 6, 10, 1):
            assert np.array_equal(clip.read(i), decoded[i]), i
    finally:
        C.set_frame_cache_mb(C.FRAME_CACHE_MB)
    assert np.abs(clip.read(4).astype(int) - road[4]).mean() < 8      # lossy codec, same picture
    with pytest.raises(IndexError):
        clip.read(12)


def test_bag_topics_are_clips_in_stamp_order(tmp_path, road):
    """Raw and compressed topics of one bag; messages logged out of stamp order come back in stamp order."""
    from smcvae_ros.bag.io import COMPRESSED_TYPE, IMAGE_TYPE, BagWriter, Header, compressed_msg, image_msg, to_time
    order = [0, 2, 1, 3, 5, 4, 6, 7]
    with BagWriter(tmp_path / 'bag', 'mcap') as w:
        for k, i in enumerate(order):                 # bag time k, stamp i
            header = Header(stamp=to_time(10**9 * (100 + i)), frame_id='cam')
            w.write_msg('/front/image_raw', IMAGE_TYPE, 10**9 * (100 + k), image_msg(road[i], 'rgb8', header))
            w.write_msg('/rear/image_raw/compressed', COMPRESSED_TYPE, 10**9 * (100 + k),
                        compressed_msg(road[i][..., ::-1].copy(), 'bgr8', header, 'png'))
            w.write_msg('/front/image_restored', IMAGE_TYPE, 10**9 * (100 + k), image_msg(road[i], 'rgb8', header))
    clips = list_clips(tmp_path / 'bag')
    assert [c.name for c in clips] == ['bag/front/image_raw', 'bag/rear/image_raw/compressed']  # outputs skipped
    for clip in clips:
        assert len(clip) == 8
        for i in (5, 0, 7, 2):
            assert np.array_equal(clip.read(i), road[i]), (clip.name, i)


def test_list_of_sources_and_folder_of_videos(tmp_path, road, clip_dir):
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_video(videos / 'a.mp4', road[:6])
    write_video(videos / 'b.avi', road[6:])
    names = [c.name for c in list_clips([videos, clip_dir])]
    assert names == ['a', 'b', 'a', 'b'] and [len(c) for c in list_clips(videos)] == [6, 6]
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='not a clip source'):
        list_clips(tmp_path / 'notes.txt')
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    with pytest.raises(ValueError, match='cannot open video'):
        list_clips(tmp_path / 'broken.mp4')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no clips'):
        list_clips([tmp_path / 'empty'])


def test_frame_cache_is_bounded(clip_dir):
    from smcvae_ros.data import clips as C
    frame_bytes = 160 * 200 * 3
    C.set_frame_cache_mb(3.5 * frame_bytes / (1 << 20))
    try:
        for clip in list_clips(clip_dir):
            for i in range(len(clip)):
                clip.read(i)
                assert C._frames.used <= C._frames.budget
        assert len(C._frames) == 3
    finally:
        C.set_frame_cache_mb(C.FRAME_CACHE_MB)
