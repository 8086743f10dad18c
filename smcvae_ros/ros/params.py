"""restore_node parameters: one table of names, defaults, ranges and descriptions.

The table is plain data (no rclpy import at module level) so the static tests and docs can read it
without a ROS graph. Startup-only parameters (topics, QoS, backend, model) are declared read-only:
change them in the params file and restart; tunable ones take effect on the next frame.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.base import MAX_BATCH, PRECISIONS
from ..restoration import DetectSettings, RestorationSettings
from ..restoration.restorer import SCALE_RANGE
from .topics import camera_input, is_output_topic

RELIABILITY = ('reliable', 'best_effort')
BACKENDS = ('auto', 'tensorrt', 'torch', 'onnxruntime')


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    tunable: bool = False                 # False: read-only after startup
    range: tuple | None = None            # (min, max) inclusive for numbers
    choices: tuple[str, ...] | None = None


_RS, _DS = RestorationSettings(), DetectSettings()

PARAMS: tuple[Param, ...] = (
    Param('autostart', True, 'Configure and activate at start-up (false: wait in unconfigured for a lifecycle '
          'manager: ros2 lifecycle set <node> configure / activate).'),
    Param('image_topics', ['/camera/image_raw'],
          'Input topics, one per camera: sensor_msgs/Image, or sensor_msgs/CompressedImage (jpeg/png) for a '
          'topic ending in /compressed. Outputs (raw Image) replace the last path component of the camera '
          'topic: /ns/image_raw[/compressed] -> /ns/image_restored, /ns/restoration_mask, '
          '/ns/restoration_uncertainty.'),
    Param('diagnostics_topic', '/camera_health',
          'DiagnosticArray with one status per camera (hardware_id = image topic or its namespace); '
          'WARN/ERROR + KeyValue failed_rois="x,y,w,h;..." (at most 2048 rectangles, 40960 characters) marks regions '
          'failed, WARN/ERROR without it a failure that is passed through, STALE the whole frame, OK clears.'),
    Param('model_path', '', "SMCVAE weights (.safetensors, JSON config beside it); '' = the shipped model, a "
          "bare file name = that shipped model."),
    Param('backend', 'auto', 'Inference backend; falls back along the auto order if it cannot load.',
          choices=BACKENDS),
    Param('device', 'auto', "'auto', 'cpu', 'cuda' or 'cuda:N'."),
    Param('precision', 'auto', 'auto: fp16 on GPU backends (TensorRT, torch CUDA), on onnxruntime CPU int8 weight '
          'MatMuls where the CPU has int8 dot-product instructions (VNNI, Arm dotprod), else fp32; fp16, fp32; int8: '
          'int8 MatMuls on onnxruntime CPU on any CPU. torch CPU runs fp32.',
          choices=PRECISIONS),
    Param('max_batch', MAX_BATCH, 'Largest batch of model tiles per inference call (TensorRT engine profile).',
          range=(1, 256)),
    Param('engine_cache_dir', '', "Where TensorRT engines are cached; '' = backend default."),
    Param('force_engine_rebuild', False, 'Rebuild the TensorRT engine even if a cached one matches.'),
    Param('qos_depth', 5, 'History depth of the image subscriptions and output publishers.', range=(1, 100)),
    Param('qos_reliability', 'reliable',
          'Output publishers. reliable matches both reliable and best_effort subscribers.', choices=RELIABILITY),
    Param('input_qos_reliability', 'reliable',
          'Image subscriptions. A reliable subscription does not match a best_effort camera driver '
          '(e.g. SensorDataQoS): set best_effort for those (the node warns on an incompatible publisher).',
          choices=RELIABILITY),
    Param('max_reference_age_s', _RS.max_reference_age_s,
          'Older reference (last healthy frame, by header stamps) -> the frame is passed through and flagged.',
          tunable=True, range=(0.0, 3600.0)),
    Param('self_detect', _RS.self_detect,
          'Also detect failed patches in the image itself (black, saturated, frozen); for cameras without '
          'health diagnostics.', tunable=True),
    Param('dark_level', _DS.dark_level, 'self_detect: a patch whose every value is <= this is dead black.',
          tunable=True, range=(0, 255)),
    Param('bright_level', _DS.bright_level, 'self_detect: a patch whose every value is >= this is saturated.',
          tunable=True, range=(0, 255)),
    Param('frozen', _DS.frozen, 'self_detect: a patch bit-identical to the previous frame is failed.', tunable=True),
    Param('frozen_min_std', _DS.frozen_min_std, 'self_detect: ...only if its std is >= this (flat sky is not frozen).',
          tunable=True, range=(0.0, 255.0)),
    Param('tile_overlap', _RS.tile_overlap,
          'Pixels shared by neighbouring model tiles, feather-blended (0 = no overlap: fewer tiles, seams possible).',
          tunable=True, range=(0, 31)),
    Param('flow_scale', _RS.flow_scale,
          'Resolution factor of the optical flow behind the aligned reference (0.5 = half resolution: faster).',
          tunable=True, range=SCALE_RANGE),
    Param('process_scale', _RS.process_scale,
          'Resolution factor at which cues and model run (0.5 = half resolution: ~3x cheaper on CPU, '
          'softer fills); the result is upscaled into the failed pixels only.', tunable=True, range=SCALE_RANGE),
    Param('publish_mask', True, 'Publish /ns/restoration_mask (mono8, 255 = synthesized) for each restored frame '
          '(same stamp; no mask = nothing synthesized).',
          tunable=True),
    Param('publish_uncertainty', False,
          'Publish /ns/restoration_uncertainty (32FC1 per-pixel variance) for restored frames; costs '
          'uncertainty_samples extra decoder passes (rejected on a backend that cannot sample).', tunable=True),
    Param('uncertainty_samples', 8, 'Posterior samples for the uncertainty map.', tunable=True, range=(2, 64)),
    Param('diagnostics_period_s', 1.0, 'Period of the node status on /diagnostics.', tunable=True,
          range=(0.05, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMS}


def defaults() -> dict:
    return {p.name: p.default for p in PARAMS}


def descriptor(p: Param):
    """rcl_interfaces ParameterDescriptor with type, range and read-only flag."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_STRING_ARRAY}
    text = p.description + ('' if p.tunable else ' (read-only: restart the node to change)')
    if p.choices:
        text += f' One of: {"|".join(p.choices)}.'
    d = ParameterDescriptor(name=p.name, type=types[type(p.default)], description=text, read_only=not p.tunable)
    if p.choices:
        d.additional_constraints = 'one of ' + '|'.join(p.choices)
    if p.range is not None and isinstance(p.default, float):
        lo, hi = (float(v) for v in p.range)
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    elif p.range is not None:
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d


def check(values: dict) -> str | None:
    """Reason why a full set of values is invalid, or None. Ranges and types are enforced by rclpy
    from the descriptors; this checks choices and what spans several parameters."""
    for name, v in values.items():
        p = BY_NAME.get(name)
        if p is not None and p.choices and v not in p.choices:
            return f'{name}={v!r} is not one of {"|".join(p.choices)}'
    topics = values.get('image_topics', [])
    if not topics or any(not t or t.endswith('/') for t in topics):
        return f'image_topics must be a non-empty list of topic names, got {topics!r}'
    cameras = [camera_input(t)[1] for t in topics]
    if len(set(cameras)) != len(cameras):
        return f'image_topics has duplicates (a camera and its /compressed count as one): {topics!r}'
    if any(is_output_topic(t) for t in topics):
        return 'an input topic ends in an output name (image_restored/restoration_mask/restoration_uncertainty)'
    if values['dark_level'] >= values['bright_level']:
        return f'dark_level ({values["dark_level"]}) must be < bright_level ({values["bright_level"]})'
    return None


def restoration_settings(values: dict, uncertainty: bool) -> RestorationSettings:
    """Restorer settings from parameter values (uncertainty: sample only when it is published)."""
    detect = DetectSettings(dark_level=values['dark_level'], bright_level=values['bright_level'],
                            frozen=values['frozen'], frozen_min_std=values['frozen_min_std'])
    return RestorationSettings(max_reference_age_s=values['max_reference_age_s'], self_detect=values['self_detect'],
                               detect=detect, uncertainty_samples=values['uncertainty_samples'] if uncertainty else 0,
                               tile_overlap=values['tile_overlap'], flow_scale=values['flow_scale'],
                               process_scale=values['process_scale'])


def backend_kwargs(values: dict) -> dict:
    """create_backend(...) keyword arguments (backends ignore the ones they do not use)."""
    return dict(name=values['backend'], model_path=values['model_path'] or None, device=values['device'],
                precision=values['precision'], max_batch=values['max_batch'],
                engine_cache_dir=values['engine_cache_dir'] or None,
                force_engine_rebuild=values['force_engine_rebuild'])
