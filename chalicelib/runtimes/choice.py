"""Which runtime serves a model directory, and loading it with that runtime.

Two runtimes answer the same contract:

* ``onnxruntime``: the card's ONNX graph (``model.onnx``), made by
  ``publisher.publish`` from the pickle and kept only when it agreed with
  scikit-learn; imports numpy and onnxruntime, nothing else of the
  scientific stack (:mod:`chalicelib.runtimes.onnx_runtime`);
* ``scikit-learn``: the pickle itself, through the restricted unpickler
  (:mod:`chalicelib.safeload.loading`).

The card names the default; ``MODEL_RUNTIME=scikit-learn`` serves the pickle
even when a graph is there (to compare the two, or to step around a
converter problem without republishing). Nothing here imports either
runtime until it is chosen.
"""
import contextlib
import functools
import os

from chalicelib.runtimes import onnx_runtime, s3_artifact
from chalicelib.schema.card import SCIKIT_LEARN, CardError, ModelCard
from chalicelib.http.config import MODEL_RUNTIME
from chalicelib.http.errors import ModelLoadError

RUNTIME_ENV = MODEL_RUNTIME.name
CHOICES = ("auto", SCIKIT_LEARN, onnx_runtime.RUNTIME)


class Loaded:
    """A loaded model: its card, the estimator (or its ONNX stand-in), the
    runtime serving it, and the context every prediction runs in."""

    __slots__ = ("card", "estimator", "runtime", "context")

    def __init__(self, card, estimator, runtime, context):
        self.card = card
        self.estimator = estimator
        self.runtime = runtime
        self.context = context


def chosen_runtime(card, choice=None):
    """The runtime that serves ``card`` under ``choice`` (the value of
    ``MODEL_RUNTIME``; None: the card's)."""
    wanted = (choice or "auto").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise ModelLoadError("%s must be one of %s, got %r"
                             % (RUNTIME_ENV, ", ".join(CHOICES), wanted))
    if wanted == "auto":
        return card.runtime
    if wanted == onnx_runtime.RUNTIME and card.runtime != onnx_runtime.RUNTIME:
        raise ModelLoadError("%s=onnxruntime but model %s has no ONNX graph (its card says "
                             "runtime %s)" % (RUNTIME_ENV, card.name, card.runtime))
    return wanted


def load_model_dir(model_dir, choice=None):
    """A :class:`Loaded` for ``model_dir``, or ModelLoadError saying why not.
    The load is tried first in a child process under hard limits
    (:mod:`chalicelib.safeload.trial_load`); only a load that held there is
    run here."""
    try:
        card = ModelCard.read(model_dir)
    except CardError as exc:
        raise ModelLoadError(str(exc)) from None
    runtime = chosen_runtime(card, choice)
    if runtime == onnx_runtime.RUNTIME:
        load = functools.partial(onnx_runtime.load, model_dir, card)
        _tried(load, os.path.join(model_dir, onnx_runtime.ONNX_FILE), "onnxruntime")
        return Loaded(card, load(), runtime, contextlib.nullcontext)
    try:
        from chalicelib.safeload import loading
        import sklearn
    except ImportError as exc:  # a package built for a model ONNX Runtime serves
        raise ModelLoadError("the scikit-learn runtime is not installed here (no %s): this "
                             "package was built for a model served by ONNX Runtime; rebuild "
                             "it for this model" % exc.name) from None
    loading.check_versions(card)  # before a download: a refused model costs no transfer
    artifact = s3_artifact.artifact_path(model_dir, card)
    load = functools.partial(loading.load_pickled, model_dir, card, artifact)
    _tried(load, artifact, None, ahead=loading.resolve_ahead)
    estimator = load()
    # Parsing already proved X finite (or NaN where the card allows it),
    # so scikit-learn's own finiteness scans are repeated work.
    return Loaded(card, estimator, runtime,
                  functools.partial(sklearn.config_context, assume_finite=True))


def _tried(load, path, runtime_module, ahead=None):
    """Raise ModelLoadError unless ``load`` completes in a child process
    within the load's limits. The runtime (and, by ``ahead(path)``, the
    modules the artifact names) is imported here first, so that the child
    shares it instead of importing it twice."""
    if not os.path.isfile(path):
        return  # the load itself says the file is missing
    from chalicelib.safeload import trial_load
    if not trial_load.enabled():
        return
    if runtime_module:
        try:
            __import__(runtime_module)
        except ImportError:
            return  # the load itself says it is not installed
    if ahead is not None:
        ahead(path)
    trial_load.trial(load, path)
