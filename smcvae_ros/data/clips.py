"""Clip folders in the `../shared/data` layout: <root>/<clip>/<frame>.jpg, frames in time order."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
# the validation clips when the data folder lies beside the checkout (development machines only)
SHARED_VAL = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'val'


@dataclass(frozen=True)
class Clip:
    name: str
    frames: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, i: int) -> np.ndarray:
        """Frame i as (H,W,3) uint8 RGB."""
        return read_rgb_cached(str(self.frames[i]))


def list_clips(root: str | Path) -> list[Clip]:
    """A clip folder itself, or a folder of clip folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'clip folder not found: {root}')
    dirs = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    clips = []
    for d in dirs:
        frames = tuple(sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS))
        if len(frames) >= 2:
            clips.append(Clip(d.name, frames))
    if not clips:
        raise ValueError(f'no clips with at least 2 frames under {root}')
    return clips


def read_rgb(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image: {path}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=4096)
def read_rgb_cached(path: str) -> np.ndarray:
    return read_rgb(path)
