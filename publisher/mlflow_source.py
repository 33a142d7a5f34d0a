"""An MLflow model as publish's input: where it comes from and what it says.

Owned here, and nothing else:

* resolving a model URI (a local ``MLmodel`` directory, ``runs:/<id>/<path>``,
  ``models:/<name>/<version>``, ``models:/<name>@<alias>``) to a local copy,
  with its provenance (run id, registry version and alias) read from the
  tracking server;
* the sklearn flavor's artifact: ``pickle`` and ``cloudpickle`` files are
  published as they are (the app's unpickler and the publish audit read
  them); a ``skops`` file is converted to a joblib file in a child process
  with the audit's limits, refusing any type skops does not trust unless the
  model's own ``skops_trusted_types`` names it;
* the signature as the card's typed schema (:func:`typed_schema`), checked
  against the fitted estimator; the input example as the card's example;
* MLflow's ``requirements.txt`` against the project's pins.

MLflow itself (mlflow-skinny) is a publish-time dependency only: the Lambda
never imports it.
"""
import hashlib
import json
import os
import re
import subprocess
import sys

from publisher import dependencies, schema_inference

#: What MLflow lists because its own pyfunc loader needs it, not the estimator.
MLFLOW_TOOLING = frozenset({"mlflow", "mlflow-skinny", "mlflow-tracing", "psutil", "rich"})
# A skops file is converted to joblib here, so skops never ships; importing
# skops.io imports pytest when it is installed, and MLflow's capture of the
# loader's imports lists it.
SKOPS_TOOLING = frozenset({"skops", "pytest"})
EXAMPLE_ROWS = 5
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")

# MLflow's column types -> the card's; the ones the card has no type for
# (binary, datetime, arrays, objects, maps) are refused by name.
COLUMN_TYPES = {"double": "number", "float": "number", "integer": "integer", "long": "integer",
                "boolean": "boolean", "string": "string"}


class MlflowSourceError(ValueError):
    """The MLflow model cannot be published; the message says why."""


class MlflowModel:
    """A local copy of an MLflow model and what its ``MLmodel`` records."""

    def __init__(self, uri, local_dir, provenance):
        from mlflow.models import Model
        self.uri = uri
        self.local_dir = local_dir
        try:
            self.meta = Model.load(local_dir)
        except Exception as exc:
            raise MlflowSourceError("%s holds no readable MLmodel: %s" % (uri, exc)) from None
        flavor = self.meta.flavors.get("sklearn")
        if flavor is None:
            raise MlflowSourceError("%s has no sklearn flavor (it has %s): only scikit-learn "
                                    "models are served" % (uri, ", ".join(self.meta.flavors)))
        self.flavor = flavor
        self.serialization_format = flavor.get("serialization_format", "cloudpickle")
        self.artifact = os.path.join(local_dir, flavor.get("pickled_model", "model.pkl"))
        if not os.path.isfile(self.artifact):
            raise MlflowSourceError("%s: the sklearn flavor names %s, which is not there"
                                    % (uri, flavor.get("pickled_model")))
        if flavor.get("code"):
            raise MlflowSourceError("%s logs its own code (code_paths), which publish does not "
                                    "ship from MLflow; publish the pickle with --code instead"
                                    % uri)
        self.provenance = dict(provenance, source_uri=uri,
                               serialization_format=self.serialization_format,
                               artifact_sha256=sha256_file(self.artifact))
        if self.meta.run_id and not self.provenance.get("run_id"):
            self.provenance["run_id"] = self.meta.run_id

    @property
    def signature(self):
        return self.meta.signature

    def input_example(self):
        """The logged input example (DataFrame, ndarray, list...) or None."""
        if not self.meta.saved_input_example_info:
            return None
        try:
            return self.meta.load_input_example(self.local_dir)
        except Exception as exc:
            raise MlflowSourceError("the input example of %s cannot be read: %s"
                                    % (self.uri, exc)) from None

    def requirements(self):
        path = os.path.join(self.local_dir, "requirements.txt")
        return path if os.path.isfile(path) else None


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- resolving a URI ---------------------------------------------------------


def resolve(uri, dst_dir, tracking_uri=None):
    """Download (or point at) the model ``uri`` names, into ``dst_dir``;
    return an :class:`MlflowModel`. ``tracking_uri``: the tracking server
    (default: MLflow's own resolution, ``MLFLOW_TRACKING_URI``)."""
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    if not _SCHEME.match(local):
        if not os.path.isfile(os.path.join(local, "MLmodel")):
            raise MlflowSourceError("%s is not an MLflow model directory (no MLmodel file)" % uri)
        return MlflowModel(uri, os.path.abspath(local), {})
    provenance = _registry_provenance(uri, tracking_uri)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst_dir,
                                                   tracking_uri=tracking_uri)
    except MlflowException as exc:
        raise MlflowSourceError("%s cannot be downloaded: %s" % (uri, exc.message)) from None
    except OSError as exc:
        raise MlflowSourceError("%s cannot be downloaded: %s" % (uri, exc)) from None
    return MlflowModel(uri, path, provenance)


def _registry_provenance(uri, tracking_uri):
    """Run id, registered name, version and alias of ``uri``, from the
    tracking server."""
    match = _RUNS_URI.match(uri)
    if match:
        return {"run_id": match.group("run_id"), "artifact_path": match.group("path")}
    match = _MODELS_URI.match(uri)
    if not match:
        if uri.startswith(("runs:", "models:")):
            raise MlflowSourceError("%s: expected runs:/<run id>/<path>, models:/<name>/<version>"
                                    " or models:/<name>@<alias>" % uri)
        return {}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, version, alias = match.group("name", "version", "alias")
    try:
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        elif version.isdigit():
            found = client.get_model_version(name, version)
        else:
            raise MlflowSourceError("%s: the version must be a number (or use @alias)" % uri)
    except MlflowException as exc:
        raise MlflowSourceError("%s is not in the model registry: %s" % (uri, exc.message)) \
            from None
    provenance = {"registered_model": name, "registry_version": str(found.version),
                  "run_id": found.run_id}
    if alias:
        provenance["alias"] = alias
    return provenance


# --- the artifact -------------------------------------------------------------


def joblib_artifact(model, staging):
    """The file publish takes: the flavor's pickle itself, or a skops file
    converted to joblib (``staging``/model.joblib)."""
    if model.serialization_format in ("pickle", "cloudpickle"):
        return model.artifact
    if model.serialization_format != "skops":
        raise MlflowSourceError("%s: unknown serialization format %r"
                                % (model.uri, model.serialization_format))
    out = os.path.join(staging, "model.joblib")
    trusted = list(model.flavor.get("skops_trusted_types") or [])
    from publisher import audit
    try:
        result = subprocess.run(
            [sys.executable, "-m", "publisher.mlflow_source", model.artifact, out,
             json.dumps(trusted)],
            cwd=audit.PROJECT_DIR, capture_output=True, text=True, timeout=audit.TIMEOUT_S,
            preexec_fn=_skops_limits)
    except subprocess.TimeoutExpired:
        raise MlflowSourceError("reading the skops file took over %d s" % audit.TIMEOUT_S) \
            from None
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["?"])[-1][:300]
        raise MlflowSourceError("the skops file of %s is refused: %s" % (model.uri, tail))
    return out


def _skops_limits():
    import resource

    from publisher import audit
    resource.setrlimit(resource.RLIMIT_AS, (audit.LIMIT_AS_BYTES, audit.LIMIT_AS_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (audit.LIMIT_CPU_S, audit.LIMIT_CPU_S))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _convert_skops(src, dst, trusted):
    """In the child: load with skops (types it trusts, plus the model's
    declared ones only), write a joblib file."""
    import joblib
    import skops.io
    untrusted = [t for t in skops.io.get_untrusted_types(file=src) if t not in trusted]
    if untrusted:
        raise SystemExit("skops does not trust %s (and the model's skops_trusted_types does "
                         "not name them)" % ", ".join(untrusted))
    estimator = skops.io.load(src, trusted=trusted or None)
    joblib.dump(estimator, dst)


# --- the signature and the example -------------------------------------------


def typed_schema(signature):
    """``schema(estimator) -> (card features, input kind)`` from an MLflow
    signature, or None without one (publish then infers from the estimator)."""
    if signature is None or signature.inputs is None:
        return None

    def schema(estimator):
        if signature.inputs.is_tensor_spec():
            return _from_tensors(signature.inputs, estimator)
        return _from_columns(signature.inputs, estimator)

    return schema


def _disagree(message):
    return MlflowSourceError("the signature and the estimator disagree: %s" % message)


def _from_columns(inputs, estimator):
    columns = inputs.inputs
    names = [c.name for c in columns]
    if len(names) == 1 and names[0] is None and _is_text_model(estimator):
        names = ["text"]  # a list of strings: MLflow names no column
    if any(n is None for n in names):
        raise MlflowSourceError("the signature has unnamed columns; the card needs a name for "
                                "every feature")
    types = []
    for column in columns:
        mlflow_type = getattr(column.type, "name", None) or type(column.type).__name__
        card_type = COLUMN_TYPES.get(mlflow_type)
        if card_type is None:
            raise MlflowSourceError("the signature's column %s is %s, which the card has no type "
                                    "for (numbers, integers, booleans and strings are served)"
                                    % (column.name, mlflow_type))
        types.append(card_type)
    first = schema_inference.first_step(estimator)
    if _is_text_model(estimator):
        if len(columns) != 1 or types[0] != "string":
            raise _disagree("the estimator takes one text per row, the signature %s"
                            % _described(names, types))
        return [{"name": names[0], "type": "text"}], "texts"
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None and [str(n) for n in names_in] != names:
        raise _disagree("the estimator was fitted on the columns %s, the signature names %s"
                        % (", ".join(map(str, names_in)), ", ".join(names)))
    n_in = getattr(estimator, "n_features_in_", getattr(first, "n_features_in_", None))
    if n_in is not None and n_in != len(names):
        raise _disagree("the estimator takes %d features, the signature %d"
                        % (n_in, len(names)))
    specs, input_kind = schema_inference.infer(estimator, names)
    for spec, card_type in zip(specs, types):
        _merge(spec, card_type)
    return specs, input_kind


def _merge(spec, card_type):
    """The signature's type on a spec the estimator filled (categories, a
    category dtype); refuse a type the estimator's categories contradict."""
    categories = spec.get("categories")
    if categories:
        strings = all(isinstance(c, str) for c in categories)
        if strings and card_type != "string":
            raise _disagree("column %s: the estimator's categories are strings (%s), the "
                            "signature says %s" % (spec["name"], ", ".join(categories[:5]),
                                                   card_type))
        if not strings and card_type == "string":
            raise _disagree("column %s: the estimator's categories are numbers, the signature "
                            "says string" % spec["name"])
    spec["type"] = card_type
    if card_type == "string":
        spec.setdefault("dtype", "object")


def _from_tensors(inputs, estimator):
    specs = inputs.inputs
    if len(specs) != 1:
        raise MlflowSourceError("the signature has %d named tensors; the card takes one matrix "
                                "(or one column of texts)" % len(specs))
    dtype, shape = specs[0].type, tuple(specs[0].shape)
    card_type = {"f": "number", "i": "integer", "u": "integer", "b": "boolean",
                 "U": "string", "O": "string", "S": "string"}.get(dtype.kind)
    if card_type is None:
        raise MlflowSourceError("the signature's tensor is %s, which the card has no type for"
                                % dtype)
    if _is_text_model(estimator):
        if len(shape) != 1 or card_type != "string":
            raise _disagree("the estimator takes one text per row, the signature a %s tensor "
                            "of shape %s" % (dtype, list(shape)))
        return [{"name": "text", "type": "text"}], "texts"
    if getattr(estimator, "feature_names_in_", None) is not None:
        raise _disagree("the estimator was fitted on named columns (%s), the signature takes "
                        "an unnamed tensor" % ", ".join(map(str, estimator.feature_names_in_)))
    if len(shape) != 2 or shape[1] in (-1, None):
        raise MlflowSourceError("the signature's tensor has shape %s; the card needs (-1, "
                                "number of features)" % list(shape))
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and n_in != shape[1]:
        raise _disagree("the estimator takes %d features, the signature's tensor %d"
                        % (n_in, shape[1]))
    specs, input_kind = schema_inference.infer(estimator, ["x%d" % i for i in range(shape[1])])
    for spec in specs:
        _merge(spec, card_type)
    return specs, input_kind


def _is_text_model(estimator):
    from sklearn.feature_extraction.text import _VectorizerMixin
    first = schema_inference.first_step(estimator)
    return isinstance(first, _VectorizerMixin) and getattr(first, "input", "content") == "content"


def _described(names, types):
    return "has %s" % ", ".join("%s (%s)" % pair for pair in zip(names, types))


def example_frame(example, features, limit=EXAMPLE_ROWS):
    """The logged input example as a DataFrame with the card's columns (its
    first ``limit`` rows), for the card's example; None without one."""
    if example is None:
        return None
    import numpy as np
    import pandas as pd
    names = [f["name"] for f in features]
    if isinstance(example, dict) and len(example) == 1:
        example = next(iter(example.values()))
    if isinstance(example, pd.DataFrame):
        if len(names) == 1 and features[0]["type"] == "text" and names[0] not in example:
            if example.shape[1] != 1:
                raise MlflowSourceError("the input example has %d columns; a text model takes "
                                        "one" % example.shape[1])
            example = example.set_axis(names, axis=1)
        missing = [n for n in names if n not in example.columns]
        if missing:
            raise MlflowSourceError("the input example lacks the column %s" % missing[0])
        frame = example[names]
    else:
        array = np.asarray(example, dtype=object)
        if array.ndim == 1:
            array = array.reshape(-1, 1) if len(names) == 1 else array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise MlflowSourceError("the input example has shape %s; the card has %d features"
                                    % (list(array.shape), len(names)))
        frame = pd.DataFrame(array, columns=names)
    return frame.head(limit).reset_index(drop=True)


# --- requirements -------------------------------------------------------------


def check_requirements(path, ours, serialization_format=None):
    """Compare MLflow's ``requirements.txt`` with the project's pins.
    Refuse a distribution the project does not pin (naming the pin to add);
    return ``{distribution: {"mlflow": v, "pinned": v}}`` of versions that
    differ (scikit-learn's own version is checked by publish)."""
    if path is None:
        return {}
    pins = dependencies.pinned(ours)
    skipped = MLFLOW_TOOLING | (SKOPS_TOOLING if serialization_format == "skops" else set())
    missing, differ = [], {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$", line)
            if not match:
                continue
            name = dependencies.canonical(match.group(1))
            spec = match.group(3).split(";", 1)[0].strip()
            if name in skipped:
                continue
            wanted = spec[2:].strip() if spec.startswith("==") else None
            if name not in pins:
                missing.append("%s%s" % (match.group(1), spec))
            elif wanted and wanted != pins[name]:
                differ[name] = {"mlflow": wanted, "pinned": pins[name]}
    if missing:
        raise MlflowSourceError(
            "the model's requirements.txt needs %s, which requirements.txt does not pin, so "
            "the Lambda would not have it; pin it there (name==version)" % ", ".join(missing))
    return differ


if __name__ == "__main__":
    _convert_skops(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
