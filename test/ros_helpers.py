"""Helpers for the DDS tests of restore_node (the process/client harness lives in smcvae_ros.cli.harness)."""
from __future__ import annotations

import contextlib

import numpy as np

from smcvae_ros.restoration import rois_to_mask
from smcvae_ros.cli.harness import Client, NodeProcess, image_msg  # noqa: F401 - NodeProcess re-exported
from smcvae_ros.ros.messages import image_msg_to_array
from smcvae_ros.ros.topics import output_topic

_clock = [1000.0]


def next_stamp(jump_s: float = 0.0) -> float:
    """Increasing header stamps, 0.1 s apart (plus an optional jump), shared by the tests of a session."""
    _clock[0] = round(_clock[0] + 0.1 + jump_s, 3)
    return _clock[0]


@contextlib.contextmanager
def running_node(name: str, overrides: dict, topics: list[str], env: dict | None = None, params=None):
    """A restore_node subprocess plus a connected client; on failure the node log is in the message."""
    node = NodeProcess(name, {'image_topics': topics, 'diagnostics_period_s': 0.2, **overrides}, env=env, params=params)
    client = Client(f'{name}_client')
    try:
        for t in topics:
            assert client.connect(t, timeout=90), f'restore_node did not come up:\n{node.log()}'
        yield node, client
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, f'restore_node exited with {rc}:\n{node.log()}'


@contextlib.contextmanager
def tiny_node(name: str, model, topics: list[str], overrides: dict | None = None):
    """running_node() with the tiny test model on the torch CPU backend (plus parameter overrides)."""
    params = {'model_path': str(model), 'backend': 'torch', 'device': 'cpu', **(overrides or {})}
    with running_node(name, params, topics) as node_client:
        yield node_client


def clear(client: Client, topic: str, frame: np.ndarray, encoding: str = 'rgb8', stamp: float | None = None):
    """No active failure and a fresh healthy reference for the camera; returns send()'s result."""
    client.send_health(topic, topic)
    return send(client, topic, frame, encoding, stamp)


def pixels(msg) -> np.ndarray:
    return image_msg_to_array(msg).copy()


def damage(frame: np.ndarray, rois, value: int = 0) -> np.ndarray:
    """The frame with its failed ROIs overwritten (a dead sensor region)."""
    out = frame.copy()
    out[rois_to_mask(rois, *frame.shape[:2])] = value
    return out


def assert_same_header(out, msg) -> None:
    assert out.header.stamp.sec == msg.header.stamp.sec and out.header.stamp.nanosec == msg.header.stamp.nanosec
    assert out.header.frame_id == msg.header.frame_id
    assert (out.encoding, out.height, out.width) == (msg.encoding, msg.height, msg.width)


def send(client: Client, topic: str, frame: np.ndarray, encoding: str = 'rgb8', stamp: float | None = None,
         frame_id: str = 'cam_optical'):
    """Publish a frame and return (input msg, output msg, mask array | None)."""
    msg = image_msg(frame, encoding, next_stamp() if stamp is None else stamp, frame_id)
    out, mask, _ = client.send_frame(topic, msg)
    assert_same_header(out, msg)
    return msg, out, (pixels(mask) if mask is not None else None)


def settled_status(client: Client, topic: str, timeout: float = 10.0) -> dict:
    """The node's /diagnostics values for a camera once they count every output we received."""
    out = output_topic(topic, 'image_restored')
    ok = client.wait_for(lambda: int(client.status(topic).get('frames_out', -1)) == len(client.received[out]), timeout)
    assert ok, f'node status for {topic} never caught up with {len(client.received[out])} outputs: ' \
               f'{client.status(topic)}'
    return client.status(topic)
