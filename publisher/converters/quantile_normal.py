"""QuantileTransformer with ``output_distribution="normal"``.

skl2onnx converts only the uniform output. scikit-learn's normal output is
the uniform one with wider bounds (a value within 1e-7 of the first or last
quantile is 0 or 1), then the normal quantile function ``norm.ppf``, clipped
to ``norm.ppf(1e-7 - eps)`` and ``norm.ppf(1 - (1e-7 - eps))``. This
converter lets skl2onnx's converter compute the uniform values, applies the
same bounds, and computes ``ppf`` with Wichura's algorithm AS 241 (PPND16,
relative error about 1e-16) in standard operators: a rational function of
``(p - 0.5)**2`` in the centre, of ``sqrt(-log(min(p, 1 - p)))`` in the
tails. The clipped range keeps ``p`` within ``[1e-7, 1 - 1e-7]``, where
those two pieces of AS 241 suffice.
"""
import copy

import numpy as np

BOUNDS_THRESHOLD = 1e-7  # scikit-learn's, in sklearn.preprocessing._data

# AS 241 (Wichura 1988), PPND16: numerator and denominator coefficients,
# lowest degree first, for |p - 0.5| <= 0.425 ...
CENTRAL = ([3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
            13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
            33430.575583588128105, 2509.0809287301226727],
           [1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
            21213.794301586595867, 39307.89580009271061, 28729.085735721942674,
            5226.495278852854561])
# ... and for r = sqrt(-log(min(p, 1 - p))) <= 5, in r - 1.6.
TAIL = ([1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
         3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177,
         0.0227238449892691845833, 7.7454501427834140764e-4],
        [1.0, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455,
         0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4,
         1.05075007164441684324e-9])


class _Uniform:
    """The operator being converted, as skl2onnx's converter of the uniform
    output sees it: a uniform copy of the estimator writing ``output``."""

    def __init__(self, operator, output):
        self._operator = operator
        self.raw_operator = copy.copy(operator.raw_operator)
        self.raw_operator.output_distribution = "uniform"
        self.outputs = [output]

    def __getattr__(self, name):
        return getattr(self._operator, name)


def ppf(p, dtype, opv):
    """ONNX operators computing the standard normal quantile of ``p`` (an
    operator or variable, values in [1e-7, 1 - 1e-7] or NaN)."""
    from skl2onnx.algebra.onnx_ops import (OnnxAbs, OnnxAdd, OnnxDiv, OnnxLess,
                                           OnnxLessOrEqual, OnnxLog, OnnxMul, OnnxNeg,
                                           OnnxSqrt, OnnxSub, OnnxWhere)

    def const(v):
        return np.array([v], dtype=dtype)

    def horner(coefficients, r):
        value = const(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            value = OnnxAdd(OnnxMul(value, r, op_version=opv), const(c), op_version=opv)
        return value

    def rational(pair, r):
        return OnnxDiv(horner(pair[0], r), horner(pair[1], r), op_version=opv)

    q = OnnxSub(p, const(0.5), op_version=opv)
    centre_r = OnnxSub(const(0.180625), OnnxMul(q, q, op_version=opv), op_version=opv)
    centre = OnnxMul(q, rational(CENTRAL, centre_r), op_version=opv)
    below = OnnxLess(q, const(0.0), op_version=opv)
    smaller = OnnxWhere(below, p, OnnxSub(const(1.0), p, op_version=opv), op_version=opv)
    tail_r = OnnxSub(OnnxSqrt(OnnxNeg(OnnxLog(smaller, op_version=opv), op_version=opv),
                              op_version=opv), const(1.6), op_version=opv)
    tail = rational(TAIL, tail_r)
    tail = OnnxWhere(below, OnnxNeg(tail, op_version=opv), tail, op_version=opv)
    return OnnxWhere(OnnxLessOrEqual(OnnxAbs(q, op_version=opv), const(0.425), op_version=opv),
                     centre, tail, op_version=opv)


def _normal(original):
    def convert(scope, operator, container):
        model = operator.raw_operator
        if model.output_distribution != "normal":
            return original(scope, operator, container)
        from scipy import stats
        from skl2onnx.algebra.onnx_ops import (OnnxAdd, OnnxGreater, OnnxIdentity, OnnxLess,
                                               OnnxSub, OnnxWhere)
        from skl2onnx.common.data_types import guess_numpy_type
        opv = container.target_opset
        X = operator.inputs[0]
        dtype = np.float64 if guess_numpy_type(X.type) == np.float64 else np.float32
        uniform = scope.declare_local_variable("quantile_uniform", X.type.__class__())
        original(scope, _Uniform(operator, uniform), container)

        def const(v):
            return np.asarray(v, dtype=dtype)

        # scikit-learn's order: the upper bound first, the lower one over it
        lower = OnnxLess(OnnxSub(X, const(BOUNDS_THRESHOLD), op_version=opv),
                         const(model.quantiles_[0]), op_version=opv)
        upper = OnnxGreater(OnnxAdd(X, const(BOUNDS_THRESHOLD), op_version=opv),
                            const(model.quantiles_[-1]), op_version=opv)
        p = OnnxWhere(lower, const([0.0]), OnnxWhere(upper, const([1.0]), uniform,
                                                     op_version=opv), op_version=opv)
        # ppf is increasing: clipping p first clips its value, and keeps the
        # logarithm away from 0 and 1
        edge = BOUNDS_THRESHOLD - np.spacing(1)
        p = OnnxWhere(OnnxLess(p, const([edge]), op_version=opv), const([edge]), p,
                      op_version=opv)
        p = OnnxWhere(OnnxGreater(p, const([1 - edge]), op_version=opv), const([1 - edge]), p,
                      op_version=opv)
        z = ppf(p, dtype, opv)
        low, high = stats.norm.ppf(edge), stats.norm.ppf(1 - edge)
        z = OnnxWhere(OnnxLess(z, const([low]), op_version=opv), const([low]), z,
                      op_version=opv)
        z = OnnxWhere(OnnxGreater(z, const([high]), op_version=opv), const([high]), z,
                      op_version=opv)
        OnnxIdentity(z, op_version=opv, output_names=[operator.outputs[0]]).add_to(
            scope, container)
    return convert


def register():
    from skl2onnx.common._registration import get_converter, register_converter
    registered = get_converter("SklearnQuantileTransformer")
    register_converter("SklearnQuantileTransformer", _normal(registered._fct), overwrite=True,
                       options=registered.get_allowed_options())
