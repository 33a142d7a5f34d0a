"""Compile a published estimator to ONNX, and keep the graph only when it
answers what scikit-learn answers, value by value.

``publisher.publish`` calls :func:`export`. The estimator is converted with
skl2onnx (plus the converters of ``publisher/converters/``) for each input
layout that fits its card (:mod:`publisher.onnx_layouts`), double precision
first, then float32 (tree ensembles, which scikit-learn itself evaluates on
float32 inputs against float32 thresholds). Each graph is run by the same
:class:`~chalicelib.runtimes.onnx_runtime.OnnxModel` the app serves it with,
and both runtimes answer the same rows (:mod:`publisher.onnx_validation`):
the ``--sample`` rows and the card's example, every feature's edges and
categories, generated rows, and, where the model accepts missing values,
rows with a missing value in each feature and in all of them.

Agreement, as the card records it under ``onnx.agreement``:

* labels of a classifier, clusterer or outlier detector identical (same
  labels, same JSON);
* every probability and regression value ``v`` within
  ``|onnx - sklearn| <= rtol * |sklearn| + atol``; ``rtol`` and ``atol`` are
  on the card with the largest error seen. A graph computed in double end to
  end is held to :data:`DOUBLE_TOLERANCE`; a graph with a float32 stage (the
  tree operators' outputs, a float32 input) to :data:`FLOAT_TOLERANCE`, and
  the card names the stage (``agreement.float32_stages``).

Anything that does not compile or agree leaves the model to scikit-learn, and
the card says why under ``onnx.not_used``.
"""
import contextlib
import hashlib
import io
import warnings

import numpy as np

from chalicelib.http.errors import ModelLoadError
from chalicelib.runtimes import graph_policy
from chalicelib.runtimes.onnx_runtime import ONNX_FILE, RUNTIME, OnnxModel, session_options
from chalicelib.schema.card import ModelCard
from publisher import onnx_layouts, onnx_validation
from publisher.onnx_validation import VALIDATION_ROWS, validation_matrix  # noqa: F401

# (rtol, atol) of a graph computed in double end to end: far below float32's
# resolution (1.2e-7), so a float32 stage hidden in it cannot pass.
DOUBLE_TOLERANCE = (1e-9, 1e-12)
# (rtol, atol) of a graph with a float32 stage: a few float32 roundings.
FLOAT_TOLERANCE = (1e-5, 1e-6)
RTOL = FLOAT_TOLERANCE[0]  # the loosest relative tolerance a card may state
MAX_SAMPLE_ROWS = 1000
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
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
        raise NotExported("%s is not installed in this environment (`make publish` installs "
                          "the ONNX compiler; then publish again with --force)" % exc.name) from None
    from publisher import converters
    converters.register()
    parsed = ModelCard(card)
    schema = parsed.schema
    compilable(schema)
    blocks = None  # computed once a graph converts: its reason comes first otherwise
    fed = schema.fed_by_columns() if schema.input_kind == "dataframe" else schema
    reasons = []
    for layout in onnx_layouts.layouts(estimator, schema):
        for dtype in ("double", "float"):
            groups = onnx_layouts.typed(layout, dtype)
            tag = "%s %s" % (onnx_layouts.describe(groups), dtype)
            try:
                graph = _convert(skl2onnx, estimator, schema, groups, dtype)
            except Exception as exc:  # the converter knows nothing of this estimator, or fails
                reasons.append("%s: skl2onnx cannot convert %s: %s" % (
                    tag, type(estimator).__name__, _first_line(exc)))
                continue
            try:
                graph_policy.check(graph)
            except ModelLoadError as exc:
                reasons.append("%s: %s" % (tag, exc))
                continue
            if blocks is None:
                blocks = onnx_validation.answered_blocks(estimator, schema, card["features"],
                                                         rows)
            spec = _output_spec(graph, blocks[0][1])
            spec["feed"] = onnx_layouts.feed_spec(graph, groups)
            stages = float32_stages(graph)
            tolerance = DOUBLE_TOLERANCE if not stages else FLOAT_TOLERANCE
            try:
                model = _session_model(onnxruntime, graph, card, spec)
                agreement, problem = _agreement(model, fed, blocks, parsed.task, tolerance)
            except NotExported as exc:
                reasons.append("%s: %s" % (tag, exc))
                continue
            except Exception as exc:
                reasons.append("%s: ONNX Runtime cannot run the graph: %s"
                               % (tag, _first_line(exc)))
                continue
            if problem:
                reasons.append("%s: disagrees with scikit-learn: %s" % (tag, problem))
                continue
            agreement["input"] = dtype
            if stages:
                agreement["float32_stages"] = stages
            spec.update({
                "artifact": ONNX_FILE,
                "sha256": hashlib.sha256(graph).hexdigest(),
                "converter": "skl2onnx %s" % skl2onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "agreement": agreement,
            })
            if reasons:  # the attempts that came first, and why they were not kept
                spec["tried"] = _unique(reasons)
            return graph, spec
    raise NotExported("; ".join(_grouped(reasons)) or "no input layout fits this model")


def _grouped(reasons):
    """``"layout dtype: why"`` reasons, one per distinct why: a converter that
    refuses every layout for the same reason says it once, naming them."""
    tags = {}
    for reason in _unique(reasons):
        tag, _, why = reason.partition(": ")
        tags.setdefault(why, []).append(tag)
    return ["%s: %s" % (names[0], why) if len(names) == 1 else
            "%s (tried %s)" % (why, ", ".join(names)) for why, names in tags.items()]


def _unique(reasons):
    seen, out = set(), []
    for reason in reasons:
        if reason not in seen:
            seen.add(reason)
            out.append(reason)
    return out


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def compilable(schema):
    """NotExported saying why when no graph of this schema can be served."""
    if schema.input_kind == "texts":
        # ONNX Runtime's tokenizer (StringNormalizer) needs the machine's
        # locales, which differ between this machine and Lambda's
        raise NotExported("text models are not compiled: ONNX Runtime's string normalizer "
                          "depends on the machine's locales")
    if any(f.type == "string" and f.missing for f in schema.features):
        # The app hands such a column NaN for its imputer; a string tensor has no NaN.
        raise NotExported("a string column that takes missing values is not compiled")
    for f in schema.features:
        if f.dtype == "category":
            raise NotExported("a column of category dtype (%s) is not compiled: scikit-learn "
                              "reads its codes, which a graph does not see" % f.name)
        if f.type == "string" and not f.categories:
            raise NotExported("a string column without known categories (%s) is not compiled"
                              % f.name)
        if f.type == "text":
            raise NotExported("a text column (%s) is not compiled" % f.name)
    if schema.input_kind == "matrix" and any(f.type == "string" for f in schema.features):
        raise NotExported("a matrix of strings is not compiled")


def _convert(skl2onnx, estimator, schema, groups, dtype):
    """The graph's bytes for ``estimator`` fed by ``groups``
    (:mod:`publisher.onnx_layouts`). For compatibility a layout may also be
    given as ``"matrix"``: one input of every column."""
    from sklearn.base import is_classifier
    from publisher import converters
    converters.register()
    if isinstance(groups, str):
        groups = onnx_layouts.typed(onnx_layouts.single(schema), dtype)
    prepared = onnx_layouts.positional_copy(estimator, schema, groups)
    converters.prepare(prepared)
    inputs = [(name, onnx_layouts.tensor_type(kind, len(columns)))
              for name, columns, kind in groups]
    # Every classifier answers tensors, never ZipMap's maps (skl2onnx's
    # parser gives each classifier the option, with or without probabilities)
    options = {id(prepared): {"zipmap": False}} if is_classifier(_final(estimator)) else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            converters.tree_missing_routes():
        warnings.simplefilter("ignore")
        # ai.onnx.ml 3: the tree ensembles' float32 form; a newer one is not
        # supported by every converter (IsolationForest)
        onx = skl2onnx.to_onnx(prepared, initial_types=inputs, options=options,
                               target_opset=TARGET_OPSET)
    converters.label_from_probabilities(onx)
    _declare_computed_output_types(onx)
    return onx.SerializeToString()


def _declare_computed_output_types(model):
    """Declare each graph output with the type its node computes where
    skl2onnx declared another (a binary classifier's double probabilities
    declared float32, which ONNX Runtime refuses to load)."""
    import onnx
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        output.type.tensor_type.elem_type = 0
    try:
        inferred = {o.name: o.type.tensor_type.elem_type
                    for o in onnx.shape_inference.infer_shapes(probe).graph.output}
    except Exception:
        return
    for output in model.graph.output:
        computed = inferred.get(output.name, 0)
        if computed and computed != output.type.tensor_type.elem_type:
            output.type.tensor_type.elem_type = computed


def _final(estimator):
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


# Operators whose float32 output holds exact values (0 and 1 of a one-hot
# encoding), and those that only move values: a float32 tensor made by them
# from exact values loses nothing.
EXACT_SOURCES = ("OneHotEncoder",)
MOVES = ("Reshape", "Concat", "Cast", "Identity", "Gather", "Flatten", "Squeeze", "Unsqueeze",
         "Transpose", "ArrayFeatureExtractor")


FLOAT_ML_OPS = ("Scaler", "Normalizer", "LinearClassifier", "LinearRegressor", "SVMClassifier",
                "SVMRegressor", "FeatureVectorizer", "Imputer")


def float32_stages(graph):
    """Operators of ``graph`` that compute or output float32 values that
    may be rounded: their types as a sorted list (empty for a graph in
    double end to end, one-hot encodings aside)."""
    import onnx
    from onnx import TensorProto
    model = onnx.load_from_string(graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        inferred = model.graph
    floats = {v.name for v in list(inferred.value_info) + list(inferred.output)
              + list(inferred.input)
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    floats |= {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    exact = set()
    stages = set()
    for node in model.graph.node:  # in topological order
        to_float = node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT
                                                  for a in node.attribute)
        if to_float:
            floats.update(node.output)  # known even where shape inference gave up
        moved = node.input[:1] if node.op_type != "Concat" else node.input
        if node.op_type in EXACT_SOURCES or (node.op_type in MOVES and all(
                i in exact or (i not in floats and not to_float) for i in moved)):
            exact.update(node.output)
        if node.domain == "ai.onnx.ml" and (node.op_type.startswith("TreeEnsemble")
                                            or node.op_type in FLOAT_ML_OPS):
            stages.add(node.op_type)  # they compute or answer in float32 whatever their input
        elif any(o in floats and o not in exact for o in node.output) or any(
                i in floats and i not in exact for i in node.input):
            stages.add(node.op_type)
    return sorted(stages)


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


def _agreement(model, fed, blocks, task, tolerance):
    """Compare the graph with scikit-learn over every block of rows; the
    agreement over all of them, or the first problem."""
    total = None
    for rows, expected in blocks:
        X = fed.build(rows, onnx_validation.where(fed))
        answers = _onnx_answers(model, X, expected)
        agreement, problem = compare(expected, answers, task, tolerance)
        if problem:
            return agreement, problem
        total = agreement if total is None else _merge(total, agreement)
    return total, None


def _merge(a, b):
    merged = dict(a)
    merged["rows"] = a["rows"] + b["rows"]
    for key, value in b.items():
        if key.endswith("_max_error"):
            merged[key] = max(a.get(key, 0.0), value)
    return merged


_sklearn_answers = onnx_validation.sklearn_answers


def _onnx_answers(model, X, expected):
    predictions = model.predict(X)
    proba = None
    if expected["probabilities"] is not None:
        if not hasattr(model, "predict_proba"):
            raise NotExported("the graph has no probabilities output")
        proba = model.predict_proba(X)
    return {"predictions": predictions, "probabilities": proba}


def compare(expected, answers, task, tolerance=FLOAT_TOLERANCE):
    """``(agreement, problem or None)`` between scikit-learn's answers and
    the graph's, by the rules in this module's docstring."""
    rtol, atol = tolerance
    agreement = {"rows": int(len(expected["predictions"])), "rtol": rtol, "atol": atol}
    want, got = expected["predictions"], answers["predictions"]
    if want.shape != got.shape:
        return agreement, "predictions of shape %s, scikit-learn's %s" % (got.shape, want.shape)
    if task in VALUE_TASKS:
        worst, problem = _per_value(want, got, rtol, atol)
        agreement["values_max_error"] = worst
        if problem:
            return agreement, "values differ: " + problem
    else:
        same = _same_labels(want, got)
        differing = int(np.size(same) - np.count_nonzero(same))
        if differing or _json_kinds(want) != _json_kinds(got):
            return agreement, "%d of %d predictions differ" % (max(differing, 1), len(want))
        agreement["predictions_identical"] = True
    if expected["probabilities"] is not None:
        want_p, got_p = expected["probabilities"], answers["probabilities"]
        if want_p.shape != got_p.shape:
            return agreement, "probabilities of shape %s, scikit-learn's %s" % (
                got_p.shape, want_p.shape)
        worst, problem = _per_value(want_p, got_p, rtol, atol)
        agreement["probabilities_max_error"] = worst
        if problem:
            return agreement, "probabilities differ: " + problem
    return agreement, None


def _json_kinds(values):
    """What JSON a label array renders as: numbers, booleans or strings."""
    kind = values.dtype.kind
    return "integer" if kind in "iu" else "float" if kind == "f" else "boolean" if kind == "b" else "string"


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


def _per_value(want, got, rtol, atol):
    """``(largest |got - want|, problem or None)``: every value must meet
    ``|got - want| <= rtol * |want| + atol``; NaN or infinity on one side
    only is a problem."""
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    both_nan = np.isnan(want) & np.isnan(got)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(both_nan, 0.0, np.abs(got - want))
        allowed = rtol * np.abs(want) + atol
    if not np.isfinite(error).all():
        return float("nan"), "a value is not finite on one side only"
    worst = float(error.max()) if error.size else 0.0
    bad = error > allowed
    if bad.any():
        k = np.unravel_index(int(np.argmax(error - allowed)), error.shape)
        return worst, ("%d of %d beyond rtol %g, atol %g (worst: %.17g against "
                       "scikit-learn's %.17g)" % (int(bad.sum()), error.size, rtol, atol,
                                                  got[k], want[k]))
    return worst, None
