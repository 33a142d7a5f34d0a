"""Lambda SnapStart runtime hooks.

With SnapStart (the ``prod`` SAM route, ``deploy/merge-prod.json``) Lambda
runs the init phase once per published version, snapshots the memory, and
starts every later execution environment by restoring that snapshot. Two
consequences this module handles:

* before the snapshot: everything a first request would otherwise pay for
  should already be in memory. The model is loaded (init normally did it;
  idempotent) and one prediction runs through the same parsing and model
  path a request takes, so lazily imported modules and first-call caches of
  numpy/scikit-learn are in the snapshot too. No log line is written: it is
  not a request.
* after a restore: every restored copy starts from the same memory, so the
  same pseudo-random state and the same counters. ``random`` and numpy's
  global generator are re-seeded from the OS, and the "first request of this
  environment" flag of the metrics is set again.

The registration API, ``snapshot_restore_py``, is provided by Lambda's Python
runtime (3.12+). It is imported guarded: elsewhere (``chalice local``, tests
without it) nothing is registered and nothing changes.
"""
import json
import logging
import random
import time

from chalicelib.ops import metrics
from chalicelib.http.errors import ServiceError
from chalicelib.schema.parsing import parse_request

log = logging.getLogger(__name__)


def register(service):
    """Register the hooks for ``service``; False when the runtime's API is
    not there (not on Lambda)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, service)
    register_after_restore(after_restore, service)
    return True


def before_snapshot(service):
    """Load the model (if init did not) and warm the request path. Returns
    the warm-up prediction's body (JSON text), or None when there was no
    usable model or no warm-up input fits it; never raises: a failed warm-up
    must not fail the snapshot (the model's own error still answers 503)."""
    model = service.model.load()
    if model.error:
        return None
    body = _warm_up_body(model.card)
    started = time.perf_counter()
    try:
        parsed = parse_request(body, "application/json", model.schema,
                               service.config.max_rows)
        reply = model.answer_json(parsed.X, probabilities=model.has_proba)
    except ServiceError as exc:
        log.warning("snapshot warm-up skipped: %s", exc)
        return None
    log.info("snapshot: model %s %s warmed with %d row(s) in %.1f ms", model.card.name,
             model.card.version, len(parsed.X), (time.perf_counter() - started) * 1000)
    return reply


def after_restore(service):
    """Make this restored copy unlike its siblings: fresh seeds, fresh
    per-environment state."""
    random.seed()  # from os.urandom
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a runtime dependency
        pass
    else:
        numpy.random.seed()  # the legacy global generator, from the OS
    metrics.reset_process()


def _warm_up_body(card):
    """The card's own example request when it has one, else one row of
    zeros in feature order (fits any all-numeric model)."""
    example = card.raw.get("example")
    if isinstance(example, dict):
        return json.dumps(example).encode()
    return json.dumps({"instances": [[0.0] * card.n_features]}).encode()
