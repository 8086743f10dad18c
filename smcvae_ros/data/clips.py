"""Training and evaluation sources as clips: sequences of RGB frames in time order, read lazily.

A Clip has a `name`, `len(clip)` frames and `clip.read(i) -> (H,W,3) uint8 RGB`. `list_clips(root)`
(or a list of roots) finds them in:

- a folder of frames (`<clip>/<frame>.jpg`, file-name order) or a folder of such clip folders;
- a video file (.mp4/.mov/.avi/.mkv) or a folder of videos, decoded by OpenCV (FFmpeg); frame i is
  the i-th decoded frame, so frame gaps are gaps in frames at the video's own rate;
- a rosbag2 (folder with metadata.yaml, or a .mcap/.db3 file) with sensor_msgs/Image or
  CompressedImage topics: each camera topic is one clip, ordered by header stamp. The index (bag time
  and stamp of every message) is built once when the clip is listed; messages are read on demand.

Memory stays bounded per process (each DataLoader worker is one): decoded frames live in one LRU of
at most `FRAME_CACHE_MB` MiB (set_frame_cache_mb), and at most `OPEN_SOURCES` videos/bags are open at
once. Video seeking: a frame ahead of the decoder by at most SEEK_AHEAD frames is reached by grabbing
forward (cheap: training pairs are a few frames apart), anything else by a container seek.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
VIDEO_EXTS = ('.mp4', '.mov', '.avi', '.mkv')
BAG_EXTS = ('.mcap', '.db3')
FRAME_CACHE_MB = 1024          # decoded frames kept per process (LRU)
OPEN_SOURCES = 8               # open video captures / bag readers per process (LRU)
SEEK_AHEAD = 48                # frames a video decoder grabs forward instead of seeking
# the validation clips when the data folder lies beside the checkout (development machines only)
SHARED_VAL = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'val'


class _LRU(OrderedDict):
    """Least-recently-used map bounded by a total cost (bytes of frames, or a count of open sources)."""

    def __init__(self, budget: int, cost=lambda v: 1, close=lambda v: None):
        super().__init__()
        self.budget, self.cost, self.close, self.used = budget, cost, close, 0

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        self.used += self.cost(value)
        while self.used > self.budget and len(self) > 1:
            _, old = self.popitem(last=False)
            self.used -= self.cost(old)
            self.close(old)
        return value


_frames = _LRU(FRAME_CACHE_MB << 20, cost=lambda a: a.nbytes)
_sources = _LRU(OPEN_SOURCES, close=lambda s: s.close())
_inherited: list = []      # sources open in a parent process: never used (shared file offsets) nor closed


def _forget_parent_sources() -> None:
    _inherited.extend(_sources.values())
    _sources.clear()


os.register_at_fork(after_in_child=_forget_parent_sources)


def set_frame_cache_mb(mb: float) -> None:
    """Bound of the decoded-frame cache of this process (and of DataLoader workers forked after it)."""
    _frames.budget = int(mb * (1 << 20))


def read_rgb(path: str | Path) -> np.ndarray:
    """One image file as (H,W,3) uint8 RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image: {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class Clip:
    """A sequence of frames; subclasses implement `__len__` and `_decode(i)`; `read` caches."""

    name: str
    key: str                  # unique per source (cache key)

    def read(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f'{self.name}: frame {i} out of range (0..{len(self) - 1})')
        return _frames.get_or((self.key, i), lambda: self._decode(i))

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name!r}, {len(self)} frames)'


class FolderClip(Clip):
    def __init__(self, name: str, frames: tuple[Path, ...]):
        self.name, self.frames, self.key = name, tuple(frames), str(Path(frames[0]).parent)

    def __len__(self) -> int:
        return len(self.frames)

    def _decode(self, i: int) -> np.ndarray:
        return read_rgb(self.frames[i])


class _VideoReader:
    def __init__(self, path: Path):
        self.cap, self.pos = cv2.VideoCapture(str(path)), 0   # pos: index of the next decoded frame

    def close(self):
        self.cap.release()


class VideoClip(Clip):
    def __init__(self, path: Path, n_frames: int):
        self.path, self.name, self.key, self.n = Path(path), Path(path).stem, str(path), n_frames

    def __len__(self) -> int:
        return self.n

    def _decode(self, i: int) -> np.ndarray:
        r = _sources.get_or(self.key, lambda: _VideoReader(self.path))
        if not (r.pos <= i <= r.pos + SEEK_AHEAD):
            r.cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            r.pos = i
        ok = True
        while ok and r.pos < i:
            ok, r.pos = r.cap.grab(), r.pos + 1
        ok, bgr = r.cap.read() if ok else (False, None)
        r.pos += 1
        if not ok:
            r.pos = -SEEK_AHEAD - 1                     # position unknown: seek next time
            raise ValueError(f'{self.path}: cannot decode frame {i} of {self.n}')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_clip(path: Path) -> VideoClip:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f'cannot open video: {path}')
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return VideoClip(path, n)


class BagClip(Clip):
    """One camera topic of a rosbag2; `index` = bag times of its messages in header-stamp order."""

    def __init__(self, bag: Path, topic: str, msgtype: str, index: list[tuple[int, int]]):
        self.bag, self.topic, self.msgtype = Path(bag), topic, msgtype
        self.index = index        # (bag time, k): the k-th message of the topic logged at that bag time
        self.name, self.key = f'{Path(bag).name}{topic}', f'{bag}:{topic}'

    def __len__(self) -> int:
        return len(self.index)

    def _decode(self, i: int) -> np.ndarray:
        from ..bag.io import deserialize, open_reader
        from ..restoration.frames import to_rgb
        from ..ros.messages import MalformedMessage, decoded_image
        reader = _sources.get_or(str(self.bag), lambda: open_reader(self.bag))
        conns = [c for c in reader.connections if c.topic == self.topic]
        t, k = self.index[i]
        data = [d for _, _, d in reader.messages(connections=conns, start=t, stop=t + 1)][k]
        try:
            array, encoding = decoded_image(deserialize(data, self.msgtype, self.topic, self.bag))
            return to_rgb(array, encoding)
        except (MalformedMessage, ValueError) as e:
            raise ValueError(f'{self.bag}: {self.topic} message {i}: {e}') from e


def bag_clips(path: Path) -> list[BagClip]:
    """One clip per Image/CompressedImage topic (restore outputs excluded) with >= 2 messages."""
    from ..bag.io import camera_topics, messages, open_bag, stamp_ns_raw
    clips = []
    with open_bag(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for topic in camera_topics(reader, path, ()):
            conns = [c for c in reader.connections if c.topic == topic]
            seen: dict[int, int] = {}
            entries = []
            for _, t, data in messages(reader, path, conns):
                entries.append((stamp_ns_raw(data), t, seen.get(t, 0)))
                seen[t] = seen.get(t, 0) + 1
            if len(entries) >= 2:
                clips.append(BagClip(path, topic, types[topic], [(t, k) for _, t, k in sorted(entries)]))
    return clips


def _is_bag(p: Path) -> bool:
    return (p.is_dir() and (p / 'metadata.yaml').is_file()) or (p.is_file() and p.suffix.lower() in BAG_EXTS)


def _clips_of(root: Path) -> list[Clip]:
    if _is_bag(root):
        return bag_clips(root)
    if root.is_file():
        if root.suffix.lower() in VIDEO_EXTS:
            return [video_clip(root)]
        raise ValueError(f'not a clip source (frames folder, {"/".join(VIDEO_EXTS)} video or rosbag2): {root}')
    if not root.is_dir():
        raise FileNotFoundError(f'clip source not found: {root}')
    clips: list[Clip] = []
    for d in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        if d is not root and _is_bag(d):
            clips += bag_clips(d)
            continue
        files = sorted(p for p in d.iterdir() if p.is_file())
        frames = tuple(p for p in files if p.suffix.lower() in IMAGE_EXTS)
        if len(frames) >= 2:
            clips.append(FolderClip(d.name, frames))
        if d is root:
            clips += [video_clip(p) for p in files if p.suffix.lower() in VIDEO_EXTS]
            clips += [c for p in files if p.suffix.lower() in BAG_EXTS for c in bag_clips(p)]
    return clips


def list_clips(roots) -> list[Clip]:
    """Clips (>= 2 frames) of one source or a list of sources; raises when there are none."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    clips = [c for r in roots for c in _clips_of(Path(r)) if len(c) >= 2]
    if not clips:
        raise ValueError(f'no clips with at least 2 frames in {", ".join(map(str, roots))}')
    return clips
