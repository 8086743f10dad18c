"""Training: (reference, damaged) pair sampling, the `smcvae train` loop, ablations."""
