"""Fitted models of every family with native arrays, and mutations of those
arrays, for tests/test_native_mutations.py.

``python -m tests.native_mutations FAMILY EXAMPLES SEED`` runs a hypothesis
search in this process: each example mutates one native array (or drops
one bounding attribute) of a fresh copy of FAMILY's model, saves it with
joblib and loads it with the app's loader at the card's width; a model that
loads is then asked to predict card-width rows. Before each load it prints
the example (flushed), so a parent that sees this process die by a signal
knows which mutation did it. It prints a JSON summary line at the end.
"""
import copy
import io
import json
import os
import sys
import tempfile
import warnings

import joblib
import numpy as np

WIDTH = 4
RNG = np.random.RandomState(0)
X = RNG.normal(size=(80, WIDTH))
Y = np.array([0, 1, 2, 3] * 20)
X_CAT = np.column_stack([X[:, :3], RNG.randint(0, 5, size=80)])


def _tree_models():
    from sklearn.ensemble import (BaggingClassifier, ExtraTreesRegressor,
                                  GradientBoostingClassifier, GradientBoostingRegressor,
                                  IsolationForest, RandomForestClassifier, AdaBoostClassifier,
                                  VotingRegressor)
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeRegressor
    return {
        "gradient_boosting_regressor":
            lambda: GradientBoostingRegressor(n_estimators=3, max_depth=2,
                                              random_state=0).fit(X, X[:, 0]),
        "gradient_boosting_classifier":
            lambda: GradientBoostingClassifier(n_estimators=2, max_depth=2,
                                               random_state=0).fit(X, Y),
        "decision_tree_classifier":
            lambda: DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, Y),
        "decision_tree_regressor":
            lambda: DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, X[:, 1]),
        "extra_tree_regressor":
            lambda: ExtraTreeRegressor(max_depth=3, random_state=0).fit(X, X[:, 1]),
        "random_forest_classifier":
            lambda: RandomForestClassifier(3, max_depth=3, random_state=0).fit(X, Y),
        "extra_trees_regressor":
            lambda: ExtraTreesRegressor(3, max_depth=3, random_state=0).fit(X, X[:, 2]),
        "isolation_forest":
            lambda: IsolationForest(n_estimators=3, max_features=2, random_state=0).fit(X),
        "bagging_classifier":
            lambda: BaggingClassifier(DecisionTreeClassifier(max_depth=3), n_estimators=3,
                                      max_features=2, random_state=0).fit(X, Y),
        "adaboost_classifier":
            lambda: AdaBoostClassifier(DecisionTreeClassifier(max_depth=2), n_estimators=3,
                                       random_state=0).fit(X, Y),
        "voting_regressor":
            lambda: VotingRegressor([("a", DecisionTreeRegressor(max_depth=2, random_state=0)),
                                     ("b", ExtraTreeRegressor(max_depth=2, random_state=0))]
                                    ).fit(X, X[:, 0]),
    }


def _hist_models():
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    return {
        "hist_gradient_boosting_classifier":
            lambda: HistGradientBoostingClassifier(max_iter=3, categorical_features=[3],
                                                   random_state=0).fit(X_CAT, Y),
        "hist_gradient_boosting_regressor":
            lambda: HistGradientBoostingRegressor(max_iter=3, random_state=0).fit(X, X[:, 0]),
    }


def families():
    return {**_tree_models(), **_hist_models()}


def rows_for(family):
    return X_CAT if family.startswith("hist_gradient_boosting_classifier") else X


# --------------------------------------------------------------------------
# The native arrays of a fitted model, as (path, kind) where kind says how
# to rebuild it: "tree" (a Tree's node records), "predictor" (an HGB
# predictor's node records), "grid" (a gradient boosting estimators_ array).

def tree_owners(model):
    """[(where, estimator holding tree_)] anywhere in the model."""
    out, stack, seen = [], [("model", model)], set()
    while stack:
        where, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if hasattr(obj, "tree_") and hasattr(obj.tree_, "node_count"):
            out.append((where, obj))
        members = getattr(obj, "estimators_", None)
        if members is not None:
            for i, m in enumerate(np.asarray(members, dtype=object).ravel()):
                stack.append(("%s.estimators_[%d]" % (where, i), m))
    return sorted(out, key=lambda pair: pair[0])


def predictors(model):
    return [(i, k, p) for i, row in enumerate(getattr(model, "_predictors", None) or [])
            for k, p in enumerate(row)]


TREE_FIELDS = ("left_child", "right_child", "feature", "threshold", "missing_go_to_left")
PREDICTOR_FIELDS = ("left", "right", "feature_idx", "bitset_idx", "is_categorical", "is_leaf",
                    "missing_go_to_left", "num_threshold")


def set_tree_state(owner, field, node, value, n_features=None):
    """Replace ``owner.tree_`` by a copy with nodes[field][node] = value
    (and a declared width ``n_features``), as an artifact would carry it."""
    from sklearn.tree._tree import Tree
    tree = owner.tree_
    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    stored = None
    if field is not None:
        node = node % len(state["nodes"])
        dtype = state["nodes"].dtype[field]
        state["nodes"][field][node] = np.array(value).astype(dtype, casting="unsafe")
        stored = (state["nodes"][field][node].item(), len(state["nodes"]),
                  bool(tree.children_left[node] != -1))
    rebuilt = Tree(tree.n_features if n_features is None else n_features,
                   np.asarray(tree.n_classes), tree.n_outputs)
    rebuilt.__setstate__(state)
    owner.tree_ = rebuilt
    return stored


def mutate(model, choice):
    """Apply one mutation (a dict from :func:`mutation_space`) in place."""
    kind = choice["kind"]
    if kind == "tree":
        owners = tree_owners(model)
        owner = owners[choice["owner"] % len(owners)][1]
        stored = set_tree_state(owner, choice["field"], choice["node"], choice["value"],
                                choice.get("n_features"))
        if stored is not None:
            choice["stored"], choice["count"], choice["inner"] = stored
        if choice.get("drop_width"):
            owner.__dict__.pop("n_features_in_", None)
    elif kind == "predictor":
        found = predictors(model)
        _, _, predictor = found[choice["owner"] % len(found)]
        nodes = predictor.nodes.copy()
        node = choice["node"] % len(nodes)
        field = choice["field"]
        nodes[field][node] = np.array(choice["value"]).astype(nodes.dtype[field],
                                                              casting="unsafe")
        choice["stored"], choice["count"] = nodes[field][node].item(), len(nodes)
        choice["inner"] = bool(nodes["is_leaf"][node] == 0)
        predictor.nodes = nodes
    elif kind == "drop_width":
        targets = [model] + [o for _, o in tree_owners(model)]
        target = targets[choice["owner"] % len(targets)]
        target.__dict__.pop("n_features_in_", None)
    elif kind == "grid":
        grid = model.estimators_
        model.estimators_ = np.concatenate([grid] * (2 + choice["owner"] % 2), axis=1) \
            if choice["value"] % 2 else grid[:, :0]
    else:
        raise AssertionError(kind)


def load_and_predict(model, family):
    """("refused", reason) or ("served", None): the app's loader at the
    card's width, then a prediction on card-width rows."""
    from chalicelib.http.errors import ModelLoadError
    from chalicelib.safeload.loading import load_artifact
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.joblib")
        joblib.dump(model, path)
        try:
            loaded = load_artifact(path, n_features=WIDTH)
        except ModelLoadError as exc:
            return "refused", str(exc)
    rows = rows_for(family)[:16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            (loaded.score_samples if family == "isolation_forest" else loaded.predict)(rows)
        except Exception as exc:  # a Python error at predict is a 4xx/5xx, not a signal
            return "raised", "%s: %s" % (type(exc).__name__, str(exc)[:100])
    return "served", None


def must_refuse(choice, model):
    """Whether ``choice`` breaks a bound native code relies on (so a load
    that succeeds is a hole even if this prediction happened not to crash):
    a child index outside the node array (a tree's leaves included: a leaf
    with one child is malformed), a feature index outside the card's width
    on a split node, a declared width other than the card's, a boosting
    grid other than its raw prediction's width."""
    kind, field = choice["kind"], choice.get("field")
    if kind == "drop_width":
        return False  # the width flows down from the card: dropping it is harmless
    if kind == "grid":
        return True
    if choice.get("n_features") not in (None, WIDTH):
        return True
    stored, count, inner = choice.get("stored"), choice.get("count"), choice.get("inner")
    if field in ("left_child", "right_child"):
        return not -1 <= stored < count
    if field in ("left", "right"):
        return inner and not 0 < stored < count
    if field in ("feature", "feature_idx"):
        return inner and not 0 <= stored < WIDTH
    return False


def main(family, examples, seed):
    from hypothesis import HealthCheck, given, settings, strategies as st, seed as hseed
    warnings.simplefilter("ignore")
    build = families()[family]
    base = build()
    blob = io.BytesIO()
    joblib.dump(base, blob)
    pristine = blob.getvalue()
    hist = family.startswith("hist_")
    huge = st.sampled_from([-2, -1 << 31, 1 << 30, (1 << 31) - 1, 1 << 40, -1 << 62, WIDTH,
                            WIDTH + 1, 255, 1 << 16])
    small = st.integers(-3, 40)
    fields = PREDICTOR_FIELDS if hist else TREE_FIELDS
    mutation = st.fixed_dictionaries({
        "kind": st.just("predictor") if hist else st.just("tree"),
        "owner": st.integers(0, 50), "node": st.integers(0, 50),
        "field": st.sampled_from(fields), "value": st.one_of(huge, small)},
        optional={} if hist else {"n_features": st.sampled_from([1, WIDTH + 1, (1 << 31) - 1]),
                                  "drop_width": st.booleans()})
    choices = [mutation, st.fixed_dictionaries({"kind": st.just("drop_width"),
                                                 "owner": st.integers(0, 50)})]
    if family.startswith("gradient_boosting"):
        choices.append(st.fixed_dictionaries({"kind": st.just("grid"),
                                              "owner": st.integers(0, 5),
                                              "value": st.integers(0, 5)}))
    tally = {"examples": 0, "refused": 0, "served": 0, "raised": 0, "holes": []}

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(*choices))
    def run(choice):
        model = joblib.load(io.BytesIO(pristine))
        try:
            mutate(model, choice)
        except (ValueError, TypeError, OverflowError):
            return  # a state Tree.__setstate__ itself refuses: not an artifact
        print("EXAMPLE " + json.dumps(choice), flush=True)
        outcome, reason = load_and_predict(model, family)
        tally["examples"] += 1
        tally[outcome] += 1
        if outcome != "refused" and must_refuse(choice, model):
            tally["holes"].append(choice)

    run()
    print("SUMMARY " + json.dumps(tally), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
