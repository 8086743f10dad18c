"""A generated sample sequence for the demo: a procedural road scene seen from a car driving forward.

One large scene (sky gradient with clouds, fields, an asphalt road to the vanishing point with edge
lines and dashed lane marks, buildings with windows, cars) is rendered once; frames are crops that
zoom into the vanishing point (forward motion) with a slight lateral sway. Deterministic per seed.
"""
from __future__ import annotations

import cv2
import numpy as np


def _noise(rng: np.random.Generator, h: int, w: int, octaves=(4, 16, 64, 256)) -> np.ndarray:
    """Multi-scale value noise in about [-1, 1], (h, w) float32."""
    out = np.zeros((h, w), np.float32)
    for i, cells in enumerate(octaves):
        small = rng.standard_normal((max(2, h * cells // w), cells)).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (1.6 ** i)
    return np.clip(out / 2.0, -1, 1)


def _tint(base, noise, amount) -> np.ndarray:
    return np.asarray(base, np.float32)[None, None] * (1 + amount * noise[..., None])


def render_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 RGB road scene with the vanishing point at the centre."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    horizon, cx = int(0.45 * h), w // 2
    img = np.zeros((h, w, 3), np.float32)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    sky = (1 - t) * np.array([70, 120, 200], np.float32) + t * np.array([185, 210, 235], np.float32)
    clouds = np.clip(_noise(rng, horizon, w, (3, 8, 24)) * 1.5, 0, 1)[..., None]
    img[:horizon] = sky * (1 - clouds) + 245 * clouds
    ground = _noise(rng, h - horizon, w, (8, 32, 128, 512))
    img[horizon:] = _tint([90, 120, 60], ground, 0.35)
    # road: trapezoid from the vanishing point, asphalt texture
    road = np.array([[cx - 4, horizon], [cx + 4, horizon], [int(cx + 0.9 * w), h], [int(cx - 0.9 * w), h]], np.int32)
    road_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(road_mask, [road], 1)
    asphalt = _tint([105, 105, 108], _noise(rng, h, w, (16, 128, 512, 1024)), 0.25)
    img[road_mask > 0] = asphalt[road_mask > 0]
    # edge lines and perspective dashes (dash length grows towards the camera)
    for side in (-1, 1):
        edge = np.array([[cx + side * 3, horizon], [cx + side * 4, horizon],
                         [int(cx + side * 0.78 * w), h], [int(cx + side * 0.72 * w), h]], np.int32)
        cv2.fillPoly(img, [edge], (235, 235, 230))
    y = horizon + 4.0
    while y < h:
        d = (y - horizon) / (h - horizon)
        y1 = min(h, y + 6 + 90 * d)
        for lane in (-0.3, 0.3):
            xs = [cx + lane * w * (yy - horizon) / (h - horizon) for yy in (y, y1)]
            half = [1 + 10 * (yy - horizon) / (h - horizon) for yy in (y, y1)]
            poly = np.array([[xs[0] - half[0], y], [xs[0] + half[0], y], [xs[1] + half[1], y1],
                             [xs[1] - half[1], y1]], np.int32)
            cv2.fillPoly(img, [poly], (240, 240, 235))
        y = y1 + 8 + 120 * d
    # buildings along the horizon, with windows
    for _ in range(14):
        bw, bh = int(rng.uniform(0.03, 0.09) * w), int(rng.uniform(0.05, 0.2) * h)
        side = rng.choice([-1, 1])
        x0 = int(cx + side * rng.uniform(0.08, 0.48) * w) - bw // 2
        color = rng.uniform(60, 200, 3)
        cv2.rectangle(img, (x0, horizon - bh), (x0 + bw, horizon + 2), color.tolist(), -1)
        for wy in range(horizon - bh + 4, horizon - 6, 9):
            for wx in range(x0 + 3, x0 + bw - 5, 8):
                cv2.rectangle(img, (wx, wy), (wx + 3, wy + 4), (color * 0.4).tolist(), -1)
    # cars on the road
    for _ in range(5):
        d = rng.uniform(0.08, 0.6)
        cy = int(horizon + d * (h - horizon))
        cw, ch = int(0.18 * w * d) + 4, int(0.1 * w * d) + 3
        x = int(cx + rng.uniform(-0.6, 0.6) * 0.9 * w * d)
        color = rng.uniform(20, 230, 3)
        cv2.rectangle(img, (x - cw // 2, cy - ch), (x + cw // 2, cy), color.tolist(), -1)
        cv2.rectangle(img, (x - cw // 3, cy - ch), (x + cw // 3, cy - ch // 2), (40, 50, 60), -1)
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)   # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_sequence(n: int = 20, width: int = 640, height: int = 360, seed: int = 0,
                      speed: float = 0.015) -> list[np.ndarray]:
    """n RGB frames (height, width, 3): the camera moves forward (zoom) and sways sideways."""
    scale = 2
    scene = render_scene(width * scale, height * scale, seed)
    sh, sw = scene.shape[:2]
    vx, vy = sw / 2, 0.45 * sh
    frames = []
    for i in range(n):
        zoom = 1.1 * (1 + speed * i)                       # crop shrinks -> scene grows
        cw, ch = sw / zoom, sh / zoom
        x0 = vx - cw / 2 + 0.02 * sw * np.sin(i / 6.0)
        y0 = vy - 0.45 * ch
        sx, sy = scale * width / cw, scale * height / ch  # warp at 2x, then area-downsample (no aliasing)
        m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
        big = cv2.warpAffine(scene, m, (scale * width, scale * height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA))
    return frames
