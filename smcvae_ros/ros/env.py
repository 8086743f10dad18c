"""Process environment for rclpy in a venv install (used by the bag tools, the demo and the tests)."""
from __future__ import annotations

import os
import random
import sys


def ensure_ament_prefix() -> None:
    """rclpy and get_package_share_directory find message packages through AMENT_PREFIX_PATH; in a
    venv install (the ROS 2 PyPI wheels) that prefix is the venv."""
    prefix = os.environ.get('VIRTUAL_ENV') or sys.prefix
    if prefix not in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(filter(None, [prefix, os.environ.get('AMENT_PREFIX_PATH')]))


def ros_env(domain_id: int | None = None) -> None:
    """Keep DDS on this machine; pick a random domain unless one is set; find the venv's messages."""
    ensure_ament_prefix()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.pop('ROS_LOCALHOST_ONLY', None)
    if domain_id is not None:
        os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    elif 'ROS_DOMAIN_ID' not in os.environ:
        os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
