"""TransformedTargetRegressor: its fitted regressor, then the inverse of its
target transformer, in the input's precision.

Compiled when the transformer's inverse is affine: StandardScaler (the
usual choice), or no transformer and no functions (the identity). A
function pair (``func``/``inverse_func``) or another transformer is a
Python computation a graph cannot hold: converting raises saying so.
"""
import numpy as np


def _shape(operator):
    cls = operator.inputs[0].type.__class__
    if cls.__name__ not in ("DoubleTensorType", "FloatTensorType"):
        from skl2onnx.common.data_types import DoubleTensorType
        cls = DoubleTensorType
    operator.outputs[0].type = cls([None, 1])


def _inverse(model):
    """``(scale, offset)`` of the transformer's inverse, or ValueError."""
    transformer = model.transformer_
    kind = type(transformer).__name__
    if kind == "StandardScaler":
        scale = transformer.scale_ if transformer.with_std else np.ones(1)
        offset = transformer.mean_ if transformer.with_mean else np.zeros(1)
        return np.asarray(scale, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    if kind == "FunctionTransformer" and model.func is None and model.inverse_func is None \
            and transformer.func is None and transformer.inverse_func is None:
        return np.ones(1), np.zeros(1)
    raise NotImplementedError("TransformedTargetRegressor is compiled with a StandardScaler "
                              "or no target transformer; this one uses %s%s" % (
                                  kind, " with functions" if kind == "FunctionTransformer"
                                  else ""))


def _convert(scope, operator, container):
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxIdentity, OnnxMul
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.common.data_types import guess_numpy_type
    model = operator.raw_operator
    opv = container.target_opset
    dtype = guess_numpy_type(operator.outputs[0].type)
    scale, offset = _inverse(model)
    inputs = operator.inputs if len(operator.inputs) > 1 else operator.inputs[0]
    predicted = OnnxSubEstimator(model.regressor_, inputs, op_version=opv)
    value = OnnxAdd(OnnxMul(predicted, scale.reshape(1, -1).astype(dtype), op_version=opv),
                    offset.reshape(1, -1).astype(dtype), op_version=opv)
    OnnxIdentity(value, op_version=opv, output_names=[operator.outputs[0]]).add_to(
        scope, container)


def register():
    from skl2onnx import update_registered_converter
    from sklearn.compose import TransformedTargetRegressor
    update_registered_converter(TransformedTargetRegressor, "PublisherTransformedTarget",
                                _shape, _convert)
