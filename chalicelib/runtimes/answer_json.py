"""``POST /model``'s answer as JSON text, written from pieces prepared once
at load: the model's identity and classes, and each string class label's
JSON. Converting each numpy label to a Python string costs more than the
model's own prediction on a large batch, so labels are written by position
in the sorted classes instead. Every other protocol encodes ``infer()``'s
arrays itself (:mod:`chalicelib.protocols.common`)."""
import json

import numpy as np

from chalicelib.http.errors import ModelLoadError, ServiceError



def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError("not JSON serializable: %s" % type(value).__name__)


_ENCODER = json.JSONEncoder(allow_nan=False, default=_plain)


class AnswerJson:
    """The writer of one loaded model's answers."""

    def __init__(self, identity, classes):
        """``identity``: ``{"name", "version"}``; ``classes``: the estimator's
        ``classes_`` (an array, a list of arrays for a multi-output model, or
        None)."""
        self.classes = classes_list(classes)
        self._identity = json.dumps(identity)
        self._classes = json.dumps(self.classes)
        single = classes is not None and not isinstance(classes, list)
        self._classes_array = np.asarray(classes) if single else None
        self._label_json = _label_json(self._classes_array)
        # ONNX Runtime answers string labels as Python strings (an object
        # array): their JSON is looked up by value, with no numpy string cast
        self._json_of_label = dict(zip(self.classes, self._label_json)) \
            if self._label_json is not None else {}

    def write(self, predictions, proba=None):
        """The body: predictions, the classes and probabilities when
        ``proba`` is given, and the model's identity."""
        parts = ['{"predictions": ', self._predictions(predictions)]
        if proba is not None:
            parts += [', "classes": ', self._classes,
                      ', "probabilities": ', encode(probability_rows(proba, len(predictions)))]
        parts += [', "model": ', self._identity, "}"]
        return "".join(parts)

    def _predictions(self, predictions):
        labels = self._label_json
        if predictions.dtype == object and self._json_of_label:
            try:
                return "[" + ", ".join(map(self._json_of_label.__getitem__,
                                           predictions.tolist())) + "]"
            except (KeyError, TypeError):  # a label not among the classes: encode it
                return encode(predictions.tolist())
        if labels is not None and predictions.dtype == self._classes_array.dtype:
            positions = np.searchsorted(self._classes_array, predictions)
            positions[positions >= len(labels)] = 0
            if (self._classes_array[positions] == predictions).all():
                return "[" + ", ".join(map(labels.__getitem__, positions.tolist())) + "]"
        return encode(predictions.tolist())


def classes_list(classes):
    """``classes_`` as plain lists (one per output for a multi-output model),
    or None; a ``classes_`` that is no list of labels cannot be served."""
    if classes is None:
        return None
    if isinstance(classes, list):  # multi-output: one array of classes per output
        return [np.asarray(c).tolist() for c in classes]
    classes = np.asarray(classes)
    if classes.ndim != 1:
        raise ModelLoadError("classes_ of shape %s cannot be served" % (classes.shape,))
    return classes.tolist()


def probability_rows(proba, n_rows):
    """``infer``'s probabilities as plain lists, one entry per row (for a
    multi-output model whose outputs differ in class count, one list per
    output in each row)."""
    if isinstance(proba, list):
        return [[p[i].tolist() for p in proba] for i in range(n_rows)]
    return proba.tolist()


def encode(value):
    """JSON text (numpy scalars as Python's); a non-finite model output is
    no JSON: the server's failure, a 500 saying so."""
    try:
        return _ENCODER.encode(value)
    except ValueError:
        raise ServiceError("model returned a non-finite value") from None


def _label_json(classes):
    """JSON of each class label when they are sorted strings, else None."""
    if classes is None or classes.dtype.kind != "U" or classes.ndim != 1:
        return None
    if len(classes) > 1 and not (classes[:-1] < classes[1:]).all():
        return None
    return [json.dumps(label) for label in classes.tolist()]
