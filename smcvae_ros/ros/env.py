"""Process environment for rclpy in a venv install (used by the bag tools, the demo and the tests)."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from .compat import isolate_discovery

REPO = Path(__file__).resolve().parents[2]


def ensure_ament_prefix() -> None:
    """rclpy and get_package_share_directory find message packages through AMENT_PREFIX_PATH; in a
    venv install (the ROS 2 PyPI wheels) that prefix is the venv."""
    prefix = os.environ.get('VIRTUAL_ENV') or sys.prefix
    if prefix not in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(filter(None, [prefix, os.environ.get('AMENT_PREFIX_PATH')]))


def ros_env(domain_id: int | None = None) -> None:
    """Keep DDS on this machine (by distro, see compat), pick a random domain unless one is set, find
    the venv's messages; subprocesses of a source checkout import that checkout's smcvae_ros."""
    ensure_ament_prefix()
    isolate_discovery()
    if domain_id is not None:
        os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    elif 'ROS_DOMAIN_ID' not in os.environ:
        os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
    if (REPO / 'package.xml').is_file() and str(REPO) not in os.environ.get('PYTHONPATH', '').split(os.pathsep):
        os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
