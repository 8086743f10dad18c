"""Launch arguments of launch/restore.launch.py -> restore_node's `parameters` list.

Kept free of `launch` imports so the rules are unit-tested where launch is not installed:
- `params_file` empty -> the shipped config/restore.yaml; a path that is not a file -> error.
- `profile` empty -> nothing; a name -> the shipped config/profile_<name>.yaml applied over the params
  file (`cpu`: CPU-only vehicles); a name with no such file -> error listing the shipped profiles.
- `model_path`, `backend`, `image_topics` empty -> the params file's value stays.
- `image_topics` that names no topic (`,`, `[]`, `['']`) -> error naming the argument.
- `autostart` empty -> the params file's value; true/1/yes or false/0/no -> bool; else error.
- `dds_profile` (not a parameter: the node's environment, `dds_environment`) empty -> the shipped
  config/fastdds_large_images.xml unless the environment names a Fast DDS profile already; `none`
  -> the environment as it is; a path that is not a file -> error.
"""
from __future__ import annotations

import os
from typing import Mapping

STRING_OVERRIDES = ('model_path', 'backend')
DDS_PROFILE_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')  # Fast DDS 2.x, 3.x
DDS_PROFILE = 'fastdds_large_images.xml'


class LaunchArgumentError(ValueError):
    """A launch argument that cannot be turned into node parameters (launch prints the message)."""


def parse_topics(text: str) -> list[str]:
    """'/a/image_raw,/b/image_raw' or "['/a/image_raw', '/b/image_raw']" -> ['/a/image_raw', '/b/image_raw']."""
    items = (t.strip().strip('\'"').strip() for t in text.strip().strip('[]').split(','))
    return [t for t in items if t]


def profile_file(name: str, config_dir: str) -> str:
    """The shipped profile `name` (config/profile_<name>.yaml in config_dir)."""
    path = os.path.join(config_dir, f'profile_{name}.yaml')
    if not os.path.isfile(path):
        shipped = sorted(f[len('profile_'):-len('.yaml')] for f in os.listdir(config_dir)
                         if f.startswith('profile_') and f.endswith('.yaml'))
        raise LaunchArgumentError(f'profile:={name!r} is not a shipped profile (shipped: {", ".join(shipped)})')
    return path


def node_parameters(args: Mapping[str, str], shipped_params_file: str) -> list:
    """The Node action's `parameters`: the params file, the profile's file, then a dict of the
    non-empty overrides (later entries win)."""
    params_file = args.get('params_file', '').strip() or shipped_params_file
    if not os.path.isfile(params_file):
        raise LaunchArgumentError(f'params_file:={params_file!r} is not a file')
    profile = args.get('profile', '').strip()
    files = [params_file] + ([profile_file(profile, os.path.dirname(shipped_params_file))] if profile else [])
    overrides = {name: args[name].strip() for name in STRING_OVERRIDES if args.get(name, '').strip()}
    topics_text = args.get('image_topics', '').strip()
    if topics_text:
        topics = parse_topics(topics_text)
        if not topics:
            raise LaunchArgumentError(
                f'image_topics:={topics_text!r} names no topic; give comma-separated topics '
                '(image_topics:=/cam_front/image_raw,/cam_rear/image_raw) or leave it out to keep '
                "params_file's image_topics")
        overrides['image_topics'] = topics
    autostart = args.get('autostart', '').strip().lower()
    if autostart:
        if autostart not in ('true', '1', 'yes', 'false', '0', 'no'):
            raise LaunchArgumentError(f'autostart:={autostart!r} must be true or false')
        overrides['autostart'] = autostart in ('true', '1', 'yes')
    return files + ([overrides] if overrides else [])


def dds_environment(value: str, config_dir: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for the node's Fast DDS profile (launch argument `dds_profile`): the
    given file, or the shipped config/fastdds_large_images.xml when the argument is empty and the
    environment names no profile of its own; {} for `none`."""
    value = value.strip()
    if value.lower() == 'none' or (not value and any(environ.get(v) for v in DDS_PROFILE_VARS)):
        return {}
    path = value or os.path.join(config_dir, DDS_PROFILE)
    if not os.path.isfile(path):
        raise LaunchArgumentError(f'dds_profile:={value!r} is not a file' if value else f'{path} is missing')
    return {v: path for v in DDS_PROFILE_VARS}
