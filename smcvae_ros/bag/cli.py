"""Subcommands bag-make, bag-eval, bag-play, bag-record (modules are imported when a command runs)."""
from __future__ import annotations

import importlib
import logging
import sys

from ..restoration.frames import ENCODINGS
from ..cli import add_process_scale
from .inject import EVAL_PATTERNS


def _runner(module: str):
    def run(args) -> int:
        from .io import BagError
        logging.basicConfig(level=logging.INFO if getattr(args, 'verbose', False) else logging.WARNING,
                            format='%(levelname)s %(name)s: %(message)s')
        try:
            return importlib.import_module(f'smcvae_ros.bag.{module}').run(args)
        except BagError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    return run


def _storage(p) -> None:
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='rosbag2 storage (default mcap)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output bag')


def _qos(p) -> None:
    p.add_argument('--qos-reliability', choices=('reliable', 'best_effort'), default='reliable')
    p.add_argument('--qos-depth', type=int, default=100, help='KEEP_LAST history depth')


def add_parser(sub) -> None:
    p = sub.add_parser('bag-make', help='write a rosbag2 of sensor_msgs/Image (or CompressedImage) from clip folders',
                       description='One camera per FRAMES_DIR; --topic (and --frame-id) repeat in the same order.')
    p.add_argument('frames_dirs', nargs='+', metavar='FRAMES_DIR', help='folder of frames in time order')
    p.add_argument('out_bag', metavar='OUT_BAG')
    p.add_argument('--topic', action='append', help='image topic per FRAMES_DIR (default /cam_front/image_raw)')
    p.add_argument('--frame-id', action='append', help='header.frame_id per topic (default <ns>_optical_frame)')
    p.add_argument('--fps', type=float, default=10.0)
    p.add_argument('--encoding', choices=tuple(ENCODINGS), default='rgb8')
    p.add_argument('--start-time', type=float, default=1_700_000_000.0, help='first stamp, UNIX seconds')
    p.add_argument('--start-frame', type=int, default=0, help='skip this many frames of each folder')
    p.add_argument('--max-frames', type=int, help='frames per camera')
    p.add_argument('--resize', metavar='WxH', help='resize frames, e.g. 480x270')
    p.add_argument('--compressed', nargs='?', const='jpeg', choices=('jpeg', 'png'),
                   help="write sensor_msgs/CompressedImage on '<topic>/compressed' (default codec jpeg)")
    p.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality 1..100 (default 95)')
    _storage(p)
    p.set_defaults(func=_runner('make'))

    p = sub.add_parser('bag-eval', help='inject failures into a bag, restore, write bag + report + plots')
    p.add_argument('in_bag', metavar='IN_BAG')
    p.add_argument('out_dir', metavar='OUT_DIR')
    p.add_argument('--topics', nargs='+', help='camera Image/CompressedImage topics (default: all of them but outputs)')
    p.add_argument('--model', help='model .safetensors (default: the shipped model)')
    p.add_argument('--backend', default='auto', help='auto|torch|onnxruntime|tensorrt')
    p.add_argument('--device', default='auto')
    p.add_argument('--mask-ratio', type=float, default=0.1, help='fraction of patches failed in a damaged frame')
    p.add_argument('--pattern', choices=EVAL_PATTERNS, default='random')
    p.add_argument('--damage-prob', type=float, default=0.75, help='chance that a frame after the first is damaged')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--sweep-ratios', help='also evaluate these mask ratios, e.g. 0.1,0.3,0.5 (report + plot)')
    p.add_argument('--use-recorded-diagnostics', action='store_true',
                   help="take failures from the bag's DiagnosticArray messages instead of injecting")
    p.add_argument('--diagnostics-topic', default='/camera_health')
    p.add_argument('--max-reference-age-s', type=float, default=2.0)
    add_process_scale(p)
    p.add_argument('--examples', type=int, default=3, help='side-by-side PNGs per camera')
    p.add_argument('--bag-name', default='restored_bag', help='output bag folder name inside OUT_DIR')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    _storage(p)
    p.set_defaults(func=_runner('evaluate'))

    p = sub.add_parser('bag-play', help="publish a bag's messages over rclpy with their recorded timing")
    p.add_argument('in_bag', metavar='IN_BAG')
    p.add_argument('--rate', type=float, default=1.0)
    p.add_argument('--loop', action='store_true')
    p.add_argument('--topics', nargs='+', help='topics to play (default: all)')
    p.add_argument('--wait-for-subscribers', type=float, default=5.0, metavar='S',
                   help='wait up to S seconds for a subscriber on every topic before playing')
    _qos(p)
    p.set_defaults(func=_runner('play'))

    p = sub.add_parser('bag-record', help='record topics over rclpy into a rosbag2')
    p.add_argument('out_bag', metavar='OUT_BAG')
    p.add_argument('--topics', nargs='+', required=True)
    p.add_argument('--duration', type=float, help='stop after S seconds')
    p.add_argument('--count', type=int, help='stop when every topic got N messages')
    p.add_argument('--wait', type=float, default=10.0, help='seconds to wait for the topics to appear')
    _storage(p)
    _qos(p)
    p.set_defaults(func=_runner('record'))
    for name in ('bag-make', 'bag-eval', 'bag-play', 'bag-record'):
        sub.choices[name].add_argument('-v', '--verbose', action='store_true')
