"""Our corrections to skl2onnx's graphs (``publisher/converters/``), each
against scikit-learn on the rows where skl2onnx's own graph answers
otherwise: a forest's label at a tie, a tree split on ``float32(x)`` in a
double graph, and LinearSVC in double."""
import numpy as np
import pytest

from publisher import converters, onnx_export


def _graph(estimator, width, fix_ties=True):
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType
    from sklearn.base import is_classifier
    converters.register()
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    graph = skl2onnx.to_onnx(estimator, initial_types=[("X", DoubleTensorType([None, width]))],
                             options=options, target_opset=onnx_export.TARGET_OPSET)
    if fix_ties:
        converters.label_from_probabilities(graph)
    onnx_export._declare_computed_output_types(graph)
    return graph


def _run(graph, X):
    import onnxruntime
    session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.asarray(X, dtype=np.float64)})


def test_a_forest_at_a_tie_answers_scikit_learns_first_class():
    from sklearn.ensemble import RandomForestClassifier
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] + rng.normal(size=200) > 0, "yes", "no")
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    rows = rng.normal(size=(2000, 3))
    tie = forest.predict_proba(rows)[:, 0] == 0.5  # 10 trees of 20 each way
    assert tie.sum() > 20
    want = forest.predict(rows)
    assert set(want[tie]) == {"no"}
    # ONNX Runtime's own pick at a tie is the other class...
    assert (_run(_graph(forest, 3, fix_ties=False), rows)[0][tie] != want[tie]).all()
    # ...the rewritten graph answers scikit-learn's, everywhere
    assert _run(_graph(forest, 3), rows)[0].tolist() == want.tolist()


def test_a_split_reads_the_float32_value_in_a_double_graph():
    from sklearn.ensemble import RandomForestClassifier
    tree = RandomForestClassifier(n_estimators=1, bootstrap=False, random_state=0).fit(
        np.array([[0.1], [0.16]]), ["low", "high"])
    threshold = tree.estimators_[0].tree_.threshold[0]
    above = np.nextafter(threshold, np.inf)  # above the threshold, but not in float32
    assert above > threshold and np.float32(above) <= threshold
    rows = [[threshold], [above], [0.2]]
    assert tree.predict(rows).tolist() == ["low", "low", "high"]
    label, probabilities = _run(_graph(tree, 1), rows)
    assert label.tolist() == ["low", "low", "high"]
    np.testing.assert_array_equal(probabilities, tree.predict_proba(rows))


@pytest.mark.parametrize("labels", [["no", "yes"], ["a", "b", "c"], [3, 7, 9]])
def test_linear_svc_converts_in_double_with_scikit_learns_labels(labels):
    from sklearn.preprocessing import StandardScaler
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC
    rng = np.random.RandomState(1)
    X = rng.normal(size=(300, 4)) * [1, 10, 100, 0.1]
    y = np.asarray(labels)[np.argmax(X[:, :len(labels)] * [1, 0.1, 0.01][:len(labels)]
                                     + rng.normal(scale=0.3, size=(300, len(labels))), axis=1)]
    model = make_pipeline(StandardScaler(), LinearSVC(random_state=0)).fit(X, y)
    graph = _graph(model, 4)
    assert onnx_export.float32_stages(graph.SerializeToString()) == []
    rows = rng.normal(size=(2000, 4)) * [1, 10, 100, 0.1]
    label, scores = _run(graph, rows)
    assert label.tolist() == model.predict(rows).tolist()
    want = model.decision_function(rows)
    np.testing.assert_allclose(scores.reshape(want.shape), want, rtol=1e-12, atol=1e-12)


def test_quantile_transformer_normal_output_in_double():
    """The uniform values with scikit-learn's wider bounds, then the normal
    quantile function: per value within the double tolerance, at the
    bounds, beyond them, within 1e-7 of them, and for a missing value."""
    from sklearn.preprocessing import QuantileTransformer
    rng = np.random.RandomState(2)
    X = np.column_stack([rng.exponential(size=500), rng.normal(size=500) * 1e3])
    model = QuantileTransformer(output_distribution="normal", n_quantiles=50,
                                random_state=0).fit(X)
    low, high = model.quantiles_[0], model.quantiles_[-1]
    rows = np.vstack([rng.exponential(size=(1000, 2)) * [1, 1e3], X[:50], [low, high],
                      [low - 1, high + 1], [low + 5e-8, high - 5e-8], [np.nan, 0.0]])
    graph = _graph(model, 2)
    assert onnx_export.float32_stages(graph.SerializeToString()) == []
    got = _run(graph, rows)[0]
    want = model.transform(rows)
    assert np.isnan(got[-1, 0]) and np.isnan(want[-1, 0])
    rtol, atol = onnx_export.DOUBLE_TOLERANCE
    error = np.abs(got - want)[:-1]
    assert (error <= rtol * np.abs(want[:-1]) + atol).all(), error.max()
    assert got[-4:-2].min() == want[-4:-2].min() < -5  # clipped like scikit-learn
