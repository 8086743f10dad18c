"""smcvae_ros.ros.compat on this machine's rclpy (Jazzy wheels), its Humble branches with the Iron+ API taken
away, and a check that no other module uses an API that Humble lacks."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from smcvae_ros.ros import compat

REPO = Path(__file__).resolve().parent.parent

# Iron+ only (absent from Humble's rclpy/rcl) or distro-specific: allowed in smcvae_ros/ros/compat.py alone.
DISTRO_SPECIFIC = [r'rclpy\.event_handler', r'\bevent_handler\b', r'rclpy\.qos_event', r'\bqos_event\b',
                   r'add_(pre|post)_set_parameters_callback', r'remove_(pre|post)_set_parameters_callback',
                   r'ROS_AUTOMATIC_DISCOVERY_RANGE', r'ROS_LOCALHOST_ONLY', r'ROS_STATIC_PEERS',
                   r'rclpy\.type_description', r'get_type_description', r'rclpy\.service_introspection',
                   r'configure_introspection', r'rclpy\.clock_type', r'rclpy\.logging_service',
                   r'enable_logger_service']
SCANNED = ['smcvae_ros', 'launch', 'bench', 'scripts', '.ci']


def scanned_files():
    for top in SCANNED:
        for path in sorted((REPO / top).rglob('*')):
            if path.is_file() and (path.suffix in ('.py', '.sh') or path.parent.name == '.ci'):
                yield path


def test_distro_specific_api_only_in_compat():
    compat_file = REPO / 'smcvae_ros' / 'ros' / 'compat.py'
    files = list(scanned_files())
    assert compat_file in files and len(files) > 30
    hits = [f'{path.relative_to(REPO)}:{n}: {line.strip()}'
            for path in files if path != compat_file
            for n, line in enumerate(path.read_text(errors='replace').splitlines(), 1)
            if any(re.search(p, line) for p in DISTRO_SPECIFIC)]
    assert not hits, 'distro-specific ROS API outside smcvae_ros/ros/compat.py:\n' + '\n'.join(hits)


def test_scan_catches_a_jazzy_only_call(tmp_path):
    """The patterns match the forms the node used before compat existed."""
    old = ('from rclpy.event_handler import SubscriptionEventCallbacks\n'
           'self.add_post_set_parameters_callback(self._apply_params)\n'
           "os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')\n")
    assert all(any(re.search(p, line) for p in DISTRO_SPECIFIC) for line in old.splitlines())


# --- discovery isolation -----------------------------------------------------------------------------
def test_distro_detection_matches_installed_rclpy():
    """Jazzy wheels here (no ROS_DISTRO): Iron+ API; under /opt/ros/humble both say legacy."""
    import importlib.util
    assert compat.legacy_distro() is (importlib.util.find_spec('rclpy.event_handler') is None)


@pytest.mark.parametrize('distro,legacy', [('humble', True), ('Humble', True), ('foxy', True), ('iron', False),
                                           ('jazzy', False), ('kilted', False), ('rolling', False)])
def test_legacy_distro_from_ros_distro(distro, legacy, monkeypatch):
    monkeypatch.setenv('ROS_DISTRO', distro)
    assert compat.legacy_distro() is legacy


def test_legacy_distro_from_installed_rclpy_without_event_handler(tmp_path, monkeypatch):
    """No ROS_DISTRO: an rclpy package without event_handler.py (Humble's layout) is legacy."""
    import importlib.machinery
    import importlib.util
    real = Path(importlib.util.find_spec('rclpy').submodule_search_locations[0])
    humble_like = tmp_path / 'rclpy'
    humble_like.mkdir()
    for f in real.glob('*.py'):
        if f.name != 'event_handler.py':
            (humble_like / f.name).symlink_to(f)
    spec = importlib.machinery.ModuleSpec('rclpy', None, is_package=True)
    spec.submodule_search_locations = [str(humble_like)]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: spec if name == 'rclpy' else find_spec(name, *a))
    monkeypatch.delenv('ROS_DISTRO', raising=False)
    assert compat.legacy_distro() is True
    assert compat.localhost_discovery_env() == {'ROS_LOCALHOST_ONLY': '1', 'ROS_AUTOMATIC_DISCOVERY_RANGE': None}
    (humble_like / 'event_handler.py').symlink_to(real / 'event_handler.py')
    assert compat.legacy_distro() is False


def test_isolate_discovery_jazzy_and_humble():
    env = {'ROS_LOCALHOST_ONLY': '1'}
    compat.isolate_discovery(env, 'jazzy')
    assert env == {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}   # Jazzy warns about LOCALHOST_ONLY
    env = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    compat.isolate_discovery(env, 'jazzy')
    assert env == {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}       # a deliberate setting is kept
    env = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    compat.isolate_discovery(env, 'humble')
    assert env == {'ROS_LOCALHOST_ONLY': '1'}                       # Humble ignores the range variable


def test_test_session_is_isolated_for_this_distro():
    """conftest -> harness.ros_env -> compat: the variables the tests' DDS traffic runs under."""
    for name, value in compat.localhost_discovery_env().items():
        assert (name in os.environ) is (value is not None), name
    assert os.environ['ROS_DOMAIN_ID'] == os.environ['SMCVAE_TEST_DOMAIN_ID']


@pytest.mark.parametrize('distro,expected', [('jazzy', {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}),
                                             ('humble', {'ROS_LOCALHOST_ONLY': '1'})])
def test_shell_exports_for_ci(distro, expected):
    """`.ci/run` evals `python -m smcvae_ros.ros.compat`; bash must end up with the distro's variables."""
    env = {k: v for k, v in os.environ.items() if k not in (compat.RANGE_VAR, compat.LOCALHOST_ONLY_VAR)}
    env.update({'ROS_DISTRO': distro, compat.RANGE_VAR: 'x', compat.LOCALHOST_ONLY_VAR: 'x'})
    script = (f'eval "$({sys.executable} -m smcvae_ros.ros.compat)"; '
              'echo "range=${ROS_AUTOMATIC_DISCOVERY_RANGE-unset} only=${ROS_LOCALHOST_ONLY-unset}"')
    out = subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True, check=True).stdout
    want = f"range={expected.get(compat.RANGE_VAR, 'unset')} only={expected.get(compat.LOCALHOST_ONLY_VAR, 'unset')}"
    assert out.strip() == want
    assert 'smcvae_ros.ros.compat' in (REPO / '.ci' / 'run').read_text()


# --- rclpy API --------------------------------------------------------------------------------------
def test_subscription_event_callbacks_jazzy_and_humble_import(monkeypatch):
    import rclpy.event_handler
    assert compat.SubscriptionEventCallbacks is rclpy.event_handler.SubscriptionEventCallbacks
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                             # Jazzy's qos_event is a deprecated shim
        import rclpy.qos_event
    monkeypatch.setitem(sys.modules, 'rclpy.event_handler', None)   # Humble: no such module
    cls = compat.SubscriptionEventCallbacks
    assert cls is rclpy.qos_event.SubscriptionEventCallbacks
    assert cls(incompatible_qos=print).incompatible_qos is print
    with pytest.raises(AttributeError):
        compat.NotThere  # noqa: B018


class _HumbleApi:
    """Hides the parameter-callback API that arrived in Iron from a real rclpy Node."""
    IRON_ONLY = ('add_pre_set_parameters_callback', 'add_post_set_parameters_callback')

    def __getattribute__(self, name):
        if name in _HumbleApi.IRON_ONLY:
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.fixture
def rclpy_context():
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.mark.parametrize('humble', [False, True], ids=['jazzy', 'humble'])
def test_parameter_callbacks_validate_then_apply(rclpy_context, humble):
    """Over a real rclpy Node: rejected changes are neither stored nor applied; accepted ones are applied
    once, with the new values, and stored."""
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    node_class = type('HumbleNode', (_HumbleApi, Node), {}) if humble else Node
    node = node_class(f'compat_params_{"humble" if humble else "jazzy"}', context=rclpy_context)
    try:
        assert hasattr(node, 'add_post_set_parameters_callback') is not humble
        node.declare_parameter('period_s', 1.0)
        applied = []

        def validate(params):
            bad = [p.name for p in params if p.value <= 0]
            return SetParametersResult(successful=not bad, reason=f'{bad} must be > 0' if bad else '')

        compat.add_parameter_callbacks(node, validate, lambda params: applied.append([p.value for p in params]))
        result = node.set_parameters([Parameter('period_s', value=-1.0)])[0]
        assert not result.successful and 'period_s' in result.reason
        assert applied == [] and node.get_parameter('period_s').value == 1.0
        assert node.set_parameters([Parameter('period_s', value=0.25)])[0].successful
        assert applied == [[0.25]] and node.get_parameter('period_s').value == 0.25
    finally:
        node.destroy_node()
