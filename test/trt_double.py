"""FakeTensorRT: a narrow test double of the few TensorRT 10 calls smcvae_ros.engine uses.

It checks OUR code (what we ask the builder for, cache decisions, bindings), not TensorRT:
- OnnxParser reads the real ONNX graph (inputs, outputs, one fake layer per node, typed by op);
- build_serialized_network returns a JSON "engine" describing the requested build (flags, workspace,
  profile shapes, layers pinned to FP32), so tests can inspect it;
- Runtime.deserialize_cuda_engine parses that JSON (None for anything else, as TensorRT does);
- the execution context records set_input_shape / set_tensor_address / execute_async_v3 calls.
Pass it as `trt_module=FakeTensorRT()`; nothing real is patched.
"""
from __future__ import annotations

import json
from enum import Enum
from types import SimpleNamespace


class DataType(Enum):
    FLOAT = 'float32'
    HALF = 'float16'
    BOOL = 'bool'
    UINT8 = 'uint8'
    INT64 = 'int64'


class LayerType(Enum):
    NORMALIZATION = 'LayerNormalization'
    SOFTMAX = 'Softmax'
    OTHER = 'other'


class TensorIOMode(Enum):
    INPUT = 'input'
    OUTPUT = 'output'


_ONNX_DTYPES = {1: DataType.FLOAT, 10: DataType.HALF, 9: DataType.BOOL, 2: DataType.UINT8, 7: DataType.INT64}


class FakeLayer:
    def __init__(self, op: str, name: str = ''):
        self.type = LayerType(op) if op in ('LayerNormalization', 'Softmax') else LayerType.OTHER
        self.name = name   # TensorRT's ONNX parser names a layer after its node
        # float output unless the node makes an index / mask / uint8 tensor
        ints = ('Cast', 'Shape', 'Equal', 'Greater', 'Less')
        self.output_dtype = DataType.INT64 if op in ints else DataType.FLOAT
        self.precision = None
        self.num_outputs = 1
        self.output_types = {}

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype

    def get_output(self, i):
        return SimpleNamespace(dtype=self.output_dtype)


class FakeNetwork:
    def __init__(self):
        self.inputs, self.outputs, self.layers = [], [], []

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]

    def get_layer(self, i):
        return self.layers[i]


class FakeOnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        import onnx
        try:
            graph = onnx.load_from_string(data).graph
        except Exception as e:  # noqa: BLE001
            self.errors.append(f'invalid ONNX: {e}')
            return False
        tensor = lambda v: SimpleNamespace(name=v.name, dtype=_ONNX_DTYPES[v.type.tensor_type.elem_type])  # noqa: E731
        self.network.inputs = [tensor(v) for v in graph.input]
        self.network.outputs = [tensor(v) for v in graph.output]
        self.network.layers = [FakeLayer(n.op_type, n.name) for n in graph.node]
        return True

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, i):
        return self.errors[i]


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = [list(lo), list(opt), list(hi)]


class FakeConfig:
    def __init__(self):
        self.flags, self.pools, self.profiles = set(), {}, []

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1


class FakeBuilder:
    def __init__(self, owner, logger):
        self.owner = owner

    def create_network(self, flags):
        assert flags == 0, 'TensorRT 10 networks are created with flags=0 (explicit batch is implied)'
        return FakeNetwork()

    def create_builder_config(self):
        return FakeConfig()

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        self.owner.builds += 1
        if self.owner.fail_build:
            return None
        engine = {'fake_engine': 1, 'flags': sorted(config.flags), 'pools': {k: v for k, v in config.pools.items()},
                  'profiles': [p.shapes for p in config.profiles],
                  'fp32_layers': sum(1 for layer in network.layers if layer.precision == DataType.FLOAT),
                  'io': [[t.name, 'input', t.dtype.value] for t in network.inputs]
                  + [[t.name, 'output', t.dtype.value] for t in network.outputs]}
        return json.dumps(engine).encode()


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.executed = engine, {}, {}, []

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.spec['profiles'][0][name]
        ok = len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi))
        if ok:
            self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name):
        return self.shapes[self.engine.io[0][0]]  # the output has the first (image) input's shape

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        missing = [n for n, _, _ in self.engine.spec['io'] if n not in self.addresses]
        self.executed.append(stream_handle)
        return not missing


class FakeEngine:
    def __init__(self, spec):
        self.spec = spec
        self.io = spec['io']
        self.contexts = []

    num_io_tensors = property(lambda self: len(self.io))

    def get_tensor_name(self, i):
        return self.io[i][0]

    def get_tensor_mode(self, name):
        return TensorIOMode(next(m for n, m, _ in self.io if n == name))

    def get_tensor_dtype(self, name):
        return DataType(next(d for n, _, d in self.io if n == name))

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


class FakeRuntime:
    def __init__(self, owner, logger):
        self.owner = owner

    def deserialize_cuda_engine(self, data):
        try:
            spec = json.loads(bytes(data))
        except ValueError:
            return None
        return FakeEngine(spec) if isinstance(spec, dict) and spec.get('fake_engine') == 1 else None


class FakeTensorRT:
    """Module-like object with the TensorRT names our code uses; counts builds."""

    DataType, LayerType, TensorIOMode = DataType, LayerType, TensorIOMode
    float32, float16, uint8, int64 = DataType.FLOAT, DataType.HALF, DataType.UINT8, DataType.INT64
    BuilderFlag = SimpleNamespace(FP16='FP16', OBEY_PRECISION_CONSTRAINTS='OBEY_PRECISION_CONSTRAINTS')
    MemoryPoolType = SimpleNamespace(WORKSPACE='WORKSPACE')
    Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, level=2: None})
    OnnxParser = FakeOnnxParser

    def __init__(self, version: str = '10.3.0'):
        self.__version__ = version
        self.builds = 0
        self.fail_build = False

    def Builder(self, logger):  # noqa: N802 - TensorRT's name
        return FakeBuilder(self, logger)

    def Runtime(self, logger):  # noqa: N802 - TensorRT's name
        return FakeRuntime(self, logger)
