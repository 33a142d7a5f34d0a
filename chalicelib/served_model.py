"""The served model: one small class with ``load()`` and ``predict()``.

It is loaded once per process (Lambda's init phase, or lazily on the first
request under ``chalice local``), never per request. A model that fails to
load leaves the app up: ``error`` says why, and every prediction answers 503.
"""
import json
import logging
import threading

import numpy as np
import sklearn

from chalicelib.errors import (ModelLoadError, ModelUnavailable, PredictionFailed, ServiceError,
                               Unprocessable)
from chalicelib.loading import load_model_dir
from chalicelib.parsing import Schema

log = logging.getLogger(__name__)


class ServedModel:
    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.card = None
        self.estimator = None
        self.schema = None
        self.error = None
        self.has_proba = False
        self.classes = None
        self.identity = self.headers = None
        self._identity_json = self._classes_json = None
        self.version_json = "null"
        self._classes_array = self._label_json = None
        self._loaded = False
        self._lock = threading.Lock()

    def load(self):
        """Load the model directory once; later calls return at once."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _load(self):
        try:
            card, estimator = load_model_dir(self.model_dir)
        except ModelLoadError as exc:
            self.error = "model not available: %s" % exc.public
            log.error("model load failed for %s: %s", self.model_dir, exc)
            return
        try:
            self._serve(card, estimator)
        except Exception as exc:    # never an exception out of the init phase
            self.card = self.estimator = None
            self.error = "model not available: estimator cannot be served (%s)" \
                % type(exc).__name__
            log.error("model %s cannot be served: %s: %s", self.model_dir,
                      type(exc).__name__, exc)

    def _serve(self, card, estimator):
        self.card = card
        self.estimator = estimator
        self.schema = Schema(card.feature_names, card.accepts_missing)
        self.has_proba = hasattr(estimator, "predict_proba")
        classes = getattr(estimator, "classes_", None)
        self.classes = classes.tolist() if classes is not None else None
        self.identity = {"name": card.name, "version": card.version}
        self._identity_json = json.dumps(self.identity)
        self.version_json = json.dumps(card.version)
        self.headers = {"Content-Type": "application/json",
                        "X-Model-Name": card.name, "X-Model-Version": card.version}
        self._classes_json = json.dumps(self.classes)
        self._classes_array = np.asarray(classes) if classes is not None else None
        self._label_json = _label_json(self._classes_array)
        log.info("model %s %s loaded from %s", card.name, card.version, self.model_dir)

    def fail(self, reason):
        """Mark the model unusable without trying to load it."""
        log.error("%s", reason)
        self.error = reason
        self._loaded = True

    def ready(self):
        """The loaded model, or ModelUnavailable saying why not."""
        self.load()
        if self.error:
            raise ModelUnavailable(self.error)
        return self

    def predict(self, X, probabilities=False):
        """The response body (JSON text) for a validated matrix ``X``:
        predictions (and class probabilities), labels exactly as trained,
        and the model's name and version."""
        if probabilities and not self.has_proba:
            raise Unprocessable("probabilities: model %s (%s) has no predict_proba"
                                % (self.card.name, type(self.estimator).__name__))
        # Parsing already proved X finite (or NaN where the card allows it),
        # so scikit-learn's own finiteness scans are repeated work.
        # Finite is not enough: 1e308 overflows a scaler or a float32 cast
        # into inf and NaN, and the model would answer from those (a label
        # computed from NaN, or NaN probabilities). Overflow and invalid
        # operations raise here instead, and the client hears it is the values.
        try:
            with sklearn.config_context(assume_finite=True), \
                    np.errstate(over="raise", invalid="raise"):
                predictions = self.estimator.predict(X)
                proba = self.estimator.predict_proba(X) if probabilities else None
        except FloatingPointError:
            raise Unprocessable("values too large for model %s: its arithmetic overflows; "
                                "send values of a realistic magnitude" % self.card.name) from None
        except Exception:
            log.exception("model %s raised during prediction", self.card.name)
            raise PredictionFailed("prediction failed") from None
        parts = ['{"predictions": ', self._predictions_json(predictions)]
        if probabilities:
            parts += [', "classes": ', self._classes_json,
                      ', "probabilities": ', _encode(proba.tolist())]
        parts += [', "model": ', self._identity_json, "}"]
        return "".join(parts)

    def _predictions_json(self, predictions):
        """JSON of the predictions. String class labels are written from
        their JSON prepared at load, by position in the sorted ``classes_``:
        converting each numpy string to a Python one costs more than the
        model's own prediction on a large batch."""
        labels = self._label_json
        if labels is not None and predictions.dtype == self._classes_array.dtype:
            positions = np.searchsorted(self._classes_array, predictions)
            positions[positions >= len(labels)] = 0
            if (self._classes_array[positions] == predictions).all():
                return "[" + ", ".join(map(labels.__getitem__, positions.tolist())) + "]"
        return _encode(predictions.tolist())


def _label_json(classes):
    """JSON of each class label when they are sorted strings, else None."""
    if classes is None or classes.dtype.kind != "U" or classes.ndim != 1:
        return None
    if len(classes) > 1 and not (classes[:-1] < classes[1:]).all():
        return None
    return [json.dumps(label) for label in classes.tolist()]


_ENCODER = json.JSONEncoder(allow_nan=False)


def _encode(value):
    try:
        return _ENCODER.encode(value)
    except ValueError:  # the model answered NaN or Infinity: not valid JSON
        raise ServiceError("model returned a non-finite value") from None
