"""The Open Inference Protocol (KServe V2) over REST, what Triton's
``tritonclient.http``, KServe's ``InferenceRESTClient(protocol="v2")``,
Seldon MLServer's clients and others speak.

Inputs are typed tensors (``BOOL``, ``UINT8``..``UINT64``, ``INT8``..``INT64``,
``FP16``, ``FP32``, ``FP64``, ``BYTES``), as JSON ``data`` (flat or nested,
row-major) or in the binary tensor extension (``Inference-Header-Content-Length``;
through API Gateway send it as ``Content-Type: application/octet-stream``).
Two layouts are read:

* one tensor of rows, shape ``[n, n_features]``, any name but a feature's
  (values in the card's feature order);
* one tensor per feature, named as in the card, shape ``[n]`` or ``[n, 1]``.

Both become the app's own ``instances`` payload (rows as lists, or as
objects keyed by feature name), so the app's parser checks every value;
error messages name the tensor. Outputs: ``predictions`` (string labels as
``BYTES``) and, for models with ``predict_proba``, ``probabilities``
(``FP64``, ``[n, n_classes]`` in ``classes`` order); all of them unless the
request names some in ``outputs`` (each once). An output is binary tensor
data when it asks (``parameters.binary_data``) or the request does
(``parameters.binary_data_output``, which an output's own setting
overrides): the answer is then the JSON header, its length in
``Inference-Header-Content-Length``, and the outputs' bytes, each sized by
its ``binary_data_size`` (when the request's ``Accept`` lets a binary
body through API Gateway: ``application/octet-stream`` or ``*/*``; else
JSON). FP16 is read as binary data only. Triton's
classification extension (:mod:`.triton`) answers the top classes of
``probabilities``; JSON nested past 100 levels is refused, as Triton does.
``id`` is echoed; other ``parameters`` are accepted and ignored.
"""
import json
import math
import struct
import time

import numpy as np

from chalicelib.http.errors import (BadRequest, Position, Row, ServiceError, Tensor,
                                    Unprocessable)
from chalicelib.protocols import triton
from chalicelib.protocols.common import (body_bytes, check_model_name, decode_text, dumps,
                                         json_reply, load_json, renamed, run_payload,
                                         with_model)
from chalicelib.protocols.wrapper import OPEN_INFERENCE, handle
from chalicelib.protocols.identity import SERVER_NAME, SERVER_VERSION
from chalicelib.http.reply import Reply

SERVER = {"name": SERVER_NAME, "version": SERVER_VERSION,
          "extensions": ["binary_tensor_data", "classification", "model_configuration",
                         "statistics"]}
# KServe's client also sends the model's name (and version) in the body.
REQUEST_KEYS = ("id", "inputs", "outputs", "parameters", "model_name", "model_version")
# API Gateway hands the function a body whose Content-Type is not a binary
# media type as UTF-8 text, replacing the bytes that are not: sizes stop adding up.
BINARY_HINT = ("; through API Gateway, binary tensor data needs "
               "Content-Type: application/octet-stream")
HEADER_LENGTH = "inference-header-content-length"
BINARY_TYPE = "application/octet-stream"
INTEGER_TYPES = {"UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
                 "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8"}
FLOAT_TYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
DATATYPES = tuple(INTEGER_TYPES) + tuple(FLOAT_TYPES) + ("BOOL", "BYTES")
# The card's feature types -> the tensor datatype the metadata announces.

# --------------------------------------------------------------------------
# Health and metadata.

def server_metadata(service, request):
    return handle(service, request, OPEN_INFERENCE, "GET /v2",
                  lambda: (json_reply(None, SERVER), 0))


def live(service, request):
    return handle(service, request, OPEN_INFERENCE, "GET /v2/health/live",
                  lambda: (json_reply(None, {"live": True}), 0))


def ready(service, request):
    return handle(service, request, OPEN_INFERENCE, "GET /v2/health/ready",
                  lambda: with_model(service, lambda m: {"ready": True}))


def models(service, request):
    """``GET /v2/models`` (KServe's model list): the served model."""
    return handle(service, request, OPEN_INFERENCE, "GET /v2/models",
                  lambda: with_model(service, lambda m: {"models": [m.card.name]}))


def model_ready(service, request, name, version=None):
    def work():
        model = service.model.ready()
        check_model_name(model, name, version)
        return json_reply(model, {"name": name, "ready": True}), 0
    return handle(service, request, OPEN_INFERENCE, "GET /v2/models/{name}/ready", work)


def model_metadata(service, request, name, version=None):
    def work():
        model = service.model.ready()
        check_model_name(model, name, version)
        return json_reply(model, metadata(model)), 0
    return handle(service, request, OPEN_INFERENCE, "GET /v2/models/{name}", work)


def metadata(model):
    """The model's metadata, from its card: one input tensor per feature."""
    card = model.card
    inputs = [{"name": f.name, "datatype": f.datatype, "shape": [-1]}
              for f in card.schema.features]
    classes = model.classes
    flat = [c for group in classes for c in group] if classes and \
        all(isinstance(c, list) for c in classes) else (classes or [])
    label_type = ("BYTES" if any(isinstance(c, str) for c in flat)
                  else "INT64" if flat and all(isinstance(c, int) for c in flat)
                  else "INT64" if card.task == "clustering" else "FP64")
    multi = flat is not classes and bool(classes)
    outputs = [{"name": "predictions", "datatype": label_type,
                "shape": [-1, len(classes)] if multi else [-1]}]
    if model.has_proba:
        shape = ([-1, len(classes), len(classes[0])] if multi and
                 len({len(c) for c in classes}) == 1 else [-1, -1, -1] if multi
                 else [-1, len(flat)])
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": shape})
    # Triton's name for an ONNX model served by ONNX Runtime
    platform = "onnxruntime_onnx" if model.runtime == "onnxruntime" else "scikit-learn"
    return {"name": card.name, "versions": [card.version], "platform": platform,
            "inputs": inputs, "outputs": outputs}


# --------------------------------------------------------------------------
# Inference.

def infer(service, request, name, version=None):
    def work():
        model = service.model.ready()
        check_model_name(model, name, version)
        started = time.perf_counter_ns()
        try:
            document, binary = _read_body(body_bytes(service, request), request.headers)
            reply, rows = _infer(service, model, document, binary,
                                 binary_answer_allowed(request.headers.get("accept")))
        except ServiceError:
            triton.STATISTICS.record(False, 0, time.perf_counter_ns() - started)
            raise
        triton.STATISTICS.record(True, rows, time.perf_counter_ns() - started)
        return reply, rows
    return handle(service, request, OPEN_INFERENCE, "POST /v2/models/{name}/infer", work)


def _read_body(body, headers):
    """The JSON part and the binary part (bytes, may be empty)."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        return load_json(decode_text(body)), b""
    try:
        size = int(length)
    except ValueError:
        size = -1
    if not 0 < size <= len(body):
        raise BadRequest("Inference-Header-Content-Length %s does not fit a body of %d bytes"
                         % (json.dumps(length), len(body)))
    return load_json(decode_text(body[:size])), body[size:]


def binary_answer_allowed(accept):
    """Whether the request's ``Accept`` lets a binary answer through: API
    Gateway (and ``chalice local``) pass a binary body only to a request
    whose ``Accept`` names its type (or ``*/*``); to any other, the outputs
    asked as binary are answered as JSON, which the clients read as well."""
    if not accept:
        return False
    types = {item.split(";")[0].strip().lower() for item in accept.split(",")}
    return bool(types & {BINARY_TYPE, "*/*"})


def _infer(service, model, document, binary, binary_allowed=True):
    if type(document) is not dict:
        raise BadRequest("expected a JSON object with inputs")
    unknown = [k for k in document if k not in REQUEST_KEYS]
    if unknown:
        raise BadRequest("unknown key %s; accepted: %s"
                         % (json.dumps(unknown[0]), ", ".join(REQUEST_KEYS)))
    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise BadRequest("expected a string", ("id",))
    parameters = document.get("parameters", {})
    if type(parameters) is not dict:
        raise BadRequest("expected an object", ("parameters",))
    binary_default = parameters.get("binary_data_output", False)
    if type(binary_default) is not bool:
        raise BadRequest("expected true or false", ("parameters", "binary_data_output"))
    inputs = document.get("inputs")
    if type(inputs) is not list or not inputs:
        raise BadRequest("expected a non-empty list of tensors", ("inputs",))
    triton.check_depth(document, skip={id(spec.get("data")) for spec in inputs
                                       if type(spec) is dict})
    wanted = _requested_outputs(document.get("outputs"), model, binary_default)
    tensors = _tensors(inputs, binary)
    payload, relocate = _payload(tensors, model.schema.feature_names)
    model, predictions, proba, rows = run_payload(
        service, payload, probabilities=any(w.name == "probabilities" for w in wanted),
        relocate=relocate)
    if isinstance(proba, list):
        raise Unprocessable("this model's probabilities differ in shape per output "
                            "and make no tensor; ask for outputs [{\"name\": \"predictions\"}]",
                            ("outputs",))
    outputs, chunks = [], []
    for output in wanted:
        array = predictions if output.name == "predictions" else proba
        if output.classification is not None:
            array = np.asarray(triton.top_classes(proba, _flat_classes(model),
                                                  output.classification), dtype=object)
        datatype = _datatype(array)
        tensor = {"name": output.name, "datatype": datatype, "shape": list(array.shape)}
        if output.binary and binary_allowed:
            raw = _to_binary(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        outputs.append(tensor)
    answer = {"model_name": model.card.name, "model_version": model.card.version}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = outputs
    if not chunks:
        return json_reply(model, answer), rows
    header = dumps(answer).encode("utf-8")
    headers = dict(model.headers, **{"Content-Type": BINARY_TYPE,
                                     "Inference-Header-Content-Length": str(len(header))})
    return Reply(200, header + b"".join(chunks), headers), rows


def _flat_classes(model):
    classes = model.classes or []
    return [c for group in classes for c in group] if classes and \
        isinstance(classes[0], list) else classes


def _to_binary(array, datatype):
    """The binary tensor data extension's bytes of ``array``: little-endian,
    row-major; BYTES as 4-byte lengths and UTF-8."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            raw = (value if isinstance(value, bytes) else str(value).encode("utf-8"))
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    dtype = {"BOOL": "?", "INT64": "<i8", "FP64": "<f8"}[datatype]
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


class _Output:
    __slots__ = ("name", "binary", "classification")

    def __init__(self, name, binary, classification=None):
        self.name, self.binary, self.classification = name, binary, classification


def _requested_outputs(outputs, model, binary_default=False):
    """The outputs to answer: each with whether it is binary (its own
    ``binary_data``, else the request's ``binary_data_output``) and its
    ``classification`` count."""
    available = ["predictions"] + (["probabilities"] if model.has_proba else [])
    if outputs is None:
        return [_Output(name, binary_default) for name in available]
    if type(outputs) is not list:
        raise BadRequest("expected a list", ("outputs",))
    wanted, seen = [], set()
    for i, output in enumerate(outputs):
        where = ("outputs", i)
        name = output.get("name") if type(output) is dict else None
        if name not in available:
            raise BadRequest("expected one of %s, got %s"
                             % (", ".join(available), json.dumps(name)), where + ("name",))
        if name in seen:
            raise BadRequest("output '%s' already exists in request" % name)
        seen.add(name)
        count = triton.classification_count(output, where)
        if count is not None and name != "probabilities":
            raise BadRequest("classification is answered for probabilities only, "
                             "not for %s" % name, where)
        binary = (output.get("parameters") or {}).get("binary_data", binary_default)
        if type(binary) is not bool:
            raise BadRequest("expected true or false", where + ("parameters", "binary_data"))
        wanted.append(_Output(name, binary, count))
    return wanted


class _Tensor:
    __slots__ = ("name", "shape", "datatype", "values")

    def __init__(self, name, shape, datatype, values):
        self.name, self.shape, self.datatype, self.values = name, shape, datatype, values


def _tensors(inputs, binary):
    """The input tensors with their values as a flat Python list."""
    tensors, offset = [], 0
    for i, spec in enumerate(inputs):
        where = ("inputs", i)
        if type(spec) is not dict:
            raise BadRequest("expected an object with name, shape, datatype, data", where)
        name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
        if type(name) is not str or not name:
            raise BadRequest("expected a string", where + ("name",))
        where = ("inputs", Position(i, name))
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            raise BadRequest("expected a list of non-negative integers", where + ("shape",))
        if datatype not in DATATYPES:
            raise BadRequest("expected one of %s, got %s"
                             % (", ".join(DATATYPES), json.dumps(datatype)), where + ("datatype",))
        count = math.prod(shape)
        parameters = spec.get("parameters") or {}
        size = parameters.get("binary_data_size") if type(parameters) is dict else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest("binary_data_size %s does not fit the %d bytes of "
                                 "binary data%s" % (json.dumps(size), len(binary), BINARY_HINT),
                                 where)
            values = _from_binary(binary[offset:offset + size], datatype, count, where)
            offset += size
        elif "data" in spec:
            values = _from_json(spec["data"], datatype, where)
        else:
            raise BadRequest("no data", where)
        if len(values) != count:
            raise BadRequest("shape %s holds %d values, data has %d"
                             % (shape, count, len(values)), where)
        tensors.append(_Tensor(name, shape, datatype, values))
    if offset != len(binary):
        raise BadRequest("%d bytes of binary data are not claimed by any input%s"
                         % (len(binary) - offset, BINARY_HINT))
    return tensors


def _from_json(data, datatype, where):
    """Flatten (row-major) and check each value against the datatype;
    FP16 is read only as binary data (JSON has no half-precision numbers),
    as KServe reads it."""
    if datatype == "FP16":
        raise BadRequest("FP16 tensors are read as binary tensor data only, not as JSON "
                         "numbers", where)
    # The tensor's data sits four levels deep in the request document.
    flat, stack = [], [(data, 4)]
    while stack:
        item, depth = stack.pop()
        if type(item) is list:
            if depth >= triton.MAX_JSON_DEPTH:
                raise triton.too_deep()
            stack.extend((value, depth + 1) for value in reversed(item))
        else:
            flat.append(item)
    check = _JSON_CHECKS[datatype if datatype in ("BOOL", "BYTES") else
                         "INT" if datatype in INTEGER_TYPES else "FP"]
    for j, value in enumerate(flat):
        if not check(value):
            raise Unprocessable("expected a %s value, got %s"
                                % (datatype, json.dumps(value)[:40]), where + ("data", j))
    return flat


_JSON_CHECKS = {
    "BOOL": lambda v: type(v) is bool,
    "BYTES": lambda v: type(v) is str,
    "INT": lambda v: type(v) is int,
    "FP": lambda v: type(v) in (int, float),
}


def _from_binary(raw, datatype, count, where):
    if datatype == "BYTES":
        values, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise BadRequest("truncated BYTES element", where)
            (n,) = struct.unpack_from("<I", raw, pos)
            chunk = raw[pos + 4:pos + 4 + n]
            if len(chunk) != n:
                raise BadRequest("truncated BYTES element", where)
            try:
                values.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest("BYTES element is not UTF-8", where) from None
            pos += 4 + n
        return values
    dtype = np.dtype("?" if datatype == "BOOL" else
                     INTEGER_TYPES.get(datatype) or FLOAT_TYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise BadRequest("%d bytes of binary data for %d %s values%s"
                         % (len(raw), count, datatype, BINARY_HINT), where)
    return np.frombuffer(raw, dtype=dtype).tolist()


def _payload(tensors, features):
    """The app's ``instances`` payload and the relocation of its errors."""
    if len(tensors) == 1 and tensors[0].name not in features:
        tensor = tensors[0]
        n = len(features)
        if len(tensor.shape) != 2 or tensor.shape[1] != n:
            raise Unprocessable("a tensor of rows needs shape [n, %d] (features %s), got %s; "
                                "or send one tensor per feature"
                                % (n, ", ".join(features), tensor.shape),
                                ("inputs", Position(0, tensor.name)))
        values = tensor.values
        rows = [values[i * n:(i + 1) * n] for i in range(tensor.shape[0])]
        return {"instances": rows}, renamed("instances", tensor.name)
    lengths = set()
    for i, tensor in enumerate(tensors):
        if tensor.name not in features:
            raise Unprocessable("unknown input %s; send one tensor of rows, or one tensor per "
                                "feature: %s" % (json.dumps(tensor.name), ", ".join(features)),
                                ("inputs", i))
        if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
            raise Unprocessable("a feature tensor needs shape [n] or [n, 1], got %s"
                                % (tensor.shape,), ("inputs", Position(i, tensor.name)))
        lengths.add(tensor.shape[0])
    if len(lengths) > 1:
        raise Unprocessable("every feature tensor needs the same number of rows; got %s"
                            % ", ".join("%s: %d" % (t.name, t.shape[0]) for t in tensors),
                            ("inputs",))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise BadRequest("a feature tensor appears twice", ("inputs",))
    records = [dict(zip(names, row)) for row in zip(*(t.values for t in tensors))]
    return {"instances": records}, _feature_place


def _feature_place(loc):
    """``("instances", 3, "petal_width")`` -> ``input "petal_width"[3]``, and
    a whole row -> ``inputs, row 3``: the place in the client's own tensors."""
    if loc[:1] != ("instances",):
        return loc
    if len(loc) > 2:
        return (Tensor(loc[2]), loc[1]) + loc[3:]
    return ("inputs",) + tuple(Row(i) for i in loc[1:])


def _datatype(array):
    kind = array.dtype.kind
    return ("BYTES" if kind in "USO" else "BOOL" if kind == "b"
            else "INT64" if kind in "iu" else "FP64")
