"""One frame-handling core for the node, `smcvae bag-eval` and the benchmarks (no rclpy; duck-typed messages).

Image message fields + the camera's failure (from its last health status) in; a FrameOutcome with a
FrameStatus out. The rules, in order:
  unsupported encoding -> UNSUPPORTED_ENCODING; malformed image -> INVALID; malformed health status ->
  INVALID; WARN/ERROR without ROIs -> UNLOCATED (not a reference); ROIs not inside the image -> INVALID;
  otherwise Restorer (HEALTHY, RESTORED, NO_REFERENCE, STALE_REFERENCE, OUT_OF_ORDER); inference error ->
  ERROR for every frame of the batch. Every outcome but RESTORED publishes the input unchanged.
Unstamped frames (header stamp 0) are timed by their receive time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..restoration import FrameResult, FrameStatus, Restorer
from ..restoration.frames import failure_mask
from .health import Failure, short
from .messages import CHANNELS, MalformedMessage, image_msg_to_array


@dataclass
class Frame:
    """One input frame: camera topic, Image message, the failure in force when it arrived."""

    camera: str
    msg: object
    failure: Failure
    receive_stamp: float = 0.0     # seconds, same clock as header stamps; used when the header stamp is 0


@dataclass
class FrameOutcome:
    status: FrameStatus
    message: str = ''
    image: np.ndarray | None = None      # the decoded input (None when it could not be decoded)
    result: FrameResult | None = None    # the restorer's result, when the frame reached it

    @property
    def restored(self) -> bool:
        """True when pixels were synthesized (publish result.image, result.mask)."""
        return self.status == FrameStatus.RESTORED


def header_stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class FrameHandler:
    """Applies the rules above to batches of frames; one Restorer keeps each camera's reference."""

    def __init__(self, restorer: Restorer):
        self.restorer = restorer

    def handle(self, frames: list[Frame]) -> list[FrameOutcome]:
        """Outcomes in input order; the restorable frames of all cameras go to the model as one batch."""
        outcomes: list[FrameOutcome | None] = []
        jobs, slots = [], []
        for f in frames:
            outcome, job = self._triage(f)
            outcomes.append(outcome)
            if job is not None:
                jobs.append(job)
                slots.append(len(outcomes) - 1)
        if not jobs:
            return outcomes
        try:
            results = self.restorer.process_batch(jobs)
        except Exception as e:  # noqa: BLE001 - a failing backend must not stop the camera streams
            text = short(f'inference failed: {type(e).__name__}: {e}', 400)
            for i, job in zip(slots, jobs):
                outcomes[i] = FrameOutcome(FrameStatus.ERROR, text, job[1])
            return outcomes
        for i, job, res in zip(slots, jobs, results):
            outcomes[i] = FrameOutcome(res.status, res.message, job[1], res)
        return outcomes

    @staticmethod
    def _triage(f: Frame) -> tuple[FrameOutcome | None, tuple | None]:
        """(final outcome, None) for a frame that passes through untouched, else (None, restorer job)."""
        try:
            image = image_msg_to_array(f.msg)
        except MalformedMessage as e:
            if f.msg.encoding not in CHANNELS:
                return FrameOutcome(FrameStatus.UNSUPPORTED_ENCODING, str(e)), None
            return FrameOutcome(FrameStatus.INVALID, f'malformed image: {e}'), None
        failure = f.failure
        if failure.error:
            return FrameOutcome(FrameStatus.INVALID, failure.error, image), None
        if failure.unlocated:
            return FrameOutcome(FrameStatus.UNLOCATED, 'health status reports a failure without failed_rois: '
                                'passed through, not used as reference', image), None
        h, w = image.shape[:2]
        try:
            failed = failure_mask(failure.rois, h, w)
        except ValueError as e:
            return FrameOutcome(FrameStatus.INVALID, short(e), image), None
        stamp = header_stamp(f.msg) or f.receive_stamp
        return None, (f.camera, image, f.msg.encoding, stamp, failed, failure.whole_frame)
