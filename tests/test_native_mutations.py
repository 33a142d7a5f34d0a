"""Native state of every tree-based family, mutated: a clean refusal (the
app's 503 with the reason) or a model that predicts, never a signal.

The hypothesis search of :mod:`tests.native_mutations` runs in a child
process per family, so a segfault fails this test (naming the mutation
that caused it) instead of killing pytest. Mutations that break a bound
native code relies on (a child or feature index out of range, a declared
width other than the card's, a gradient boosting grid wider than its raw
prediction) must be refused, not merely survive one prediction.
``NATIVE_MUTATION_EXAMPLES`` sets the examples per family (default 40).
"""
import json
import os
import signal
import subprocess
import sys

import joblib
import numpy as np
import pytest

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import load_artifact
from tests import native_mutations as nm

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = int(os.environ.get("NATIVE_MUTATION_EXAMPLES", "40"))


@pytest.mark.parametrize("family", sorted(nm.families()))
def test_every_mutation_of_native_state_is_refused_or_harmless(family):
    child = subprocess.run([sys.executable, "-m", "tests.native_mutations", family,
                            str(EXAMPLES), "20261203"], cwd=PROJECT_DIR, capture_output=True,
                           text=True, timeout=900)
    examples = [line for line in child.stdout.splitlines() if line.startswith("EXAMPLE ")]
    if child.returncode < 0:
        pytest.fail("%s: killed by %s at %s" % (family, signal.Signals(-child.returncode).name,
                                                examples[-1] if examples else "start"))
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout.strip().splitlines()[-1][len("SUMMARY "):])
    assert summary["holes"] == [], summary["holes"]
    assert summary["refused"] > 0 and summary["examples"] >= EXAMPLES // 2, summary


def _gradient_boosting_with_unbounded_members():
    """The reported attack: members without n_features_in_, each Tree
    claiming 2**31-1 features and splitting on feature 2**30."""
    model = nm.families()["gradient_boosting_regressor"]()
    for member in model.estimators_.ravel():
        nm.set_tree_state(member, "feature", 0, 1 << 30, n_features=(1 << 31) - 1)
        del member.n_features_in_
    return model


def _load(tmp_path, model, n_features=nm.WIDTH):
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return load_artifact(str(path), n_features=n_features)


def test_gradient_boosting_members_claiming_2_to_the_31_features_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="tree expects 2147483647 features, its "
                                             "estimator 4"):
        _load(tmp_path, _gradient_boosting_with_unbounded_members())


def test_the_same_attack_is_refused_at_publish_without_a_card(tmp_path):
    with pytest.raises(ModelLoadError, match="tree expects 2147483647 features"):
        _load(tmp_path, _gradient_boosting_with_unbounded_members(), n_features=None)


def test_a_bare_tree_without_n_features_in_is_bounded_by_the_card(tmp_path):
    model = nm.families()["decision_tree_classifier"]()
    nm.set_tree_state(model, "feature", 0, 1 << 30, n_features=(1 << 31) - 1)
    del model.n_features_in_
    with pytest.raises(ModelLoadError, match="tree expects 2147483647 features, its "
                                             "estimator 4"):
        _load(tmp_path, model)
    with pytest.raises(ModelLoadError, match="states no feature count"):
        _load(tmp_path, model, n_features=None)


def test_a_forest_without_widths_is_refused_when_nothing_bounds_it(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures
    forest = nm.families()["random_forest_classifier"]()
    del forest.n_features_in_
    for member in forest.estimators_:
        del member.n_features_in_
    # Behind a transformer, the forest's input width is the transformer's
    # output: only the forest itself could state it.
    model = make_pipeline(PolynomialFeatures(2).fit(nm.X), forest)
    with pytest.raises(ModelLoadError, match="width \\(n_features_in_\\) is unknown"):
        _load(tmp_path, model)


def test_a_root_stating_another_width_than_the_card_is_refused(tmp_path):
    model = nm.families()["extra_trees_regressor"]()
    with pytest.raises(ModelLoadError, match="estimator expects 4 features but is given 3"):
        _load(tmp_path, model, n_features=3)


def test_a_shared_tree_is_checked_at_every_width_it_is_given(tmp_path):
    from sklearn.ensemble import VotingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures
    wide = nm.families()["decision_tree_regressor"]()
    poly = PolynomialFeatures(2).fit(nm.X)
    narrow_input = poly.transform(nm.X)
    from sklearn.tree import DecisionTreeRegressor
    narrow = DecisionTreeRegressor(max_depth=3, random_state=0).fit(narrow_input, nm.X[:, 0])
    narrow.tree_ = wide.tree_  # the 4-column tree, also reached where 15 columns come in
    model = VotingRegressor([("a", wide), ("b", make_pipeline(poly, narrow))])
    model.fit(nm.X, nm.X[:, 0])
    model.estimators_[1].steps[1] = ("decisiontreeregressor", narrow)
    with pytest.raises(ModelLoadError, match="tree expects 4 features, its estimator 15"):
        _load(tmp_path, model)


def test_gradient_boosting_grid_wider_than_its_raw_prediction_is_refused(tmp_path):
    model = nm.families()["gradient_boosting_regressor"]()
    model.estimators_ = np.concatenate([model.estimators_] * 3, axis=1)
    with pytest.raises(ModelLoadError, match="3 columns for 1 trees per iteration"):
        _load(tmp_path, model)
    del model.n_trees_per_iteration_
    with pytest.raises(ModelLoadError, match="raw prediction has shape \\(1, 1\\), the trees "
                                             "write 3 columns"):
        _load(tmp_path, model)


def test_hist_gradient_boosting_categorical_split_on_a_numeric_feature_is_refused(tmp_path):
    model = nm.families()["hist_gradient_boosting_classifier"]()  # one categorical feature
    categorical = np.flatnonzero(model._bin_mapper.is_categorical_)
    nodes = model._predictors[0][0].nodes
    numeric = np.flatnonzero((nodes["is_leaf"] == 0)
                             & ~np.isin(nodes["feature_idx"], categorical))[0]
    nodes["is_categorical"][numeric] = 1
    nodes["bitset_idx"][numeric] = 0
    with pytest.raises(ModelLoadError, match="splits on a feature that is not categorical"):
        _load(tmp_path, model)


def test_every_family_unmutated_loads_and_predicts(tmp_path):
    for family, build in nm.families().items():
        model = build()
        loaded = _load(tmp_path, model)
        assert nm.load_and_predict(model, family) == ("served", None), family
        assert type(loaded) is type(model)
