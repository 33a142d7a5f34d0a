"""The rows a compiled graph must answer as scikit-learn does, and
scikit-learn's answers to them.

Blocks of rows, each answered by scikit-learn separately:

1. the card's example and the ``--sample`` rows, every feature's edges (its
   range's ends, each of its categories) on an otherwise ordinary row, and
   ``VALIDATION_ROWS`` generated rows (a fixed seed; numbers from each
   feature's range widened by a tenth on each side, or a wide normal spread
   without a range; a third rounded to one decimal and a third to two, as
   training data often is, since a tree's thresholds are midpoints between
   such values; categories, integer-coded ones included, from the card,
   and one value in twenty an unseen one where unknown categories are ignored);
2. where the model accepts missing values: for each feature, rows with it
   missing, and rows with every feature missing. A block scikit-learn
   itself refuses (a string column whose encoder has never seen a missing
   value) is left out: the graph is held to what scikit-learn answers.
"""
import warnings

import numpy as np

VALIDATION_ROWS = 2000
MISSING_ROWS = 25
SEED = 0


def where(schema):
    return lambda i, j: "validation row %d, feature %s" % (i, schema.feature_names[j])


def answered_blocks(estimator, schema, specs, rows):
    """``[(rows, scikit-learn's answers)]``, the first block being the main one."""
    from publisher.onnx_export import NotExported
    problem = None
    for widen in (True, False):
        main = validation_rows(schema, specs, rows, widen)
        try:
            blocks = [(main, sklearn_answers(estimator, schema.build(main, where(schema))))]
            break
        except Exception as exc:  # outside the model's domain (log1p of a negative)
            problem = exc
    else:
        raise NotExported("scikit-learn itself cannot answer the validation rows: %s: %s"
                          % (type(problem).__name__, str(problem).splitlines()[0][:200]
                             if str(problem) else ""))
    if schema.accepts_missing:
        for block in missing_rows(schema, main):
            try:
                expected = sklearn_answers(estimator, schema.build(block, where(schema)))
            except Exception:
                continue
            blocks.append((block, expected))
    return blocks


def validation_matrix(schema, specs, rows, widen=True):
    """:func:`validation_rows` as scikit-learn is handed them."""
    return schema.build(validation_rows(schema, specs, rows, widen), where(schema))


def validation_rows(schema, specs, rows, widen=True):
    """Block 1 of the module's docstring: given rows, edges, generated rows."""
    rng = np.random.default_rng(SEED)
    columns = [_generated(rng, feature, spec, widen)
               for feature, spec in zip(schema.features, specs)]
    generated = [list(row) for row in zip(*columns)]
    return [list(r) for r in rows] + _edges(schema, specs, generated[0]) + generated


def _generated(rng, feature, spec, widen):
    n = VALIDATION_ROWS
    if feature.type == "boolean":
        return rng.integers(0, 2, n).astype(bool).tolist()
    if feature.categories:
        choices = list(feature.categories) + (
            [_unseen(feature)] if feature.unknown == "ignore" else [])
        weights = np.full(len(choices), 1.0)
        if feature.unknown == "ignore":
            weights[-1] = (len(choices) - 1) / 19 or 1.0
        picked = rng.choice(len(choices), n, p=weights / weights.sum())
        return [choices[k] for k in picked]
    if feature.type == "string":
        return ["a"] * n
    if "range" in spec:
        low, high = spec["range"]
        pad = ((high - low) / 10 or 1.0) if widen else 0.0
        column = rng.uniform(low - pad, high + pad, n)
    else:
        column = rng.normal(0, 1, n) * 10.0 ** rng.integers(0, 4, n)
    third = n // 3
    column[:third] = np.round(column[:third], 1)
    column[third:2 * third] = np.round(column[third:2 * third], 2)
    if feature.type == "integer":
        return np.round(column).astype(int).tolist()
    return column.tolist()


def _unseen(feature):
    if feature.type == "string":
        return "an unseen category"
    return int(max(feature.categories)) + 1


def _edges(schema, specs, base):
    """Rows equal to ``base`` but for one feature at one of its edges."""
    out = []
    for j, (feature, spec) in enumerate(zip(schema.features, specs)):
        if feature.categories:
            values = list(feature.categories)
        elif feature.type == "boolean":
            values = [False, True]
        elif "range" in spec and feature.type in ("number", "integer"):
            values = list(spec["range"])
        else:
            continue
        for value in values:
            row = list(base)
            row[j] = value
            out.append(row)
    return out


def missing_rows(schema, main):
    """Block 2 of the module's docstring: one block per feature with it
    missing, then one with every feature missing."""
    rng = np.random.default_rng(SEED + 1)
    picked = [main[k] for k in rng.choice(len(main), min(MISSING_ROWS, len(main)),
                                          replace=False)]
    blocks = []
    for j in range(schema.n_features):
        blocks.append([row[:j] + [None] + row[j + 1:] for row in picked])
    numeric = [j for j, f in enumerate(schema.features) if f.type != "string"]
    blocks.append([[None if j in numeric else v for j, v in enumerate(row)] for row in picked])
    blocks.append([[None] * schema.n_features for _ in picked[:3]])
    return blocks


def sklearn_answers(estimator, X):
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
