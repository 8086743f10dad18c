"""sensor_msgs/Image and diagnostic_msgs conversions, duck-typed so they work on rclpy messages
and on `rosbags` messages alike (no rclpy import here). Encodings follow cv_bridge."""
from __future__ import annotations

import numpy as np

from ..restoration.frames import ENCODINGS

CHANNELS = {enc: ch for enc, (ch, _) in ENCODINGS.items()}
FAILED_ROIS_KEY = 'failed_rois'
OK, WARN, ERROR, STALE = 0, 1, 2, 3


class MalformedMessage(ValueError):
    pass


def image_msg_to_array(msg) -> np.ndarray:
    """Image message -> (H,W[,C]) uint8 view without a copy where possible; honours `step` padding.
    Raises MalformedMessage (unknown encoding, wrong step/size)."""
    enc = msg.encoding
    if enc not in CHANNELS:
        raise MalformedMessage(f'unsupported encoding {enc!r}')
    h, w, step, ch = int(msg.height), int(msg.width), int(msg.step), CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise MalformedMessage(f'empty image {w}x{h}')
    if step < w * ch:
        raise MalformedMessage(f'step {step} < width*channels {w * ch}')
    buf = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    if buf.size < step * h:
        raise MalformedMessage(f'data has {buf.size} bytes, expected step*height = {step * h}')
    rows = buf[:step * h].reshape(h, step)[:, :w * ch]
    return rows.reshape(h, w) if ch == 1 else rows.reshape(h, w, ch)


def fill_image_msg(msg, array: np.ndarray, encoding: str, header=None):
    """Write an (H,W[,C]) uint8 array into an Image message (fast bytes path) and return it."""
    a = np.ascontiguousarray(array)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * (a.shape[2] if a.ndim == 3 else 1) * a.itemsize)
    msg.data = a.tobytes()
    return msg


def parse_rois(text: str) -> list[tuple[int, int, int, int]]:
    """'x,y,w,h;x,y,w,h' -> [(x,y,w,h), ...]; raises MalformedMessage on bad syntax or sizes."""
    rois = []
    for part in filter(None, (p.strip() for p in text.split(';'))):
        try:
            vals = [int(float(v)) for v in part.split(',')]
        except ValueError:
            raise MalformedMessage(f'failed_rois entry {part!r} is not numeric') from None
        if len(vals) != 4 or vals[2] <= 0 or vals[3] <= 0:
            raise MalformedMessage(f'failed_rois entry {part!r} must be x,y,w,h with w,h > 0')
        rois.append(tuple(vals))
    return rois


def level_value(level) -> int:
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def parse_failure_status(status) -> tuple[str, list[tuple[int, int, int, int]], bool]:
    """DiagnosticStatus -> (hardware_id, rois, whole_frame).

    OK -> no failures; WARN/ERROR -> the `failed_rois` KeyValue (missing -> no ROIs);
    STALE -> whole frame failed. Raises MalformedMessage on an unknown level or bad ROIs."""
    level = level_value(status.level)
    if level == OK:
        return status.hardware_id, [], False
    if level == STALE:
        return status.hardware_id, [], True
    if level not in (WARN, ERROR):
        raise MalformedMessage(f'unknown diagnostic level {level}')
    text = next((kv.value for kv in status.values if kv.key == FAILED_ROIS_KEY), '')
    return status.hardware_id, parse_rois(text), False


def format_rois(rois) -> str:
    return ';'.join(f'{x},{y},{w},{h}' for x, y, w, h in rois)
