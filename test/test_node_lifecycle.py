"""restore_node as a managed (lifecycle) node over real rclpy: transitions, frames only while active, reload."""
import time

import numpy as np
import pytest
from ros_helpers import NodeProcess, damage, next_stamp, pixels, settled_status

from smcvae_ros.cli.harness import Client, image_msg
from smcvae_ros.data.clips import read_rgb
from smcvae_ros.ros.topics import output_topic

pytestmark = pytest.mark.timeout(300)

CAM = '/cam_lc/image_raw'
OUT = output_topic(CAM, 'image_restored')
ROIS = [(96, 96, 64, 48)]


def unanswered(client: Client, frame: np.ndarray, wait_s: float = 2.0) -> bool:
    """Publish a frame and return True when no output with its stamp arrives within wait_s."""
    msg = image_msg(frame, 'rgb8', next_stamp(), 'cam_lc')
    client.publisher(CAM).publish(msg)
    time.sleep(wait_s)
    return client.output(OUT, (msg.header.stamp.sec, msg.header.stamp.nanosec)) is None


def test_transitions_frames_only_while_active_and_reload(tiny_model, val_frames):
    frames = [read_rgb(p) for p in val_frames[:3]]
    name = 'restore_lifecycle'
    node = NodeProcess(name, {'model_path': str(tiny_model), 'backend': 'torch', 'device': 'cpu', 'autostart': False,
                              'image_topics': [CAM], 'diagnostics_period_s': 0.2})
    client = Client(f'{name}_client')
    try:
        client.subscribe(OUT)
        client.subscribe(output_topic(CAM, 'restoration_mask'))
        assert client.lifecycle_state(name) == 'unconfigured', node.log()
        assert client.node.count_publishers(OUT) == 0                  # nothing loaded, nothing advertised
        assert unanswered(client, frames[0])
        assert client.change_state(name, 'configure')
        assert client.lifecycle_state(name) == 'inactive'
        assert client.wait_for(lambda: client.node.count_publishers(OUT) == 1, 10)
        assert unanswered(client, frames[0])                           # configured but not active
        assert client.change_state(name, 'activate') and client.lifecycle_state(name) == 'active'
        assert client.connect(CAM, 30)
        out, _, _ = client.send_frame(CAM, image_msg(frames[0], 'rgb8', next_stamp(), 'cam_lc'))
        client.send_health(CAM, CAM, rois=ROIS)
        out, mask, _ = client.send_frame(CAM, image_msg(damage(frames[1], ROIS), 'rgb8', next_stamp(), 'cam_lc'))
        assert mask is not None and pixels(mask).any()                 # restored while active

        # deactivate: frames taken are finished and published, nothing new is taken
        burst = [image_msg(damage(frames[2], ROIS), 'rgb8', next_stamp(), 'cam_lc') for _ in range(3)]
        for msg in burst:
            client.publisher(CAM).publish(msg)
        assert client.change_state(name, 'deactivate') and client.lifecycle_state(name) == 'inactive'
        st = settled_status(client, CAM)                               # the final snapshot on deactivate
        assert int(st['frames_in']) == int(st['frames_out']) + int(st['frames_dropped']) - int(st['frames_lost'])
        assert unanswered(client, frames[0])

        # cleanup releases the model; configure + activate loads it again and frames are answered
        assert client.change_state(name, 'cleanup') and client.lifecycle_state(name) == 'unconfigured'
        assert client.wait_for(lambda: client.node.count_publishers(OUT) == 0, 10)
        assert client.change_state(name, 'configure') and client.change_state(name, 'activate')
        client.forget(CAM)                                             # a new configuration counts from zero
        assert client.connect(CAM, 30)
        client.send_frame(CAM, image_msg(frames[0], 'rgb8', next_stamp(), 'cam_lc'))
        client.send_health(CAM, CAM, rois=ROIS)
        _, mask, _ = client.send_frame(CAM, image_msg(damage(frames[1], ROIS), 'rgb8', next_stamp(), 'cam_lc'))
        assert mask is not None and pixels(mask).any()
        assert node.log().count('cleaned up: model released') == 1 and node.log().count('configured: backend') == 2
        assert client.change_state(name, 'deactivate')                 # a manager may drive it to shutdown too
        assert client.change_state(name, 'shutdown') and client.lifecycle_state(name) == 'finalized'
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()                                         # SIGINT: clean exit
    assert 'Traceback' not in node.log()


def test_failed_configure_keeps_the_node_unconfigured(tiny_model):
    """A bad model under a lifecycle manager: configure fails with the reason, the node stays up."""
    name = 'restore_lifecycle_bad'
    node = NodeProcess(name, {'model_path': '/nonexistent/model.safetensors', 'autostart': False,
                              'image_topics': [CAM]})
    client = Client(f'{name}_client')
    try:
        assert client.lifecycle_state(name) == 'unconfigured', node.log()
        assert not client.change_state(name, 'configure')
        assert client.lifecycle_state(name) == 'unconfigured' and node.alive
        assert 'model weights not found' in node.log()
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()
