"""The precision a converter computes in: the graph input's own (float32 or
float64), and double for anything else (integers, booleans), so that the
converters written here never add a float32 stage of their own."""
import numpy as np


def input_in_its_precision(operator, opv):
    """``(X, dtype)``: the operator's first input, cast to double unless it
    is float32 or float64 already, and the numpy dtype to compute in."""
    from onnx import TensorProto
    from skl2onnx.algebra.onnx_ops import OnnxCast
    from skl2onnx.common.data_types import guess_numpy_type
    X = operator.inputs[0]
    dtype = guess_numpy_type(X.type)
    if dtype not in (np.float32, np.float64):
        return OnnxCast(X, to=TensorProto.DOUBLE, op_version=opv), np.float64
    return X, dtype
