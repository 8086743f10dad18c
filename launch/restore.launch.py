"""Start restore_node (a lifecycle node) with the shipped params file; launch arguments override parameters.

    ros2 launch smcvae_ros restore.launch.py
    ros2 launch smcvae_ros restore.launch.py namespace:=vehicle backend:=tensorrt \
        image_topics:=/cam_front/image_raw,/cam_rear/image_raw params_file:=/etc/smcvae/restore.yaml
    ros2 launch smcvae_ros restore.launch.py autostart:=false    # a lifecycle manager configures/activates

An empty override (the default) leaves the value from params_file in place.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = 'smcvae_ros'
DEFAULT_PARAMS_FILE = os.path.join(get_package_share_directory(PACKAGE), 'config', 'restore.yaml')


def _topics(text: str) -> list:
    """'/a/image_raw,/b/image_raw' or "['/a/image_raw', '/b/image_raw']" -> list of topics."""
    return [t.strip().strip('\'"') for t in text.strip().strip('[]').split(',') if t.strip().strip('\'"')]


def _restore_node(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {}
    if arg('model_path'):
        overrides['model_path'] = arg('model_path')
    if arg('backend'):
        overrides['backend'] = arg('backend')
    if arg('image_topics'):
        overrides['image_topics'] = _topics(arg('image_topics'))
    if arg('autostart'):
        overrides['autostart'] = arg('autostart').lower() in ('true', '1', 'yes')
    return [LifecycleNode(
        package=PACKAGE,
        executable='restore_node',
        name='restore_node',
        namespace=arg('namespace'),
        parameters=[arg('params_file')] + ([overrides] if overrides else []),
        output='screen',
        emulate_tty=True,
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=DEFAULT_PARAMS_FILE,
                              description='restore_node parameters (ROS params YAML)'),
        DeclareLaunchArgument('model_path', default_value='',
                              description="SMCVAE weights (.safetensors); '' keeps params_file's value"),
        DeclareLaunchArgument('backend', default_value='',
                              description="auto|tensorrt|torch|onnxruntime; '' keeps params_file's value"),
        DeclareLaunchArgument('image_topics', default_value='',
                              description="comma-separated input image topics; '' keeps params_file's value"),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node'),
        DeclareLaunchArgument('autostart', default_value='',
                              description="true: configure and activate at start-up; false: wait for a "
                                          "lifecycle manager; '' keeps params_file's value (true)"),
        OpaqueFunction(function=_restore_node),
    ])
