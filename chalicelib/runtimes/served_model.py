"""The served model: one class with ``load()``, ``ready()`` and ``infer()``
(arrays, what every protocol encodes), plus ``answer_json()``, the
``POST /model`` answer written from JSON prepared at load.

It is loaded once per process (Lambda's init phase, or lazily on the first
request under ``chalice local``), never per request. A model that fails to
load leaves the app up: ``error`` says why, and every prediction answers 503.
A failure that may pass on its own (a remote artifact S3 could not serve) is
tried again by a later request, after a delay that doubles from
:data:`RETRY_FIRST_S` up to :data:`RETRY_MAX_S`; each 503 meanwhile says
when (:meth:`ServedModel.retry_after`, also the ``Retry-After`` header).
"""
import logging
import math
import threading
import time

import numpy as np

from chalicelib.http.errors import (ModelLoadError, ModelUnavailable, PredictionFailed, ServiceError,
                               Unprocessable)
from chalicelib.runtimes.answer_json import AnswerJson
from chalicelib.runtimes.choice import load_model_dir

log = logging.getLogger(__name__)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


class ServedModel:
    def __init__(self, model_dir, runtime_choice=None):
        self.model_dir = model_dir
        self.runtime_choice = runtime_choice  # MODEL_RUNTIME: None is the card's choice
        self.card = None
        self.estimator = None
        self.runtime = None
        self._context = None
        self.schema = None
        self.error = None
        self.has_proba = False
        self.classes = None
        self.identity = self.headers = None
        self._answer = None  # AnswerJson, prepared at load
        self._loaded = False
        self._lock = threading.Lock()
        self._failures = 0  # consecutive retryable load failures
        self._retry_at = None  # time.monotonic() of the next attempt, if any

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
        self._retry_at = None
        try:
            loaded = load_model_dir(self.model_dir, self.runtime_choice)
            self.runtime, self._context = loaded.runtime, loaded.context
            self._prepare(loaded.card, loaded.estimator)
            self.error = None
            self._failures = 0
        except ModelLoadError as exc:
            self.card = self.estimator = self.headers = None
            self.error = "model not available: %s" % exc.public
            if exc.retryable:
                self._failures += 1
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
                self._retry_at = time.monotonic() + delay
                log.error("model load failed for %s (attempt %d, next in %.0f s): %s",
                          self.model_dir, self._failures, delay, exc)
            else:
                log.error("model load failed for %s: %s", self.model_dir, exc)
        except Exception as exc:  # whatever the artifact holds: never out of the init phase
            self.card = self.estimator = self.headers = None
            self.error = "model not available: the estimator cannot be served (%s)" \
                % type(exc).__name__
            log.error("model %s cannot be served: %s: %s", self.model_dir,
                      type(exc).__name__, exc)

    def _prepare(self, card, estimator):
        self.card = card
        self.estimator = estimator
        # a compiled DataFrame model is fed column by column, without pandas
        self.schema = card.schema.fed_by_columns() if getattr(estimator, "by_columns", False) \
            else card.schema
        self.has_proba = hasattr(estimator, "predict_proba")
        self.identity = {"name": card.name, "version": card.version}
        self._answer = AnswerJson(self.identity, getattr(estimator, "classes_", None))
        self.classes = self._answer.classes
        self.headers = {"Content-Type": "application/json",
                        "X-Model-Name": card.name, "X-Model-Version": card.version,
                        "X-Model-Runtime": self.runtime}
        log.info("model %s %s loaded from %s, served by %s", card.name, card.version,
                 self.model_dir, self.runtime)

    def fail(self, reason):
        """Mark the model unusable without trying to load it."""
        log.error("%s", reason)
        self.error = reason
        self._loaded = True

    def retry_after(self):
        """Whole seconds until the next load attempt, or None when none is due."""
        if self._retry_at is None or not self.error:
            return None
        return max(1, math.ceil(self._retry_at - time.monotonic()))

    def _retry_if_due(self):
        if self._retry_at is None or time.monotonic() < self._retry_at:
            return
        with self._lock:
            if self._retry_at is not None and time.monotonic() >= self._retry_at:
                log.info("model %s: load attempt %d", self.model_dir, self._failures + 1)
                self._load()

    def ready(self):
        """The loaded model, or ModelUnavailable saying why not (and, for a
        failure that may pass, when the next attempt is; a due attempt is
        made first)."""
        self.load()
        self._retry_if_due()
        if self.error:
            wait = self.retry_after()
            if wait is not None:
                raise ModelUnavailable("%s; the next attempt to load it is in %d s"
                                       % (self.error, wait))
            raise ModelUnavailable(self.error)
        return self

    def infer(self, X, probabilities=False):
        """``(predictions, probabilities or None)`` as numpy arrays for a
        validated matrix ``X``: what every protocol renders in its own shape."""
        if probabilities and not self.has_proba:
            raise Unprocessable("model %s (%s) has no predict_proba"
                                % (self.card.name, type(self.estimator).__name__),
                                ("probabilities",))
        # Finite is not enough: 1e308 overflows a scaler or a float32 cast
        # into inf and NaN, and the model would answer from those (a label
        # computed from NaN, or NaN probabilities). Overflow and invalid
        # operations raise here instead, and the client hears it is the values.
        try:
            with self._context(), np.errstate(over="raise", invalid="raise"):
                if probabilities and hasattr(self.estimator, "predict_both"):
                    predictions, proba = self.estimator.predict_both(X)
                else:
                    predictions = self.estimator.predict(X)
                    proba = self.estimator.predict_proba(X) if probabilities else None
        except ServiceError:
            raise
        except FloatingPointError:
            raise Unprocessable("values too large for model %s: its arithmetic overflows; "
                                "send values of a realistic magnitude" % self.card.name) from None
        except Exception:
            log.exception("model %s raised during prediction", self.card.name)
            raise PredictionFailed("prediction failed") from None
        predictions = np.asarray(predictions)
        _check_finite_rows(predictions, "prediction")
        if probabilities:
            if isinstance(proba, list):  # multi-output: per row, one list per output
                proba = np.stack([np.asarray(p) for p in proba], axis=1) \
                    if len({np.shape(p) for p in proba}) == 1 else proba
            _check_finite_rows(np.hstack(proba) if isinstance(proba, list) else proba,
                               "probability")
        return predictions, proba

    def answer_json(self, X, probabilities=False):
        """``POST /model``'s response body (JSON text) for a validated matrix ``X``:
        predictions (and class probabilities), labels exactly as trained,
        and the model's name and version."""
        predictions, proba = self.infer(X, probabilities)
        return self._answer.write(predictions, proba if probabilities else None)


def _check_finite_rows(values, what):
    """A model that answers NaN or infinity for a row (log1p(-1), a division
    by a zero variance...) answered nothing for it: a 422 naming the row."""
    if values.dtype.kind not in "fc" or values.size == 0:
        return
    finite = np.isfinite(values)
    if finite.all():
        return
    rows = np.flatnonzero(~finite.reshape(len(values), -1).all(axis=1))
    shown = ", ".join(map(str, rows[:10].tolist())) + (" ..." if len(rows) > 10 else "")
    raise Unprocessable("row %s: the model's %s is not a finite number (NaN or infinite) for "
                        "these values; they are outside what the model can answer"
                        % (shown, what))
