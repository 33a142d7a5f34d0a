"""Decision trees' missing-value routing in the ONNX tree operators.

scikit-learn's trees (DecisionTree*, RandomForest*, ExtraTrees*) accept NaN
and send it, at each split, to the child ``tree_.missing_go_to_left`` names
(the one that held the missing values when fitting, else the larger one).
skl2onnx writes every split as "missing goes to the false branch" (right).
While :func:`tree_missing_routes` is active, the attribute lists skl2onnx
builds for each tree get scikit-learn's routes: a split whose missing values
go left tracks the true branch (``x <= threshold`` is the left child).
Whether ONNX Runtime then answers as scikit-learn does is checked on rows
with missing values in every feature before a graph is kept.
"""
import contextlib

import numpy as np

MODULES = ("decision_tree", "random_forest", "gradient_boosting", "isolation_forest")


class _FiniteThresholds:
    """A tree's arrays as skl2onnx reads them, an infinite threshold (a split
    that sends the missing values one way and every number the other)
    replaced by float32's largest value: every finite input is below both,
    and skl2onnx's threshold adjustment never ends on an infinity."""

    def __init__(self, tree):
        for name in ("node_count", "value", "children_left", "children_right", "feature",
                     "missing_go_to_left", "n_outputs", "n_classes", "weighted_n_node_samples",
                     "n_node_samples", "impurity"):
            if hasattr(tree, name):
                setattr(self, name, getattr(tree, name))
        threshold = np.asarray(tree.threshold, dtype=np.float64)
        biggest = float(np.finfo(np.float32).max)
        self.threshold = np.clip(threshold, -biggest, biggest)


def _routed(original):
    def add_tree(attr_pairs, is_classifier, tree, *args, **kwargs):
        if hasattr(tree, "threshold") and not np.isfinite(tree.threshold).all():
            tree = _FiniteThresholds(tree)
        before = len(attr_pairs["nodes_missing_value_tracks_true"])
        result = original(attr_pairs, is_classifier, tree, *args, **kwargs)
        left = getattr(tree, "missing_go_to_left", None)
        if left is not None and len(left) == tree.node_count:
            routes = np.asarray(left).astype(int).tolist()
            branch = (np.asarray(tree.children_left) != -1).tolist()
            tracks = attr_pairs["nodes_missing_value_tracks_true"]
            for i in range(tree.node_count):
                tracks[before + i] = routes[i] if branch[i] else 0
        return result
    return add_tree


@contextlib.contextmanager
def tree_missing_routes():
    """skl2onnx's tree converters, with scikit-learn's missing-value routes."""
    import importlib
    patched = []
    for name in MODULES:
        module = importlib.import_module("skl2onnx.operator_converters." + name)
        original = getattr(module, "add_tree_to_attribute_pairs", None)
        if original is not None:
            patched.append((module, original))
            module.add_tree_to_attribute_pairs = _routed(original)
    try:
        yield
    finally:
        for module, original in patched:
            module.add_tree_to_attribute_pairs = original
