"""`smcvae bag-make`: a rosbag2 of sensor_msgs/Image (or, with --compressed, sensor_msgs/CompressedImage
on '<topic>/compressed', as image_transport publishes) from clip folders (one folder per camera).

Timing: camera i frame k has header.stamp = start + k/fps + i*1 ms (cameras triggered 1 ms apart) and
is logged (bag receive time) TRANSPORT_LATENCY_NS after its stamp, like a live driver's recording.
"""
from __future__ import annotations

import heapq
import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.clips import IMAGE_EXTS, read_rgb
from ..restoration.frames import ENCODINGS
from ..ros.topics import COMPRESSED_SUFFIX, camera_input
from .io import (COMPRESSED_TYPE, IMAGE_TYPE, BagError, BagWriter, Header, compressed_msg, frame_id_for, image_msg,
                 serialize, to_time)

log = logging.getLogger(__name__)

DEFAULT_TOPIC = '/cam_front/image_raw'
DEFAULT_START_S = 1_700_000_000.0   # 2023-11-14T22:13:20Z: a fixed epoch stamp keeps bags reproducible
CAMERA_OFFSET_NS = 1_000_000
TRANSPORT_LATENCY_NS = 5_000_000


def convert_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """(H,W,3) RGB -> array in `encoding` (one of restoration.frames.ENCODINGS)."""
    if encoding not in ENCODINGS:
        raise BagError(f'unsupported encoding {encoding!r} (supported: {", ".join(ENCODINGS)})')
    if encoding == 'mono8':
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = rgb[..., ::-1] if ENCODINGS[encoding][1] == 'bgr' else rgb
    if ENCODINGS[encoding][0] == 4:
        out = np.concatenate([out, np.full(out.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(out)


def list_frames(folder: Path, start: int, max_frames: int | None) -> list[Path]:
    if not folder.is_dir():
        raise BagError(f'{folder}: frames folder not found')
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)[start:]
    frames = frames[:max_frames] if max_frames else frames
    if not frames:
        raise BagError(f'{folder}: no images ({", ".join(IMAGE_EXTS)}) to write')
    return frames


def parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise BagError(f'--resize must be WIDTHxHEIGHT, got {text!r}') from None
    return w, h


def make_bag(frame_dirs, out_bag, topics=None, fps: float = 10.0, encoding: str = 'rgb8', frame_ids=None,
             start_time: float = DEFAULT_START_S, start_frame: int = 0, max_frames: int | None = None,
             resize: tuple[int, int] | None = None, storage: str = 'mcap', overwrite: bool = False,
             compressed: str | None = None, quality: int = 95) -> dict:
    """Write one camera per folder; topics[i]/frame_ids[i] belong to frame_dirs[i]. Returns counts per topic.
    compressed='jpeg'|'png': CompressedImage on '<topic>/compressed' (jpeg at `quality`)."""
    frame_dirs = [Path(d) for d in frame_dirs]
    topics = list(topics or ([DEFAULT_TOPIC] if len(frame_dirs) == 1 else []))
    if len(topics) != len(frame_dirs):
        raise BagError(f'{len(frame_dirs)} frame folders need {len(frame_dirs)} --topic values, got {len(topics)}')
    if len(set(topics)) != len(topics):
        raise BagError(f'duplicate --topic in {topics}')
    frame_ids = list(frame_ids or [frame_id_for(t) for t in topics])
    if len(frame_ids) != len(topics):
        raise BagError(f'{len(topics)} topics need {len(topics)} --frame-id values, got {len(frame_ids)}')
    if fps <= 0:
        raise BagError(f'--fps must be > 0, got {fps}')
    convert_rgb(np.zeros((1, 1, 3), np.uint8), encoding)  # fail early on an unsupported encoding
    if compressed not in (None, 'jpeg', 'png'):
        raise BagError(f'--compressed must be jpeg or png, got {compressed!r}')
    if compressed:
        topics = [t if camera_input(t)[0] else t + COMPRESSED_SUFFIX for t in topics]
    msgtype = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    period_ns, start_ns = round(1e9 / fps), round(start_time * 1e9)
    # (log time, camera, frame index, path) in time order across cameras
    schedule = list(heapq.merge(*[
        [(start_ns + k * period_ns + i * CAMERA_OFFSET_NS + TRANSPORT_LATENCY_NS, i, k, p)
         for k, p in enumerate(list_frames(d, start_frame, max_frames))] for i, d in enumerate(frame_dirs)]))
    with BagWriter(out_bag, storage, overwrite) as w:
        conns = [w.connection(t, msgtype) for t in topics]
        for t_log, i, _, path in tqdm(schedule, desc=f'bag-make {Path(out_bag).name}', unit='frame', leave=False):
            try:
                rgb = read_rgb(path)
            except ValueError as e:
                raise BagError(str(e)) from e
            if resize:
                rgb = cv2.resize(rgb, resize, interpolation=cv2.INTER_AREA)
            header = Header(stamp=to_time(t_log - TRANSPORT_LATENCY_NS), frame_id=frame_ids[i])
            array = convert_rgb(rgb, encoding)
            msg = (compressed_msg(array, encoding, header, compressed, quality) if compressed
                   else image_msg(array, encoding, header))
            w.write(conns[i], t_log, serialize(msg, msgtype))
        counts = dict(w.counts)
    log.info('wrote %s: %s', out_bag, counts)
    return counts


def run(args) -> int:
    counts = make_bag(args.frames_dirs, args.out_bag, args.topic, args.fps, args.encoding, args.frame_id,
                      args.start_time, args.start_frame, args.max_frames, parse_size(args.resize), args.storage,
                      args.overwrite, args.compressed, args.jpeg_quality)
    print(f'wrote {args.out_bag} ({args.storage}): ' + ', '.join(f'{t}: {n} frames' for t, n in counts.items()))
    return 0
