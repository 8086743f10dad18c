"""Thin ROS 2 layer over the restoration core."""
