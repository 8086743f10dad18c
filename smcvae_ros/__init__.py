"""smcvae_ros: camera-frame restoration with SMCVAE for ROS 2."""
__version__ = "0.1.0"
