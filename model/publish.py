"""Bring your own model: check a scikit-learn estimator and publish it as a
model directory (``model.joblib`` + the card ``model.json``).

    python -m model.publish PATH.joblib --name NAME --version VERSION [--features a,b,c]

The artifact is loaded with the same loader the app uses, so anything the app
would refuse is refused here first.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import warnings

import joblib
import numpy as np
import sklearn
from sklearn.base import is_classifier
from sklearn.exceptions import InconsistentVersionWarning

from chalicelib.card import ARTIFACT_FILE, CARD_FILE, ModelCard, build_card, sha256_of
from chalicelib.errors import ModelLoadError
from chalicelib.loading import check_estimator, load_artifact
from model.audit import AuditRefused, audit_artifact

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(PROJECT_DIR, "model")
REQUIREMENTS = os.path.join(PROJECT_DIR, "requirements.txt")


class PublishError(Exception):
    """The estimator cannot be published; the message says why."""


def pinned_version(package, requirements=REQUIREMENTS):
    with open(requirements) as f:
        for line in f:
            match = re.match(r"\s*%s\s*==\s*([^\s;#]+)" % re.escape(package), line)
            if match:
                return match.group(1)
    raise PublishError("%s is not pinned in %s" % (package, requirements))


def load_estimator(path, trust=False):
    """Load an artifact; return it with the scikit-learn version that saved it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            estimator = load_artifact(path, trust=trust or None)
        except ModelLoadError as exc:
            raise PublishError(str(exc)) from None
        except Exception as exc:
            raise PublishError("%s does not load: %s: %s" % (path, type(exc).__name__, exc)) from None
    saved = [w.message.original_sklearn_version for w in caught
             if issubclass(w.category, InconsistentVersionWarning)]
    return estimator, (saved[0] if saved else sklearn.__version__)


def infer_features(estimator, features=None):
    n_in = getattr(estimator, "n_features_in_", None)
    if features:
        if n_in is not None and len(features) != n_in:
            raise PublishError("--features names %d features but the estimator expects %d"
                               % (len(features), n_in))
        return list(features)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    if n_in is not None:
        return ["x%d" % i for i in range(n_in)]
    raise PublishError("cannot infer the features (no feature_names_in_ or n_features_in_); "
                       "pass --features a,b,c")


def check_predicts(estimator, n_features):
    """Prove the estimator predicts on a sample row; say if it accepts NaN."""
    sample = np.zeros((1, n_features))
    try:
        prediction = estimator.predict(sample)
        if hasattr(estimator, "predict_proba"):
            estimator.predict_proba(sample)
    except Exception as exc:
        raise PublishError("the estimator fails to predict a sample row of %d zeros: %s: %s"
                           % (n_features, type(exc).__name__, exc)) from None
    if len(prediction) != 1:
        raise PublishError("the estimator returned %d predictions for one row" % len(prediction))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.predict(np.full((1, n_features), np.nan))
        return True
    except Exception:
        return False


def publish(artifact_path, *, name, version, features=None, out_dir=DEFAULT_OUT,
            force=False, metrics=None, created_at=None, trust=False):
    """Check ``artifact_path`` and write ``out_dir``/model.joblib + model.json."""
    try:    # in a child process with limits, before this process unpickles it
        audit = audit_artifact(artifact_path, trust=trust)
    except AuditRefused as exc:
        raise PublishError(str(exc)) from None
    estimator, saved_with = load_estimator(artifact_path, trust=trust)
    pinned = pinned_version("scikit-learn")
    if saved_with != pinned and not force:
        raise PublishError(
            "the estimator was saved with scikit-learn %s but the Lambda ships %s "
            "(requirements.txt); scikit-learn does not promise that pickles load across "
            "versions. Re-save it with %s, or pass --force to publish anyway"
            % (saved_with, pinned, pinned))
    feature_names = infer_features(estimator, features)
    accepts_missing = check_predicts(estimator, len(feature_names))
    classes = getattr(estimator, "classes_", None)
    card = build_card(
        name=name, version=version,
        task="classification" if is_classifier(estimator) else "regression",
        feature_names=feature_names,
        classes=classes.tolist() if classes is not None else None,
        accepts_missing=accepts_missing,
        sha256=sha256_of(artifact_path),
        versions={"scikit-learn": saved_with, "numpy": np.__version__,
                  "joblib": joblib.__version__, "python": platform.python_version()},
        estimator=_describe_estimator(estimator),
        metrics=metrics,
        created_at=created_at or datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0).isoformat(),
    )
    card["audit"] = audit
    try:
        check_estimator(estimator, ModelCard(card))
    except ModelLoadError as exc:
        raise PublishError(str(exc)) from None
    _write_model_dir(out_dir, artifact_path, card)
    return card


def _describe_estimator(estimator):
    steps = getattr(estimator, "steps", None)
    if steps:
        return "Pipeline(%s)" % ", ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def _write_model_dir(out_dir, artifact_path, card):
    """Write both files through temporary names, artifact first, so a reader
    never sees a card that describes an artifact not yet in place."""
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, ARTIFACT_FILE)
    if os.path.abspath(artifact_path) != os.path.abspath(target):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".model-")
        os.close(fd)
        shutil.copyfile(artifact_path, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would ship unreadable to Lambda's user
        os.replace(tmp, target)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".card-")
    with os.fdopen(fd, "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(out_dir, CARD_FILE))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", help="a joblib file holding a fitted estimator")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--features", help="comma-separated feature names, in order")
    parser.add_argument("--out", default=DEFAULT_OUT, help="model directory (default: model/)")
    parser.add_argument("--metrics", help="JSON object of evaluation metrics to record")
    parser.add_argument("--force", action="store_true",
                        help="publish even if saved with another scikit-learn version")
    parser.add_argument("--trust", action="store_true",
                        help="publish even if the audit finds code, callables or file reads")
    args = parser.parse_args(argv)
    try:
        metrics = json.loads(args.metrics) if args.metrics else None
        features = [f.strip() for f in args.features.split(",")] if args.features else None
        card = publish(args.artifact, name=args.name, version=args.version, features=features,
                       out_dir=args.out, force=args.force, metrics=metrics, trust=args.trust)
    except (PublishError, ValueError) as exc:
        print("publish: refused: %s" % exc, file=sys.stderr)
        return 2
    print("published %s %s (%s, %d features) to %s"
          % (card["name"], card["version"], card["estimator"], len(card["features"]), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
