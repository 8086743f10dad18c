"""Clip folders -> (reference, damaged, target, mask) training/evaluation samples."""
