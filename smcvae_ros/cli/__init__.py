"""`smcvae`: one command-line tool with subcommands."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules in the order `smcvae --help` lists them; each defines add_parser(sub).
SUBCOMMANDS = [
    'smcvae_ros.cli.demo',
    'smcvae_ros.training.train',
    'smcvae_ros.evaluation.evaluate',
    'smcvae_ros.cli.restore',
    'smcvae_ros.training.ablate',
    'smcvae_ros.engine.cli',
    'smcvae_ros.bag.cli',
]


def scale(text: str) -> float:
    """argparse type of --process-scale / --flow-scale: the node parameters' range."""
    from ..restoration.restorer import SCALE_RANGE
    v = float(text)
    if not SCALE_RANGE[0] <= v <= SCALE_RANGE[1]:
        raise argparse.ArgumentTypeError(f'must be in {SCALE_RANGE[0]}..{SCALE_RANGE[1]}, got {v}')
    return v


def add_process_scale(p: argparse.ArgumentParser) -> None:
    """--process-scale, as the node parameter process_scale (same range)."""
    p.add_argument('--process-scale', type=scale, default=1.0,
                   help='cues and model at this resolution factor, upscaled into the failed pixels only '
                        '(the node parameter process_scale; default: 1.0)')


def add_flow_scale(p: argparse.ArgumentParser) -> None:
    """--flow-scale, as the node parameter flow_scale (same range)."""
    p.add_argument('--flow-scale', type=scale, default=1.0,
                   help='optical flow on a downscaled frame (the node parameter flow_scale; default: 1.0)')


def frame_size(text: str) -> tuple[int, int]:
    """argparse type of a WxH option (e.g. 1280x720) -> (W, H), each at least 16."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WxH, e.g. 1280x720, got {text!r}') from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f'frame size must be at least 16x16, got {text!r}')
    return w, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='smcvae', description='SMCVAE camera-frame restoration tools')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc = args.func(args)
    return int(rc or 0)


if __name__ == '__main__':
    sys.exit(main())
