"""Camera topics: output topic names and which camera a health status's hardware_id names (no rclpy).

An input topic ending in '/compressed' is the sensor_msgs/CompressedImage transport of the camera
topic without it ('/ns/image_raw/compressed' -> camera '/ns/image_raw'); outputs and namespaces
follow the camera topic."""
from __future__ import annotations

OUTPUT_LEAVES = ('image_restored', 'restoration_mask', 'restoration_uncertainty')
COMPRESSED_SUFFIX = '/compressed'


def camera_input(topic: str) -> tuple[bool, str]:
    """Input topic -> (compressed, camera topic)."""
    if topic.endswith(COMPRESSED_SUFFIX) and len(topic) > len(COMPRESSED_SUFFIX):
        return True, topic[:-len(COMPRESSED_SUFFIX)]
    return False, topic


def output_topic(image_topic: str, leaf: str) -> str:
    """'/ns/image_raw' (or '/ns/image_raw/compressed') -> '/ns/<leaf>'; 'image_raw' -> '<leaf>'
    (relative to the node namespace)."""
    image_topic = camera_input(image_topic)[1]
    head, _, _ = image_topic.rpartition('/')
    return f'{head}/{leaf}' if head or image_topic.startswith('/') else leaf


def is_output_topic(topic: str) -> bool:
    return camera_input(topic)[1].rpartition('/')[2] in OUTPUT_LEAVES


def camera_namespace(image_topic: str) -> str:
    return camera_input(image_topic)[1].rpartition('/')[0] or '/'


def normalize(name: str) -> str:
    """Leading/trailing slashes and blanks do not matter in a hardware_id."""
    return '/' + name.strip().strip('/')


class CameraIds:
    """hardware_id -> camera image topic: the topic itself or its namespace (first camera wins)."""

    def __init__(self, topics):
        self._by_id: dict[str, str] = {}
        for topic in topics:
            self._by_id.setdefault(normalize(topic), topic)
            self._by_id.setdefault(normalize(camera_input(topic)[1]), topic)
            self._by_id.setdefault(normalize(camera_namespace(topic)), topic)

    def match(self, hardware_id: str) -> str | None:
        return self._by_id.get(normalize(str(hardware_id)))

    def known(self) -> list[str]:
        return sorted(self._by_id)
