"""Evaluation: classical baselines, metrics, the `smcvae eval` sweeps and their report."""
