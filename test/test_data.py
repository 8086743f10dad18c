"""Clip reading, masks, alignment and training-pair generation."""
import cv2
import numpy as np
import pytest

from smcvae_ros.data.clips import list_clips, read_rgb
from smcvae_ros.training.pairs import PairSpec, fixed_batch, make_sample
from smcvae_ros.restoration.align import align_reference
from smcvae_ros.restoration.masks import PATTERNS, make_mask, patch_mask_to_pixels


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


@pytest.mark.parametrize('pattern', PATTERNS + ('mixed',))
@pytest.mark.parametrize('ratio', [0.1, 0.5, 0.9])
def test_masks_ratio_and_reproducible(pattern, ratio):
    a = make_mask(np.random.default_rng(3), 12, 16, ratio, pattern)
    b = make_mask(np.random.default_rng(3), 12, 16, ratio, pattern)
    assert a.shape == (12, 16) and a.dtype == bool and np.array_equal(a, b) and a.any()
    if pattern == 'random':
        assert a.sum() == round(ratio * 192)
    if pattern in ('blocks', 'quadrant'):
        assert abs(a.mean() - ratio) < 0.35


def test_mask_unknown_pattern():
    with pytest.raises(ValueError, match='unknown mask pattern'):
        make_mask(np.random.default_rng(0), 4, 4, 0.5, 'zigzag')


def test_patch_mask_to_pixels():
    m = np.zeros((2, 3), bool)
    m[1, 2] = True
    px = patch_mask_to_pixels(m, 8)
    assert px.shape == (16, 24) and px.sum() == 64 and px[8:, 16:].all()


def test_flow_alignment_recovers_shift():
    world = textured(160, 220)
    ref, cur = world[:, 0:200].copy(), world[:, 6:206].copy()  # camera moved 6 px right
    failed = np.zeros((160, 200), bool)
    failed[60:100, 80:120] = True
    damaged = np.where(failed[..., None], 0, cur).astype(np.uint8)
    warped = align_reference(ref, damaged, failed, 'flow')
    err_copy = np.abs(ref.astype(int) - cur)[failed].mean()
    err_warp = np.abs(warped.astype(int) - cur)[failed].mean()
    assert err_warp < 0.5 * err_copy
    assert align_reference(ref, damaged, failed, 'none') is ref


def test_list_clips_and_read(clip_dir):
    clips = list_clips(clip_dir)
    assert [c.name for c in clips] == ['a', 'b'] and len(clips[0].frames) == 6
    assert read_rgb(clips[0].frames[0]).shape == (160, 200, 3)
    with pytest.raises(FileNotFoundError):
        list_clips(clip_dir / 'missing')
    with pytest.raises(ValueError, match='cannot read image'):
        read_rgb(clip_dir / 'a' / 'nope.png')


def test_make_sample_shapes_and_mask_semantics(clip_dir):
    spec = PairSpec(img_size=32, patch_size=8, margin=8, gap=(1, 3), scale=(1.0, 1.0))
    s = make_sample(list_clips(clip_dir), spec, np.random.default_rng(0))
    assert s['ref'].shape == s['damaged'].shape == s['target'].shape == (32, 32, 3)
    assert s['mask'].shape == (16,) and s['mask'].any()
    px = patch_mask_to_pixels(s['mask'].reshape(4, 4), 8)
    assert (s['damaged'][px] == 0).all()
    assert np.array_equal(s['damaged'][~px], s['target'][~px])


def test_fixed_batch_is_reproducible(clip_dir):
    spec = PairSpec(img_size=32, patch_size=8, margin=8, scale=(1.0, 1.0))
    a = fixed_batch(list_clips(clip_dir), spec, 4, seed=5, ratio=0.5, gap=2)
    b = fixed_batch(list_clips(clip_dir), spec, 4, seed=5, ratio=0.5, gap=2)
    for x, y in zip(a, b):
        assert x.shape[0] == 4 and __import__('torch').equal(x, y)
    assert (a[3].float().mean(1) == 0.5).all()
