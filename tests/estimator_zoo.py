"""Every scikit-learn estimator, fitted on small generated data.

:func:`zoo` fits each class of ``sklearn.utils.all_estimators()`` that can be
fitted on a few dozen generated rows (classifiers on 2 and 3 classes,
regressors, clusterers, outlier detectors, every transformer inside a
Pipeline), plus the compositions data scientists save: searches with each
kind of CV splitter, calibration, stacking and voting, multi-output,
HistGradientBoosting with categorical features taken from a pandas
``category`` dtype, a DataFrame ColumnTransformer, text pipelines.

It yields ``(name, estimator, X)`` where ``X`` is what the estimator can be
asked to predict/transform on, and records in :data:`SKIPPED` the classes it
could not fit, with the reason (the test asserts that list stays small and
known). Fitting is deterministic (fixed seeds) and takes a few seconds.
"""
import warnings

import numpy as np
from sklearn.utils import all_estimators

RNG = np.random.RandomState(0)
N = 36
X = np.abs(RNG.normal(size=(N, 4))) + 0.1          # non-negative: NB, NMF, chi2 accept it
Y2 = np.array([0, 1] * (N // 2))
Y3 = np.array([0, 1, 2] * (N // 3))
YS = np.array(["blue", "green", "red"] * (N // 3))  # string labels (object arrays)
YR = X @ np.array([1.0, -2.0, 0.5, 3.0]) + RNG.normal(scale=0.1, size=N)
YM = np.column_stack([YR, -YR + 1.0])
YML = np.column_stack([Y2, 1 - Y2, (np.arange(N) % 3 == 0).astype(int)])
X_INT = RNG.randint(0, 3, size=(N, 4))
TEXTS = ["the cat sat", "a dog ran far", "cats and dogs", "the red fox", "blue sky today",
         "green grass grows"] * (N // 6)
DICTS = [{"a": float(i % 3), "b": "x" if i % 2 else "y"} for i in range(N)]

#: Classes all_estimators() lists that are not fitted here, and why.
SKIPPED = {}


def _meta_kwargs(cls, kind):
    """Constructor arguments for meta-estimators (their required params)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    clf = LogisticRegression(max_iter=200)
    reg = LinearRegression()
    base = clf if kind == "classifier" else reg
    name = cls.__name__
    if name in ("StackingClassifier", "VotingClassifier"):
        return {"estimators": [("lr", clf), ("tree", DecisionTreeClassifier(max_depth=2))]}
    if name in ("StackingRegressor", "VotingRegressor"):
        return {"estimators": [("lr", reg), ("tree", DecisionTreeRegressor(max_depth=2))]}
    if name == "GridSearchCV":
        return {"estimator": clf, "param_grid": {"C": [0.1, 1.0]}, "cv": 3}
    if name == "RandomizedSearchCV":
        return {"estimator": clf, "param_distributions": {"C": [0.1, 1.0, 10.0]}, "n_iter": 2,
                "cv": 3, "random_state": 0}
    if name in ("SelfTrainingClassifier",):
        return {"estimator": clf}
    if name in ("FrozenEstimator",):
        from sklearn.linear_model import LogisticRegression as LR
        return {"estimator": LR().fit(X, Y2)}
    if name in ("Pipeline",):
        from sklearn.preprocessing import StandardScaler
        return {"steps": [("scale", StandardScaler()), ("clf", clf)]}
    if name == "FeatureUnion":
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler
        return {"transformer_list": [("scale", StandardScaler()), ("pca", PCA(2))]}
    if name == "ColumnTransformer":
        from sklearn.preprocessing import StandardScaler
        return {"transformers": [("scale", StandardScaler(), [0, 1])]}
    if name in ("SparseCoder",):
        return {"dictionary": np.eye(4)}
    if name in ("RFE", "RFECV", "SelectFromModel", "SequentialFeatureSelector"):
        return {"estimator": reg}
    if name in ("FixedThresholdClassifier", "TunedThresholdClassifierCV",
                "CalibratedClassifierCV", "OneVsRestClassifier", "OneVsOneClassifier",
                "OutputCodeClassifier", "ClassifierChain", "MultiOutputClassifier"):
        return {"estimator": clf}
    if name in ("RegressorChain", "MultiOutputRegressor"):
        return {"estimator": reg}
    import inspect
    params = inspect.signature(cls).parameters
    if "estimator" in params and params["estimator"].default is inspect.Parameter.empty:
        return {"estimator": base}
    if "base_estimator" in params and params["base_estimator"].default is inspect.Parameter.empty:
        return {"base_estimator": base}
    return {}


def _attempts(cls, kind):
    """(fit args, predict X) pairs to try in order."""
    name = cls.__name__
    if name in ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer"):
        return [((TEXTS, Y3), TEXTS)]
    if name in ("DictVectorizer", "FeatureHasher"):
        return [((DICTS,), DICTS)]
    if name in ("LabelEncoder", "LabelBinarizer"):
        return [((YS,), YS)]
    if name == "MultiLabelBinarizer":
        return [(([["a", "b"], ["c"], ["a"]],), [["a"], ["b", "c"]])]
    if name == "PatchExtractor":
        images = RNG.rand(2, 6, 6)
        return [((images,), images)]
    if name == "IsotonicRegression":
        return [((X[:, 0], YR), X[:, 0])]
    if name in ("ClassifierChain", "MultiOutputClassifier"):
        return [((X, YML), X)]
    if name.startswith("MultiTask") or name in ("RegressorChain", "MultiOutputRegressor",
                                                "CCA", "PLSCanonical"):
        return [((X, YM), X)]
    if name == "KernelCenterer":
        K = X @ X.T
        return [((K,), K)]
    if kind == "classifier":
        return [((X, Y3), X), ((X, YS), X), ((X_INT, Y3), X_INT), ((X, Y2), X)]
    if kind == "regressor":
        return [((X, YR), X), ((X, np.abs(YR) + 0.1), X), ((X_INT, YR), X_INT)]
    return [((X, Y3), X), ((X,), X), ((X_INT, Y3), X_INT)]


def _kind(cls):
    from sklearn.base import ClassifierMixin, OutlierMixin, RegressorMixin
    for base, kind in ((ClassifierMixin, "classifier"), (RegressorMixin, "regressor"),
                       (OutlierMixin, "outlier")):
        if issubclass(cls, base):
            return kind
    return "other"


# Settings that keep slow defaults small; the class stays the same.
_SMALL = {"n_estimators": 5, "max_iter": 50, "n_components": 2, "n_clusters": 2,
          "random_state": 0}
_SMALL_BY_NAME = {"TSNE": {"perplexity": 5.0, "max_iter": 250},
                  "HDBSCAN": {"min_cluster_size": 3},
                  "LocalOutlierFactor": {"novelty": True, "n_neighbors": 5},
                  "KNeighborsTransformer": {"n_neighbors": 3},
                  "Isomap": {"n_neighbors": 5}, "LocallyLinearEmbedding": {"n_neighbors": 5},
                  "SpectralEmbedding": {"n_neighbors": 5},
                  "RadiusNeighborsClassifier": {"radius": 10.0},
                  "RadiusNeighborsRegressor": {"radius": 10.0},
                  "MLPClassifier": {"max_iter": 50, "hidden_layer_sizes": (5,)},
                  "MLPRegressor": {"max_iter": 50, "hidden_layer_sizes": (5,)},
                  "QuantileTransformer": {"n_quantiles": 10},
                  "KBinsDiscretizer": {"n_bins": 3},
                  "OrthogonalMatchingPursuitCV": {"max_iter": None},
                  "SpectralBiclustering": {"n_best": 2},
                  "LogisticRegressionCV": {"Cs": 2, "cv": 2},
                  "TunedThresholdClassifierCV": {"cv": 2},
                  "BayesianGaussianMixture": {"max_iter": 20},
                  "RFECV": {"cv": 2}, "LassoCV": {"cv": 2}, "ElasticNetCV": {"cv": 2},
                  "MultiTaskLassoCV": {"cv": 2}, "MultiTaskElasticNetCV": {"cv": 2},
                  "GraphicalLassoCV": {"cv": 2}, "LarsCV": {"cv": 2}, "LassoLarsCV": {"cv": 2}}


def _construct(cls, kind):
    import inspect
    kwargs = _meta_kwargs(cls, kind)
    params = inspect.signature(cls).parameters
    for key, value in _SMALL.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    kwargs.update(_SMALL_BY_NAME.get(cls.__name__, {}))
    if cls.__name__ in ("PLSSVD", "CCA", "PLSCanonical", "PLSRegression"):
        kwargs["n_components"] = 1
    if cls.__name__ in ("OneClassSVM", "SGDOneClassSVM"):
        kwargs.pop("random_state", None) if "random_state" not in params else None
    return cls(**kwargs)


def _fit_one(cls, kind):
    errors = []
    for args, X_pred in _attempts(cls, kind):
        est = _construct(cls, kind)
        try:
            est.fit(*args)
            return est, X_pred
        except Exception as exc:  # the next kind of data may fit
            errors.append("%s: %s" % (type(exc).__name__, str(exc)[:100]))
    SKIPPED[cls.__name__] = "; ".join(errors)
    return None, None


def _in_pipeline(transformer, X_pred, y):
    """A fitted transformer as the first step of a pipeline ending in a
    classifier (every transformer is saved inside a pipeline in practice)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    return make_pipeline(transformer, LogisticRegression(max_iter=200)).fit(X_pred, y)


def all_estimator_models():
    """``[(name, fitted estimator, X)]`` for every class of all_estimators()."""
    from sklearn.base import clone
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators():
            kind = _kind(cls)
            est, X_pred = _fit_one(cls, kind)
            if est is None:
                continue
            models.append((name, est, X_pred))
            if kind == "classifier" and name not in ("ClassifierChain", "MultiOutputClassifier"):
                try:
                    two = clone(est)
                    if name == "LinearDiscriminantAnalysis":
                        two.set_params(n_components=None)
                    models.append((name + "[2 classes]", two.fit(X, Y2), X))
                except Exception as exc:
                    SKIPPED[name + "[2 classes]"] = str(exc)[:100]
            transformer = (kind == "other" and hasattr(est, "transform")
                           and not isinstance(X_pred, list))
            if transformer and getattr(X_pred, "ndim", 0) == 2 and X_pred.shape[0] == N:
                try:
                    models.append(("Pipeline(%s)" % name, _in_pipeline(clone(est), X_pred, Y3),
                                   X_pred))
                except Exception as exc:
                    SKIPPED["Pipeline(%s)" % name] = str(exc)[:100]
    return models


def composed_models():
    """Compositions beyond default construction: searches with each CV
    splitter, calibration, stacking, multi-output, native categorical HGB on
    a pandas DataFrame, a DataFrame ColumnTransformer, text pipelines."""
    import pandas as pd
    from sklearn import model_selection as ms
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestClassifier,
                                  StackingClassifier, VotingClassifier)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier
    models = []
    lr = LogisticRegression(max_iter=200)
    groups = np.arange(N) % 4
    splitters = [ms.KFold(3), ms.StratifiedKFold(3, shuffle=True, random_state=0),
                 ms.ShuffleSplit(3, random_state=0),
                 ms.StratifiedShuffleSplit(3, test_size=0.3, random_state=0),
                 ms.RepeatedKFold(n_splits=3, n_repeats=1, random_state=0),
                 ms.RepeatedStratifiedKFold(n_splits=3, n_repeats=1, random_state=0),
                 ms.GroupKFold(3), ms.LeaveOneGroupOut(), ms.PredefinedSplit(np.arange(N) % 3),
                 ms.TimeSeriesSplit(3), ms.StratifiedGroupKFold(3)]
    for cv in splitters:
        search = ms.GridSearchCV(lr, {"C": [0.5, 1.0]}, cv=cv)
        fit_params = {"groups": groups} if "Group" in type(cv).__name__ else {}
        models.append(("GridSearchCV(cv=%s)" % type(cv).__name__, search.fit(X, Y3, **fit_params), X))
    models.append(("GridSearchCV(refit scoring list)", ms.GridSearchCV(
        lr, {"C": [0.5, 1.0]}, cv=3, scoring=["accuracy", "f1_macro"], refit="accuracy")
        .fit(X, Y3), X))
    for method in ("sigmoid", "isotonic"):
        models.append(("CalibratedClassifierCV(%s)" % method,
                       CalibratedClassifierCV(lr, method=method, cv=3).fit(X, Y3), X))
    models.append(("StackingClassifier(passthrough)", StackingClassifier(
        [("lr", lr), ("rf", RandomForestClassifier(5, random_state=0))], passthrough=True,
        cv=3).fit(X, Y3), X))
    models.append(("VotingClassifier(soft)", VotingClassifier(
        [("lr", lr), ("tree", DecisionTreeClassifier(max_depth=2))], voting="soft")
        .fit(X, Y3), X))
    models.append(("MultiOutputClassifier(forest)", MultiOutputClassifier(
        RandomForestClassifier(5, random_state=0)).fit(X, YML), X))
    models.append(("RandomForestClassifier(multilabel)",
                   RandomForestClassifier(5, random_state=0).fit(X, YML), X))
    models.append(("MultiOutputRegressor(Ridge)", MultiOutputRegressor(Ridge()).fit(X, YM), X))
    models.append(("GradientBoostingClassifier(3 classes)",
                   GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, Y3), X))
    models.append(("HistGradientBoostingClassifier(3 classes)",
                   HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, Y3), X))
    models.append(("FunctionTransformer(log1p)+Ridge", Pipeline(
        [("log", FunctionTransformer(np.log1p)), ("ridge", Ridge())]).fit(X, YR), X))

    df = pd.DataFrame({"age": X[:, 0] * 30, "income": X[:, 1] * 1000,
                       "color": pd.Categorical(np.array(["blue", "green", "red"])[Y3 % 3]),
                       "city": np.array(["Paris", "Oslo", "Rome", "Lima"])[np.arange(N) % 4]})
    df.loc[3, "age"] = np.nan
    num_cat = df[["age", "income", "color"]]
    models.append(("HistGradientBoostingClassifier(categorical from dtype, NaN)",
                   HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype",
                                                  random_state=0).fit(num_cat, Y3), num_cat))
    models.append(("HistGradientBoostingRegressor(categorical from dtype)",
                   HistGradientBoostingRegressor(max_iter=5, categorical_features="from_dtype",
                                                 random_state=0).fit(num_cat, YR), num_cat))
    tabular = df.fillna({"age": 0.0})
    ct = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), ["color", "city"]),
                            ("scale", StandardScaler(), ["age", "income"])])
    models.append(("Pipeline(ColumnTransformer on a DataFrame, LogisticRegression)",
                   Pipeline([("ct", ct), ("clf", lr)]).fit(tabular, YS), tabular))
    pandas_out = Pipeline([("ct", ColumnTransformer(
        [("scale", StandardScaler(), ["age", "income"])])), ("clf", lr)]).set_output(
        transform="pandas").fit(tabular, Y3)
    models.append(("Pipeline(set_output pandas)", pandas_out, tabular))
    text = np.array(TEXTS, dtype=object)
    models.append(("Pipeline(TfidfVectorizer, LogisticRegression)",
                   Pipeline([("tfidf", TfidfVectorizer()), ("clf", lr)]).fit(text, YS), text))
    return models
