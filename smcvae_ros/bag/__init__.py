"""Rosbag tools: make, play, record, evaluate."""
