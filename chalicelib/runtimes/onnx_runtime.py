"""Serving a model compiled to ONNX, through ONNX Runtime.

``publisher.publish`` converts an estimator with skl2onnx and keeps the graph
only when it agrees with scikit-learn (``publisher/onnx_export.py``); the card
then says ``"runtime": "onnxruntime"`` and describes the graph under
``"onnx"``. This module turns that graph back into what the rest of the app
serves: an object with ``predict``, ``predict_proba``, ``classes_`` and
``n_features_in_`` whose answers have the shapes and types scikit-learn's
had. It imports numpy and onnxruntime only: a model served this way never
imports scikit-learn, scipy or joblib, and nothing is unpickled.

What a graph can and cannot do: an ONNX file is operators from a fixed set
and their tensors, but ``Loop`` or a data-sized ``ConstantOfShape`` make it
a program: :mod:`chalicelib.runtimes.graph_policy` admits only the
operators skl2onnx emits, with bounded sizes, before ONNX Runtime sees the
graph, and every run has a deadline (``PREDICT_DEADLINE_S``, declared in
:mod:`chalicelib.http.config`): ONNX Runtime's ``RunOptions.terminate`` is set
by a timer, and the request answers 504. ONNX Runtime runs only operators it
implements (the standard ``ai.onnx`` and ``ai.onnx.ml`` domains here: no
custom-operator library is ever registered), so a graph naming anything else
fails to load (a 503). The one way a graph can reach outside itself is
external tensor data (a file path): the session is made from the graph's
bytes, checked against the card's sha256, and ONNX Runtime refuses any
external data path then (absolute, ``..`` or plain: tested in
``tests/test_onnx_runtime.py``).
"""
import hashlib
import os
import threading

import numpy as np

from chalicelib.http import config
from chalicelib.http.errors import DeadlineExceeded, ModelLoadError, Unprocessable
from chalicelib.runtimes import graph_policy

# The card's names for this runtime, its graph file and its spec.
from chalicelib.schema.card import ONNX_FILE, ONNX_RUNTIME as RUNTIME  # noqa: E402,F401
from chalicelib.schema.card import check_onnx_spec as check_spec  # noqa: E402,F401
INPUT_TYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}
COLUMN_TYPES = dict(INPUT_TYPES, **{"tensor(string)": object, "tensor(int64)": np.int64})
FEED_TYPES = {"double": np.float64, "float": np.float32, "string": object, "int64": np.int64}
# A graph bigger than this is not a model this product ships in a Lambda zip.
MAX_GRAPH_BYTES = 512 * 1024 * 1024
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def run_with_deadline(session, names, feed, seconds):
    """``session.run`` stopped by ONNX Runtime after ``seconds`` (it checks
    ``RunOptions.terminate`` between operators): DeadlineExceeded then."""
    import onnxruntime
    options = onnxruntime.RunOptions()
    timer = threading.Timer(seconds, lambda: setattr(options, "terminate", True))
    timer.daemon = True
    timer.start()
    try:
        return session.run(names, feed, options)
    except Exception:
        if options.terminate:
            raise DeadlineExceeded("the model did not answer within its deadline of %g s"
                                   % seconds) from None
        raise
    finally:
        timer.cancel()


class OnnxModel:
    """An ONNX Runtime session shaped like the estimator it was compiled from."""

    def __init__(self, session, card, spec):
        self.session = session
        self.spec = spec
        self.deadline_s = config.model_setting(config.PREDICT_DEADLINE_S)
        # A DataFrame model is always handed the schema's Columns (no pandas);
        # the card's ``feed`` says which columns make each graph input.
        self.by_columns = card.schema.input_kind == "dataframe"
        if "feed" in spec:
            self.feed = _feed(session.get_inputs(), card, spec["feed"])
            self.input_types = None
        elif self.by_columns:
            self.feed = None
            self.input_types = _column_inputs(session.get_inputs(), card)
        else:
            self.feed = None
            self.input_name, self.input_dtype = _matrix_input(session.get_inputs(), card)
        self.n_features_in_ = card.n_features
        self.feature_names = card.feature_names
        outputs = [o.name for o in session.get_outputs()]
        self._predictions = spec.get("predictions")
        self._probabilities = spec.get("probabilities")
        for name in (self._predictions, self._probabilities):
            if name is not None and name not in outputs:
                raise ModelLoadError("the ONNX graph has no output %r (it has %s)"
                                     % (name, ", ".join(outputs)))
        if self._predictions is None:
            raise ModelLoadError("the card names no ONNX output for the predictions")
        self._shape = tuple(spec.get("prediction_shape") or ())
        classes = card.classes
        self.classes_ = None
        self._label_dtype = None
        if classes is not None:
            self.classes_ = [np.asarray(c) for c in classes] \
                if classes and isinstance(classes[0], list) else np.asarray(classes)
            self._label_dtype = (self.classes_[0] if isinstance(self.classes_, list)
                                 else self.classes_).dtype
        if self._probabilities is not None:
            self.predict_proba = self._predict_proba

    def _run(self, names, X):
        """The named outputs for ``X``. Arithmetic that overflows raises
        FloatingPointError, as numpy does for the scikit-learn runtime under
        ``np.errstate(over="raise")``, so both answer the same 422."""
        if self.feed is not None:
            return run_with_deadline(self.session, names, self._fed(X), self.deadline_s)
        if self.by_columns:
            return run_with_deadline(self.session, names, self._column_feed(X),
                                     self.deadline_s)
        X = np.asarray(X)
        if self.input_dtype is np.float32:
            # A tree ensemble compiled for float32 thresholds, as scikit-learn's
            # trees cast their input to float32: a larger value is no number there.
            _check_float32(X)
        return run_with_deadline(self.session, names,
                                 {self.input_name: X.astype(self.input_dtype, copy=False)},
                                 self.deadline_s)

    def _fed(self, X):
        """The graph's inputs by the card's feed, from the schema's Columns
        (a DataFrame model) or a matrix."""
        arrays = X.arrays if hasattr(X, "arrays") else None
        if arrays is None:
            X = np.asarray(X)
        feed = {}
        for name, columns, dtype, whole in self.feed:
            if arrays is None:
                block = X if whole else X[:, columns]
            elif len(columns) == 1:
                block = arrays[columns[0]].reshape(-1, 1)
            else:
                block = np.column_stack([arrays[j] for j in columns])
            if dtype is object:
                block = self._strings(block, columns)
            else:
                if dtype is np.float32:
                    _check_float32(block)
                elif dtype is np.int64 and block.dtype.kind == "f" and np.isnan(block).any():
                    k = int(np.argwhere(np.isnan(block).any(axis=0))[0][0])
                    raise Unprocessable("feature %s: expected an integer, got a missing value"
                                        % self.feature_names[columns[k]])
                block = block.astype(dtype, copy=False)
            feed[name] = block
        return feed

    def _strings(self, block, columns):
        """A string input: a missing value (NaN) has no place in a string
        tensor, so it is the client's error naming the column."""
        block = block.astype(object, copy=False)
        for k, j in enumerate(columns):
            if not all(type(value) is str for value in block[:, k]):
                raise Unprocessable("feature %s: expected a string, got a missing value"
                                    % self.feature_names[j])
        return block

    def _column_feed(self, X):
        """One ``(rows, 1)`` array per input from the schema's
        :class:`~chalicelib.schema.features.Columns`, in the graph's types."""
        feed = {}
        for (name, dtype), column in zip(self.input_types, X.arrays):
            if dtype is np.float32:
                _check_float32(column)
            feed[name] = column.astype(dtype, copy=False).reshape(-1, 1)
        return feed

    def predict(self, X):
        if self._probabilities is not None:
            return self.predict_both(X)[0]
        (out,) = self._run([self._predictions], X)
        return self._as_predictions(out, len(X))

    def _predict_proba(self, X):
        return self.predict_both(X)[1]

    def predict_both(self, X):
        """Predictions and probabilities from one run of the graph. A label
        the graph took from NaN or infinite scores (an overflow inside it) is
        no answer: the probabilities are always computed to prove it."""
        labels, proba = self._run([self._predictions, self._probabilities], X)
        proba = self._as_probabilities(proba)
        if not np.isfinite(proba).all():
            raise FloatingPointError("non-finite probabilities")
        return self._as_predictions(labels, len(X)), proba

    def _as_predictions(self, out, n_rows):
        out = np.asarray(out)
        out = out.reshape((n_rows,) + self._shape)
        if out.dtype == object and self._label_dtype is not None \
                and self._label_dtype.kind == "U":
            pass  # Python strings, as scikit-learn answers for labels fitted as objects
        elif self._label_dtype is not None and out.dtype != self._label_dtype:
            out = out.astype(self._label_dtype)
        elif out.dtype == np.float32:  # JSON of a float32 would show its binary noise
            out = out.astype(np.float64)
        return out

    @staticmethod
    def _as_probabilities(out):
        out = np.asarray(out, dtype=np.float64)
        if out.ndim == 3:  # multi-output: (outputs, rows, classes) -> per row
            out = out.transpose(1, 0, 2)
        return out


def _check_float32(X):
    # NaN compares false: a missing value is no overflow
    if X.size and (np.abs(X) > _FLOAT32_MAX).any():
        raise FloatingPointError("value beyond float32")


def _feed(inputs, card, feed):
    """``[(input name, card column indices, numpy dtype, whole)]`` from the
    card's ``onnx.feed``; ``whole``: the input is every column in card order."""
    if not isinstance(feed, list) or len(feed) != len(inputs):
        raise ModelLoadError("the card's onnx feed names %s inputs; the graph has %d"
                             % (len(feed) if isinstance(feed, list) else "no", len(inputs)))
    by_name = {i.name: i for i in inputs}
    seen, out = [], []
    for entry in feed:
        if not isinstance(entry, dict):
            raise ModelLoadError("every onnx feed entry must be an object")
        name, columns, kind = entry.get("input"), entry.get("columns"), entry.get("type")
        graph_input = by_name.get(name)
        if graph_input is None:
            raise ModelLoadError("the card's onnx feed names input %r, which the graph lacks"
                                 % (name,))
        if not (isinstance(columns, list) and columns and all(
                type(j) is int and 0 <= j < card.n_features for j in columns)):
            raise ModelLoadError("onnx feed input %s: columns must be card column indices"
                                 % name)
        dtype = FEED_TYPES.get(kind)
        if dtype is None or COLUMN_TYPES.get(graph_input.type) is not dtype:
            raise ModelLoadError("onnx feed input %s: type %r does not match the graph's %s"
                                 % (name, kind, graph_input.type))
        shape = list(graph_input.shape)
        if len(shape) != 2 or shape[1] != len(columns):
            raise ModelLoadError("the ONNX graph's input %s has shape %s, not %d columns"
                                 % (name, shape, len(columns)))
        seen += columns
        out.append((name, columns, dtype, columns == list(range(card.n_features))))
    if sorted(seen) != list(range(card.n_features)):
        raise ModelLoadError("the card's onnx feed must take every card column once")
    return out


def _column_inputs(inputs, card):
    """``[(name, numpy dtype)]`` of a graph fed one column per input."""
    if [i.name for i in inputs] != list(card.feature_names):
        raise ModelLoadError("the ONNX graph's inputs %s are not the card's columns %s"
                             % (", ".join(i.name for i in inputs), ", ".join(card.feature_names)))
    if card.schema.takes_any_missing:
        raise ModelLoadError("a graph fed by columns cannot be given missing values, and the "
                             "card accepts them")
    types = []
    for i in inputs:
        dtype = COLUMN_TYPES.get(i.type)
        if dtype is None or list(i.shape)[1:] != [1]:
            raise ModelLoadError("the ONNX graph's input %s is a %s of shape %s, not a column"
                                 % (i.name, i.type, i.shape))
        types.append((i.name, dtype))
    return types


def _matrix_input(inputs, card):
    """``(name, numpy dtype)`` of a graph fed one float matrix."""
    if len(inputs) != 1:
        raise ModelLoadError("the ONNX graph has %d inputs, named %s; one matrix input is served "
                             "for a model of a matrix" % (len(inputs),
                                                         ", ".join(i.name for i in inputs)))
    dtype = INPUT_TYPES.get(inputs[0].type)
    if dtype is None:
        raise ModelLoadError("the ONNX graph's input is a %s, not a float matrix" % inputs[0].type)
    shape = inputs[0].shape
    if len(shape) != 2 or shape[1] != card.n_features:
        raise ModelLoadError("the ONNX graph takes input of shape %s but the card lists %d "
                             "features" % (shape, card.n_features))
    return inputs[0].name, dtype


def read_graph(model_dir, spec):
    """The graph's bytes, checked against the card's sha256."""
    path = os.path.join(model_dir, ONNX_FILE)
    try:
        if os.path.getsize(path) > MAX_GRAPH_BYTES:
            raise ModelLoadError("%s is larger than %d MiB" % (ONNX_FILE, MAX_GRAPH_BYTES >> 20))
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ModelLoadError("no ONNX graph (%s) in the model directory" % ONNX_FILE) from None
    except OSError as exc:
        raise ModelLoadError("%s cannot be read: %s" % (ONNX_FILE, exc.strerror)) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec["sha256"]:
        raise ModelLoadError("%s sha256 %s does not match the card's %s"
                             % (ONNX_FILE, actual, spec["sha256"]))
    return data


def session_options():
    import onnxruntime
    options = onnxruntime.SessionOptions()
    # One request at a time per Lambda environment, on a fraction of a vCPU:
    # threads would only contend.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def load(model_dir, card):
    """An :class:`OnnxModel` for ``card`` in ``model_dir``, or ModelLoadError."""
    spec = card.onnx
    data = read_graph(model_dir, spec)
    graph_policy.check(data)
    try:
        import onnxruntime
    except ImportError:
        raise ModelLoadError("the card says onnxruntime but it is not installed") from None
    try:
        session = onnxruntime.InferenceSession(data, sess_options=session_options(),
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # an unknown operator, a malformed graph...
        raise ModelLoadError("the ONNX graph does not load: %s" % str(exc)[:300],
                             public="the ONNX graph does not load") from None
    return OnnxModel(session, card, spec)
