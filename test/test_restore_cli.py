"""`smcvae restore REF FRAME MASK OUT` on files and directories, and its error messages."""
import cv2
import numpy as np
import pytest

from smcvae_ros import cli


def write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def scene(rng, h=57, w=91, shift=0):
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w + 8, 3)).astype(np.float32), (0, 0), 2)
    return np.clip((base - base.mean()) * 5 + 128, 0, 255).astype(np.uint8)[:, shift:shift + w]


def failure(h=57, w=91):
    m = np.zeros((h, w), np.uint8)
    m[11:20, 31:46] = 255        # odd x, y, w, h on an odd-sized frame: on no patch grid
    m[40:43, 85:91] = 255
    return m


def restore(tiny_model, *paths, extra=()):
    return cli.main(['restore', *map(str, paths), '--model', str(tiny_model), '--backend', 'torch', '--device', 'cpu',
                     *extra])


def test_restore_files(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    ref, frame, mask = scene(rng), scene(rng), failure()
    frame[mask > 0] = 0
    paths = [write(tmp_path / 'ref.png', ref), write(tmp_path / 'frame.png', frame), write(tmp_path / 'mask.png', mask)]
    assert restore(tiny_model, *paths, tmp_path / 'out' / 'restored.png') == 0
    out = cv2.imread(str(tmp_path / 'out' / 'restored.png'))
    assert out.shape == frame.shape
    failed = mask > 0
    np.testing.assert_array_equal(out[~failed], frame[~failed])    # every pixel outside the mask untouched
    assert np.abs(out[failed].astype(int) - frame[failed]).mean() > 5  # the hole was filled
    (tmp_path / 'dir_out').mkdir()                                     # OUT an existing dir: named like FRAME
    assert restore(tiny_model, *paths, tmp_path / 'dir_out') == 0
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'dir_out' / 'frame.png')), out)
    # --process-scale (the node parameter): same contract, a different (downscaled) fill
    assert restore(tiny_model, *paths, tmp_path / 'half.png', extra=('--process-scale', '0.5')) == 0
    half = cv2.imread(str(tmp_path / 'half.png'))
    np.testing.assert_array_equal(half[~failed], frame[~failed])
    assert not np.array_equal(half, out)


def test_restore_directories_matched_by_name(tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    for i, name in enumerate(('0001', '0002')):
        frame = scene(rng)
        write(tmp_path / 'refs' / f'{name}.jpg', scene(rng))
        write(tmp_path / 'frames' / f'{name}.png', frame)
        m = failure() if i == 0 else np.zeros(frame.shape[:2], np.uint8)   # second frame is healthy
        write(tmp_path / 'masks' / f'{name}.png', m)
    assert restore(tiny_model, tmp_path / 'refs', tmp_path / 'frames', tmp_path / 'masks', tmp_path / 'out') == 0
    outs = sorted(p.name for p in (tmp_path / 'out').iterdir())
    assert outs == ['0001.png', '0002.png']
    healthy_in = cv2.imread(str(tmp_path / 'frames' / '0002.png'))
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out' / '0002.png')), healthy_in)
    first_in = cv2.imread(str(tmp_path / 'frames' / '0001.png'))
    assert not np.array_equal(cv2.imread(str(tmp_path / 'out' / '0001.png')), first_in)
    # one reference file and one mask file shared by every frame in the directory
    assert restore(tiny_model, tmp_path / 'refs' / '0001.jpg', tmp_path / 'frames', tmp_path / 'masks' / '0001.png',
                   tmp_path / 'out2') == 0
    assert sorted(p.name for p in (tmp_path / 'out2').iterdir()) == ['0001.png', '0002.png']


def test_restore_errors(tiny_model, tmp_path):
    rng = np.random.default_rng(2)
    ref = write(tmp_path / 'ref.png', scene(rng))
    frame = write(tmp_path / 'frame.png', scene(rng))
    mask = write(tmp_path / 'mask.png', failure())
    small_mask = write(tmp_path / 'small.png', failure(40, 64))
    small_ref = write(tmp_path / 'small_ref.png', scene(rng, 40, 64))
    with pytest.raises(SystemExit, match='FRAME not found'):
        restore(tiny_model, ref, tmp_path / 'nope.png', mask, tmp_path / 'o.png')
    with pytest.raises(SystemExit, match='size mismatch: mask'):
        restore(tiny_model, ref, frame, small_mask, tmp_path / 'o.png')
    with pytest.raises(SystemExit, match='size mismatch: reference'):
        restore(tiny_model, small_ref, frame, mask, tmp_path / 'o.png')
    with pytest.raises(SystemExit, match='cannot read image'):
        restore(tiny_model, write_bytes(tmp_path / 'bad.png'), frame, mask, tmp_path / 'o.png')
    with pytest.raises(SystemExit, match='model not found'):
        cli.main(['restore', str(ref), str(frame), str(mask), str(tmp_path / 'o.png'),
                  '--model', str(tmp_path / 'm.safetensors')])
    write(tmp_path / 'frames' / 'a.png', scene(rng))
    write(tmp_path / 'masks' / 'b.png', failure())
    with pytest.raises(SystemExit, match='no mask for a.png'):
        restore(tiny_model, ref, tmp_path / 'frames', tmp_path / 'masks', tmp_path / 'out')
    with pytest.raises(SystemExit, match='REF and MASK must be files'):
        restore(tiny_model, tmp_path / 'frames', frame, mask, tmp_path / 'o.png')
    assert not (tmp_path / 'o.png').exists()


def write_bytes(path):
    path.write_bytes(b'not an image')
    return path
