"""The policy an ONNX graph must meet before ONNX Runtime is given it.

A graph is a program: ``Loop`` with a trip count of 2**62, ``Scan`` or ``If``
around one, or a ``ConstantOfShape``/``Expand``/``Tile``/``Range`` whose
size comes from data, run for as long or allocate as much as the graph
says. The graphs this app serves are the ones skl2onnx writes for
scikit-learn models, so :func:`check` accepts exactly those operators
(:data:`ALLOWED`, collected from the converters by
``python -m tools.build.onnx_operators``; no ``Loop``/``If``, no
``Expand``/``Tile``/``Range``, which the converters do not emit) in the two
standard domains, no local function, training section or external data,
and ``ConstantOfShape`` only with a shape computed from tensors' shapes and
constants within :data:`MAX_ELEMENTS`.

The one subgraph allowed is the body of a **bounded** ``Scan``, the form
skl2onnx's pairwise distances take (k-neighbours): a ``Scan`` runs once per
slice of its scanned inputs, so when every scanned input is a constant of
the graph the trip count is fixed by the graph's own bytes (at most
:data:`MAX_TRIPS`), whatever the request. Its body must meet this same
policy with no subgraph of its own, and must hand every state variable on
unchanged (an ``Identity`` of the state it was given): the state cannot grow
from one trip to the next, so each trip costs what the body's allowed
operators cost on request-sized state and a constant slice.

It reads the protobuf wire format itself (a few fields of ``ModelProto``,
``GraphProto``, ``NodeProto``, ``AttributeProto`` and ``TensorProto``): the
Lambda ships no ``onnx`` package, and nothing here allocates more than the
graph's own bytes. ``publisher.publish`` and the app's loader both call it.
"""
import struct

from chalicelib.http.errors import ModelLoadError

# The operators skl2onnx 1.20 emits for the scikit-learn estimators it
# converts (``python -m tools.build.onnx_operators`` prints this set from the
# estimator zoo's graphs), as (domain, op_type); "" is ai.onnx.
# Left out although skl2onnx emits them: Scan (control flow: its
# k-neighbors and Gaussian-process graphs), com.microsoft's Solve and the
# "local_domain" functions of KNNImputer (not standard operators); those
# models are served from their pickle instead.
_OPERATORS = {
    "": ("Abs", "Add", "ArgMax", "ArgMin", "Cast", "Compress", "Concat", "ConstantOfShape",
         "CumSum", "Div", "Einsum", "Equal", "Erf", "Exp", "Flatten", "Gather",
         "GatherElements", "Gemm", "Greater", "GreaterOrEqual", "Identity", "IsNaN", "Less",
         "LessOrEqual", "Log", "LpNormalization", "MatMul", "Max", "Mul", "Neg", "NonZero",
         "Not", "Or", "Pow", "Reciprocal", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
         "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "SequenceConstruct",
         "Shape", "Sigmoid", "Sign", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Sum",
         "TopK", "Transpose", "Where",
         # not emitted, harmless: its value is in the graph's own bytes
         "Constant"),
    "ai.onnx.ml": ("ArrayFeatureExtractor", "Binarizer", "Imputer", "LabelEncoder", "OneHotEncoder",
                   "LinearClassifier", "LinearRegressor", "Normalizer", "SVMClassifier",
                   "SVMRegressor", "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor",
                   "ZipMap"),
}
ALLOWED = frozenset((domain, op) for domain, ops in _OPERATORS.items() for op in ops)
# Control flow (named for the message): never allowed, but for a bounded
# Scan (see the module's docstring).
CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
MAX_TRIPS = 1 << 20
SCAN_INTS = ("num_scan_inputs", "scan_input_axes")
# The only size-making operator the converters emit: its shape must be
# computed from tensors' shapes (the request's row count) and constants of
# at most MAX_ELEMENTS elements, by operators that cannot multiply sizes.
SIZE_OPERATORS = {"ConstantOfShape": 0}
SHAPE_OPERATORS = frozenset({"Shape", "Gather", "Concat", "Slice", "Unsqueeze", "Squeeze",
                             "Cast", "Identity", "Reshape"})
MAX_ELEMENTS = 1 << 20
MAX_NODES = 200_000

# Field numbers of onnx.proto3.
_MODEL_GRAPH, _MODEL_FUNCTIONS, _MODEL_TRAINING = 7, 25, 20
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_VALUE_INFO_NAME = 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 4, 5, 7
_ATTR_NAME, _ATTR_I, _ATTR_G, _ATTR_GRAPHS, _ATTR_T, _ATTR_INTS = 1, 3, 6, 11, 5, 8
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_INT64_DATA, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 7, 8, 9
_TENSOR_INT32_DATA = 5
_TENSOR_DATA_LOCATION = 14


class _Malformed(Exception):
    pass


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """(field number, wire type, value) of each field of one message:
    value is an int (varint, fixed) or a memoryview (length-delimited)."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed("truncated fixed64")
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise _Malformed("a field runs past its message")
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed("truncated fixed32")
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise _Malformed("wire type %d" % wire)
        yield number, wire, value


def _text(value):
    return bytes(value).decode("utf-8", "replace")


def _packed_ints(wire, value):
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _signed(n):
    return n - (1 << 64) if n >= 1 << 63 else n


class _Tensor:
    __slots__ = ("name", "dims", "values", "external")

    def __init__(self, data):
        self.name, self.dims, self.values, self.external = "", [], None, False
        raw, data_type, ints = None, None, []
        for number, wire, value in _fields(data):
            if number == _TENSOR_NAME:
                self.name = _text(value)
            elif number == _TENSOR_DIMS:
                self.dims += [_signed(v) for v in _packed_ints(wire, value)]
            elif number == _TENSOR_DATA_TYPE:
                data_type = value
            elif number in (_TENSOR_INT64_DATA, _TENSOR_INT32_DATA):
                ints += [_signed(v) for v in _packed_ints(wire, value)]
            elif number == _TENSOR_RAW:
                raw = value
            elif number == _TENSOR_DATA_LOCATION and value == 1:
                self.external = True
        if data_type == 7 and raw is not None and len(raw) % 8 == 0:  # INT64
            self.values = list(struct.unpack("<%dq" % (len(raw) // 8), raw))
        elif data_type == 6 and raw is not None and len(raw) % 4 == 0:  # INT32
            self.values = list(struct.unpack("<%di" % (len(raw) // 4), raw))
        elif ints:
            self.values = ints


def check(graph_bytes):
    """Raise ModelLoadError unless the serialized ModelProto meets the policy."""
    try:
        _check_model(memoryview(graph_bytes))
    except _Malformed as exc:
        raise ModelLoadError("the ONNX graph is malformed: %s" % exc,
                             public="the ONNX graph is malformed") from None


def _refuse(why):
    raise ModelLoadError("the ONNX graph is outside the served graphs' policy: %s" % why,
                         public="the ONNX graph is outside the served graphs' policy (%s)"
                         % why)


def _check_model(data):
    graphs = 0
    for number, wire, value in _fields(data):
        if number == _MODEL_GRAPH and wire == 2:
            graphs += 1
            _check_graph(value, [0])
        elif number == _MODEL_FUNCTIONS:
            _refuse("it defines local functions")
        elif number == _MODEL_TRAINING:
            _refuse("it has a training section")
    if graphs != 1:
        _refuse("%d main graphs" % graphs)


class _Node:
    __slots__ = ("op_type", "domain", "inputs", "outputs", "graphs", "ints")

    def __init__(self, data):
        self.op_type, self.domain, self.inputs, self.outputs = "", "", [], []
        self.graphs = []  # (attribute name, GraphProto bytes)
        self.ints = {}    # attribute name: int or list of ints
        for number, wire, value in _fields(data):
            if number == _NODE_OP_TYPE:
                self.op_type = _text(value)
            elif number == _NODE_DOMAIN:
                self.domain = _text(value)
            elif number == _NODE_INPUT:
                self.inputs.append(_text(value))
            elif number == _NODE_OUTPUT:
                self.outputs.append(_text(value))
            elif number == _NODE_ATTRIBUTE and wire == 2:
                self._attribute(value)
        if self.domain == "ai.onnx":
            self.domain = ""

    def _attribute(self, data):
        name, graphs, ints = "", [], []
        for number, wire, value in _fields(data):
            if number == _ATTR_NAME and wire == 2:
                name = _text(value)
            elif number in (_ATTR_G, _ATTR_GRAPHS) and wire == 2:
                graphs.append(value)
            elif number == _ATTR_T and wire == 2 and _Tensor(value).external:
                _refuse("a tensor's data is in an external file")
            elif number in (_ATTR_I, _ATTR_INTS) and name in SCAN_INTS:
                # only a Scan's (the name comes first): a tree ensemble's
                # lists run to millions of values
                ints.append((number, wire, value))
        self.graphs += [(name, g) for g in graphs]
        if ints:
            single = [_signed(v) for n, w, v in ints if n == _ATTR_I and w == 0]
            self.ints[name] = single[-1] if single else [
                _signed(i) for n, w, v in ints if n == _ATTR_INTS for i in _packed_ints(w, v)]


class _Graph:
    """One graph's nodes, constants, inputs and outputs (names), checked."""

    def __init__(self, data, count, scan_allowed):
        self.constants, self.nodes, self.inputs, self.outputs = {}, [], [], []
        for number, wire, value in _fields(data):
            if number == _GRAPH_INITIALIZER and wire == 2:
                tensor = _Tensor(value)
                if tensor.external:
                    _refuse("a tensor's data is in an external file")
                self.constants[tensor.name] = tensor
            elif number == _GRAPH_NODE and wire == 2:
                count[0] += 1
                if count[0] > MAX_NODES:
                    _refuse("more than %d nodes" % MAX_NODES)
                self.nodes.append(_Node(value))
            elif number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and wire == 2:
                name = "".join(_text(v) for n, w, v in _fields(value)
                               if n == _VALUE_INFO_NAME and w == 2)
                (self.inputs if number == _GRAPH_INPUT else self.outputs).append(name)
        self.producers = {}
        for node in self.nodes:
            if node.op_type == "Scan" and node.domain == "" and scan_allowed:
                _check_scan(node, self.constants, self.inputs, count)
            elif node.graphs or node.op_type in CONTROL_FLOW:
                _refuse("%s holds a subgraph (control flow)" % (node.op_type or "a node")
                        if node.graphs else "operator %s is control flow" % node.op_type)
            elif (node.domain, node.op_type) not in ALLOWED:
                _refuse("operator %s%s is not one the converters emit"
                        % (node.domain + "." if node.domain else "", node.op_type))
            for name in node.outputs:
                self.producers[name] = node
        for node in self.nodes:
            if node.domain == "" and node.op_type in SIZE_OPERATORS:
                index = SIZE_OPERATORS[node.op_type]
                if index >= len(node.inputs):
                    _refuse("%s has no shape input" % node.op_type)
                _check_shape_source(node.op_type, node.inputs[index], self.producers,
                                    self.constants)


def _check_graph(data, count):
    _Graph(data, count, scan_allowed=True)


def _check_scan(node, constants, graph_inputs, count):
    """A Scan whose trip count the graph fixes and whose state cannot grow
    (the module's docstring), or a refusal saying which rule it breaks."""
    if [name for name, _ in node.graphs] != ["body"]:
        _refuse("Scan holds a subgraph other than its one body")
    scanned = node.ints.get("num_scan_inputs")
    if not isinstance(scanned, int) or not 1 <= scanned <= len(node.inputs):
        _refuse("Scan has no valid num_scan_inputs")
    states = len(node.inputs) - scanned
    axes = node.ints.get("scan_input_axes", [0] * scanned)
    if not isinstance(axes, list) or len(axes) != scanned:
        _refuse("Scan has no valid scan_input_axes")
    for name, axis in zip(node.inputs[states:], axes):
        tensor = constants.get(name) if name not in graph_inputs else None
        if tensor is None:
            _refuse("Scan scans %s, not a constant of the graph: its trip count would come "
                    "from the request" % (name or "an omitted input"))
        if not -len(tensor.dims) <= axis < len(tensor.dims):
            _refuse("Scan scans a constant along an axis it does not have")
        trips = tensor.dims[axis]
        if not 0 <= trips <= MAX_TRIPS:
            _refuse("Scan runs %d times, over %d" % (trips, MAX_TRIPS))
    body = _Graph(node.graphs[0][1], count, scan_allowed=False)
    if len(body.inputs) != len(node.inputs) or len(body.outputs) != len(node.outputs) \
            or len(body.outputs) < states:
        _refuse("Scan's body does not match its inputs and outputs")
    for state_in, state_out in zip(body.inputs[:states], body.outputs[:states]):
        made_by = body.producers.get(state_out)
        if made_by is None or made_by.op_type != "Identity" or made_by.inputs != [state_in]:
            _refuse("Scan's body changes its state %s from one trip to the next" % state_in)


def _check_shape_source(op_type, name, producers, constants):
    """The tensor ``name`` is computed only from tensors' shapes and bounded
    constants, through operators that select, join or reshape (never
    multiply) their values: a size at most the request's own times a
    constant."""
    stack, seen = [name], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in constants:
            values = constants[name].values
            if values is None or any(v < 0 or v > MAX_ELEMENTS for v in values):
                _refuse("%s takes a size from a constant that is not a bounded integer"
                        % op_type)
            continue
        node = producers.get(name)
        if node is None or node.domain != "" or node.op_type not in SHAPE_OPERATORS:
            _refuse("%s takes its size from %s, not from tensors' shapes and constants"
                    % (op_type, "a graph input" if node is None else node.op_type))
        if node.op_type != "Shape":  # a Shape's value is its input's shape, not its data
            stack.extend(node.inputs)
