"""LinearSVC in the input's precision, with the classifier options every
classifier gets.

skl2onnx's converter computes the decision function with ``LinearClassifier``
(float32 only; in double it stops at "post_transform 'NONE' is not
supported"), and registers LinearSVC without the ``zipmap`` option that its
own pipeline parser gives every classifier, so a LinearSVC in a pipeline
never converts. This one computes what scikit-learn's ``predict`` does:
``scores = X @ coef_.T + intercept_``, then the class at ``scores > 0``
(two classes) or at the first largest score; the outputs are the labels and
the scores (one column for two classes, as skl2onnx's).
"""
import numpy as np

from publisher.converters.precision import input_in_its_precision


def _convert(scope, operator, container):
    from onnx import TensorProto
    from skl2onnx.algebra.onnx_ops import (OnnxAdd, OnnxArgMax, OnnxCast, OnnxGather,
                                           OnnxGreater, OnnxIdentity, OnnxMatMul, OnnxReshape)
    model = operator.raw_operator
    opv = container.target_opset
    X, dtype = input_in_its_precision(operator, opv)
    scores = OnnxAdd(OnnxMatMul(X, model.coef_.T.astype(dtype), op_version=opv),
                     model.intercept_.astype(dtype), op_version=opv)
    if model.coef_.shape[0] == 1:
        positive = OnnxGreater(scores, np.array([0], dtype=dtype), op_version=opv)
        index = OnnxReshape(OnnxCast(positive, to=TensorProto.INT64, op_version=opv),
                            np.array([-1], dtype=np.int64), op_version=opv)
    else:
        # ArgMax answers the first largest, as numpy's argmax does
        index = OnnxArgMax(scores, axis=1, keepdims=0, op_version=opv)
    classes = model.classes_
    table = (classes.astype(np.int64) if classes.dtype.kind in "biu"
             else np.array([str(c) for c in classes], dtype=object))
    OnnxGather(table, index, axis=0, op_version=opv,
               output_names=[operator.outputs[0]]).add_to(scope, container)
    OnnxIdentity(scores, op_version=opv, output_names=[operator.outputs[1]]).add_to(
        scope, container)


def _shape(operator):
    from skl2onnx.common.data_types import (DoubleTensorType, FloatTensorType,
                                            Int64TensorType, StringTensorType)
    model = operator.raw_operator
    cls = operator.inputs[0].type.__class__
    if cls not in (DoubleTensorType, FloatTensorType):
        cls = DoubleTensorType
    labels = Int64TensorType if model.classes_.dtype.kind in "biu" else StringTensorType
    operator.outputs[0].type = labels([None])
    operator.outputs[1].type = cls([None, model.coef_.shape[0]])


def register():
    from skl2onnx import update_registered_converter
    from sklearn.svm import LinearSVC
    update_registered_converter(
        LinearSVC, "SklearnLinearSVC", _shape, _convert,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False],
                 "output_class_labels": [False, True], "raw_scores": [True, False]})
