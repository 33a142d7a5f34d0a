"""Every scikit-learn estimator loads through the restricted
unpickler, without ``TRUST_MODEL_PICKLE``.

Each class of ``sklearn.utils.all_estimators()`` that fits on small generated
data, plus the compositions in ``tools/fixtures/estimator_zoo.py`` (searches with
every CV splitter, calibration, stacking, voting, multi-output,
HistGradientBoosting with pandas categoricals, DataFrame pipelines, text), is
saved with ``joblib.dump`` and loaded with the app's loader; the loaded model
answers as the fitted one: labels and integers exactly, floats within 1e-12
(a loaded array's memory alignment can select another BLAS code path, which
moves the last bits).
"""
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse
from sklearn.utils import all_estimators

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import TRUST_MODEL_PICKLE_ENV, load_artifact
from tools.fixtures import estimator_zoo

METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples")

#: Fitted standalone, but not also as the first step of a pipeline: they
#: select no column of the generated data, or output 3-D data.
NOT_IN_A_PIPELINE = {"Pipeline(MissingIndicator)", "Pipeline(PLSSVD)", "Pipeline(SelectFdr)",
                     "Pipeline(SelectFpr)", "Pipeline(SelectFwe)"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    estimator_zoo.SKIPPED.clear()
    models = estimator_zoo.all_estimator_models() + estimator_zoo.composed_models()
    root = tmp_path_factory.mktemp("zoo")
    saved = []
    for i, (name, estimator, X) in enumerate(models):
        path = root / ("%03d.joblib" % i)
        joblib.dump(estimator, path)
        saved.append((name, estimator, X, str(path)))
    return saved


def _answers(estimator, X):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in METHODS:
            if not hasattr(estimator, method):
                continue
            try:
                value = getattr(estimator, method)(X)
            except Exception as exc:   # e.g. predict_proba of a hard-voting classifier
                value = "raises %s" % type(exc).__name__
            if scipy.sparse.issparse(value):
                value = value.toarray()
            out[method] = value
    return out


def _same(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fc":
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)
    return a.shape == b.shape and np.array_equal(a, b)


def test_every_class_of_all_estimators_is_covered(zoo):
    fitted = {name.split("[")[0] for name, *_ in zoo}
    missing = [name for name, _ in all_estimators() if name not in fitted]
    assert missing == []
    assert set(estimator_zoo.SKIPPED) <= NOT_IN_A_PIPELINE, estimator_zoo.SKIPPED
    assert len(zoo) >= 300


def test_every_estimator_loads_without_trust_and_answers_identically(zoo, monkeypatch):
    monkeypatch.delenv(TRUST_MODEL_PICKLE_ENV, raising=False)
    refused, differ = [], []
    for name, estimator, X, path in zoo:
        try:
            loaded = load_artifact(path)
        except ModelLoadError as exc:
            refused.append((name, str(exc)))
            continue
        assert type(loaded) is type(estimator), name
        expected, got = _answers(estimator, X), _answers(loaded, X)
        if expected.keys() != got.keys() or not all(_same(expected[m], got[m]) for m in expected):
            differ.append(name)
    assert refused == []
    assert differ == []


def test_families_named_in_issue_9_are_in_the_sweep(zoo):
    names = {name for name, *_ in zoo}
    for family in ("GradientBoostingClassifier(3 classes)",
                   "HistGradientBoostingClassifier(3 classes)",
                   "HistGradientBoostingClassifier(categorical from dtype, NaN)",
                   "GridSearchCV(cv=StratifiedKFold)", "GridSearchCV(cv=GroupKFold)",
                   "RandomizedSearchCV", "CalibratedClassifierCV(isotonic)",
                   "StackingClassifier(passthrough)", "VotingClassifier(soft)",
                   "MultiOutputClassifier(forest)", "RandomForestClassifier(multilabel)",
                   "Pipeline(ColumnTransformer on a DataFrame, LogisticRegression)",
                   "Pipeline(TfidfVectorizer, LogisticRegression)", "Pipeline(OneHotEncoder)",
                   "FunctionTransformer(log1p)+Ridge", "KMeans", "IsolationForest"):
        assert family in names


def test_scipy_stats_distributions_are_refused_and_the_message_says_why(tmp_path):
    """A RandomizedSearchCV keeping scipy.stats distributions is refused:
    their __setstate__ exec()s a template string stored in the pickle. The
    refusal names the global, says why and names the opt-out."""
    import scipy.stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV
    search = RandomizedSearchCV(LogisticRegression(), {"C": scipy.stats.loguniform(0.01, 10)},
                                n_iter=2, cv=3, random_state=0)
    search.fit(estimator_zoo.X, estimator_zoo.Y3)
    path = tmp_path / "search.joblib"
    joblib.dump(search, path)
    with pytest.raises(ModelLoadError) as info:
        load_artifact(str(path))
    message = str(info.value)
    assert "scipy.stats." in message
    assert "not on the allowlist" in message and "unpickling runs what an artifact names" in message
    assert TRUST_MODEL_PICKLE_ENV in message
    # What to do instead: the best estimator alone loads.
    joblib.dump(search.best_estimator_, path)
    assert type(load_artifact(str(path))) is LogisticRegression

