"""`smcvae bag-eval`: inject failures into a bag's camera topics, restore them with the node's FrameHandler,
and write an output bag, a report (JSON + CSV), plots and side-by-side PNGs.

Diagnostics timing: for every camera frame one DiagnosticArray goes to the diagnostics topic (WARN with
failed_rois for a damaged frame, OK for a healthy one). Its header.stamp is the image's stamp (it
describes that frame); its bag time is the image's bag time minus a lead of half the camera's frame
interval (at most 50 ms), so on replay it reaches the node well before the frame it refers to and well
after the previous frame. With --use-recorded-diagnostics the bag's own DiagnosticArray messages are
used instead: the latest status per hardware_id (= image topic) applies to that camera's next frames.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..evaluation.baselines import copy_reference
from ..evaluation.metrics import region_scores
from ..restoration import FrameStatus, RestorationSettings, Restorer
from ..restoration.frames import to_rgb
from ..ros.handler import Frame, FrameHandler
from ..ros.health import Failure, MalformedStatus, failure_from_status, format_rois, parse_rois
from ..ros.messages import MalformedMessage
from ..ros.topics import CameraIds
from .inject import FailureSchedule
from .io import (DIAG_TYPE, IMAGE_TYPE, BagError, BagWriter, camera_topics, deserialize, failure_diagnostics,
                 image_msg, messages, open_bag, output_topics, raw_image_msg, stamp_ns)

log = logging.getLogger(__name__)
MAX_LEAD_NS = 50_000_000


@dataclass
class EvalConfig:
    ratio: float = 0.1
    pattern: str = 'random'
    seed: int = 0
    damage_prob: float = 0.75
    cameras: tuple[str, ...] = ()          # empty: every Image/CompressedImage topic that is not an output
    use_recorded_diagnostics: bool = False
    diagnostics_topic: str = '/camera_health'
    max_reference_age_s: float = 2.0
    examples: int = 3                      # side-by-side PNGs per camera
    process_scale: float = 1.0             # the node parameter


def frame_metrics(original: np.ndarray, restored: dict[str, np.ndarray], failed: np.ndarray) -> dict:
    """PSNR/SSIM of each method against the original, on the failed pixels and on the whole frame."""
    keys = ('psnr_failed', 'ssim_failed', 'psnr_frame', 'ssim_frame')
    return {f'{k}_{name}': v for name, img in restored.items()
            for k, v in zip(keys, region_scores(img, original, failed))}


class _Camera:
    def __init__(self, topic: str, cfg: EvalConfig, n_frames: int):
        self.topic = topic
        self.schedule = FailureSchedule(topic, cfg.seed, cfg.ratio, cfg.pattern, cfg.damage_prob)
        self.recorded = Failure()                       # failure from the latest recorded status
        self.reference: np.ndarray | None = None        # last healthy RGB frame (the copy baseline's source)
        self.last_t: int | None = None
        self.index = 0
        spread = np.linspace(1, max(1, n_frames - 1), cfg.examples + 2)[1:-1] if cfg.examples > 0 else []
        self.example_at = sorted({int(round(v)) for v in spread})  # frame indices for example PNGs
        self.error: str | None = None


def evaluate_bag(in_bag, backend, cfg: EvalConfig, out_bag=None, examples_dir=None, storage: str = 'mcap',
                 overwrite: bool = False, progress: bool = True) -> list[dict]:
    """Run one evaluation pass; returns per-frame rows. Writes the output bag / example PNGs when given."""
    from .report import save_example
    handler = FrameHandler(Restorer(backend, RestorationSettings(max_reference_age_s=cfg.max_reference_age_s,
                                                                 process_scale=cfg.process_scale)))
    rows: list[dict] = []
    with open_bag(in_bag) as reader:
        cams = camera_topics(reader, in_bag, cfg.cameras)
        has_diag = cfg.diagnostics_topic in {c.topic for c in reader.connections}
        if cfg.use_recorded_diagnostics and not has_diag:
            raise BagError(f'{in_bag}: --use-recorded-diagnostics but no {cfg.diagnostics_topic} topic in bag')
        if has_diag and not cfg.use_recorded_diagnostics and out_bag:
            raise BagError(f'{in_bag}: already has {cfg.diagnostics_topic}; pass --use-recorded-diagnostics '
                           'to use it or --diagnostics-topic to inject on another topic')
        counts = {c.topic: c.msgcount for c in reader.connections}
        state = {t: _Camera(t, cfg, counts[t]) for t in cams}
        ids = CameraIds(cams)
        replaced = {o for t in cams for o in output_topics(t)}  # outputs of an earlier run are rewritten
        writer = BagWriter(out_bag, storage, overwrite) if out_bag else None
        with writer or nullcontext():
            bar = tqdm(messages(reader, in_bag), total=reader.message_count, unit='msg', disable=not progress,
                       desc=f'bag-eval r={cfg.ratio:g}', leave=False)
            for conn, t, data in bar:
                if writer and conn.topic not in replaced:
                    writer.write(writer.connection(conn.topic, conn.msgtype, like=conn), t, data)
                if conn.topic == cfg.diagnostics_topic and cfg.use_recorded_diagnostics and conn.msgtype == DIAG_TYPE:
                    _apply_recorded(deserialize(data, DIAG_TYPE, conn.topic, in_bag), state, ids)
                elif conn.topic in state and state[conn.topic].error is None:
                    try:  # CompressedImage is decoded into a raw Image first
                        msg = raw_image_msg(deserialize(data, conn.msgtype, conn.topic, in_bag))
                    except MalformedMessage as e:  # like the node: an undecodable frame is dropped
                        log.warning('%s: undecodable frame dropped (not evaluated, not in the output bag): %s',
                                    conn.topic, e)
                        continue
                    row = _process(state[conn.topic], handler, msg, t, cfg, writer, examples_dir, save_example)
                    if row:
                        rows.append(row)
            if not rows:  # inside the writer: the output bag is discarded
                errors = '; '.join(f'{c.topic}: {c.error}' for c in state.values() if c.error) or 'no frames'
                raise BagError(f'{in_bag}: nothing could be evaluated ({errors})')
    return rows


def _apply_recorded(array, state: dict[str, _Camera], ids: CameraIds) -> None:
    """The latest status per camera applies to its next frames (the node's rule)."""
    for status in array.status:
        topic = ids.match(status.hardware_id)
        if topic is not None:
            state[topic].recorded = failure_from_status(status)
            if state[topic].recorded.error:
                log.warning('diagnostics status %r: %s', status.name, state[topic].recorded.error)


def _process(cam: _Camera, handler: FrameHandler, msg, t: int, cfg: EvalConfig, writer, examples_dir, save_example):
    h, w = int(msg.height), int(msg.width)
    if cfg.use_recorded_diagnostics:
        failure = cam.recorded
    else:
        rois = cam.schedule.next(h, w) if h > 0 and w > 0 else []
        try:
            failure = Failure(parse_rois(format_rois(rois)))  # the rectangles exactly as the node parses them
        except MalformedStatus as e:                          # beyond the health limits: as the node, flagged
            failure = Failure(error=str(e))
    stamp = stamp_ns(msg.header)
    t0 = time.perf_counter()
    out = handler.handle([Frame(cam.topic, msg, failure, t * 1e-9)])[0]
    if out.image is None:
        cam.error = out.message
        log.error('%s: %s; skipping this camera', cam.topic, out.message)
        return None
    image = out.image
    res = out.result
    latency_ms = (time.perf_counter() - t0) * 1e3
    if writer:
        lead = MAX_LEAD_NS if cam.last_t is None else min(MAX_LEAD_NS, (t - cam.last_t) // 2)
        if not cfg.use_recorded_diagnostics:
            writer.write_msg(cfg.diagnostics_topic, DIAG_TYPE, t - lead,
                             failure_diagnostics(msg.header, cam.topic, failure.rois))
        restored_topic, mask_topic = output_topics(cam.topic)
        writer.write_msg(restored_topic, IMAGE_TYPE, t, image_msg(res.image if out.restored else image, msg.encoding,
                                                                  msg.header))
        if out.restored:  # a mask only where pixels were synthesized
            writer.write_msg(mask_topic, IMAGE_TYPE, t, image_msg(res.mask, 'mono8', msg.header))
    cam.last_t = t
    original = to_rgb(image, msg.encoding)
    row = dict(camera=cam.topic, index=cam.index, stamp=stamp * 1e-9, status=out.status.value,
               failed_pixels=res.failed_pixels if res else 0,
               failed_fraction=float((res.mask > 0).mean()) if out.restored else 0.0,
               reference_age_s=res.reference_age_s if res else None, latency_ms=latency_ms, mask_ratio=cfg.ratio)
    if out.restored:
        px = res.mask > 0
        restored = {'smcvae': to_rgb(res.image, msg.encoding),
                    'copy': copy_reference(cam.reference, np.where(px[..., None], 0, original).astype(np.uint8), px)}
        row.update(frame_metrics(original, restored, px))
        if examples_dir and cam.example_at and cam.index >= cam.example_at[0]:
            cam.example_at.pop(0)
            save_example(examples_dir, cam.topic, cam.index, original, px, restored, row)
    elif out.status == FrameStatus.HEALTHY:
        cam.reference = original
    cam.index += 1
    return row


def parse_ratios(text: str | None) -> list[float]:
    try:
        return [float(v) for v in text.split(',') if v.strip()] if text else []
    except ValueError:
        raise BagError(f'--sweep-ratios must be comma-separated numbers, got {text!r}') from None


def run(args) -> int:
    from ..engine import create_backend, resolve_model
    from .report import (markdown_table, plot_psnr_over_time, plot_psnr_vs_ratio, summarize_by_camera,
                         write_reports)
    out_dir = Path(args.out_dir)
    ratios = parse_ratios(args.sweep_ratios)
    cfg = EvalConfig(ratio=args.mask_ratio, pattern=args.pattern, seed=args.seed, damage_prob=args.damage_prob,
                     cameras=tuple(args.topics or ()), use_recorded_diagnostics=args.use_recorded_diagnostics,
                     diagnostics_topic=args.diagnostics_topic, max_reference_age_s=args.max_reference_age_s,
                     examples=args.examples, process_scale=args.process_scale)
    try:
        FailureSchedule('/check', cfg.seed, cfg.ratio, cfg.pattern)  # argument errors before loading a model
    except ValueError as e:
        raise BagError(str(e)) from e
    model = resolve_model(args.model)
    if not model.is_file():
        raise BagError(f'model not found: {model} (pass --model)')
    backend, notes = create_backend(args.backend, model, args.device)
    for n in notes:
        log.warning(n)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / args.bag_name
    rows = evaluate_bag(args.in_bag, backend, cfg, out_bag, out_dir / 'examples', args.storage, args.overwrite,
                        progress=not args.quiet)
    sweep, sweep_rows = [{'mask_ratio': cfg.ratio, 'cameras': summarize_by_camera(rows)}], []
    if not cfg.use_recorded_diagnostics:
        for r in sorted(set(ratios) - {cfg.ratio}):
            extra = evaluate_bag(args.in_bag, backend, EvalConfig(**{**cfg.__dict__, 'ratio': r, 'examples': 0}),
                                 progress=not args.quiet)
            sweep.append({'mask_ratio': r, 'cameras': summarize_by_camera(extra)})
            sweep_rows += extra
    sweep.sort(key=lambda s: s['mask_ratio'])
    meta = {'input_bag': str(args.in_bag), 'output_bag': str(out_bag), 'model': str(model),
            'backend': backend.describe(), 'backend_notes': notes, 'config': dict(cfg.__dict__)}
    summary = write_reports(out_dir, meta, rows, sweep, sweep_rows)
    if any(r['status'] == 'restored' for r in rows):
        plot_psnr_over_time(out_dir / 'psnr_over_time.png', rows)
    if len(sweep) > 1:
        plot_psnr_vs_ratio(out_dir / 'psnr_vs_ratio.png', sweep)
    print(markdown_table(summary))
    print(f'wrote {out_bag}, {out_dir}/report.json, frames.csv, cameras.csv, plots and examples/')
    return 0
