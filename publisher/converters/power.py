"""PowerTransformer (Yeo-Johnson and Box-Cox, then its standardisation) in
the input's precision, as ``sklearn.preprocessing.PowerTransformer.transform``
computes it: each column with its own lambda, each branch computed on values
made safe for it (no power of a negative number, no 0/0) and picked with
Where. skl2onnx's converter mixes float32 masks into a double graph and
divides the input by itself (NaN at zero)."""
import numpy as np


def _convert(scope, operator, container):
    from skl2onnx.algebra.onnx_ops import (OnnxAdd, OnnxDiv, OnnxIdentity, OnnxLess, OnnxLog,
                                           OnnxMul, OnnxNeg, OnnxPow, OnnxSub, OnnxWhere)
    from skl2onnx.common.data_types import guess_numpy_type
    model = operator.raw_operator
    opv = container.target_opset
    X = operator.inputs[0]
    dtype = guess_numpy_type(X.type)
    lambdas = np.asarray(model.lambdas_, dtype=np.float64)
    eps = np.spacing(1.0)

    def const(values):
        return np.asarray(values, dtype=dtype).reshape(1, -1)

    def power_or_log(base, lam, is_zero):
        """``(base ** lam - 1) / lam``, or ``log(base)`` where lam is 0."""
        safe = np.where(is_zero, 1.0, lam)
        powered = OnnxDiv(OnnxSub(OnnxPow(base, const(safe), op_version=opv), const([1.0]),
                                  op_version=opv), const(safe), op_version=opv)
        return OnnxWhere(is_zero.reshape(1, -1), OnnxLog(base, op_version=opv), powered,
                         op_version=opv)

    zero = const(np.zeros(len(lambdas)))
    if model.method == "yeo-johnson":
        negative = OnnxLess(X, zero, op_version=opv)
        positive_part = OnnxWhere(negative, zero, X, op_version=opv)
        negative_part = OnnxWhere(negative, X, zero, op_version=opv)
        up = power_or_log(OnnxAdd(positive_part, const([1.0]), op_version=opv), lambdas,
                          np.abs(lambdas) < eps)
        down = OnnxNeg(power_or_log(OnnxSub(const([1.0]), negative_part, op_version=opv),
                                    2.0 - lambdas, np.abs(lambdas - 2) <= eps), op_version=opv)
        out = OnnxWhere(negative, down, up, op_version=opv)
    else:
        out = power_or_log(X, lambdas, lambdas == 0)
    if model.standardize:
        scaler = model._scaler
        out = OnnxDiv(OnnxSub(out, const(scaler.mean_), op_version=opv), const(scaler.scale_),
                      op_version=opv)
    OnnxIdentity(out, op_version=opv, output_names=[operator.outputs[0]]).add_to(
        scope, container)


def _shape(operator):
    operator.outputs[0].type = operator.inputs[0].type.__class__(
        [None, len(operator.raw_operator.lambdas_)])


def register():
    from skl2onnx import update_registered_converter
    from sklearn.preprocessing import PowerTransformer
    update_registered_converter(PowerTransformer, "SklearnPowerTransformer", _shape, _convert)
