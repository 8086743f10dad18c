"""The ROS-free frame-handling core: health contract and limits, camera ids, time rules, statuses."""
from types import SimpleNamespace

import numpy as np
import pytest

from smcvae_ros.engine import create_backend
from smcvae_ros.restoration import FrameStatus, Restorer
from smcvae_ros.ros.handler import Frame, FrameHandler
from smcvae_ros.ros.health import MAX_ROIS, MAX_ROIS_CHARS, Failure, Level, failure_from_status, parse_rois, short
from smcvae_ros.ros.messages import fill_image_msg
from smcvae_ros.ros.topics import CameraIds, output_topic

ROIS = [(8, 8, 16, 16)]


def status(level, rois_text=None, hardware_id='/cam/image_raw'):
    values = [] if rois_text is None else [SimpleNamespace(key='failed_rois', value=rois_text)]
    return SimpleNamespace(level=bytes([level]), hardware_id=hardware_id, values=values)


def image(array, stamp, encoding='rgb8'):
    msg = fill_image_msg(SimpleNamespace(), array, encoding)
    msg.header = SimpleNamespace(stamp=SimpleNamespace(sec=int(stamp), nanosec=int(round(stamp % 1 * 1e9))))
    return msg


@pytest.fixture
def handler(tiny_model):
    backend, _ = create_backend('torch', tiny_model, 'cpu', fallback=False)
    return FrameHandler(Restorer(backend))


def test_failure_from_status_levels_and_limits():
    assert failure_from_status(status(Level.OK)).healthy
    assert failure_from_status(status(Level.STALE)).whole_frame
    assert failure_from_status(status(Level.WARN, '1,2,8,8;10,20,8,8')).rois == [(1, 2, 8, 8), (10, 20, 8, 8)]
    assert failure_from_status(status(Level.ERROR)).describe() == 'unlocated'
    assert failure_from_status(status(Level.ERROR, ' ')).describe() == 'unlocated'
    for bad, why in ((status(9), 'unknown diagnostic level'), (status(Level.WARN, 'a,b'), 'not numeric'),
                     (status(Level.WARN, '1,2,0,8'), 'w,h > 0'),
                     (status(Level.WARN, '1,1,8,8;' * (MAX_ROIS + 1)), 'rectangles'),
                     (status(Level.WARN, '1' * (MAX_ROIS_CHARS + 1)), 'characters')):
        f = failure_from_status(bad)
        assert f.describe() == 'invalid' and why in f.error, f.error
    assert len(failure_from_status(status(Level.WARN, 'x' * 5000 + ',1,1,1')).error) < 300
    assert len(parse_rois(';'.join(['1,1,8,8'] * MAX_ROIS))) == MAX_ROIS


def test_rois_summary_and_short_text():
    f = Failure([(i, 0, 8, 8) for i in range(10)])
    assert f.rois_summary() == '0,0,8,8;1,0,8,8;2,0,8,8;3,0,8,8;... (6 more)'
    assert Failure(ROIS).rois_summary() == '8,8,16,16'
    assert short('a' * 1000, 10) == 'aaaaaaaaaa... (1000 chars)' and short('abc') == 'abc'


def test_camera_ids_and_output_topics():
    ids = CameraIds(['/front/image_raw', '/rear/cam/image_raw'])
    assert ids.match('/front/image_raw') == ids.match('front') == ids.match(' /front/ ') == '/front/image_raw'
    assert ids.match('rear/cam') == '/rear/cam/image_raw' and ids.match('/rear') is None
    assert output_topic('/rear/cam/image_raw', 'restoration_mask') == '/rear/cam/restoration_mask'


def test_statuses_and_time_rules(handler, rng):
    h = lambda *frames: handler.handle(list(frames))  # noqa: E731
    ref = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    dmg = ref.copy()
    dmg[8:24, 8:24] = 0
    cam = '/cam/image_raw'
    assert h(Frame(cam, image(ref, 10.0), Failure()))[0].status == FrameStatus.HEALTHY
    out = h(Frame(cam, image(dmg, 10.1), Failure(ROIS)))[0]
    assert out.restored and out.result.reference_age_s == pytest.approx(0.1)
    # older than the reference (or a bag loop): reset, flagged, not restored
    out = h(Frame(cam, image(dmg, 9.0), Failure(ROIS)))[0]
    assert out.status == FrameStatus.OUT_OF_ORDER and out.status.flagged and not out.restored
    assert h(Frame(cam, image(dmg, 9.1), Failure(ROIS)))[0].status == FrameStatus.NO_REFERENCE
    # a healthy frame after a jump back is the new reference
    assert h(Frame(cam, image(ref, 5.0), Failure()))[0].status == FrameStatus.HEALTHY
    assert h(Frame(cam, image(dmg, 5.2), Failure(ROIS)))[0].result.reference_age_s == pytest.approx(0.2)
    # unstamped: receive time
    assert h(Frame(cam, image(ref, 0.0), Failure(), receive_stamp=100.0))[0].status == FrameStatus.HEALTHY
    out = h(Frame(cam, image(dmg, 0.0), Failure(ROIS), receive_stamp=100.5))[0]
    assert out.restored and out.result.reference_age_s == pytest.approx(0.5)
    # unlocated failure: passed through and NOT the reference
    out = h(Frame(cam, image(dmg, 101.0), Failure(unlocated=True)))[0]
    assert out.status == FrameStatus.UNLOCATED and out.result is None
    assert h(Frame(cam, image(dmg, 101.1), Failure(ROIS)))[0].result.reference_age_s == pytest.approx(1.1)
    # invalid status, ROI outside the image, unsupported and malformed images
    assert h(Frame(cam, image(dmg, 102.0), Failure(error='bad')))[0].status == FrameStatus.INVALID
    assert 'exceed' in h(Frame(cam, image(dmg, 102.1), Failure([(60, 40, 8, 16)])))[0].message
    odd = image(ref, 102.2)
    odd.encoding = 'y' * 10_000
    out = h(Frame(cam, odd, Failure()))[0]
    assert out.status == FrameStatus.UNSUPPORTED_ENCODING and len(out.message) < 200 and out.image is None
    short_msg = image(ref, 102.3)
    short_msg.data = short_msg.data[:100]
    assert h(Frame(cam, short_msg, Failure()))[0].status == FrameStatus.INVALID
    assert f'{FrameStatus.RESTORED}' == 'restored' and FrameStatus.RESTORED == 'restored'


def test_inference_error_passes_the_batch_through(handler, rng):
    ref = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    handler.handle([Frame('/a', image(ref, 1.0), Failure()), Frame('/b', image(ref, 1.0), Failure())])

    def broken(*_):
        raise RuntimeError('device lost')
    handler.restorer.backend.restore = broken
    outs = handler.handle([Frame('/a', image(ref, 1.1), Failure(ROIS)), Frame('/b', image(ref, 1.1), Failure())])
    assert outs[0].status == FrameStatus.ERROR and 'device lost' in outs[0].message
    assert outs[1].status == FrameStatus.ERROR and outs[1].image is not None   # published unchanged
