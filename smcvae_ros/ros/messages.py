"""sensor_msgs/Image conversions, duck-typed so they work on rclpy messages
and on `rosbags` messages alike (no rclpy import here). Encodings follow cv_bridge."""
from __future__ import annotations

import numpy as np

from ..restoration.frames import ENCODINGS
from .health import short

CHANNELS = {enc: ch for enc, (ch, _) in ENCODINGS.items()}


class MalformedMessage(ValueError):
    pass


def image_msg_to_array(msg) -> np.ndarray:
    """Image message -> (H,W[,C]) uint8 view without a copy where possible; honours `step` padding.
    Raises MalformedMessage (unknown encoding, wrong step/size)."""
    enc = msg.encoding
    if enc not in CHANNELS:
        raise MalformedMessage(f'unsupported encoding {short(enc, 40)!r}')
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
