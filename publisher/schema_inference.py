"""What a fitted estimator takes, read from the estimator itself: the card's
typed features, the input kind and the task.

scikit-learn records much of it: ``feature_names_in_`` (fitted on a
DataFrame), the ``categories_`` of OneHot/Ordinal encoders inside
ColumnTransformers and pipelines, HistGradientBoosting's categorical
features, a text vectorizer as the first step. What it does not record (a
column's dtype, a numeric range) comes from ``--sample FILE.csv``, a few rows
of the training data. :func:`infer` returns plain card fields; the caller
proves them by predicting an example through the app's own schema.
"""
import numpy as np
from sklearn.base import is_classifier, is_regressor, is_outlier_detector
from sklearn.feature_extraction.text import _VectorizerMixin

ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


class InferenceError(ValueError):
    """The features cannot be inferred; the message says which option to give."""


def first_step(estimator):
    """The estimator that sees the raw input (through nested pipelines)."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[0][1]
    return estimator


def final_step(estimator):
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def infer_task(estimator, sample_prediction):
    """classification, regression, multilabel, multioutput, clustering or
    outlier_detection."""
    final = final_step(estimator)
    two_d = np.ndim(sample_prediction) == 2
    if is_classifier(estimator):
        return "multilabel" if two_d or isinstance(getattr(estimator, "classes_", None), list) \
            else "classification"
    if is_outlier_detector(final):
        return "outlier_detection"
    if getattr(final, "_estimator_type", None) == "clusterer" or (
            not is_regressor(estimator) and hasattr(final, "cluster_centers_")):
        return "clustering"
    return "multioutput" if two_d else "regression"


def infer(estimator, features=None, sample=None):
    """``(features, input_kind)`` for the card. ``features`` are names given
    by the user; ``sample`` a pandas DataFrame of training rows, or None."""
    if isinstance(first_step(estimator), _VectorizerMixin) and \
            getattr(first_step(estimator), "input", "content") == "content":
        if features and len(features) != 1:
            raise InferenceError("a text model takes one text per row: give one --features name")
        return [{"name": _text_column(features, sample), "type": "text"}], "texts"
    names_in = getattr(estimator, "feature_names_in_", None)
    n_in = getattr(estimator, "n_features_in_", None)
    if features:
        if n_in is not None and len(features) != n_in:
            raise InferenceError("--features names %d features but the estimator expects %d"
                                 % (len(features), n_in))
        if names_in is not None and list(features) != [str(n) for n in names_in]:
            raise InferenceError("--features must be the columns the estimator was fitted on, "
                                 "in order: %s" % ", ".join(map(str, names_in)))
        names = list(features)
    elif names_in is not None:
        names = [str(n) for n in names_in]
    elif sample is not None:
        names = [str(c) for c in sample.columns]
    elif n_in is not None:
        names = ["x%d" % i for i in range(n_in)]
    else:
        raise InferenceError("cannot infer the features (no feature_names_in_ or n_features_in_); "
                             "pass --features a,b,c or --sample FILE.csv")
    input_kind = "dataframe" if names_in is not None else "matrix"
    specs = {name: {"name": name, "type": "number"} for name in names}
    if sample is not None:
        _from_sample(specs, names, sample)
    for index, encoder in _encoded_columns(estimator, names):
        _from_encoder(specs[names[index[0]]], encoder, index[1])
    _from_hist_gradient_boosting(estimator, specs, names)
    return [specs[n] for n in names], input_kind


def _text_column(features, sample):
    """The name of a text model's one feature: ``--features``, else the
    header of a one-column ``--sample``, else "text"."""
    if features:
        name = features[0]
    elif sample is None:
        return "text"
    elif len(sample.columns) == 1:
        name = str(sample.columns[0])
    else:
        raise InferenceError(
            "a text model takes one text per row, but --sample has %d columns (%s): give it "
            "only the text column, or name that column with --features"
            % (len(sample.columns), ", ".join(map(str, sample.columns[:5]))))
    if sample is not None and name not in sample.columns:
        raise InferenceError("--sample lacks the column %r" % name)
    return name


def _from_sample(specs, names, sample):
    missing = [n for n in names if n not in sample.columns]
    if missing:
        raise InferenceError("--sample lacks the column %r" % missing[0])
    for name in names:
        column = sample[name]
        spec = specs[name]
        kind = column.dtype.kind
        if kind == "b":
            spec["type"] = "boolean"
        elif kind in "iu":
            spec["type"] = "integer"
        elif kind == "f":
            spec["type"] = "number"
        else:
            spec["type"] = "string"
            spec["dtype"] = "object"
        if kind in "iuf" and column.notna().any():
            spec["range"] = [_plain(column.min()), _plain(column.max())]


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return value


def _encoded_columns(estimator, names):
    """``((column index, position in encoder), encoder)`` for every input
    column that reaches an encoder directly (through a ColumnTransformer, or
    as the first step of the pipeline)."""
    found = []
    first = first_step(estimator)
    encoder = _encoder_of(first)
    if encoder is not None:
        found += [((j, j), encoder) for j in range(len(names))]
    for transformer in _column_transformers(estimator):
        indices = getattr(transformer, "_transformer_to_input_indices", {})
        for name, inner, _ in transformer.transformers_:
            encoder = _encoder_of(inner)
            if encoder is None:
                continue
            for position, j in enumerate(indices.get(name, [])):
                found.append(((int(j), position), encoder))
    return found


def _column_transformers(estimator):
    node = estimator
    while True:
        if type(node).__name__ == "ColumnTransformer":
            yield node
            return
        steps = getattr(node, "steps", None)
        if not steps:
            return
        node = steps[0][1]


def _encoder_of(transformer):
    """The encoder a column's values reach first (an imputer before it only
    fills gaps), or None."""
    for step in [s for _, s in getattr(transformer, "steps", [])] or [transformer]:
        if type(step).__name__ in ENCODERS and hasattr(step, "categories_"):
            return step
        if type(step).__name__ not in ("SimpleImputer",):
            return None
    return None


def _from_encoder(spec, encoder, position):
    categories = encoder.categories_[position]
    values = [c for c in categories.tolist() if not (isinstance(c, float) and c != c)
              and c is not None]
    if categories.dtype.kind in "OUS":
        spec["type"] = "string"
        spec["dtype"] = "object"
    elif categories.dtype.kind in "iu" and spec["type"] == "number":
        spec["type"] = "integer"
    spec["categories"] = values
    spec["unknown_categories"] = "ignore" if accepts_unknown(encoder) else "error"
    spec.pop("range", None)


def accepts_unknown(encoder):
    """Whether ``encoder`` transforms a category it did not see in fit.
    TargetEncoder has no ``handle_unknown``: it always maps an unseen
    category to the target mean. The others say so in ``handle_unknown``
    (OneHotEncoder's "warn" encodes it like "infrequent_if_exist")."""
    if type(encoder).__name__ == "TargetEncoder":
        return True
    return getattr(encoder, "handle_unknown", "error") in (
        "ignore", "infrequent_if_exist", "use_encoded_value", "warn")


def _from_hist_gradient_boosting(estimator, specs, names):
    """HistGradientBoosting's native categorical features: category dtype
    (from_dtype) with the categories its preprocessor saw."""
    final = final_step(estimator)
    is_cat = getattr(final, "is_categorical_", None)
    preprocessor = getattr(final, "_preprocessor", None)
    if is_cat is None or not np.any(is_cat) or first_step(estimator) is not final:
        return
    categories = {}
    if preprocessor is not None:
        for name, inner, _ in preprocessor.transformers_:
            if hasattr(inner, "categories_"):
                columns = preprocessor._transformer_to_input_indices.get(name, [])
                for position, j in enumerate(columns):
                    categories[int(j)] = inner.categories_[position]
    for j, flag in enumerate(np.asarray(is_cat).tolist()):
        if not flag:
            continue
        spec = specs[names[j]]
        if j in categories:
            cats = categories[j]
            spec["type"] = "string" if cats.dtype.kind in "OUS" else "integer" \
                if cats.dtype.kind in "iu" else "number"
            spec["categories"] = [c for c in cats.tolist() if c == c]
            spec["dtype"] = "category"
            spec["unknown_categories"] = "ignore"  # the trees send unknown categories one way
        spec.pop("range", None)
