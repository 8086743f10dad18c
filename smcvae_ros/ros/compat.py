"""The only place that knows ROS 2 distro differences (Humble vs Iron/Jazzy and later).

- QoS event callbacks: `rclpy.event_handler` (Iron+) was `rclpy.qos_event` in Humble.
- Applying parameters after they are set: `Node.add_post_set_parameters_callback` arrived in Iron; on
  Humble the node's own `add_on_set_parameters_callback` validates and, when that succeeds, applies.
- Keeping DDS discovery on this host: `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` (Iron+; Jazzy warns that
  `ROS_LOCALHOST_ONLY` is deprecated) vs `ROS_LOCALHOST_ONLY=1` (Humble, which ignores the range variable).

`python -m smcvae_ros.ros.compat` prints the shell lines that isolate discovery (used by `.ci/run`).

Reviewed against rclpy (ros2/rclpy) and its history, since no humble-branch tree was retrievable:
rclpy/rclpy/qos_event.py before Iron (SubscriptionEventCallbacks(*, deadline, incompatible_qos,
liveliness, message_lost, use_default_callbacks)) and in Iron+ (a shim that re-exports event_handler and
warns); rclpy/test/test_qos_event.py of the pybind11 era (Humble) importing it from rclpy.qos_event;
rclpy PR #966 (pre/post-set parameter callbacks, July 2022) and #1058 (qos_event -> event_handler,
Jan 2023), rcl #1023 / rmw #338 (ROS_AUTOMATIC_DISCOVERY_RANGE) and rcl #1069 (ROS_LOCALHOST_ONLY still
wins while deprecated): all after Humble branched (May 2022), all in Iron's release notes.
Importing this module loads no rclpy, so the discovery helpers run before rclpy reads the environment.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, MutableMapping

LEGACY_DISTROS = ('foxy', 'galactic', 'humble')   # before Iron: qos_event, no post-set callback, LOCALHOST_ONLY
RANGE_VAR, LOCALHOST_ONLY_VAR = 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY'


def legacy_distro(distro: str | None = None) -> bool:
    """True on Humble and older. `ROS_DISTRO` (set by /opt/ros/<distro>/setup.bash) decides; without it
    (rclpy from PyPI wheels) the installed rclpy does: Iron+ ships rclpy/event_handler.py."""
    distro = (distro if distro is not None else os.environ.get('ROS_DISTRO', '')).strip().lower()
    if distro:
        return distro in LEGACY_DISTROS
    spec = importlib.util.find_spec('rclpy')     # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return False
    return not any((Path(p) / 'event_handler.py').is_file() for p in spec.submodule_search_locations)


def localhost_discovery_env(distro: str | None = None) -> dict[str, str | None]:
    """Environment changes that keep DDS discovery on this host (None = unset the variable)."""
    if legacy_distro(distro):
        return {LOCALHOST_ONLY_VAR: '1', RANGE_VAR: None}
    return {RANGE_VAR: 'LOCALHOST', LOCALHOST_ONLY_VAR: None}


def isolate_discovery(environ: MutableMapping[str, str] | None = None, distro: str | None = None) -> None:
    """Apply localhost_discovery_env to `environ` (default os.environ); a value already set for the
    distro's own variable (e.g. ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET) is kept."""
    environ = os.environ if environ is None else environ
    for name, value in localhost_discovery_env(distro).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ.setdefault(name, value)


def shell_exports(distro: str | None = None) -> str:
    """`export`/`unset` lines for a shell: eval "$(python -m smcvae_ros.ros.compat)"."""
    return '\n'.join(f'unset {name}' if value is None else f'export {name}={value}'
                     for name, value in localhost_discovery_env(distro).items())


def __getattr__(name: str):
    """`from .compat import SubscriptionEventCallbacks`: rclpy.event_handler's (Iron+) or
    rclpy.qos_event's (Humble); resolved on first use so importing this module loads no rclpy."""
    if name != 'SubscriptionEventCallbacks':
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:
        from rclpy.qos_event import SubscriptionEventCallbacks
    return SubscriptionEventCallbacks


def add_parameter_callbacks(node, validate: Callable, apply: Callable[[list], None]) -> None:
    """Register `validate(params) -> SetParametersResult` and `apply(params)`, which runs only for
    accepted changes. `apply` must read the values from `params`: on Humble it runs inside the set
    call, before the node stores them (and rclpy calls the node's on-set callbacks in turn, so this
    must be the node's only one)."""
    if hasattr(node, 'add_post_set_parameters_callback'):
        node.add_on_set_parameters_callback(validate)
        node.add_post_set_parameters_callback(apply)
        return

    def validate_then_apply(params):
        result = validate(params)
        if result.successful:
            apply(params)
        return result

    node.add_on_set_parameters_callback(validate_then_apply)


if __name__ == '__main__':
    print(shell_exports())
