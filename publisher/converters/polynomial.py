"""PolynomialFeatures in the input's precision.

Each output column is the product of the input columns of one of
scikit-learn's combinations (``_combinations``, the same order); the bias
column is a column of ones of the input's type. skl2onnx's own converter
makes that column float32, which a double graph cannot concatenate.
"""
import numpy as np

from publisher.converters.precision import input_in_its_precision


def _convert(scope, operator, container):
    from onnx import TensorProto, helper
    from skl2onnx.algebra.onnx_ops import (OnnxConcat, OnnxConstantOfShape,
                                           OnnxGather, OnnxIdentity, OnnxReduceProd, OnnxShape)
    model = operator.raw_operator
    opv = container.target_opset
    X, dtype = input_in_its_precision(operator, opv)
    combinations = list(model._combinations(model.n_features_in_, model._min_degree,
                                            model._max_degree, model.interaction_only,
                                            model.include_bias))
    first = OnnxGather(X, np.array([0], dtype=np.int64), axis=1, op_version=opv)
    columns = []
    for combination in combinations:
        if not combination:
            one = helper.make_tensor("one", TensorProto.DOUBLE if dtype == np.float64
                                     else TensorProto.FLOAT, [1], [1.0])
            columns.append(OnnxConstantOfShape(OnnxShape(first, op_version=opv), value=one,
                                               op_version=opv))
            continue
        picked = OnnxGather(X, np.array(combination, dtype=np.int64), axis=1, op_version=opv)
        columns.append(OnnxReduceProd(picked, np.array([1], dtype=np.int64), keepdims=1,
                                      op_version=opv) if len(combination) > 1 else picked)
    out = OnnxConcat(*columns, axis=1, op_version=opv)
    OnnxIdentity(out, op_version=opv, output_names=[operator.outputs[0]]).add_to(
        scope, container)


def _shape(operator):
    cls = operator.inputs[0].type.__class__
    if cls.__name__ not in ("DoubleTensorType", "FloatTensorType"):
        from skl2onnx.common.data_types import DoubleTensorType
        cls = DoubleTensorType
    operator.outputs[0].type = cls([None, operator.raw_operator.n_output_features_])


def register():
    from skl2onnx import update_registered_converter
    from sklearn.preprocessing import PolynomialFeatures
    update_registered_converter(PolynomialFeatures, "SklearnPolynomialFeatures", _shape, _convert)
