"""A forest's label at a tie, as scikit-learn picks it.

A random forest, extra trees or a decision tree predicts
``classes_[argmax(predict_proba)]``: at a tie (10 trees of 20 for each of two
classes) the first class. ONNX Runtime's ``TreeEnsembleClassifier`` picks
its label its own way and answers the other one. :func:`label_from_probabilities`
rewrites each averaging tree classifier of a graph (``post_transform`` NONE,
one label per row) so that the label the rest of the graph reads is
``ArgMax`` (the first largest, as numpy's) of the node's own probabilities,
looked up in its class list. Boosted trees, whose probabilities pass through
a logistic or softmax, are left as they are.
"""
import numpy as np


def label_from_probabilities(model):
    """Rewrite ``model`` (an onnx ModelProto) in place; the number of tree
    classifiers rewritten."""
    from onnx import helper, numpy_helper
    graph = model.graph
    rewritten = 0
    for index in range(len(graph.node) - 1, -1, -1):
        node = graph.node[index]
        if node.domain != "ai.onnx.ml" or node.op_type != "TreeEnsembleClassifier" \
                or len(node.output) != 2:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("post_transform", b"NONE") not in (b"NONE", "NONE"):
            continue
        if attributes.get("classlabels_int64s"):
            classes = np.asarray(attributes["classlabels_int64s"], dtype=np.int64)
        elif attributes.get("classlabels_strings"):
            classes = np.asarray([c.decode() if isinstance(c, bytes) else c
                                  for c in attributes["classlabels_strings"]], dtype=object)
        else:
            continue
        label, probabilities = node.output
        tag = "%s_tie%d" % (node.name or "tree", rewritten)
        node.output[0] = tag + "_vote"  # the operator's own pick, read by nothing
        graph.initializer.append(numpy_helper.from_array(classes, tag + "_classes"))
        graph.node.insert(index + 1, helper.make_node(
            "ArgMax", [probabilities], [tag + "_index"], axis=1, keepdims=0,
            name=tag + "_argmax"))
        graph.node.insert(index + 2, helper.make_node(
            "Gather", [tag + "_classes", tag + "_index"], [label], axis=0,
            name=tag + "_gather"))
        rewritten += 1
    return rewritten
