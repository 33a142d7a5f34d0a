"""chalicelib/safeload/validate_native.py on crafted states of real fitted models.

Each case fits a model, breaks one number its native code trusts, saves it
with joblib.dump and loads it with the app's loader: a ModelLoadError naming
the inconsistency (the app's 503), never a model that loads and segfaults on
the first request. tests/test_hostile_artifacts.py shows, for a tree and a
sparse coef_, that such a model does kill the process under plain joblib.
"""
import joblib
import numpy as np
import pytest

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import load_artifact

RNG = np.random.RandomState(0)
X = RNG.normal(size=(60, 4))
Y = np.array([0, 1, 2] * 20)


def _kd_tree_index_out_of_range():
    from sklearn.neighbors import KNeighborsClassifier
    model = KNeighborsClassifier(3, algorithm="kd_tree").fit(X, Y)
    reduced = model._tree.__reduce__()
    state = list(reduced[2])
    state[1] = state[1].copy()
    state[1][0] = 10 ** 6                          # idx_array
    tree = reduced[0](*reduced[1])
    tree.__setstate__(tuple(state))
    model._tree = tree
    return model, "index array is not a permutation"


def _svc_support_counts():
    from sklearn.svm import SVC
    model = SVC().fit(X, Y)
    model._n_support = model._n_support + 5
    return model, "support counts"


def _kmeans_centers_width():
    from sklearn.cluster import KMeans
    model = KMeans(3, n_init=1, random_state=0).fit(X)
    model.cluster_centers_ = model.cluster_centers_[:, :2].copy()
    return model, "cluster centers have shape"


def _hgb_predictor_child():
    from sklearn.ensemble import HistGradientBoostingClassifier
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, Y)
    nodes = model._predictors[0][0].nodes
    inner = np.flatnonzero(nodes["is_leaf"] == 0)[0]
    nodes["left"][inner] = 10 ** 6
    return model, "predictor node's child index"


def _hgb_feature_index():
    from sklearn.ensemble import HistGradientBoostingRegressor
    model = HistGradientBoostingRegressor(max_iter=3, random_state=0).fit(X, X[:, 0])
    nodes = model._predictors[1][0].nodes
    nodes["feature_idx"][np.flatnonzero(nodes["is_leaf"] == 0)[0]] = 40
    return model, "predictor node's feature index"


def _forest_tree_wider_than_forest():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    model = RandomForestClassifier(3, random_state=0).fit(X, Y)
    wide = np.column_stack([X, X])
    model.estimators_[1] = DecisionTreeClassifier(random_state=0).fit(wide, Y)
    return model, "its ensemble gives 4"


def _tree_feature_out_of_range():
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree
    model = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, X[:, 0])
    state = model.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["feature"][0] = 2 ** 30
    tree = Tree(4, np.array([1], dtype=np.intp), 1)
    tree.__setstate__(state)
    model.tree_ = tree
    return model, "feature index is out of range"


def _isolation_forest_feature_subset():
    from sklearn.ensemble import IsolationForest
    from sklearn.tree import ExtraTreeRegressor
    model = IsolationForest(n_estimators=3, random_state=0).fit(X)
    # Its trees get X[:, subset] with check_input=False: a tree over 8 columns
    # would read past each row.
    model.estimators_[1] = ExtraTreeRegressor(random_state=0).fit(np.column_stack([X, X]),
                                                                  X[:, 0])
    return model, "its ensemble gives 4"


CASES = {f.__name__.strip("_"): f for f in (
    _kd_tree_index_out_of_range, _svc_support_counts, _kmeans_centers_width,
    _hgb_predictor_child, _hgb_feature_index, _forest_tree_wider_than_forest,
    _tree_feature_out_of_range, _isolation_forest_feature_subset)}


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_native_state_is_refused_at_load(tmp_path, name):
    model, says = CASES[name]()
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    with pytest.raises(ModelLoadError, match="artifact state is inconsistent") as info:
        load_artifact(str(path))
    assert says in str(info.value)
