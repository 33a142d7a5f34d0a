"""Trees of ``sklearn.tree`` compare float32 inputs, in a double graph too.

A decision tree, a random forest, extra trees and gradient boosting turn
their input into float32 before walking a tree, so a split reads
``float32(x) <= threshold``. With a double input skl2onnx feeds the tree
operator ``x`` itself: a value just above a threshold whose float32 rounding
is not (0.13 against 0.13000000268) takes the other branch. The converters
registered here feed the tree operator ``double(float32(x))`` instead, which
is scikit-learn's comparison in the graph's precision. Histogram gradient
boosting compares the double input itself, and keeps skl2onnx's converter.
"""
import contextlib
#: skl2onnx's aliases of the estimators whose trees read float32 inputs.
ALIASES = ("SklearnDecisionTreeClassifier", "SklearnDecisionTreeRegressor",
           "SklearnRandomForestClassifier", "SklearnRandomForestRegressor",
           "SklearnExtraTreesClassifier", "SklearnExtraTreesRegressor",
           "SklearnGradientBoostingClassifier", "SklearnGradientBoostingRegressor")


class _Input:
    """A converter's input variable under another name (same type)."""

    def __init__(self, variable, name):
        self.type, self.full_name, self.onnx_name = variable.type, name, name
        self._variable = variable

    def __getattr__(self, name):
        return getattr(self._variable, name)


class _FedBy:
    """The operator being converted, its first input renamed."""

    def __init__(self, operator, name):
        self._operator = operator
        self.inputs = [_Input(operator.inputs[0], name)] + list(operator.inputs[1:])

    @property
    def input_full_names(self):
        return [v.full_name for v in self.inputs]

    def __getattr__(self, name):
        return getattr(self._operator, name)


def _float32_first(original):
    def convert(scope, operator, container):
        from onnx import TensorProto
        from skl2onnx.common.data_types import DoubleTensorType
        if len(operator.inputs) != 1 or not isinstance(operator.inputs[0].type,
                                                       DoubleTensorType):
            return original(scope, operator, container)
        rounded = scope.get_unique_variable_name("tree_input_float32")
        widened = scope.get_unique_variable_name("tree_input")
        container.add_node("Cast", operator.inputs[0].full_name, rounded, to=TensorProto.FLOAT,
                           name=scope.get_unique_operator_name("Cast"))
        container.add_node("Cast", rounded, widened, to=TensorProto.DOUBLE,
                           name=scope.get_unique_operator_name("Cast"))
        return original(scope, _FedBy(operator, widened), container)
    return convert


_ORIGINAL = {}  # alias: skl2onnx's own registered converter


def register():
    from skl2onnx.common._registration import get_converter, register_converter
    for alias in ALIASES:
        registered = get_converter(alias)
        _ORIGINAL[alias] = registered
        register_converter(alias, _float32_first(registered._fct), overwrite=True,
                           options=registered.get_allowed_options())


@contextlib.contextmanager
def skl2onnx_splits():
    """skl2onnx's own tree converters while active (the double value
    against the threshold): what the converters here correct."""
    from skl2onnx.common import _registration
    ours = {alias: _registration._converter_pool[alias] for alias in _ORIGINAL}
    _registration._converter_pool.update(_ORIGINAL)
    try:
        yield
    finally:
        _registration._converter_pool.update(ours)
