"""sensor_msgs/Image and CompressedImage conversions, duck-typed so they work on rclpy messages and on
`rosbags` messages alike (no rclpy import here). Encodings follow cv_bridge; compressed `format`
strings follow image_transport's compressed plugin."""
from __future__ import annotations

import cv2
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


COMPRESSED_CODECS = ('jpeg', 'png')
_NATURAL = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}            # what cv2.imdecode returns, by channels


def parse_compressed_format(fmt: str) -> tuple[str, str]:
    """CompressedImage.format -> (codec, original encoding or '').

    image_transport writes '<encoding>; <codec> compressed <target>' (e.g. 'rgb8; jpeg compressed bgr8');
    other drivers write just 'jpeg' / 'png' (or 'jpg'). Raises MalformedMessage for other codecs."""
    head, sep, tail = (fmt or '').partition(';')
    words = (tail if sep else head).strip().lower().split()
    codec = {'jpg': 'jpeg'}.get(words[0], words[0]) if words else ''
    if codec not in COMPRESSED_CODECS:
        raise MalformedMessage(f'unsupported CompressedImage format {fmt!r} (expected jpeg or png)')
    return codec, head.strip() if sep else ''


def decode_compressed(fmt: str, data) -> tuple[np.ndarray, str]:
    """CompressedImage (format, data) -> ((H,W[,C]) uint8 array, encoding), decoded by OpenCV.

    The encoding is the original one named in `format` when it has the decoded channel count
    (rgb8/bgr8, rgba8/bgra8, mono8: channels reordered as needed), else what the codec holds
    (bgr8, bgra8, mono8). Raises MalformedMessage for unknown formats, undecodable or 16-bit data."""
    codec, original = parse_compressed_format(fmt)
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).reshape(-1)
    if buf.size == 0:
        raise MalformedMessage(f'empty {codec} data')
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise MalformedMessage(f'undecodable {codec} data ({buf.size} bytes): {e}') from None
    if img is None:
        raise MalformedMessage(f'undecodable {codec} data ({buf.size} bytes)')
    if img.dtype != np.uint8:
        raise MalformedMessage(f'{codec} holds {img.dtype} pixels; only 8-bit images are supported')
    ch = 1 if img.ndim == 2 else img.shape[2]
    natural = _NATURAL[ch]
    if CHANNELS.get(original) != ch or original == natural:
        return img, natural
    if ch == 1:
        return img, original
    return np.ascontiguousarray(img[..., [2, 1, 0, 3][:ch]]), original    # bgr(a) -> rgb(a)


def encode_compressed(array: np.ndarray, encoding: str, codec: str = 'jpeg', quality: int = 95) -> tuple[str, bytes]:
    """(H,W[,C]) uint8 in `encoding` -> (format, data) as image_transport's compressed plugin writes them:
    colour is encoded as bgr8 (jpeg) or bgr8/bgra8 (png), mono8 as mono8."""
    if encoding not in CHANNELS or codec not in COMPRESSED_CODECS:
        raise ValueError(f'cannot compress {encoding!r} as {codec!r}')
    ch = CHANNELS[encoding]
    if ch == 4 and codec == 'jpeg':                    # jpeg has no alpha
        array, ch = array[..., :3], 3
    img = array if ch == 1 or encoding.startswith('bgr') else array[..., [2, 1, 0, 3][:ch]]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if codec == 'jpeg' else '.png', np.ascontiguousarray(img), params)
    if not ok:
        raise ValueError(f'OpenCV could not encode {encoding} as {codec}')
    return f'{encoding}; {codec} compressed {_NATURAL[ch]}', data.tobytes()


def decoded_image(msg) -> tuple[np.ndarray, str]:
    """An Image or CompressedImage message -> (array, encoding); MalformedMessage if it cannot be read."""
    if hasattr(msg, 'format'):
        return decode_compressed(msg.format, msg.data)
    return image_msg_to_array(msg), msg.encoding


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
