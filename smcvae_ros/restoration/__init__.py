"""ROS-free restoration core shared by the node, the bag tools and the benchmarks."""
from .detect import DetectSettings
from .frames import ENCODINGS, rois_to_mask
from .restorer import FrameResult, FrameStatus, RestorationSettings, Restorer

__all__ = ['DetectSettings', 'ENCODINGS', 'rois_to_mask', 'FrameResult', 'FrameStatus', 'RestorationSettings',
           'Restorer']
