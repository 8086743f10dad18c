"""`python -m smcvae_ros.cli ...` (also what torchrun runs)."""
import sys

from . import main

sys.exit(main())
