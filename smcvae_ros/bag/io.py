"""rosbag2 reading/writing on `rosbags` (no ROS install): checked readers, atomic writers, message builders.

Bags are written as rosbag2 v9 directories (mcap by default, sqlite3 on request) with the ROS 2 Jazzy
typestore. A writer works in a hidden `.NAME.partial-PID` folder beside the target and renames the bag
into place only after it was closed cleanly, so an interrupted run never leaves a complete-looking bag.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ..ros.health import FAILED_ROIS_KEY, Level, format_rois
from ..ros.messages import decode_compressed, encode_compressed, fill_image_msg
from ..ros.topics import camera_namespace, is_output_topic, output_topic

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
DIAG_TYPE = 'diagnostic_msgs/msg/DiagnosticArray'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

_T = TYPESTORE.types
Image, Header, Time = _T[IMAGE_TYPE], _T['std_msgs/msg/Header'], _T['builtin_interfaces/msg/Time']
CompressedImage = _T[COMPRESSED_TYPE]
DiagnosticArray, DiagnosticStatus, KeyValue = (_T[DIAG_TYPE], _T['diagnostic_msgs/msg/DiagnosticStatus'],
                                               _T['diagnostic_msgs/msg/KeyValue'])


class BagError(RuntimeError):
    """A bag could not be read or written; the message names the file and topic."""


# --- topics and time -------------------------------------------------------------------------------
def output_topics(topic: str) -> tuple[str, str]:
    """(restored image topic, restoration mask topic) of a camera, named as restore_node names them."""
    return output_topic(topic, 'image_restored'), output_topic(topic, 'restoration_mask')


def frame_id_for(topic: str) -> str:
    """'/cam_front/image_raw' -> 'cam_front_optical_frame' (REP 103 optical frame of the camera)."""
    ns = camera_namespace(topic).strip('/').replace('/', '_')
    return f'{ns or "camera"}_optical_frame'


def to_time(ns: int):
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_ns_raw(cdr: bytes) -> int:
    """header.stamp of a serialized message whose first field is a std_msgs/Header (Image,
    CompressedImage), read from the CDR bytes without deserializing the payload."""
    order = '<' if cdr[1] == 1 else '>'                 # encapsulation: 0x0001 CDR_LE, 0x0000 CDR_BE
    sec, nanosec = np.frombuffer(bytes(cdr[4:12]), np.dtype(f'{order}i4'), 2)
    return int(sec) * 1_000_000_000 + int(np.uint32(nanosec))


# --- messages --------------------------------------------------------------------------------------
def image_msg(array: np.ndarray, encoding: str, header):
    """rosbags Image from an (H,W[,C]) uint8 array (data as the numpy array rosbags serializes)."""
    msg = fill_image_msg(Image(header=header, height=0, width=0, encoding='', is_bigendian=0, step=0,
                               data=np.zeros(0, np.uint8)), array, encoding)
    msg.data = np.frombuffer(msg.data, np.uint8)
    return msg


def raw_image_msg(msg):
    """A rosbags Image as it is, or a CompressedImage decoded into a rosbags Image (header kept);
    MalformedMessage when the compressed data cannot be decoded."""
    if not hasattr(msg, 'format'):
        return msg
    array, encoding = decode_compressed(msg.format, msg.data)
    return image_msg(array, encoding, msg.header)


def compressed_msg(array: np.ndarray, encoding: str, header, codec: str = 'jpeg', quality: int = 95):
    """rosbags CompressedImage of an (H,W[,C]) uint8 array, `format` as image_transport writes it."""
    fmt, data = encode_compressed(array, encoding, codec, quality)
    return CompressedImage(header=header, format=fmt, data=np.frombuffer(data, np.uint8))


def failure_diagnostics(header, topic: str, rois, whole_frame: bool = False):
    """DiagnosticArray in the node's contract: hardware_id = image topic, WARN + failed_rois 'x,y,w,h;...'
    for a damaged frame, STALE for a whole failed frame, OK (no ROIs) for a healthy one."""
    level = Level.STALE if whole_frame else (Level.WARN if rois else Level.OK)
    status = DiagnosticStatus(level=level, name=f'smcvae_bag_eval: {topic}',
                              message='injected patch failure' if level else 'ok', hardware_id=topic,
                              values=[KeyValue(key=FAILED_ROIS_KEY, value=format_rois(rois))])
    return DiagnosticArray(header=header, status=[status])


def serialize(msg, msgtype: str) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msgtype))


def deserialize(data: bytes, msgtype: str, topic: str, path) -> object:
    try:
        return TYPESTORE.deserialize_cdr(data, msgtype)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt message
        raise BagError(f'{path}: cannot decode a {msgtype} message on {topic}: {type(e).__name__}: {e}') from e


# --- reading ---------------------------------------------------------------------------------------
def open_reader(path) -> Reader:
    """An open rosbags Reader of a rosbag2 (folder, .mcap or .db3); BagError if missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: bag not found')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # noqa: BLE001 - rosbags raises several types for broken bags
        raise BagError(f'{path}: cannot open bag ({type(e).__name__}: {e})') from e
    return reader


@contextmanager
def open_bag(path):
    """Open a rosbag2 for reading (context manager); BagError if missing, unreadable or empty."""
    reader = open_reader(path)
    try:
        if reader.message_count == 0 or not reader.connections:
            raise BagError(f'{path}: bag is empty (no messages)')
        yield reader
    finally:
        reader.close()


def topic_types(reader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def check_topics(reader, path, topics, msgtype: str | None = None) -> list[str]:
    """Validate requested topics exist (and have `msgtype`); returns them in order."""
    types = topic_types(reader)
    for t in topics:
        if t not in types:
            raise BagError(f'{path}: topic {t} not in bag (topics: {", ".join(sorted(types))})')
        if msgtype and types[t] != msgtype:
            raise BagError(f'{path}: topic {t} has type {types[t]}, expected {msgtype}')
    return list(topics)


def camera_topics(reader, path, requested) -> list[str]:
    """The requested camera topics (checked), or every Image/CompressedImage topic that is not a
    restore output."""
    types = topic_types(reader)
    if requested:
        for t in check_topics(reader, path, requested):
            if types[t] not in CAMERA_TYPES:
                raise BagError(f'{path}: topic {t} has type {types[t]}, expected {" or ".join(CAMERA_TYPES)}')
        return list(requested)
    cams = sorted(t for t, ty in types.items() if ty in CAMERA_TYPES and not is_output_topic(t))
    if not cams:
        listed = ', '.join(sorted(f'{t} ({ty})' for t, ty in types.items()))
        raise BagError(f'{path}: no {" or ".join(CAMERA_TYPES)} camera topics in bag (topics: {listed})')
    return cams


def messages(reader, path, connections=()):
    """Yield the reader's (connection, time, data); truncation or corruption becomes a BagError naming the file."""
    n = 0
    try:
        for item in reader.messages(connections=connections):
            n += 1
            yield item
    except BagError:
        raise
    except Exception as e:  # noqa: BLE001 - rosbags raises several types for truncated storage
        raise BagError(f'{path}: bag is truncated or corrupt after {n} messages ({type(e).__name__}: {e})') from e


# --- writing ---------------------------------------------------------------------------------------
class BagWriter:
    """Atomic rosbag2 writer: `with BagWriter(out) as w: c = w.connection(topic, type); w.write(c, t, raw)`."""

    def __init__(self, path, storage: str = 'mcap', overwrite: bool = False):
        if storage not in STORAGES:
            raise BagError(f'unknown storage {storage!r}; choose {"|".join(STORAGES)}')
        self.path, self.storage, self.overwrite = Path(path), storage, overwrite
        self.tmpdir = self.path.parent / f'.{self.path.name}.partial-{os.getpid()}'
        self.writer: Writer | None = None
        self.connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> 'BagWriter':
        if self.path.exists() and not self.overwrite:
            raise BagError(f'{self.path}: output exists (remove it or pass --overwrite)')
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir.mkdir(parents=True)
        self.writer = Writer(self.tmpdir / self.path.name, version=9, storage_plugin=STORAGES[self.storage])
        self.writer.open()
        return self

    def connection(self, topic: str, msgtype: str, like=None):
        """Connection for `topic` (created once); `like` copies msgdef/digest/QoS of an input connection."""
        if topic not in self.connections:
            if like is not None:
                conn = self.writer.add_connection(topic, msgtype, msgdef=like.msgdef.data, rihs01=like.digest,
                                                  serialization_format=like.ext.serialization_format,
                                                  offered_qos_profiles=like.ext.offered_qos_profiles)
            else:
                if msgtype not in TYPESTORE.types:
                    raise BagError(f'topic {topic}: message type {msgtype} is not in the ROS 2 Jazzy typestore')
                conn = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self.connections[topic], self.counts[topic] = conn, 0
        return self.connections[topic]

    def write(self, conn, timestamp_ns: int, data) -> None:
        self.writer.write(conn, int(timestamp_ns), data)
        self.counts[conn.topic] += 1

    def write_msg(self, topic: str, msgtype: str, timestamp_ns: int, msg) -> None:
        self.write(self.connection(topic, msgtype), timestamp_ns, serialize(msg, msgtype))

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None:
                self.writer.abort()
                return False
            self.writer.close()
            old = self.path.parent / f'.{self.path.name}.old-{os.getpid()}'
            if self.path.exists():  # overwrite: swap in the finished bag, then drop the old one
                self.path.rename(old)
            (self.tmpdir / self.path.name).rename(self.path)
            shutil.rmtree(old, ignore_errors=True)
            return False
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
