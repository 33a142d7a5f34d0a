"""The model card (``model.json``): what a model directory promises about its
artifact. Reading and checking it lives here; writing it lives in
``publisher/publish.py``, which builds cards with :func:`build_card`.
"""
import hashlib
import json
import os
import re

from chalicelib.schema.features import Schema, SchemaError

CARD_FILE = "model.json"
ARTIFACT_FILE = "model.joblib"
# Where the card's artifacts are: the pickle beside it or named by URI; the
# compiled graph beside it, described by the card's ``onnx`` object.
ONNX_RUNTIME = "onnxruntime"
ONNX_FILE = "model.onnx"
# S3 bucket names: 3-63 characters, lower case, digits, dots and hyphens.
_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([^\x00-\x1f\x7f]+)\Z")
TASKS = ("classification", "regression", "multilabel", "multioutput", "clustering",
         "outlier_detection")
REQUIRED_FIELDS = ("name", "version", "task", "features", "sha256", "versions")
SCIKIT_LEARN = "scikit-learn"
RUNTIMES = (SCIKIT_LEARN, ONNX_RUNTIME)


class CardError(ValueError):
    """The card is missing, unreadable or inconsistent."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelCard:
    """A validated view of ``model.json``; ``raw`` is the card as written."""

    def __init__(self, raw):
        if not isinstance(raw, dict):
            raise CardError("model card must be a JSON object")
        missing = [f for f in REQUIRED_FIELDS if f not in raw]
        if missing:
            raise CardError("model card lacks: " + ", ".join(missing))
        if raw["task"] not in TASKS:
            raise CardError("model card task must be one of: " + ", ".join(TASKS))
        features = raw["features"]
        if not isinstance(features, list) or not features:
            raise CardError("model card features must be a non-empty list")
        names = [f.get("name") if isinstance(f, dict) else None for f in features]
        if not all(isinstance(n, str) and n for n in names):
            raise CardError("every model card feature needs a non-empty name")
        if len(set(names)) != len(names):
            raise CardError("model card feature names must be unique")
        try:
            # Kept: the one typed schema parsing and serving go through.
            self.schema = Schema(features, bool(raw.get("accepts_missing_values", False)),
                                 raw.get("input") or "matrix")
        except SchemaError as exc:
            raise CardError("model card: %s" % exc) from None
        artifact = raw.get("artifact", ARTIFACT_FILE)
        if artifact != ARTIFACT_FILE:
            try:
                parse_s3_uri(artifact)
            except ValueError:
                raise CardError("model card artifact must be %s (beside the card) or an "
                                "s3://bucket/key URI, got %r" % (ARTIFACT_FILE, artifact)) from None
        code = raw.get("code", [])
        if not (isinstance(code, list) and all(isinstance(c, str) and c.isidentifier()
                                               for c in code)):
            raise CardError("model card code must be a list of module names")
        self.code = tuple(code)
        # Which runtime serves the model by default; the pickle stays the
        # source of truth (the ONNX graph was made from it and checked against it).
        self.runtime = raw.get("runtime", SCIKIT_LEARN)
        if self.runtime not in RUNTIMES:
            raise CardError("model card runtime must be one of: " + ", ".join(RUNTIMES))
        self.onnx = raw.get("onnx")
        if self.runtime == ONNX_RUNTIME:
            try:
                check_onnx_spec(self.onnx)
            except ValueError as exc:
                raise CardError("model card: %s" % exc) from None
        self.raw = raw
        self.name = str(raw["name"])
        self.version = str(raw["version"])
        self.task = raw["task"]
        self.feature_names = tuple(names)
        self.classes = raw.get("classes")
        self.accepts_missing = bool(raw.get("accepts_missing_values", False))
        self.sha256 = raw["sha256"]
        self.versions = raw["versions"]

    @classmethod
    def read(cls, model_dir):
        path = os.path.join(model_dir, CARD_FILE)
        try:
            with open(path, "rb") as f:
                raw = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise CardError("no model card (%s) in the model directory" % CARD_FILE) from None
        except OSError as exc:  # a directory, no permission...
            raise CardError("model card %s cannot be read: %s" % (CARD_FILE, exc.strerror)) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CardError("model card %s is not valid JSON: %s" % (CARD_FILE, exc)) from None
        return cls(raw)

    @property
    def n_features(self):
        return len(self.feature_names)


def build_card(*, name, version, task, feature_names=None, features=None, classes,
               accepts_missing, sha256, versions, estimator, metrics=None, created_at,
               input_kind=None, example=None, extra=None):
    """The dictionary written as ``model.json``; keys in a stable order.
    ``features`` are typed feature objects; ``feature_names`` alone means
    all numbers (the card of a plain numeric matrix model)."""
    if features is None:
        features = [{"name": n, "type": "number"} for n in feature_names]
    card = {
        "name": name,
        "version": version,
        "task": task,
        "estimator": estimator,
        "features": features,
        "classes": classes,
        "accepts_missing_values": accepts_missing,
        "versions": versions,
        "artifact": ARTIFACT_FILE,
        "sha256": sha256,
        "metrics": metrics or {},
        "created_at": created_at,
    }
    if input_kind and input_kind != "matrix":
        card["input"] = input_kind
    if example is not None:
        card["example"] = example
    if extra:
        card.update(extra)
    ModelCard(card)  # refuse to write a card that could not be read back
    return card




def is_remote(artifact):
    """Whether a card's ``artifact`` names an object by URI."""
    return isinstance(artifact, str) and "://" in artifact


def parse_s3_uri(uri):
    """``(bucket, key)`` of ``s3://bucket/key``; ValueError otherwise."""
    match = _S3_URI.match(uri) if isinstance(uri, str) else None
    if not match:
        raise ValueError("artifact %r is not an s3://bucket/key URI (the only remote "
                         "artifacts supported)" % (uri,))
    return match.group(1), match.group(2)


def check_onnx_spec(spec):
    """The card's ``onnx`` object is usable: a string ``sha256``, output
    names; raise ValueError saying what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("onnx must be an object")
    if spec.get("artifact", ONNX_FILE) != ONNX_FILE:
        raise ValueError("onnx artifact must be %s (beside the card)" % ONNX_FILE)
    sha = spec.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64):
        raise ValueError("onnx sha256 must be a hex digest")
    if not isinstance(spec.get("predictions"), str):
        raise ValueError("onnx predictions must name an output of the graph")
    if spec.get("probabilities") is not None and not isinstance(spec["probabilities"], str):
        raise ValueError("onnx probabilities must name an output of the graph")
    shape = spec.get("prediction_shape", [])
    if not (isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ValueError("onnx prediction_shape must be a list of positive sizes")
