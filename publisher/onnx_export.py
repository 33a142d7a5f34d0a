"""Compile a published estimator to ONNX, and keep the graph only when it
answers what scikit-learn answers.

``publisher.publish`` calls :func:`export`. The estimator is converted with
skl2onnx (double precision first; for tree ensembles, which scikit-learn
itself evaluates on float32 inputs against float32 thresholds, float32 is
tried next), the graph is run by the same :class:`~chalicelib.runtimes.onnx_runtime.OnnxModel`
the app serves it with, and both runtimes answer the same rows: the rows of
``--sample`` (up to ``MAX_SAMPLE_ROWS``; else the card's example row) plus a
generated validation set (``VALIDATION_ROWS`` rows drawn with a fixed seed
from each feature's training range, widened by a tenth of its span on each
side, or from a wide normal spread where the card has no range).

Agreement, as the card records it under ``onnx.agreement``:

* predictions of a classifier, clusterer or outlier detector identical
  (same labels, same JSON);
* probabilities and regression values within ``RTOL`` of scikit-learn's,
  relative to the larger of the value's magnitude and a floor (1 for
  probabilities, the largest magnitude in the validation set for values):
  ``|onnx - sklearn| <= RTOL * max(|sklearn|, floor)``.

What is compiled: a model of a numeric matrix (one float input), and a
DataFrame model whose columns are numbers, integers and strings with known
categories (one input per column, fed by the app without pandas). Anything
else (texts, missing values, category dtypes, an estimator the converter does
not know, a graph that disagrees) leaves the model to scikit-learn, and the
card says why under ``onnx.not_used``.
"""
import contextlib
import hashlib
import io
import json
import warnings

import numpy as np

from chalicelib.schema.card import ModelCard
from chalicelib.runtimes.onnx_runtime import ONNX_FILE, RUNTIME, OnnxModel, session_options

RTOL = 1e-5
VALIDATION_ROWS = 2000
MAX_SAMPLE_ROWS = 1000
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
SEED = 0
VALUE_TASKS = ("regression", "multioutput")


class NotExported(Exception):
    """The estimator is served by scikit-learn; the message says why."""


def export(estimator, card, rows):
    """``(graph bytes, onnx section of the card)`` when a graph agrees;
    ``(None, {"not_used": reason})`` otherwise. ``card``: the card as
    built (a dict); ``rows``: example and sample rows as JSON values, in
    card order. Never raises: a model that does not compile is still published."""
    try:
        return _export(estimator, card, rows)
    except NotExported as exc:
        return None, {"not_used": str(exc)}
    except Exception as exc:  # a converter or runtime surprise is a reason, not a failure
        return None, {"not_used": "compiling failed: %s: %s"
                                  % (type(exc).__name__, _first_line(exc))}


def _export(estimator, card, rows):
    try:
        import onnxruntime
        import skl2onnx
    except ImportError as exc:
        raise NotExported("%s is not installed here (requirements-dev.txt)" % exc.name) from None
    parsed = ModelCard(card)
    schema = parsed.schema
    mode = compilable(schema)
    reasons, graphs = [], []
    for dtype in ("double", "float"):
        try:
            graphs.append((dtype, _convert(skl2onnx, estimator, schema, mode, dtype)))
        except Exception as exc:  # the converter knows nothing of this estimator, or fails
            reasons.append("%s: skl2onnx cannot convert %s: %s" % (
                dtype, type(estimator).__name__, _first_line(exc)))
    if not graphs:
        raise NotExported("; ".join(reasons))
    every, expected = _validation_answers(estimator, schema, card["features"], rows)
    fed = schema.fed_by_columns() if mode == "columns" else schema
    X = fed.build(every, _where(schema))
    for dtype, graph in graphs:
        spec = _output_spec(graph, expected)
        try:
            model = _session_model(onnxruntime, graph, card, spec)
            answers = _onnx_answers(model, X, expected)
        except Exception as exc:
            reasons.append("%s: ONNX Runtime cannot run the graph: %s" % (dtype, _first_line(exc)))
            continue
        agreement, problem = compare(expected, answers, parsed.task)
        if problem:
            reasons.append("%s: disagrees with scikit-learn: %s" % (dtype, problem))
            continue
        agreement["input"] = dtype
        spec.update({
            "artifact": ONNX_FILE,
            "sha256": hashlib.sha256(graph).hexdigest(),
            "converter": "skl2onnx %s" % skl2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "agreement": agreement,
        })
        return graph, spec
    raise NotExported("; ".join(reasons))


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def compilable(schema):
    """``"matrix"`` (one float input) or ``"columns"`` (one input per card
    column, a DataFrame model) when the schema's model may be compiled;
    NotExported saying why not otherwise."""
    if schema.input_kind == "texts":
        # ONNX Runtime's tokenizer (StringNormalizer) needs the machine's
        # locales, which differ between this machine and Lambda's
        raise NotExported("text models are not compiled: ONNX Runtime's string normalizer "
                          "depends on the machine's locales")
    if schema.input_kind == "matrix":
        if all(f.type in ("number", "integer", "boolean") for f in schema.features):
            return "matrix"
        raise NotExported("a matrix of strings is not compiled")
    if schema.takes_any_missing:
        raise NotExported("a DataFrame model that accepts missing values is not compiled")
    for f in schema.features:
        if f.type not in ("number", "integer", "string") or f.dtype == "category" or (
                f.type == "string" and not f.categories):
            raise NotExported("a DataFrame model is compiled when its columns are numbers, "
                              "integers and strings with known categories; %s is %s%s"
                              % (f.name, f.type, " of category dtype" if f.dtype == "category"
                                 else " without known categories" if f.type == "string" else ""))
    return "columns"


def _convert(skl2onnx, estimator, schema, mode, dtype):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
    tensor = DoubleTensorType if dtype == "double" else FloatTensorType
    if mode == "matrix":
        inputs = [("X", tensor([None, schema.n_features]))]
    else:
        inputs = [(f.name, StringTensorType([None, 1]) if f.type == "string"
                   else tensor([None, 1])) for f in schema.features]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # ai.onnx.ml 3: the tree ensembles' float32 form; a newer one is not
        # supported by every converter (IsolationForest)
        onx = skl2onnx.to_onnx(estimator, initial_types=inputs, options=options,
                               target_opset=TARGET_OPSET)
    return onx.SerializeToString()


def _output_spec(graph, expected):
    """Which outputs hold what: the first output is the predictions, and for
    a model with probabilities the second one holds them."""
    import onnx
    outputs = [o.name for o in onnx.load_from_string(graph).graph.output]
    spec = {"predictions": outputs[0],
            "prediction_shape": list(expected["predictions"].shape[1:])}
    if expected.get("probabilities") is not None and len(outputs) > 1:
        spec["probabilities"] = outputs[1]
    return spec


def _session_model(onnxruntime, graph, card, spec):
    session = onnxruntime.InferenceSession(graph, sess_options=session_options(),
                                           providers=["CPUExecutionProvider"])
    return OnnxModel(session, ModelCard(dict(card, runtime=RUNTIME, onnx=dict(
        spec, sha256="0" * 64))), spec)


def _validation_answers(estimator, schema, specs, rows):
    """The validation rows (JSON values) and scikit-learn's answers to them.
    Rows beyond the training range can be outside the model's domain (log1p
    of a negative number): then the range itself is used."""
    for widen in (True, False):
        every = validation_rows(schema, specs, rows, widen)
        try:
            expected = _sklearn_answers(estimator, schema.build(every, _where(schema)))
        except Exception as exc:
            problem = exc
            continue
        return every, expected
    raise NotExported("scikit-learn itself cannot answer the validation rows: %s: %s"
                      % (type(problem).__name__, _first_line(problem)))


def _where(schema):
    return lambda i, j: "validation row %d, feature %s" % (i, schema.feature_names[j])


def validation_matrix(schema, specs, rows, widen=True):
    """:func:`validation_rows` as scikit-learn is handed them."""
    return schema.build(validation_rows(schema, specs, rows, widen), _where(schema))


def validation_rows(schema, specs, rows, widen=True):
    """The rows both runtimes answer: the example and sample rows, then
    generated ones. A third of the generated values are rounded to one
    decimal and a third to two, like the data models are trained on: a
    tree's thresholds are midpoints between such values, where a graph that
    compares at another precision than scikit-learn answers differently.
    String columns take their categories, and one value in twenty is an
    unseen one where the card says unknown categories are ignored."""
    rng = np.random.default_rng(SEED)
    columns = []
    for feature, spec in zip(schema.features, specs):
        if feature.type == "boolean":
            column = rng.integers(0, 2, VALIDATION_ROWS).astype(bool).tolist()
        elif feature.type == "string":
            choices = list(feature.categories or ()) + (
                ["an unseen category"] if feature.unknown == "ignore" else [])
            weights = np.full(len(choices), 1.0)
            if feature.unknown == "ignore":
                weights[-1] = (len(choices) - 1) / 19 or 1.0
            column = [choices[k] for k in rng.choice(len(choices), VALIDATION_ROWS,
                                                     p=weights / weights.sum())]
        else:
            if "range" in spec:
                low, high = spec["range"]
                pad = ((high - low) / 10 or 1.0) if widen else 0.0
                column = rng.uniform(low - pad, high + pad, VALIDATION_ROWS)
            else:
                column = rng.normal(0, 1, VALIDATION_ROWS) * 10.0 ** rng.integers(
                    0, 4, VALIDATION_ROWS)
            third = VALIDATION_ROWS // 3
            column[:third] = np.round(column[:third], 1)
            column[third:2 * third] = np.round(column[third:2 * third], 2)
            column = np.round(column).astype(int).tolist() if feature.type == "integer" \
                else column.tolist()
        columns.append(column)
    return [list(r) for r in rows] + [list(row) for row in zip(*columns)]


def _sklearn_answers(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = np.asarray(estimator.predict(X))
        proba = None
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            if isinstance(proba, list):
                proba = np.stack([np.asarray(p) for p in proba], axis=1) \
                    if len({np.shape(p) for p in proba}) == 1 else None
    return {"predictions": predictions, "probabilities": proba}


def _onnx_answers(model, X, expected):
    predictions = model.predict(X)
    proba = None
    if expected["probabilities"] is not None:
        if not hasattr(model, "predict_proba"):
            raise NotExported("the graph has no probabilities output")
        proba = model.predict_proba(X)
    return {"predictions": predictions, "probabilities": proba}


def compare(expected, answers, task):
    """``(agreement, problem or None)`` between scikit-learn's answers and
    the graph's, by the rules in this module's docstring."""
    agreement = {"rows": int(len(expected["predictions"])), "rtol": RTOL}
    want, got = expected["predictions"], answers["predictions"]
    if want.shape != got.shape:
        return agreement, "predictions of shape %s, scikit-learn's %s" % (got.shape, want.shape)
    if task in VALUE_TASKS:
        worst = _relative(want, got, max(float(np.max(np.abs(want))), 1e-300))
        agreement["values_max_relative_difference"] = worst
        if not worst <= RTOL:
            return agreement, "values differ by %.3g relative (more than %g)" % (worst, RTOL)
    else:
        same = _same_labels(want, got)
        differing = int(np.size(same) - np.count_nonzero(same))
        if differing or json.dumps(want.tolist()) != json.dumps(got.tolist()):
            return agreement, "%d of %d predictions differ" % (max(differing, 1), len(want))
        agreement["predictions_identical"] = True
    if expected["probabilities"] is not None:
        want_p, got_p = expected["probabilities"], answers["probabilities"]
        if want_p.shape != got_p.shape:
            return agreement, "probabilities of shape %s, scikit-learn's %s" % (
                got_p.shape, want_p.shape)
        worst = _relative(want_p, got_p, 1.0)
        agreement["probabilities_max_difference"] = worst
        if not worst <= RTOL:
            return agreement, "probabilities differ by %.3g (more than %g)" % (worst, RTOL)
    return agreement, None


def _same_labels(want, got):
    """Elementwise equality of two label arrays whose kinds may be compared:
    integers with integers or booleans, strings with strings (numpy's or
    Python's, which ONNX Runtime answers); anything else differs."""
    kinds = {want.dtype.kind, got.dtype.kind}
    if kinds <= set("UO"):
        return want.astype(object) == got.astype(object)
    if len(kinds) == 1 or kinds <= set("iub"):
        return want == got
    return np.zeros(want.shape, bool)


def _relative(want, got, floor):
    """The largest ``|got - want| / max(|want|, floor)``, as a float (NaN
    where either side is not finite, which fails every comparison)."""
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ratio = np.abs(got - want) / np.maximum(np.abs(want), floor)
    if not np.isfinite(ratio).all():
        return float("nan")
    return float(ratio.max()) if ratio.size else 0.0

