"""Per-camera bookkeeping of restore_node and its /diagnostics status (one DiagnosticStatus per camera)."""
from __future__ import annotations

from dataclasses import dataclass

from .health import Failure, Level, short


@dataclass
class CameraStats:
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0       # never published: lost (below), superseded beyond MAX_SUPERSEDED, publish failed
    frames_superseded: int = 0    # damaged, replaced in the pending slot: published unchanged (flagged)
    frames_lost: int = 0          # reported lost by the middleware (subscription message-lost event)
    frames_restored: int = 0
    frames_flagged: int = 0       # published with failures not restored (pass-through)
    frames_undecodable: int = 0   # CompressedImage that could not be decoded (nothing published)
    health_statuses: int = 0      # camera health statuses applied
    errors: int = 0               # inference errors (frames passed through)
    last_status: str = ''
    last_message: str = ''
    last_latency_ms: float = 0.0
    last_stage_ms: str = ''       # stage times of the last restored frame (stage_summary)
    last_failed_pixels: int = 0
    last_reference_age_s: float | None = None
    last_batch_size: int = 0
    reported_dropped: int = 0     # frames_dropped at the previous report
    reported_superseded: int = 0
    reported_errors: int = 0
    reported_undecodable: int = 0


STAGES = ('wait', 'align', 'tile', 'infer', 'merge', 'publish')


def stage_summary(timings: dict) -> str:
    """'wait 0.4, align 97.9, tile 8.6, infer 80.1, merge 15.8, publish 3.1': ms per stage of a restored
    frame (wait: receive -> handling; align..merge: Restorer; publish: image, mask, uncertainty)."""
    return ', '.join(f'{k} {timings[k]:.1f}' for k in STAGES if k in timings)


def parse_stages(text: str) -> dict[str, float]:
    """stage_summary's text -> {stage: ms}."""
    return {k: float(v) for k, v in (item.split() for item in text.split(', ') if item)}


def camera_status(name: str, hardware_id: str, stats: CameraStats, failure: Failure, backend: str,
                  backend_notes: list[str], pending: bool):
    """Build the DiagnosticStatus of one camera (and mark drops/errors as reported)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    new_drops = stats.frames_dropped - stats.reported_dropped
    new_superseded = stats.frames_superseded - stats.reported_superseded
    new_errors = stats.errors - stats.reported_errors
    new_undecodable = stats.frames_undecodable - stats.reported_undecodable
    stats.reported_dropped, stats.reported_errors = stats.frames_dropped, stats.errors
    stats.reported_undecodable, stats.reported_superseded = stats.frames_undecodable, stats.frames_superseded
    if new_errors:
        level, message = Level.ERROR, f'{new_errors} inference error(s): {stats.last_message}'
    elif stats.frames_in == 0:
        level, message = Level.STALE, 'no frames received yet'
    elif new_undecodable or stats.last_status == 'undecodable':
        level, message = Level.WARN, f'{new_undecodable} undecodable compressed frame(s) dropped: {stats.last_message}'
    elif stats.last_status.startswith('passthrough'):
        level, message = Level.WARN, f'{stats.last_status}: {stats.last_message}'
    elif new_drops:
        level, message = Level.WARN, f'{new_drops} frame(s) dropped (lost in DDS, or a backlog of superseded frames)'
    elif new_superseded:
        level, message = Level.WARN, (f'{new_superseded} damaged frame(s) passed through superseded (a newer frame '
                                      'came before the worker was free)')
    else:
        level, message = Level.OK, stats.last_status
    age = stats.last_reference_age_s
    values = {
        'backend': backend,
        'backend_notes': '; '.join(backend_notes),
        'failure': failure.describe(),
        'failed_rois': failure.rois_summary(),
        'failed_roi_count': len(failure.rois),
        'failure_error': failure.error,
        'health_statuses': stats.health_statuses,
        'last_status': stats.last_status,
        'last_message': short(stats.last_message),
        'last_latency_ms': f'{stats.last_latency_ms:.2f}',
        'last_stage_ms': stats.last_stage_ms,
        'failed_pixels': stats.last_failed_pixels,
        'reference_age_s': '' if age is None else f'{age:.3f}',
        'frames_in': stats.frames_in,
        'frames_out': stats.frames_out,
        'frames_dropped': stats.frames_dropped,
        'frames_superseded': stats.frames_superseded,
        'frames_lost': stats.frames_lost,
        'frames_restored': stats.frames_restored,
        'frames_flagged': stats.frames_flagged,
        'frames_undecodable': stats.frames_undecodable,
        'inference_errors': stats.errors,
        'pending': int(pending),
        'last_batch_size': stats.last_batch_size,
    }
    return DiagnosticStatus(level=bytes([level]), name=name, message=short(message), hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def status_values(status) -> dict[str, str]:
    """KeyValues of a DiagnosticStatus as a dict (for tests, the demo and the benchmarks)."""
    return {kv.key: kv.value for kv in status.values}
