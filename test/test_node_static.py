"""Launch file, params file and parameter table agree (no DDS, no launch import)."""
import ast
from pathlib import Path

import pytest
import yaml

from smcvae_ros.ros import params as P
from smcvae_ros.ros.launch_args import LaunchArgumentError, node_parameters, parse_topics
from smcvae_ros.ros.topics import CameraIds, camera_input, camera_namespace, output_topic

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / 'launch' / 'restore.launch.py'
CONFIG = REPO / 'config' / 'restore.yaml'


def _calls(tree, name):
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def test_launch_starts_restore_node_with_shipped_params_file():
    tree = ast.parse(LAUNCH.read_text())
    assert not _calls(tree, 'Node')
    nodes = _calls(tree, 'LifecycleNode')
    assert len(nodes) == 1
    kw = {k.arg: k.value for k in nodes[0].keywords}
    assert _const(kw['executable']) == 'restore_node'
    assigns = {a.targets[0].id: a.value for a in ast.walk(tree)
               if isinstance(a, ast.Assign) and isinstance(a.targets[0], ast.Name)}
    package = kw['package']
    assert _const(package) == 'smcvae_ros' or _const(assigns.get(getattr(package, 'id', ''))) == 'smcvae_ros'
    params_call = kw['parameters']  # the argument rules live in smcvae_ros/ros/launch_args.py, tested below
    assert getattr(params_call.func, 'id', None) == 'node_parameters'
    assert ast.unparse(params_call.args[1]) == 'DEFAULT_PARAMS_FILE'
    # the params_file argument defaults to share/smcvae_ros/config/restore.yaml
    args = {_const(c.args[0]): {k.arg: k.value for k in c.keywords} for c in _calls(tree, 'DeclareLaunchArgument')}
    assert {'params_file', 'profile', 'model_path', 'backend', 'image_topics', 'namespace', 'autostart'} <= set(args)
    assert set(ast.literal_eval(assigns['ARGUMENTS'])) == set(args)  # every declared argument reaches node_parameters
    default = ast.unparse(assigns[args['params_file']['default_value'].id])
    assert "'config'" in default and "'restore.yaml'" in default and 'get_package_share_directory(PACKAGE)' in default
    assert _const(assigns['PACKAGE']) == 'smcvae_ros'
    # setup.py installs the console script and the config/launch folders
    setup = (REPO / 'setup.py').read_text()
    assert "'restore_node = smcvae_ros.ros.node:main'" in setup
    assert "glob('config/*.yaml')" in setup and "glob('launch/*.launch.py')" in setup


def test_params_file_matches_declared_parameters():
    doc = yaml.safe_load(CONFIG.read_text())
    values = doc['/**']['ros__parameters']
    assert set(values) == {p.name for p in P.PARAMS}
    for p in P.PARAMS:
        assert values[p.name] == p.default and type(values[p.name]) is type(p.default), p.name
    assert P.check(values) is None


def test_descriptors_carry_types_ranges_and_read_only():
    from rcl_interfaces.msg import ParameterType
    for p in P.PARAMS:
        d = P.descriptor(p)
        assert d.name == p.name and d.description and d.read_only == (not p.tunable)
        if p.range is not None:
            r = (d.floating_point_range or d.integer_range)[0]
            assert (r.from_value, r.to_value) == p.range and r.from_value <= p.default <= r.to_value
    assert P.descriptor(P.BY_NAME['image_topics']).type == ParameterType.PARAMETER_STRING_ARRAY
    assert P.descriptor(P.BY_NAME['max_reference_age_s']).type == ParameterType.PARAMETER_DOUBLE


@pytest.mark.parametrize('topic,expected', [('/cam_front/image_raw', '/cam_front/image_restored'),
                                            ('/vehicle/cam/image_raw', '/vehicle/cam/image_restored'),
                                            ('image_raw', 'image_restored'), ('/image_raw', '/image_restored'),
                                            ('/cam_front/image_raw/compressed', '/cam_front/image_restored'),
                                            ('image_raw/compressed', 'image_restored')])
def test_output_topic(topic, expected):
    assert output_topic(topic, 'image_restored') == expected


def test_camera_input_and_namespace():
    assert camera_input('/cam_front/image_raw/compressed') == (True, '/cam_front/image_raw')
    assert camera_input('/cam_front/image_raw') == (False, '/cam_front/image_raw')
    assert camera_input('/compressed') == (False, '/compressed')
    assert camera_namespace('/cam_front/image_raw/compressed') == '/cam_front'
    ids = CameraIds(['/cam_front/image_raw/compressed'])     # health may name either topic or the namespace
    assert {ids.match(h) for h in ('/cam_front/image_raw/compressed', 'cam_front/image_raw', '/cam_front')} == {
        '/cam_front/image_raw/compressed'}


@pytest.mark.parametrize('change,fragment', [({'image_topics': []}, 'non-empty'),
                                             ({'image_topics': ['/a/image_raw', '/a/image_raw']}, 'duplicates'),
                                             ({'image_topics': ['/a/image_raw', '/a/image_raw/compressed']},
                                              'duplicates'),
                                             ({'image_topics': ['/a/image_restored']}, 'output name'),
                                             ({'backend': 'cuda'}, 'backend'),
                                             ({'qos_reliability': 'sometimes'}, 'qos_reliability'),
                                             ({'dark_level': 200, 'bright_level': 100}, 'dark_level')])
def test_check_rejects(change, fragment):
    assert fragment in P.check({**P.defaults(), **change})


@pytest.mark.parametrize('args,expected', [
    ({}, []),
    ({'params_file': '', 'model_path': '', 'backend': '', 'image_topics': ''}, []),
    ({'image_topics': '/a/image_raw,/b/image_raw'}, [{'image_topics': ['/a/image_raw', '/b/image_raw']}]),
    ({'image_topics': "['/a/image_raw', ' /b/image_raw']"}, [{'image_topics': ['/a/image_raw', '/b/image_raw']}]),
    ({'image_topics': '/a/image_raw,'}, [{'image_topics': ['/a/image_raw']}]),
    ({'backend': 'torch', 'model_path': ' /m/x.safetensors '},
     [{'backend': 'torch', 'model_path': '/m/x.safetensors'}]),
])
def test_launch_arguments_to_node_parameters(args, expected):
    """Empty arguments keep the shipped params file's values; given ones become overrides the node accepts."""
    params = node_parameters(args, str(CONFIG))
    assert params == [str(CONFIG)] + expected
    values = yaml.safe_load(CONFIG.read_text())['/**']['ros__parameters']
    assert P.check({**values, **(expected[0] if expected else {})}) is None


@pytest.mark.parametrize('text', [',', ' , ', '[]', "['']", '[,]', "' '"])
def test_launch_image_topics_naming_no_topic_is_an_error_naming_the_argument(text):
    assert parse_topics(text) == []
    with pytest.raises(LaunchArgumentError, match=r"image_topics:=.*names no topic"):
        node_parameters({'image_topics': text}, str(CONFIG))


def test_launch_params_file_empty_is_shipped_one_and_missing_file_is_an_error(tmp_path):
    assert node_parameters({'params_file': '  '}, str(CONFIG)) == [str(CONFIG)]
    own = tmp_path / 'mine.yaml'
    own.write_text(CONFIG.read_text())
    assert node_parameters({'params_file': str(own)}, str(CONFIG)) == [str(own)]
    with pytest.raises(LaunchArgumentError, match='params_file'):
        node_parameters({'params_file': str(tmp_path / 'missing.yaml')}, str(CONFIG))


def test_launch_profile_applies_a_shipped_profile_over_the_params_file():
    params = node_parameters({'profile': 'cpu', 'backend': 'onnxruntime'}, str(CONFIG))
    assert params == [str(CONFIG), str(CONFIG.parent / 'profile_cpu.yaml'), {'backend': 'onnxruntime'}]
    with pytest.raises(LaunchArgumentError, match=r"profile:='gpu' is not a shipped profile \(shipped: cpu\)"):
        node_parameters({'profile': 'gpu'}, str(CONFIG))


@pytest.mark.parametrize('profile', sorted(CONFIG.parent.glob('profile_*.yaml')), ids=lambda p: p.stem)
def test_every_shipped_profile_sets_valid_parameters_and_a_shipped_model(profile):
    from smcvae_ros.engine.base import read_model_config, resolve_model
    values = yaml.safe_load(profile.read_text())['/**']['ros__parameters']
    assert values and set(values) <= {p.name for p in P.PARAMS}
    base = yaml.safe_load(CONFIG.read_text())['/**']['ros__parameters']
    assert P.check({**base, **values}) is None
    for p in P.PARAMS:
        if p.name in values:
            assert type(values[p.name]) is type(p.default), p.name
    if values.get('model_path'):
        assert read_model_config(resolve_model(values['model_path']))


def test_launch_args_import_only_the_standard_library():
    """`ros2 launch` runs the launch file in the ros2 CLI's Python (apt), which need not see the venv's
    torch/onnxruntime: importing the argument rules must load nothing outside the standard library."""
    import subprocess
    import sys
    code = ('import sys; before = set(sys.modules); import smcvae_ros.ros.launch_args; '
            'print(sorted({m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['smcvae_ros']"


def test_launch_gives_the_node_the_shipped_dds_profile_unless_the_environment_has_one(tmp_path):
    from smcvae_ros.ros.launch_args import DDS_PROFILE_VARS, dds_environment
    shipped = CONFIG.parent / 'fastdds_large_images.xml'
    assert dds_environment('', str(CONFIG.parent), {}) == {v: str(shipped) for v in DDS_PROFILE_VARS}
    assert dds_environment('', str(CONFIG.parent), {'FASTRTPS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'}) == {}
    assert dds_environment(' none ', str(CONFIG.parent), {}) == {}
    own = tmp_path / 'own.xml'
    own.write_text(shipped.read_text())
    assert dds_environment(str(own), str(CONFIG.parent), {'FASTRTPS_DEFAULT_PROFILES_FILE': 'x'}) == \
        {v: str(own) for v in DDS_PROFILE_VARS}
    with pytest.raises(LaunchArgumentError, match='dds_profile'):
        dds_environment(str(tmp_path / 'missing.xml'), str(CONFIG.parent), {})
    call = _calls(ast.parse(LAUNCH.read_text()), 'LifecycleNode')[0]
    env = {k.arg: k.value for k in call.keywords}['additional_env']
    assert getattr(env.func, 'id', None) == 'dds_environment'
    assert "glob('config/*.xml')" in (REPO / 'setup.py').read_text()


def test_shipped_dds_profile_gives_shared_memory_room_for_a_4k_frame():
    import xml.etree.ElementTree as ET
    ns = {'f': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}
    root = ET.parse(CONFIG.parent / 'fastdds_large_images.xml').getroot()
    kinds = {d.find('f:transport_id', ns).text: d for d in root.iterfind('.//f:transport_descriptor', ns)}
    shm = [d for d in kinds.values() if d.find('f:type', ns).text == 'SHM']
    assert len(shm) == 1 and int(shm[0].find('f:segment_size', ns).text) >= 3840 * 2160 * 3
    assert {d.find('f:type', ns).text for d in kinds.values()} == {'SHM', 'UDPv4'}   # other hosts still reachable
    participant = root.find('.//f:participant', ns)
    assert participant.get('is_default_profile') == 'true'
    used = {t.text for t in participant.iterfind('.//f:userTransports/f:transport_id', ns)}
    assert used == set(kinds) and participant.find('.//f:useBuiltinTransports', ns).text == 'false'
