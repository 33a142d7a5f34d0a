"""Loading a pickled model (the scikit-learn runtime): checksum, version
check, unpickling.

Every check that can refuse a model lives here, so that ``publisher.publish``
(before writing) and the app (at start) refuse the same artifacts for the
same reasons. Failures raise :class:`~chalicelib.http.errors.ModelLoadError` with a
reason fit for a 503 message and the log.
"""
import logging
import numbers
import os

import joblib
import numpy as np
import sklearn

from chalicelib.safeload import boosting  # noqa: F401  (its unpickler rule for xgboost/lightgbm)
from chalicelib.safeload import model_audit
from chalicelib.safeload import safe_pickle
from chalicelib.safeload import user_code
from chalicelib.safeload import validate_native
from chalicelib.safeload.load_budget import Budget, address_space_limit

from chalicelib.http import config
from chalicelib.http.errors import ModelLoadError

log = logging.getLogger(__name__)

ALLOW_VERSION_SKEW_ENV = config.ALLOW_VERSION_SKEW.name
# Off by default. When true, artifacts are unpickled by plain joblib.load,
# which runs whatever code they name: only for artifacts you built yourself.
TRUST_MODEL_PICKLE_ENV = config.TRUST_MODEL_PICKLE.name


def check_versions(card, allow_skew=None):
    """Refuse a model saved by another scikit-learn: pickles are not portable
    across its versions, and a wrong answer is worse than no answer."""
    if allow_skew is None:
        allow_skew = config.model_setting(config.ALLOW_VERSION_SKEW)
    saved = card.versions.get("scikit-learn") if isinstance(card.versions, dict) else None
    if saved != sklearn.__version__ and not allow_skew:
        advice = ("republish it with the pinned version (or set %s=true to accept the risk)"
                  % ALLOW_VERSION_SKEW_ENV)
        raise ModelLoadError(
            "model was saved with scikit-learn %s but this runtime has %s; %s"
            % (saved, sklearn.__version__, advice),
            public="model was saved with scikit-learn %s, not this runtime's version; %s"
            % (saved, advice))


def check_estimator(estimator, card):
    """The estimator is one the app can serve with this card; any surprise
    in its attributes is a ModelLoadError (a 503), never an exception that
    escapes the init phase."""
    try:
        _check_estimator(estimator, card)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError("estimator cannot be served: %s: %s"
                             % (type(exc).__name__, str(exc)[:200]),
                             public="estimator cannot be served (%s)" % type(exc).__name__) \
            from None


def _check_estimator(estimator, card):
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError("artifact is a %s, which has no predict()"
                             % type(estimator).__name__)
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None:
        if not isinstance(n_in, numbers.Integral) or isinstance(n_in, bool):
            raise ModelLoadError("estimator's n_features_in_ is a %s, not a count"
                                 % type(n_in).__name__)
        if n_in != card.n_features:
            raise ModelLoadError("card lists %d features but the estimator expects %d"
                                 % (card.n_features, n_in))
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        # One array of labels, or one per output (multi-output models).
        arrays = classes if isinstance(classes, list) else [classes]
        for labels in arrays:
            if not isinstance(labels, np.ndarray) or labels.ndim != 1 \
                    or labels.dtype.kind not in "biufUO":
                raise ModelLoadError("estimator's classes_ is a %s, not an array of labels"
                                     % type(labels).__name__)


def load_artifact(path, trust=None, n_features=None):
    """Unpickle an artifact with the restricted unpickler of
    :mod:`chalicelib.safeload.safe_pickle` (only the scientific stack's classes and
    reconstruction helpers), or, when ``TRUST_MODEL_PICKLE`` is true, with
    plain ``joblib.load``, saying so in the log every time. ``n_features``
    is the card's feature count, the width native state is checked against."""
    if trust is None:
        trust = config.model_setting(config.TRUST_MODEL_PICKLE)
    # A bomb nobody predicted fails as MemoryError, not an OOM-killed process:
    # unpickling, native-state validation and the audit alike.
    margin = max(2 * Budget.for_artifact(os.path.getsize(path)).max_bytes, 1 << 30)
    with address_space_limit(margin):
        if trust:
            log.warning("%s=true: unpickling %s with plain joblib.load, which runs any code "
                        "the artifact names; the allowlist of the scientific stack is OFF",
                        TRUST_MODEL_PICKLE_ENV, path)
            estimator = joblib.load(path)
        else:
            estimator = safe_pickle.load(path)
        # Indices native code trusts (trees, sparse, neighbors, libsvm): a crafted
        # state is a 503 here, not a segfault on the first request.
        try:
            validate_native.validate(estimator, n_features)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError("artifact state cannot be checked: %s: %s"
                                 % (type(exc).__name__, str(exc)[:200]),
                                 public="artifact state cannot be checked (%s)"
                                 % type(exc).__name__) from None
        if not trust:
            # Allowed classes can still be wired to read files: the
            # same rules publisher.publish applies, at every load.
            reason = model_audit.refusal(model_audit.inspect_model(estimator))
            if reason:
                raise ModelLoadError("%s; %s" % (reason, safe_pickle.OPT_OUT),
                                     public="%s; %s" % (reason.split(": ", 1)[0],
                                                        safe_pickle.OPT_OUT))
    return estimator


def resolve_ahead(path):
    """Import, before a trial load forks, the allowed modules ``path`` names
    (:func:`chalicelib.safeload.safe_pickle.resolve_ahead`); never raises."""
    try:
        return safe_pickle.resolve_ahead(path)
    except Exception:  # an optimisation: the load itself reports any problem
        return 0


def load_pickled(model_dir, card, artifact):
    """The estimator the card's pickle (the local file ``artifact``, its
    sha256 already checked) holds, every check above applied, or
    ModelLoadError (the scikit-learn runtime of :mod:`chalicelib.runtimes.choice`)."""
    code_dir = os.path.join(model_dir, user_code.CODE_DIR)
    modules = user_code.load_modules(code_dir, card.code)
    try:
        with user_code.allowing(code_dir, modules):
            estimator = load_artifact(artifact, n_features=card.n_features)
    except ModelLoadError:
        raise
    except MemoryError:
        raise ModelLoadError("artifact does not load within its memory budget (MemoryError)") \
            from None
    except Exception as exc:  # a corrupt or foreign pickle can raise anything
        raise ModelLoadError("artifact does not load: %s: %s" % (type(exc).__name__, exc),
                             public="artifact does not load (%s)" % type(exc).__name__) from None
    check_estimator(estimator, card)
    return estimator
