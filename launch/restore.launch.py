"""Start restore_node (a lifecycle node) with the shipped params file; launch arguments override parameters.

    ros2 launch smcvae_ros restore.launch.py
    ros2 launch smcvae_ros restore.launch.py namespace:=vehicle backend:=tensorrt \
        image_topics:=/cam_front/image_raw,/cam_rear/image_raw params_file:=/etc/smcvae/restore.yaml
    ros2 launch smcvae_ros restore.launch.py autostart:=false    # a lifecycle manager configures/activates
    ros2 launch smcvae_ros restore.launch.py profile:=cpu        # CPU-only vehicle (config/profile_cpu.yaml)
    ros2 launch smcvae_ros restore.launch.py dds_profile:=none   # keep the environment's DDS settings

An empty override (the default) leaves the value from params_file in place; an empty params_file is the
shipped one; a profile's file applies over params_file, overrides over both; image_topics that names
no topic (`,` or `[]`) stops the launch with a message naming it. The node runs with the shipped Fast
DDS profile for large images (config/fastdds_large_images.xml) unless the environment names its own.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from smcvae_ros.ros.launch_args import dds_environment, node_parameters

PACKAGE = 'smcvae_ros'
DEFAULT_PARAMS_FILE = os.path.join(get_package_share_directory(PACKAGE), 'config', 'restore.yaml')
ARGUMENTS = ('params_file', 'profile', 'model_path', 'backend', 'image_topics', 'namespace', 'autostart',
             'dds_profile')


def _restore_node(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    return [LifecycleNode(
        package=PACKAGE,
        executable='restore_node',
        name='restore_node',
        namespace=values['namespace'],
        parameters=node_parameters(values, DEFAULT_PARAMS_FILE),  # the rules: smcvae_ros/ros/launch_args.py
        additional_env=dds_environment(values['dds_profile'], os.path.dirname(DEFAULT_PARAMS_FILE), os.environ),
        output='screen',
        emulate_tty=True,
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=DEFAULT_PARAMS_FILE,
                              description="restore_node parameters (ROS params YAML); '' = the shipped one"),
        DeclareLaunchArgument('profile', default_value='',
                              description="a shipped parameter profile applied over params_file: cpu "
                                          "(CPU-only vehicle: half-width model at 0.7x resolution); '' = none"),
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
        DeclareLaunchArgument('dds_profile', default_value='',
                              description="Fast DDS XML profile for the node; '' = the shipped "
                                          "config/fastdds_large_images.xml unless FASTRTPS_DEFAULT_PROFILES_FILE "
                                          "is set; none = the environment's"),
        OpaqueFunction(function=_restore_node),
    ])
