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
