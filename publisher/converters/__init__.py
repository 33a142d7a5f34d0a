"""Converters that skl2onnx lacks or gets wrong, registered through its
extension API before a publish compiles a model, and the adjustments a copy
of the estimator gets before conversion.

* :mod:`.target` : TransformedTargetRegressor (its regressor, then the
  target transformer's inverse);
* :mod:`.polynomial` : PolynomialFeatures in the input's precision (skl2onnx
  makes the bias column float32, which a double graph cannot concatenate);
* :mod:`.power` : PowerTransformer (Yeo-Johnson and Box-Cox) in the input's
  precision, with no 0/0 at zero;
* :mod:`.float32_splits` : trees of ``sklearn.tree`` read ``float32(x)`` in
  a double graph too, as scikit-learn compares them;
* :mod:`.linear_svc` : LinearSVC in the input's precision (skl2onnx's is
  float32 only and refuses the ``zipmap`` option a pipeline gives it);
* :mod:`.quantile_normal` : QuantileTransformer's normal output (skl2onnx
  converts the uniform one): the same bounds, then the normal quantile
  function (AS 241) in standard operators;
* :mod:`.trees` : decision trees' missing-value routing (scikit-learn's
  ``missing_go_to_left``) carried into the tree operators, which skl2onnx
  leaves at "missing goes right";
* :mod:`.tie_labels` : a forest's label at a tie is scikit-learn's first
  class, not ONNX Runtime's pick (applied to every converted graph);
* :func:`prepare`: ``flatten_transform`` of a VotingClassifier only shapes
  ``transform()``, which a served model never calls; skl2onnx refuses it,
  so the copy being converted has it off.
"""
from publisher.converters.tie_labels import label_from_probabilities  # noqa: F401
from publisher.converters.trees import tree_missing_routes  # noqa: F401

_registered = False


def register():
    """Register this package's converters with skl2onnx (once)."""
    global _registered
    if _registered:
        return
    from publisher.converters import (float32_splits, linear_svc, polynomial, power,
                                      quantile_normal, target)
    for module in (float32_splits, linear_svc, polynomial, power, quantile_normal, target):
        module.register()
    _registered = True


def prepare(estimator):
    """Adjust the copy of ``estimator`` about to be converted, in place."""
    for node in _walk(estimator):
        if type(node).__name__ == "VotingClassifier" and node.flatten_transform:
            node.flatten_transform = False


def _walk(node, depth=0):
    from sklearn.base import BaseEstimator
    if depth > 20 or not isinstance(node, BaseEstimator):
        return
    yield node
    for value in vars(node).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, tuple):
                for part in item:
                    yield from _walk(part, depth + 1)
            else:
                yield from _walk(item, depth + 1)
