"""How a compiled graph is fed: which card columns go into which graph
input, and an estimator rewritten to read its columns by position.

A layout is a list of groups ``(input name, card column indices, kind)``;
kind is ``"number"`` (float64 or float32, chosen per attempt), ``"int64"``
or ``"string"``. Candidates, most compact first:

* one matrix of every column (a numeric matrix or a numeric DataFrame,
  whatever its column names: the card maps them, the graph never sees them);
* a DataFrame of numbers and strings: one matrix of the numbers and one of
  the strings (integer-coded categories in a matrix of their own when the
  encoder wants integers);
* one input per column (``x0``, ``x1``...): what a ColumnTransformer of
  mixed columns needs when the groups above do not convert.

skl2onnx finds a ColumnTransformer's columns by input name; the user's
names (spaces, parentheses, slashes) are not names a graph keeps, so the
converted copy of the estimator selects columns by their position in the
graph's inputs instead (:func:`positional_copy`). The card records the
layout under ``onnx.feed`` and the app feeds the graph by it.
"""
import copy

NUMBER_KINDS = ("number", "integer", "boolean")


def single(schema):
    return [("X", list(range(schema.n_features)), "number")]


def layouts(estimator, schema):
    """The candidate layouts for ``estimator`` fed by ``schema``."""
    features = schema.features
    everything = list(range(len(features)))
    if schema.input_kind != "dataframe":
        return [single(schema)]
    strings = [j for j in everything if features[j].type == "string"]
    codes = [j for j in everything if features[j].type == "integer" and features[j].categories]
    numbers = [j for j in everything if j not in strings]
    found = []
    if not strings:
        found.append(single(schema))
    if raw_column_transformers(estimator):
        if strings:
            found.append([("numbers", numbers, "number"), ("strings", strings, "string")])
        if codes:
            rest = [j for j in numbers if j not in codes]
            groups = ([("numbers", rest, "number")] if rest else []) + [
                ("codes", codes, "int64")] + ([("strings", strings, "string")] if strings else [])
            found.append(groups)
        found.append([("x%d" % j, [j], "string" if j in strings else "number")
                      for j in everything])
    return [[g for g in layout if g[1]] for layout in found]


def typed(layout, dtype):
    """The layout with its number groups in ``dtype`` (double or float)."""
    return [(name, columns, dtype if kind == "number" else kind)
            for name, columns, kind in layout]


def describe(groups):
    if len(groups) == 1:
        return "one matrix"
    if all(len(columns) == 1 for _, columns, _ in groups):
        return "one input per column"
    return " + ".join("%s (%d)" % (name, len(columns)) for name, columns, _ in groups)


def tensor_type(kind, width):
    from skl2onnx.common.data_types import (DoubleTensorType, FloatTensorType,
                                            Int64TensorType, StringTensorType)
    return {"double": DoubleTensorType, "float": FloatTensorType, "int64": Int64TensorType,
            "string": StringTensorType}[kind]([None, width])


def feed_spec(graph, groups):
    """The card's ``onnx.feed``: each graph input (by its name in the graph)
    with the card columns it takes, in order, and their type."""
    import onnx
    names = [i.name for i in onnx.load_from_string(graph).graph.input]
    if len(names) != len(groups):
        raise ValueError("the graph has %d inputs for %d groups" % (len(names), len(groups)))
    return [{"input": name, "columns": list(columns), "type": kind}
            for name, (_, columns, kind) in zip(names, groups)]


def raw_column_transformers(estimator):
    """The ColumnTransformers that see the raw input: the estimator itself,
    a pipeline's first step, each member of an ensemble, a wrapped regressor."""
    found = []

    def visit(node):
        kind = type(node).__name__
        if kind == "ColumnTransformer":
            found.append(node)
        elif hasattr(node, "steps"):
            visit(node.steps[0][1])
        elif kind in ("VotingClassifier", "VotingRegressor", "StackingClassifier",
                      "StackingRegressor"):
            for member in node.estimators_:
                visit(member)
        elif kind == "TransformedTargetRegressor":
            visit(node.regressor_)
    visit(estimator)
    return found


def positional_copy(estimator, schema, groups):
    """A deep copy of ``estimator`` whose raw ColumnTransformers select
    columns by their position in the concatenated graph inputs. A layout
    of more than one input needs such a ColumnTransformer (ValueError)."""
    prepared = copy.deepcopy(estimator)
    if schema.input_kind != "dataframe":
        return prepared
    order = [j for _, columns, _ in groups for j in columns]
    position = {j: k for k, j in enumerate(order)}
    transformers = raw_column_transformers(prepared)
    if len(groups) > 1 and not transformers:
        raise ValueError("a layout of %d inputs needs a ColumnTransformer to take them"
                         % len(groups))
    for transformer in transformers:
        indices = transformer._transformer_to_input_indices
        transformer.transformers_ = [
            (name, inner, [position[int(j)] for j in indices.get(name, [])])
            for name, inner, _ in transformer.transformers_]
    return prepared
