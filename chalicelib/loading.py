"""Loading a model directory: card, checksum, version check, unpickling.

Every check that can refuse a model lives here, so that ``model.publish``
(before writing) and the app (at start) refuse the same artifacts for the
same reasons. Failures raise :class:`~chalicelib.errors.ModelLoadError` with a
reason fit for a 503 message and the log.
"""
import os

import joblib
import sklearn

from chalicelib.card import ARTIFACT_FILE, CardError, ModelCard, sha256_of
from chalicelib.errors import ModelLoadError

ALLOW_VERSION_SKEW_ENV = "ALLOW_VERSION_SKEW"


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_versions(card, allow_skew=None):
    """Refuse a model saved by another scikit-learn: pickles are not portable
    across its versions, and a wrong answer is worse than no answer."""
    if allow_skew is None:
        allow_skew = _truthy(os.environ.get(ALLOW_VERSION_SKEW_ENV, ""))
    saved = card.versions.get("scikit-learn") if isinstance(card.versions, dict) else None
    if saved != sklearn.__version__ and not allow_skew:
        raise ModelLoadError(
            "model was saved with scikit-learn %s but this runtime has %s; "
            "republish it with the pinned version (or set %s=true to accept the risk)"
            % (saved, sklearn.__version__, ALLOW_VERSION_SKEW_ENV))


def check_estimator(estimator, card):
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError("artifact is a %s, which has no predict()"
                             % type(estimator).__name__)
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and n_in != card.n_features:
        raise ModelLoadError("card lists %d features but the estimator expects %d"
                             % (card.n_features, n_in))


def load_artifact(path):
    """Unpickle an artifact. Kept apart so the unpickler can be hardened."""
    return joblib.load(path)


def load_model_dir(model_dir):
    """Return ``(card, estimator)`` for ``model_dir`` or raise ModelLoadError."""
    try:
        card = ModelCard.read(model_dir)
    except CardError as exc:
        raise ModelLoadError(str(exc)) from None
    artifact = os.path.join(model_dir, ARTIFACT_FILE)
    if not os.path.isfile(artifact):
        raise ModelLoadError("no model artifact at %s" % artifact)
    actual = sha256_of(artifact)
    if actual != card.sha256:
        raise ModelLoadError("artifact sha256 %s does not match the card's %s"
                             % (actual, card.sha256))
    check_versions(card)
    try:
        estimator = load_artifact(artifact)
    except ModelLoadError:
        raise
    except Exception as exc:  # a corrupt or foreign pickle can raise anything
        raise ModelLoadError("artifact does not load: %s: %s"
                             % (type(exc).__name__, exc)) from None
    check_estimator(estimator, card)
    return card, estimator
