"""Triton's extensions of the Open Inference Protocol that its
``tritonclient.http`` calls, for the one served model:

* model configuration (``GET /v2/models/{name}/config``): the card as
  Triton's config, ``max_batch_size`` the app's row limit per request;
* statistics (``GET /v2/models/{name}/stats``): this instance's own counts
  and durations of inference requests (a Lambda instance knows only its
  own; CloudWatch's metrics are the service's totals);
* model repository index (``POST /v2/repository/index``): the served model,
  ``READY``;
* classification (an output's ``"classification": k`` parameter): the top
  ``k`` classes of each row's probabilities as ``BYTES``
  ``"score:index:label"``, formatted as Triton formats them.
"""
import json
import threading
import time

from chalicelib.http.errors import BadRequest
from chalicelib.protocols.common import (body_bytes, check_model_name, decode_text, json_reply,
                                         load_json)
from chalicelib.protocols.wrapper import OPEN_INFERENCE, handle

# Triton's config data types of the card's feature types.
_CONFIG_TYPES = {"number": "TYPE_FP64", "integer": "TYPE_INT64", "boolean": "TYPE_BOOL",
                 "string": "TYPE_STRING", "text": "TYPE_STRING"}
_TENSOR_CONFIG_TYPES = {"FP64": "TYPE_FP64", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL",
                        "BYTES": "TYPE_STRING"}
# Triton refuses JSON nested deeper than this (its http_server's limit).
MAX_JSON_DEPTH = 100


class Statistics:
    """Counts and nanoseconds of this instance's inference requests."""

    def __init__(self):
        self._lock = threading.Lock()
        self.success_count = self.success_ns = 0
        self.fail_count = self.fail_ns = 0
        self.inference_count = 0
        self.last_inference_ms = 0

    def record(self, ok, rows, elapsed_ns):
        with self._lock:
            if ok:
                self.success_count += 1
                self.success_ns += elapsed_ns
                self.inference_count += rows
            else:
                self.fail_count += 1
                self.fail_ns += elapsed_ns
            self.last_inference_ms = int(time.time() * 1000)

    def of(self, card):
        with self._lock:
            success = {"count": self.success_count, "ns": self.success_ns}
            return {"model_stats": [{
                "name": card.name, "version": card.version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.success_count,
                "inference_stats": {
                    "success": success,
                    "fail": {"count": self.fail_count, "ns": self.fail_ns},
                    # No queue and no separate input/output stage: all is compute.
                    "queue": {"count": 0, "ns": 0},
                    "compute_input": {"count": 0, "ns": 0},
                    "compute_infer": dict(success),
                    "compute_output": {"count": 0, "ns": 0},
                },
                "batch_stats": [],
            }]}


STATISTICS = Statistics()


def model_config(service, request, name, version=None):
    from chalicelib.protocols.open_inference import metadata

    def work():
        model = service.model.ready()
        check_model_name(model, name, version)
        card = model.card
        outputs = []
        for output in metadata(model)["outputs"]:
            dims = output["shape"][1:] or [1]
            outputs.append({"name": output["name"],
                            "data_type": _TENSOR_CONFIG_TYPES[output["datatype"]],
                            "dims": dims})
        config = {
            "name": card.name,
            "platform": "onnxruntime_onnx" if model.runtime == "onnxruntime" else "",
            "backend": "onnxruntime" if model.runtime == "onnxruntime" else "scikit-learn",
            "version_policy": {"specific": {"versions": [card.version]}},
            # Rows are the batch dimension; each feature tensor is [rows] or [rows, 1].
            "max_batch_size": service.config.max_rows,
            "input": [{"name": f.name, "data_type": _CONFIG_TYPES[f.type], "dims": [1]}
                      for f in card.schema.features],
            "output": outputs,
        }
        return json_reply(model, config), 0
    return handle(service, request, OPEN_INFERENCE, "GET /v2/models/{name}/config", work)


def model_stats(service, request, name, version=None):
    def work():
        model = service.model.ready()
        check_model_name(model, name, version)
        return json_reply(model, STATISTICS.of(model.card)), 0
    return handle(service, request, OPEN_INFERENCE, "GET /v2/models/{name}/stats", work)


def repository_index(service, request):
    def work():
        body = body_bytes(service, request)
        document = load_json(decode_text(body)) if body.strip() else {}
        if type(document) is not dict:
            raise BadRequest("expected a JSON object (optionally with ready)")
        ready = document.get("ready", False)
        if type(ready) is not bool:
            raise BadRequest("Invalid value for 'ready': expected a boolean")
        model = service.model.ready()
        card = model.card
        return json_reply(model, [{"name": card.name, "version": card.version,
                                   "state": "READY"}]), 0
    return handle(service, request, OPEN_INFERENCE, "POST /v2/repository/index", work)


def too_deep():
    return BadRequest("JSON nesting depth exceeds maximum allowed limit (%d)" % MAX_JSON_DEPTH)


def check_depth(document, skip=()):
    """BadRequest when ``document`` nests lists and objects deeper than
    Triton's limit; ``skip``: ids of containers checked elsewhere (the
    tensors' data, checked while they are flattened)."""
    stack = [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_deep()
        if type(item) is dict:
            stack.extend((v, depth + 1) for v in item.values()
                         if type(v) in (dict, list) and id(v) not in skip)
        elif type(item) is list:
            stack.extend((v, depth + 1) for v in item if type(v) in (dict, list))


def classification_count(output, where):
    """The ``classification`` parameter of a requested output (None: not
    asked); ``where`` is the output's location (a ``loc`` tuple)."""
    parameters = output.get("parameters") if type(output) is dict else None
    if parameters is None:
        return None
    if type(parameters) is not dict:
        raise BadRequest("expected an object", where + ("parameters",))
    count = parameters.get("classification")
    if count is None:
        return None
    if type(count) is not int or count < 1:
        raise BadRequest("expected a positive integer, got %s" % json.dumps(count),
                         where + ("parameters", "classification"))
    return count


def top_classes(proba, classes, count):
    """``[n, min(count, n_classes)]`` strings ``"score:index:label"``, the
    highest scores first (Triton's ``std::to_string`` of the score)."""
    k = min(count, proba.shape[1])
    rows = []
    for row in proba:
        # Stable: equal scores keep the class order, as Triton's sort of indices
        # leaves no guarantee but clients expect a deterministic answer.
        order = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        rows.append(["%f:%d:%s" % (row[i], i, classes[i]) for i in order])
    return rows
