"""Checks on the state native code trusts, run on a freshly unpickled model.

scikit-learn's Cython (trees, histogram gradient boosting, neighbors'
trees, k-means), scipy's sparse kernels and libsvm index memory with the
numbers a fitted model carries, without bounds checks: a ``Tree`` whose
root's child is 2**40, or a sparse ``coef_`` with column index 2**31-1,
loads fine and kills the process on the first request. :func:`validate`
walks the loaded object graph and raises
:class:`~chalicelib.http.errors.ModelLoadError` (a 503 with the reason) for any
index out of range or shape inconsistent with what the native code assumes:

* ``sklearn.tree._tree.Tree``: children in range and after their parent (no
  cycle), leaves without children, value shape, and features below the
  width the tree is given at predict time. That width flows down from the
  card's feature count (the root is given exactly the card's columns) to
  each ensemble member (its feature subset for isolation forests and
  bagging) and each member's ``tree_``; an estimator's own ``n_features_in_``
  must agree with it. A tree whose width nothing bounds (a pipeline step
  or member without ``n_features_in_`` under an owner that does not state
  one either) is refused: its own ``n_features`` is the artifact's word;
* gradient boosting: ``estimators_`` a 2-D grid of trees one column per
  raw prediction (native code writes column ``k`` of the init prediction);
* HistGradientBoosting ``TreePredictor``: the same for its node records,
  categorical bitset indices, and the bin mapper's categorical tables;
* scipy sparse matrices: ``check_format(full_check=True)`` (indices and
  index pointers in range);
* ``KDTree`` / ``BallTree``: index array a permutation, node ranges inside it,
  array shapes consistent;
* libsvm models (``SVC``, ``SVR``, ``OneClassSVM`` ...): support counts and
  coefficient shapes; k-means centers' width.
"""
import numbers
import sys

import numpy as np

from chalicelib.http.errors import ModelLoadError

MAX_OBJECTS = 2_000_000


def _fail(where, why):
    raise ModelLoadError("artifact state is inconsistent at %s: %s" % (where, why),
                         public="artifact state is inconsistent (%s)" % why)


def _int_attr(obj, name):
    value = getattr(obj, name, None)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


# --------------------------------------------------------------------------
# Trees.

def check_tree(tree, where, n_features):
    if n_features is None:
        _fail(where, "a tree whose estimator states no feature count (n_features_in_), "
              "so nothing bounds its feature indices")
    count = tree.node_count
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    if count <= 0 or len(left) != count or len(right) != count:
        _fail(where, "tree has %d nodes but children arrays of %d" % (count, len(left)))
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        _fail(where, "a node has one child")
    index = np.arange(count)
    inner = ~leaf
    if ((left[inner] <= index[inner]) | (left[inner] >= count)
            | (right[inner] <= index[inner]) | (right[inner] >= count)).any():
        _fail(where, "a tree node's child index is out of range")
    if tree.n_features != n_features:
        _fail(where, "tree expects %d features, its estimator %d" % (tree.n_features, n_features))
    if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
        _fail(where, "a tree node's feature index is out of range")
    value = tree.value
    if value.shape[0] != count or value.shape[1] != tree.n_outputs \
            or value.shape[2] != tree.max_n_classes:
        _fail(where, "tree values have shape %r" % (value.shape,))


def check_predictor(predictor, where, n_features, categorical_features):
    nodes = predictor.nodes
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    if nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1 or len(nodes) == 0:
        _fail(where, "predictor nodes are not scikit-learn's records")
    count = len(nodes)
    index = np.arange(count)
    inner = nodes["is_leaf"] == 0
    for side in ("left", "right"):
        child = nodes[side].astype(np.int64)
        if ((child[inner] <= index[inner]) | (child[inner] >= count)).any():
            _fail(where, "a predictor node's child index is out of range")
    feature = nodes["feature_idx"].astype(np.int64)
    if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
        _fail(where, "a predictor node's feature index is out of range")
    categorical = inner & (nodes["is_categorical"] != 0)
    for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        bitsets = getattr(predictor, name)
        if bitsets.ndim != 2 or bitsets.shape[1] != 8 or bitsets.dtype != np.uint32:
            _fail(where, "%s has shape %r" % (name, bitsets.shape))
        if (nodes["bitset_idx"][categorical].astype(np.int64) >= bitsets.shape[0]).any():
            _fail(where, "a categorical node's bitset index is out of range")
    # Native code looks a categorical split's feature up in the bin mapper's
    # table of known categories, one row per categorical feature.
    if categorical.any() and not np.isin(feature[categorical], categorical_features).all():
        _fail(where, "a categorical node splits on a feature that is not categorical")


def check_bin_mapper(mapper, where, n_features):
    is_categorical = getattr(mapper, "is_categorical_", None)
    if is_categorical is None:
        return
    if len(is_categorical) != n_features:
        _fail(where, "bin mapper has %d categorical flags for %d features"
              % (len(is_categorical), n_features))
    thresholds = mapper.bin_thresholds_
    if len(thresholds) != n_features:
        _fail(where, "bin mapper has %d threshold arrays for %d features"
              % (len(thresholds), n_features))
    for f in np.flatnonzero(is_categorical):
        # Category values index a 256-bit set in native code.
        values = np.asarray(thresholds[f])
        if values.size and ((values < 0) | (values >= 256) | ~np.isfinite(values)).any():
            _fail(where, "a categorical feature has a category outside 0..255")


def check_hist_gradient_boosting(est, where, n_features):
    if n_features is None:
        _fail(where, "n_features_in_ is not an integer")
    mapper = getattr(est, "_bin_mapper", None)
    categorical_features = np.zeros(0, dtype=np.int64)
    if mapper is not None:
        check_bin_mapper(mapper, where + "._bin_mapper", n_features)
        flags = getattr(mapper, "is_categorical_", None)
        if flags is not None:
            categorical_features = np.flatnonzero(flags)
    predictors_ = getattr(est, "_predictors", None)
    for i, predictors in enumerate([] if predictors_ is None else predictors_):
        for k, predictor in enumerate(predictors):
            check_predictor(predictor, "%s._predictors[%d][%d]" % (where, i, k), n_features,
                            categorical_features)


# --------------------------------------------------------------------------
# Sparse, neighbors, libsvm, k-means.

def check_sparse(matrix, where):
    try:
        if hasattr(matrix, "check_format"):
            matrix.check_format(full_check=True)
        elif matrix.format == "coo":
            matrix._check()
            rows, cols = matrix.coords if hasattr(matrix, "coords") else (matrix.row, matrix.col)
            if len(rows) and (rows.min() < 0 or cols.min() < 0 or rows.max() >= matrix.shape[0]
                              or cols.max() >= matrix.shape[1]):
                raise ValueError("coordinates out of range")
        elif matrix.format not in ("dok", "lil"):
            _fail(where, "sparse format %s is not supported" % matrix.format)
    except ModelLoadError:
        raise
    except Exception as exc:
        _fail(where, "sparse matrix is malformed (%s)" % str(exc)[:120])


def check_binary_tree(tree, where):
    data, idx_array, node_data, node_bounds = tree.get_arrays()
    n = data.shape[0] if data.ndim == 2 else -1
    if data.ndim != 2 or idx_array.shape != (n,):
        _fail(where, "neighbors tree arrays have inconsistent shapes")
    if n and not np.array_equal(np.sort(idx_array), np.arange(n)):
        _fail(where, "neighbors tree index array is not a permutation")
    start, end = node_data["idx_start"].astype(np.int64), node_data["idx_end"].astype(np.int64)
    if ((start < 0) | (start > end) | (end > n)).any():
        _fail(where, "a neighbors tree node's range is out of bounds")
    if node_bounds.ndim != 3 or node_bounds.shape[1] != len(node_data) \
            or node_bounds.shape[2] != data.shape[1]:
        _fail(where, "neighbors tree node bounds have shape %r" % (node_bounds.shape,))


def check_libsvm(est, where, n_features):
    support = getattr(est, "support_", None)
    vectors = getattr(est, "support_vectors_", None)
    n_support = getattr(est, "_n_support", None)
    if support is None or vectors is None:
        return
    n_sv = vectors.shape[0]
    if len(support) != n_sv:
        _fail(where, "support_ and support_vectors_ disagree")
    classifier = getattr(est, "classes_", None) is not None
    if classifier and n_support is not None and int(np.sum(n_support)) != n_sv and n_sv:
        _fail(where, "support counts do not add up to the support vectors")
    dual = getattr(est, "_dual_coef_", getattr(est, "dual_coef_", None))
    if dual is not None and dual.shape[-1] != n_sv:
        _fail(where, "dual coefficients do not match the support vectors")
    if n_features is not None and vectors.ndim == 2 and n_sv and vectors.shape[1] != n_features:
        _fail(where, "support vectors have %d features, not %d" % (vectors.shape[1], n_features))


def check_kmeans(est, where, n_features):
    centers = getattr(est, "cluster_centers_", None)
    if isinstance(centers, np.ndarray) and n_features is not None \
            and (centers.ndim != 2 or centers.shape[1] != n_features):
        _fail(where, "cluster centers have shape %r for %d features"
              % (centers.shape, n_features))


# --------------------------------------------------------------------------
# The walk.

def ensemble_members(est, where, n_features, subsets):
    """[(member, where, width)]: the width each member is given at predict.
    Forests, boosting, isolation forests, bagging and voting hand their
    members X checked against the ensemble's own width (bagging: its column
    subset), often with check_input=False: each member must expect exactly
    that."""
    members = getattr(est, "estimators_", None)
    if members is None:
        return []
    if isinstance(members, np.ndarray):
        members = members.ravel().tolist()
    if not isinstance(members, list):
        _fail(where, "estimators_ is a %s, not a list of estimators" % type(members).__name__)
    if members and n_features is None:
        _fail(where, "an ensemble whose width (n_features_in_) is unknown, so nothing bounds "
              "its members")
    features = getattr(est, "estimators_features_", None) if subsets else None
    out = []
    for i, member in enumerate(members):
        expected = n_features
        if features is not None:
            if i >= len(features):
                _fail(where, "fewer feature subsets than trees")
            subset = np.asarray(features[i])
            if subset.ndim != 1 or subset.dtype.kind not in "iu":
                _fail(where, "a member's feature subset is not an array of column indices")
            if subset.size and (subset.min() < 0 or subset.max() >= n_features):
                _fail(where, "a tree's feature subset is out of range")
            expected = len(subset)
        width = _int_attr(member, "n_features_in_")
        if width is not None and width != expected:
            _fail("%s.estimators_[%d]" % (where, i),
                  "tree expects %d features, its ensemble gives %d" % (width, expected))
        out.append((member, "%s.estimators_[%d]" % (where, i), expected))
    return out


def check_gradient_boosting(est, where, n_features):
    """Native code walks ``estimators_`` as a 2-D grid and adds tree ``[i, k]``
    into column ``k`` of the init estimator's raw predictions: the grid's
    columns must be exactly the raw prediction's. Returns the check to run
    once every member is validated (it calls the init estimator)."""
    grid = getattr(est, "estimators_", None)
    if grid is None:
        return None
    if not isinstance(grid, np.ndarray) or grid.ndim != 2 or grid.dtype != object \
            or grid.shape[0] == 0:
        _fail(where, "estimators_ is not a grid of trees")
    per_iteration = _int_attr(est, "n_trees_per_iteration_")
    if per_iteration is not None and grid.shape[1] != per_iteration:
        _fail(where, "estimators_ has %d columns for %d trees per iteration"
              % (grid.shape[1], per_iteration))

    def init_prediction_width():
        probe = np.zeros((1, n_features), dtype=np.float64)
        try:
            raw = est._raw_predict_init(probe)
        except Exception as exc:
            _fail(where, "the init estimator does not predict (%s)" % type(exc).__name__)
        if not isinstance(raw, np.ndarray) or raw.dtype != np.float64 \
                or raw.shape != (1, grid.shape[1]):
            _fail(where, "the init estimator's raw prediction has shape %r, the trees write "
                  "%d columns" % (getattr(raw, "shape", None), grid.shape[1]))
    return init_prediction_width


class _Absent:
    """Stands for a class whose module is not imported: no object of it exists."""


def _cls(module, name):
    # Only modules already imported (by unpickling the model) are looked
    # at: checking an iris model must not import the ensemble, neighbors and
    # svm packages on the Lambda's cold start (or ship them in the package).
    return getattr(sys.modules.get(module), name, _Absent)


def _checks():
    import scipy.sparse
    from sklearn.base import BaseEstimator
    return scipy.sparse, BaseEstimator, \
        (_cls("sklearn.cluster._kmeans", "KMeans"), _cls("sklearn.cluster._kmeans",
                                                          "MiniBatchKMeans")), \
        _cls("sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
             "BaseHistGradientBoosting"), \
        (_cls("sklearn.neighbors._ball_tree", "BallTree"),
         _cls("sklearn.neighbors._kd_tree", "KDTree")), \
        _cls("sklearn.svm._base", "BaseLibSVM"), _cls("sklearn.tree._tree", "Tree"), \
        (_cls("sklearn.ensemble._base", "BaseEnsemble"),
         _cls("sklearn.ensemble._voting", "_BaseVoting")), \
        _cls("sklearn.ensemble._gb", "BaseGradientBoosting"), \
        _cls("sklearn.ensemble._bagging", "BaseBagging")


def validate(root, n_features=None):
    """Raise ModelLoadError if any native-code state in ``root`` is unsafe.
    ``n_features`` is the card's feature count: the width of every X the
    app hands the root (None at publish, before a card exists: the root's
    own ``n_features_in_`` then)."""
    sparse, BaseEstimator, kmeans, hgb, binary_trees, libsvm, Tree, ensembles, \
        gradient_boosting, bagging = _checks()
    seen = set()
    deferred = []
    # (object, where, the width of the X it is given at predict when known):
    # an object reached at two widths is checked at both.
    stack = [(root, type(root).__name__, n_features)]
    while stack:
        obj, where, width = stack.pop()
        if isinstance(obj, (str, bytes, numbers.Number, type(None))) \
                or (id(obj), width) in seen:
            continue
        seen.add((id(obj), width))
        if len(seen) > MAX_OBJECTS:
            _fail(where, "the model holds more than %d objects" % MAX_OBJECTS)
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                stack.extend((item, "%s[...]" % where, None) for item in obj.flat)
            continue
        if isinstance(obj, Tree):
            check_tree(obj, where, width)
            continue
        if isinstance(obj, binary_trees):
            check_binary_tree(obj, where)
            continue
        if sparse.issparse(obj):
            check_sparse(obj, where)
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((item, "%s[%d]" % (where, i), None) for i, item in enumerate(obj))
            continue
        if isinstance(obj, dict):
            stack.extend((v, "%s[%r]" % (where, k), None) for k, v in obj.items())
            continue
        attrs = getattr(obj, "__dict__", None)
        if attrs is None:
            continue
        own = None
        members = []
        if isinstance(obj, BaseEstimator):
            own = width
            # An attribute, or a property of meta-estimators (voting,
            # stacking) that reads it from a member.
            declared = attrs["n_features_in_"] if "n_features_in_" in attrs \
                else getattr(obj, "n_features_in_", None)
            if declared is not None:
                stated = _int_attr(obj, "n_features_in_")
                if stated is None or stated < 0:
                    _fail(where, "n_features_in_ is a %s, not a count" % type(declared).__name__)
                if width is not None and stated != width:
                    _fail(where, "estimator expects %d features but is given %d"
                          % (stated, width))
                own = stated
            if isinstance(obj, hgb):
                check_hist_gradient_boosting(obj, where, own)
            if isinstance(obj, libsvm):
                check_libsvm(obj, where, own)
            if isinstance(obj, kmeans):
                check_kmeans(obj, where, own)
            if isinstance(obj, gradient_boosting):
                probe = check_gradient_boosting(obj, where, own)
                if probe is not None:
                    deferred.append(probe)
            if isinstance(obj, ensembles):
                members = ensemble_members(obj, where, own, isinstance(obj, bagging))
        stack.extend(members)
        for key, value in attrs.items():
            if members and key == "estimators_":
                continue
            # A tree's width is its own estimator's; elsewhere (pipeline steps,
            # meta-estimators) nothing says what width an object is given.
            stack.append((value, "%s.%s" % (where, key), own if key == "tree_" else None))
    for probe in deferred:
        probe()
