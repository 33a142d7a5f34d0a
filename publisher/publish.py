"""Bring your own model: check a scikit-learn estimator and publish it as a
model directory of its own, ``model/NAME/`` (``model.joblib`` + the card
``model.json``, and ``model.onnx`` when it compiles).

    python -m publisher.publish PATH.joblib --name NAME --version VERSION [--features a,b,c]
                            [--sample rows.csv] [--upload s3://BUCKET/KEY] [--code my_features.py]
                            [--out DIR] [--force]
    python -m publisher.publish models:/NAME@ALIAS   (or models:/NAME/3, runs:/ID/PATH, an
                            MLmodel directory: publisher/mlflow_source.py)

Publishing never touches another model: an existing ``model/NAME/`` is
refused unless ``--force``, which replaces that directory (and only it) as a
whole. A stage serves the model its ``MODEL_DIR`` names
(``.chalice/config.json``; default the bundled ``model/iris``).

The artifact is loaded with the same loader the app uses, so anything the app
would refuse is refused here first. With ``--upload`` the artifact goes to S3
instead of the model directory (a model too large for the deployment
package): the card names it by URI and keeps its sha256, and the function
downloads and verifies it when it starts (``chalicelib/runtimes/s3_artifact.py``).

A model saved by another scikit-learn release (read from the pickle) is
published in an environment of that release and served by ONNX Runtime
(``publisher/other_version.py``), or refused with the choices left.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings

import joblib
import numpy as np
import sklearn
try:
    from sklearn.exceptions import InconsistentVersionWarning
except ImportError:  # scikit-learn before 1.3 (a build environment) warns with a UserWarning;
    class InconsistentVersionWarning(UserWarning):  # there the model is of its own release
        """Never raised: stands for the class older releases lack."""

from chalicelib.runtimes import s3_artifact as remote_artifact
from chalicelib.safeload import user_code
from chalicelib.schema.card import (ARTIFACT_FILE, CARD_FILE, SCIKIT_LEARN, CardError, ModelCard,
                            build_card, sha256_of)
from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import check_estimator, load_artifact
from chalicelib.schema.features import Schema
from chalicelib.runtimes.onnx_runtime import ONNX_FILE
from publisher import (dependencies, model_dir, onnx_export, other_version, saved_version,
                       schema_inference)
from publisher.audit import AuditRefused, audit_artifact

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(PROJECT_DIR, "model")   # one directory per model: model/NAME/
BUNDLED_MODEL_DIR = os.path.join(MODELS_DIR, "iris")
REQUIREMENTS = os.path.join(PROJECT_DIR, "requirements.txt")


class PublishError(Exception):
    """The estimator cannot be published; the message says why."""


def pinned_version(package, requirements=REQUIREMENTS):
    version = dependencies.pinned(requirements).get(dependencies.canonical(package))
    if version is None:
        raise PublishError("%s is not pinned in %s" % (package, requirements))
    return version


def stage_code(paths, staging):
    """Copy the user's modules (``.py`` files or package directories) into
    ``staging``/code, as they will ship; return (code dir, module names)."""
    code_dir = os.path.join(staging, user_code.CODE_DIR)
    os.makedirs(code_dir)
    names = []
    for path in paths:
        path = path.rstrip(os.sep)
        base = os.path.basename(path)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")):
            name = base
            shutil.copytree(path, os.path.join(code_dir, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.isfile(path) and base.endswith(".py"):
            name = base[:-3]
            shutil.copyfile(path, os.path.join(code_dir, base))
        else:
            raise PublishError("--code %s: not a .py file nor a package directory (with "
                               "__init__.py)" % path)
        try:
            user_code.check_name(name)
        except ModelLoadError as exc:
            raise PublishError("--code %s: %s" % (path, exc)) from None
        if name in names:
            raise PublishError("--code: module %s given twice" % name)
        names.append(name)
    for root, dirs, files in os.walk(code_dir):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)  # readable by Lambda's user
    return code_dir, names


def load_estimator(path, code_dir=None, code_names=(), trust=False):
    """Load an artifact (the user's shipped modules ``code_names`` in
    ``code_dir`` allowed); return it with the scikit-learn version that saved it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            modules = user_code.load_modules(code_dir, code_names) if code_names else {}
            with user_code.allowing(code_dir, modules):
                estimator = load_artifact(path, trust=trust or None)
        except ModelLoadError as exc:
            raise PublishError(str(exc)) from None
        except Exception as exc:
            raise PublishError("%s does not load: %s: %s" % (path, type(exc).__name__, exc)) from None
    saved = [w.message.original_sklearn_version for w in caught
             if issubclass(w.category, InconsistentVersionWarning)]
    return estimator, (saved[0] if saved else sklearn.__version__)


def read_sample(path):
    """A few rows of the training data (CSV with a header), as pandas reads them."""
    if path is None or hasattr(path, "columns"):  # none, or already a DataFrame
        return path
    import pandas as pd
    try:
        return pd.read_csv(path)
    except Exception as exc:
        raise PublishError("--sample %s cannot be read as CSV: %s" % (path, exc)) from None


def example_rows(schema, specs, sample=None, n=1):
    """Rows of plain JSON values, in card order: the sample's first rows
    without a missing value when given (the card's example must be a row
    the app accepts whether or not the model takes missing values), else
    one row made from the card (range midpoints, first categories)."""
    if sample is not None:
        frame = sample[list(schema.feature_names)]
        complete = frame[frame.notna().all(axis=1)].head(n)
        rows = complete.astype(object).values.tolist() if len(complete) else \
            [_first_values(frame)]
        rows = [[_json_value(v) for v in row] for row in rows]
        if all(v is not None for v in rows[0]):
            return rows
        # a column the sample never fills: that value from the card instead
        made = example_rows(schema, specs)[0]
        return [[m if v is None else v for v, m in zip(rows[0], made)]]
    row = []
    for feature, spec in zip(schema.features, specs):
        if feature.categories:
            row.append(feature.categories[0])
        elif feature.type == "string":
            row.append("a")
        elif feature.type == "text":
            row.append("an example text")
        elif feature.type == "boolean":
            row.append(False)
        elif "range" in spec:
            low, high = spec["range"]
            middle = (low + high) / 2
            row.append(int(round(middle)) if feature.type == "integer" else middle)
        else:
            row.append(0 if feature.type == "integer" else 0.0)
    return [row]


def _first_values(frame):
    """No sample row is complete: each column's first value that is not
    missing (None for a column with none)."""
    row = []
    for name in frame.columns:
        present = frame[name].dropna()
        row.append(present.iloc[0] if len(present) else None)
    return row


def _json_value(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value != value:
        return None
    return value


def check_predicts(estimator, schema, rows, sample_given=False):
    """Prove the estimator predicts ``rows`` built by the app's own schema;
    return the prediction and whether it accepts missing values."""
    def where(i, j):
        return "example row %d, feature %s" % (i, schema.feature_names[j])

    try:
        with warnings.catch_warnings():
            # e.g. "X does not have valid feature names": it would be logged per request
            warnings.simplefilter("error", UserWarning)
            X = schema.build(rows, where)
            prediction = estimator.predict(X)
            if hasattr(estimator, "predict_proba"):
                estimator.predict_proba(X)
    except Exception as exc:
        hint = ("" if schema.input_kind == "texts" or sample_given else
                "; if some features are not numbers, pass --sample FILE.csv (a few rows of the "
                "training data, with a header) so that their types can be read")
        raise PublishError("the estimator fails to predict an example row %s built from the "
                           "features %s: %s: %s%s"
                           % (json.dumps(rows[0]), ", ".join(
                               "%s (%s)" % (f.name, f.type) for f in schema.features),
                              type(exc).__name__, exc, hint)) from None
    if len(prediction) != len(rows):
        raise PublishError("the estimator returned %d predictions for %d rows"
                           % (len(prediction), len(rows)))
    blank = [[None if f.type in ("number", "integer", "boolean") else v
              for f, v in zip(schema.features, rows[0])]]
    if all(v is not None for v in blank[0]):
        return prediction, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X = Schema(schema.features, True, schema.input_kind).build(blank, where)
            result = np.asarray(estimator.predict(X))
        return prediction, result.dtype.kind not in "fc" or bool(np.isfinite(result).all())
    except Exception:
        return prediction, False


def mark_string_columns_taking_missing(estimator, schema, specs, rows):
    """Mark (``accepts_missing_values`` on the feature) each string column
    that has its own rule for a missing value (an imputer before its
    encoder), when the model as a whole does not take missing values: the
    app then hands it NaN for a null or an empty CSV field, as
    ``pandas.read_csv`` would. A column whose missing value the model treats
    as an unseen category (an encoder ignoring unknowns) is not marked: a
    missing value stays a 422 there, and the model can still be compiled."""
    if schema.input_kind != "dataframe":
        return
    for j, spec in enumerate(specs):
        if spec.get("type") != "string":
            continue
        missing = _answer_with(estimator, schema, specs, rows, j, None)
        if missing is None:
            continue
        unseen = _answer_with(estimator, schema, specs, rows, j, "\x00an unseen category")
        if unseen is None or unseen.shape != missing.shape or not np.array_equal(unseen, missing):
            spec["accepts_missing_values"] = True


def _answer_with(estimator, schema, specs, rows, j, value):
    """The estimator's answer (probabilities when it has them) for the
    example row with feature ``j`` set to ``value`` (None: missing), or None
    when it fails or is not finite."""
    row = [value if k == j else v for k, v in enumerate(rows[0])]
    trial = [dict(f, accepts_missing_values=True, unknown_categories="ignore") if k == j else f
             for k, f in enumerate(specs)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X = Schema(trial, False, schema.input_kind).build([row], lambda i, k: "")
            answer = np.asarray(estimator.predict_proba(X) if hasattr(estimator, "predict_proba")
                                else estimator.predict(X))
    except Exception:
        return None
    if answer.dtype.kind in "fc" and not np.isfinite(answer).all():
        return None
    return answer


def publish(artifact_path, *, name, version, features=None, out_dir=None,
            force=False, metrics=None, created_at=None, sample=None, upload=None, code=(),
            trust=False, onnx=True, report=None, schema=None, source=None):
    """See :func:`_publish`; ``out_dir``: the model's directory (default
    ``model/NAME``); ``force``: replace that directory if it holds a model
    (and publish an artifact saved with another scikit-learn); ``code``:
    paths of the user's modules to ship; ``onnx``: try to compile the model
    to ONNX (``publisher/onnx_export.py``); ``report``: a list that receives
    what was done, inferred and could be improved, one line each;
    ``schema``, ``source``: an MLflow model's (:func:`publish_mlflow`)."""
    try:
        out_dir = out_dir if out_dir is not None else model_dir.directory_for(name, MODELS_DIR)
        model_dir.check_writable(out_dir, force)
    except model_dir.ModelDirError as exc:
        raise PublishError(str(exc)) from None
    staging = tempfile.mkdtemp(prefix="publish-code-")
    try:
        code_dir, code_names = stage_code(code or (), staging)
        return _publish(artifact_path, name=name, version=version, features=features,
                        out_dir=out_dir, force=force, metrics=metrics, created_at=created_at,
                        sample=sample, upload=upload, code_dir=code_dir,
                        code_names=code_names, trust=trust, onnx=onnx,
                        report=report if report is not None else [], schema=schema,
                        source=source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_mlflow(model_uri, *, name=None, version=None, tracking_uri=None, **options):
    """Publish an MLflow model (an MLmodel directory, ``runs:/``, ``models:/``):
    its signature is the typed schema, its input example the card's example,
    its requirements checked against ours, its provenance on the card under
    ``"mlflow"``; everything else is :func:`publish` unchanged. ``name`` and
    ``version`` default to the registered model's."""
    from publisher import mlflow_source
    staging = tempfile.mkdtemp(prefix="publish-mlflow-")
    try:
        try:
            model = mlflow_source.resolve(model_uri, staging, tracking_uri)
            differ = mlflow_source.check_requirements(
                model.requirements(), REQUIREMENTS, model.serialization_format)
            artifact = mlflow_source.joblib_artifact(model, staging)
            name = name or model.provenance.get("registered_model")
            version = version or model.provenance.get("registry_version")
            if not name or not version:
                raise PublishError("%s is not a registered model version: give --name and "
                                   "--version" % model_uri)
            signature_schema = mlflow_source.typed_schema(model.signature)
            source = dict(model.provenance, signature="typed schema" if signature_schema
                          else "none (features inferred from the estimator)")
            if differ:
                source["requirements_differ"] = differ

            def schema(estimator):
                specs, kind = (signature_schema or _inferred)(estimator)
                # read after the signature is checked: MLflow converts the
                # example to the signature's types, failing on a mismatch
                return specs, kind, mlflow_source.example_frame(model.input_example(), specs)
        except mlflow_source.MlflowSourceError as exc:
            raise PublishError(str(exc)) from None
        return publish(artifact, name=name, version=version, schema=schema,
                       source={"mlflow": source}, **options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_mlflow_uri(text):
    """An MLflow model URI or a directory holding an MLmodel file."""
    return text.startswith(("runs:/", "models:/")) or os.path.isfile(
        os.path.join(text[len("file://"):] if text.startswith("file://") else text, "MLmodel"))


def _inferred(estimator):
    return schema_inference.infer(estimator)


def _publish(artifact_path, *, name, version, features, out_dir, force, metrics, created_at,
             sample, upload, code_dir, code_names, trust, onnx, report, schema=None,
             source=None):
    """Check ``artifact_path`` and write ``out_dir``/model.joblib + model.json.
    ``sample``: path of a CSV of a few training rows (types and ranges).
    ``upload``: an ``s3://bucket/key`` URI; the artifact is put there and the
    card names it instead of a model.joblib beside it. ``schema``: a function
    of the loaded estimator returning (card features, input kind, example
    DataFrame or None) instead of inferring them; ``source``: card fields
    saying where the model came from."""
    if upload is not None:
        try:
            remote_artifact.parse_s3_uri(upload)
        except ValueError as exc:
            raise PublishError("--upload: %s" % exc) from None
        if "*" in upload or "?" in upload:
            # IAM reads them as wildcards: no grant could name this object alone.
            raise PublishError("--upload: %s has a wildcard character (* or ?); name one "
                               "object, which the stage policy can grant exactly" % upload)
    saved = saved_version.read(artifact_path)  # from the opcodes: nothing is unpickled
    if saved is not None and saved != sklearn.__version__:
        card = _publish_other_version(
            artifact_path, saved, out_dir=out_dir, force=force, code_dir=code_dir,
            code_names=code_names, name=name, version=version, features=features,
            metrics=metrics, created_at=created_at, sample=sample, trust=trust, onnx=onnx,
            upload=upload)
        if card is not None:
            report.append("published %s %s (%s) in %s, compiled by scikit-learn %s (it was "
                          "saved with) and served by %s"
                          % (card["name"], card["version"], card["estimator"],
                             _shown_path(out_dir), saved, card.get("runtime")))
            return card
        # --force: a graph compiled here would re-interpret the pickle with our
        # release and hide the skew from the app; the pickle keeps it visible
        onnx = None
    try:    # in a child process with limits, before this process unpickles it
        audit = audit_artifact(artifact_path, trust=trust, code_dir=code_dir,
                               code_names=code_names)
    except AuditRefused as exc:
        raise PublishError(str(exc)) from None
    estimator, saved_with = load_estimator(artifact_path, code_dir, code_names, trust=trust)
    pinned = pinned_version("scikit-learn")
    if saved_with != pinned and not force:
        raise PublishError(
            "the estimator was saved with scikit-learn %s but the Lambda ships %s "
            "(requirements.txt); scikit-learn does not promise that pickles load across "
            "versions. Re-save it with %s, or pass --force to publish anyway"
            % (saved_with, pinned, pinned))
    if not callable(getattr(estimator, "predict", None)):
        raise PublishError("the artifact is a %s, which has no predict()"
                           % type(estimator).__name__)
    missing = {d: m for d, m in dependencies.unpinned_distributions(
        estimator, set(dependencies.pinned(REQUIREMENTS))).items() if m not in code_names}
    if missing:
        raise PublishError(
            "the estimator needs %s, which requirements.txt does not pin, so the Lambda would "
            "not have it; pin it there (name==version) or use only the pinned packages"
            % ", ".join("%s (module %s)" % item for item in sorted(missing.items())))
    frame = read_sample(sample)
    example = None
    try:
        if schema is not None:
            specs, input_kind, example = schema(estimator)
        else:
            specs, input_kind = schema_inference.infer(estimator, features, frame)
        schema = Schema(specs, False, input_kind)
    except ValueError as exc:
        raise PublishError(str(exc)) from None
    if example is not None:
        frame = example
    rows = example_rows(schema, specs, frame, n=1 if example is None else len(example))
    prediction, accepts_missing = check_predicts(estimator, schema, rows, frame is not None)
    if not accepts_missing:
        mark_string_columns_taking_missing(estimator, schema, specs, rows)
    classes = getattr(estimator, "classes_", None)
    if isinstance(classes, list):
        classes = [np.asarray(c).tolist() for c in classes]
    elif classes is not None:
        classes = np.asarray(classes).tolist()
    names = schema.feature_names
    example = {"instances": [row[0] for row in rows] if input_kind == "texts"
               else [dict(zip(names, row)) for row in rows]}
    card = build_card(
        name=name, version=version,
        task=schema_inference.infer_task(estimator, prediction),
        features=specs, input_kind=input_kind, example=example,
        classes=classes,
        accepts_missing=accepts_missing,
        sha256=sha256_of(artifact_path),
        versions={"scikit-learn": saved_with, "numpy": np.__version__,
                  "joblib": joblib.__version__, "python": platform.python_version()},
        estimator=_describe_estimator(estimator),
        metrics=metrics,
        created_at=created_at or datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0).isoformat(),
        extra=dict({"artifact": upload} if upload else {},
                   **({"code": list(code_names)} if code_names else {}), **(source or {}))
        or None,
    )
    card["audit"] = audit
    try:
        check_estimator(estimator, ModelCard(card))
    except (ModelLoadError, CardError) as exc:
        raise PublishError(str(exc)) from None
    graph = None
    if onnx is None:
        card["onnx"] = {"not_used": "saved by scikit-learn %s and published with --force: "
                                    "served from its pickle, under ALLOW_VERSION_SKEW" % saved}
    elif not onnx:
        card["onnx"] = {"not_used": "publish was asked not to compile the model (--runtime "
                                    "scikit-learn)"}
    elif code_names:
        card["onnx"] = {"not_used": "the model uses its own code (--code), which a graph "
                                    "cannot hold"}
    elif upload:
        card["onnx"] = {"not_used": "the artifact is served from S3 (--upload); a graph is "
                                    "only served from the package"}
    else:
        checked = rows if frame is None else example_rows(
            schema, specs, frame, n=onnx_export.MAX_SAMPLE_ROWS)
        graph, card["onnx"] = onnx_export.export(estimator, card, checked)
    card["runtime"] = onnx_export.RUNTIME if graph else SCIKIT_LEARN
    ModelCard(card)  # a card that could not be read back is never written
    if upload:
        upload_artifact(artifact_path, upload, card["sha256"])
    replaced = _install(out_dir, None if upload else artifact_path, card,
                        code_dir if code_names else None, graph)
    report.extend(publish_report(
        card, out_dir, replaced=replaced, estimator=estimator, features_given=bool(features),
        sample_given=frame is not None, saved_with=saved_with, pinned=pinned))
    return card


def _publish_other_version(artifact_path, saved, *, out_dir, force, code_dir, code_names,
                           **options):
    """Publish a model saved by another scikit-learn as its own release
    compiles it (:mod:`publisher.other_version`); None when it cannot be
    and ``force`` asks for the pickle to be published as it is."""
    code_paths = [os.path.join(code_dir, n if os.path.isdir(os.path.join(code_dir, n))
                               else n + ".py") for n in code_names]
    try:
        card, graph = other_version.publish(artifact_path, saved, code_paths=code_paths,
                                            **options)
    except other_version.Refused as exc:
        raise PublishError(str(exc)) from None
    except other_version.NotServable as exc:
        if force:
            return None
        ours = sklearn.__version__
        raise PublishError(
            "the estimator was saved with scikit-learn %s, the Lambda ships %s, and it cannot be "
            "served without scikit-learn %s: %s. Either retrain (or re-save) it with "
            "scikit-learn %s, or publish it with --force and serve it with "
            "ALLOW_VERSION_SKEW=true at your own risk (scikit-learn %s may answer differently "
            "or not load it)" % (saved, ours, saved, exc, ours, ours)) from None
    _install(out_dir, artifact_path, card, code_dir if code_names else None, graph)
    return card


def upload_artifact(path, uri, sha256):
    """Put the artifact at ``uri`` (multipart above 8 MiB), then read its
    size back: the card is written only once the object is in place."""
    bucket, key = remote_artifact.parse_s3_uri(uri)
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise PublishError("--upload needs boto3 (pip install boto3)") from None
    try:
        client = boto3.client("s3")
        client.upload_file(path, bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}})
        head = client.head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise PublishError("--upload %s failed: %s" % (uri, exc)) from None
    if head["ContentLength"] != os.path.getsize(path):
        raise PublishError("--upload %s: the object holds %d bytes, the artifact %d"
                           % (uri, head["ContentLength"], os.path.getsize(path)))


def _describe_estimator(estimator):
    steps = getattr(estimator, "steps", None)
    if steps:
        return "Pipeline(%s)" % ", ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def _install(out_dir, artifact_path, card, code_dir, graph):
    """Write the model into a staging directory beside ``out_dir`` and put
    it in place of ``out_dir`` as a whole; True when a model was replaced."""
    staged = model_dir.staging_dir(out_dir)
    try:
        _write_model_dir(staged, artifact_path, card, code_dir, graph)
        replaced = os.path.isdir(out_dir) and bool(os.listdir(out_dir))
        model_dir.install(staged, out_dir)
    except BaseException:
        model_dir.discard(staged)
        raise
    return replaced


def _write_model_dir(out_dir, artifact_path, card, code_dir=None, graph=None):
    """Write the model's files into ``out_dir``, a fresh staging directory
    (:func:`model_dir.staging_dir`): the artifact (none when the card names
    an object in S3), the graph, the user's code, then the card. Every file
    is 0644: readable by Lambda's user."""
    if graph is not None:
        with open(os.path.join(out_dir, ONNX_FILE), "wb") as f:
            f.write(graph)
    if artifact_path is not None:
        shutil.copyfile(artifact_path, os.path.join(out_dir, ARTIFACT_FILE))
    if code_dir:
        shutil.copytree(code_dir, os.path.join(out_dir, user_code.CODE_DIR))
    with open(os.path.join(out_dir, CARD_FILE), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    for name in (ONNX_FILE, ARTIFACT_FILE, CARD_FILE):
        if os.path.isfile(os.path.join(out_dir, name)):
            os.chmod(os.path.join(out_dir, name), 0o644)


def publish_report(card, out_dir, *, replaced, estimator, features_given, sample_given,
                   saved_with, pinned):
    """What publishing did, what it inferred and what would make the card
    better, as lines for the user."""
    features = card["features"]
    lines = ["%s %s %s (%s) in %s" % ("replaced" if replaced else "published", card["name"],
                                      card["version"], card["estimator"], _shown_path(out_dir))]
    if saved_with != pinned:
        lines.append("did: published although it was saved with scikit-learn %s and the "
                     "Lambda ships %s (--force)" % (saved_with, pinned))
    if card.get("input") == "texts":
        source = "a text vectorizer as the first step: one text per row"
    elif getattr(estimator, "feature_names_in_", None) is not None:
        source = "the estimator's feature_names_in_ (fitted on a DataFrame)"
    elif features_given:
        source = "--features"
    elif sample_given:
        source = "the --sample's header"
    else:
        source = "n_features_in_ only: named x0..x%d" % (len(features) - 1)
    kinds = {}
    for f in features:
        kinds[f["type"]] = kinds.get(f["type"], 0) + 1
    lines.append("inferred: %d feature%s from %s: %s; %d with categories, %d with a range; "
                 "task %s; missing values %s; served by %s"
                 % (len(features), "" if len(features) == 1 else "s", source,
                    ", ".join("%d %s" % (n, t) for t, n in sorted(kinds.items())),
                    sum(1 for f in features if f.get("categories")),
                    sum(1 for f in features if f.get("range")), card.get("task"),
                    "accepted" if card.get("accepts_missing_values") else "refused (422)",
                    card.get("runtime")))
    hints = []
    plain_numbers = [f["name"] for f in features
                     if f["type"] == "number" and not f.get("categories")]
    if not sample_given and plain_numbers:
        hints.append("no --sample: %d numeric column%s (%s) typed as number (an integer column "
                     "cannot be told apart) and without ranges for the card, the page and the "
                     "generated checks; --sample FILE.csv (a few training rows with a header) "
                     "gives both" % (len(plain_numbers), "" if len(plain_numbers) == 1 else "s",
                                     _few(plain_numbers)))
    if source.startswith("n_features_in_"):
        hints.append("no feature names: --features a,b,c names them in the card and the API")
    if not card.get("metrics"):
        hints.append("no --metrics: the card records no evaluation (--metrics "
                     "'{\"accuracy_test\": 0.93}')")
    onnx = card.get("onnx") or {}
    if card.get("runtime") != onnx_export.RUNTIME and onnx.get("not_used"):
        hints.append("served by scikit-learn, not ONNX Runtime: %s" % onnx["not_used"])
    lines += ["to improve the card: %s" % h for h in hints] or ["the card is complete"]
    return lines


def _few(names, n=4):
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _shown_path(path):
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m publisher.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", help="a joblib file holding a fitted estimator, or an "
                        "MLflow model: models:/NAME/VERSION, models:/NAME@ALIAS, "
                        "runs:/RUN_ID/PATH or an MLmodel directory")
    parser.add_argument("--name", help="required, except for a registered MLflow model")
    parser.add_argument("--version", help="required, except for a registered MLflow model")
    parser.add_argument("--tracking-uri", help="the MLflow tracking server (default: "
                        "MLFLOW_TRACKING_URI)")
    parser.add_argument("--features", help="comma-separated feature names, in order")
    parser.add_argument("--out", help="the model's directory (default: model/NAME; a stage "
                        "serves the one its MODEL_DIR names, default model/iris)")
    parser.add_argument("--metrics", help="JSON object of evaluation metrics to record")
    parser.add_argument("--sample", help="CSV of a few training rows with a header: the types "
                        "and ranges of features the estimator does not record")
    parser.add_argument("--upload", metavar="s3://BUCKET/KEY",
                        help="put the artifact in S3 and name it in the card instead of "
                        "shipping it in the package (for models too large for the zip)")
    parser.add_argument("--code", action="append", metavar="PATH",
                        help="your own module (my_features.py) or package directory that the "
                        "estimator's functions or classes come from: shipped with the model, "
                        "and its definitions allowed by the unpickler (repeatable)")
    parser.add_argument("--runtime", choices=("auto", "scikit-learn"), default="auto",
                        help="auto (default): compile the model to ONNX and serve it with ONNX "
                        "Runtime when the graph agrees with scikit-learn; scikit-learn: serve "
                        "the pickle")
    parser.add_argument("--force", action="store_true",
                        help="replace the model already in the directory (that directory only), "
                        "and a model saved by another scikit-learn that cannot be compiled in "
                        "an environment of its own release: publish its pickle anyway (the app "
                        "then needs ALLOW_VERSION_SKEW=true)")
    parser.add_argument("--trust", action="store_true",
                        help="publish even if the audit finds code, callables or file reads")
    args = parser.parse_args(argv)
    try:
        metrics = json.loads(args.metrics) if args.metrics else None
        features = [f.strip() for f in args.features.split(",")] if args.features else None
        report = []
        options = dict(out_dir=args.out, force=args.force, metrics=metrics, upload=args.upload,
                       code=args.code or (), trust=args.trust, onnx=args.runtime == "auto",
                       report=report)
        if is_mlflow_uri(args.artifact):
            if features or args.sample:
                raise PublishError("an MLflow model's signature and input example give its "
                                   "features: --features and --sample do not apply")
            card = publish_mlflow(args.artifact, name=args.name, version=args.version,
                                  tracking_uri=args.tracking_uri, **options)
        elif not (args.name and args.version):
            raise PublishError("--name and --version are required")
        else:
            card = publish(args.artifact, name=args.name, version=args.version,
                           features=features, sample=args.sample, **options)
    except (PublishError, ValueError) as exc:
        print("publish: refused: %s" % exc, file=sys.stderr)
        return 2
    for line in report:
        print(line)
    if args.upload:
        print("the artifact is in %s (the function needs s3:GetObject on it: "
              "python -m tools.ops.model_policy)" % args.upload)
    out = args.out or model_dir.directory_for(card["name"], MODELS_DIR)
    rel = os.path.relpath(os.path.abspath(out), PROJECT_DIR)
    if not rel.startswith(".."):
        print("serve it: make serve MODEL=%s (locally), or MODEL_DIR=%s in a stage of "
              ".chalice/config.json" % (os.path.basename(out), rel.replace(os.sep, "/"))
              if os.path.dirname(rel) == "model" else
              "serve it: MODEL_DIR=%s in a stage of .chalice/config.json" % rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
