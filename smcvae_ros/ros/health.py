"""The camera-health contract (DiagnosticStatus per camera) and its limits; no rclpy, duck-typed messages.

Levels: OK = no failure; WARN/ERROR with KeyValue failed_rois='x,y,w,h;...' = those regions failed;
WARN/ERROR without failed_rois = a failure the camera cannot locate (frames pass through, flagged, and
never become the reference); STALE = the whole frame failed. Work per status is bounded: more than
MAX_ROIS rectangles or MAX_ROIS_CHARS characters make the status invalid without parsing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

FAILED_ROIS_KEY = 'failed_rois'
MAX_ROIS = 2048              # rectangles per status (parsed in ~4 ms; a 50 % random 16-px failure of 1280x720 fits)
MAX_ROIS_CHARS = 40960       # characters of failed_rois (2048 rectangles of 4-digit numbers fit)
SHOWN_ROIS = 4               # rectangles echoed in /diagnostics
MAX_TEXT = 160               # characters of any message-derived string in logs and /diagnostics


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class MalformedStatus(ValueError):
    pass


def short(text, limit: int = MAX_TEXT) -> str:
    """str(text) cut to `limit` characters (message-derived strings never flood logs or /diagnostics)."""
    text = str(text)
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} chars)'


def parse_rois(text: str) -> list[tuple[int, int, int, int]]:
    """'x,y,w,h;x,y,w,h' -> [(x,y,w,h), ...]; MalformedStatus on bad syntax, sizes or limits."""
    if len(text) > MAX_ROIS_CHARS:
        raise MalformedStatus(f'failed_rois has {len(text)} characters (limit {MAX_ROIS_CHARS})')
    parts = [p.strip() for p in text.split(';') if p.strip()]
    if len(parts) > MAX_ROIS:
        raise MalformedStatus(f'failed_rois has {len(parts)} rectangles (limit {MAX_ROIS})')
    rois = []
    for part in parts:
        try:
            vals = [int(float(v)) for v in part.split(',')]
        except ValueError:
            raise MalformedStatus(f'failed_rois entry {short(part, 40)!r} is not numeric') from None
        if len(vals) != 4 or vals[2] <= 0 or vals[3] <= 0:
            raise MalformedStatus(f'failed_rois entry {short(part, 40)!r} must be x,y,w,h with w,h > 0')
        rois.append(tuple(vals))
    return rois


def format_rois(rois) -> str:
    return ';'.join(f'{x},{y},{w},{h}' for x, y, w, h in rois)


def level_value(level) -> int:
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


@dataclass
class Failure:
    """The active failure of one camera, from its last health status."""

    rois: list = field(default_factory=list)
    whole_frame: bool = False
    unlocated: bool = False    # WARN/ERROR without failed_rois
    error: str = ''            # the status was malformed: frames pass through, flagged

    def describe(self) -> str:
        if self.error:
            return 'invalid'
        if self.unlocated:
            return 'unlocated'
        return 'whole_frame' if self.whole_frame else ('rois' if self.rois else 'none')

    @property
    def healthy(self) -> bool:
        return self.describe() == 'none'

    def rois_summary(self) -> str:
        """The first SHOWN_ROIS rectangles, then how many more (short enough for /diagnostics)."""
        more = len(self.rois) - SHOWN_ROIS
        return format_rois(self.rois[:SHOWN_ROIS]) + (f';... ({more} more)' if more > 0 else '')


def failure_from_status(status) -> Failure:
    """DiagnosticStatus -> Failure; a malformed status gives Failure(error=reason), never an exception."""
    try:
        level = level_value(status.level)
        if level == Level.OK:
            return Failure()
        if level == Level.STALE:
            return Failure(whole_frame=True)
        if level not in (Level.WARN, Level.ERROR):
            raise MalformedStatus(f'unknown diagnostic level {level}')
        text = next((kv.value for kv in status.values if kv.key == FAILED_ROIS_KEY), '')
        rois = parse_rois(text)
        return Failure(rois) if rois else Failure(unlocated=True)
    except Exception as e:  # noqa: BLE001 - whatever is wrong with a status only flags its camera
        return Failure(error=f'malformed health status: {short(e)}')
