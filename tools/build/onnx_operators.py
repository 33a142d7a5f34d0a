"""The operators skl2onnx emits for scikit-learn models: what
``chalicelib/runtimes/graph_policy.py`` allows.

    .venv/bin/python -m tools.onnx_operators [--json PATH]

Converts every estimator of ``tools/fixtures/estimator_zoo.py`` that skl2onnx
converts, as ``publisher/onnx_export.py`` does (double and float input, no
ZipMap, its target opset), and prints the set of ``(domain, op_type)`` the
graphs use, with how size-making operators (ConstantOfShape, Expand, Tile,
Range) get their size. Run it after a skl2onnx upgrade and update
``graph_policy._OPERATORS`` from its output.
"""
import argparse
import collections
import contextlib
import io
import json
import sys
import warnings


def graphs():
    """(name, ModelProto) for every zoo estimator skl2onnx converts."""
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from publisher.onnx_export import TARGET_OPSET
    from tools.fixtures import estimator_zoo
    for name, est, X in estimator_zoo.all_estimator_models():
        if getattr(X, "ndim", 0) != 2 or X.dtype.kind not in "fiu":
            continue
        for tensor in (DoubleTensorType, FloatTensorType):
            options = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") else None
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    onx = skl2onnx.to_onnx(est, initial_types=[("X", tensor([None, X.shape[1]]))],
                                           options=options, target_opset=TARGET_OPSET)
            except Exception:
                continue
            yield name, onx


def collect():
    used = collections.defaultdict(set)
    producers = collections.defaultdict(set)
    for name, onx in graphs():
        made_by = {o: n.op_type for n in onx.graph.node for o in n.output}
        initializers = {t.name for t in onx.graph.initializer}
        for node in onx.graph.node:
            domain = "" if node.domain in ("", "ai.onnx") else node.domain
            used[(domain, node.op_type)].add(name)
            if node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range"):
                for i in node.input:
                    producers[node.op_type].add("initializer" if i in initializers
                                                else made_by.get(i, "graph input"))
    return used, producers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    used, producers = collect()
    by_domain = collections.defaultdict(list)
    for domain, op in sorted(used):
        by_domain[domain].append(op)
    for domain, ops in by_domain.items():
        print("%r: (%s)," % (domain, ", ".join(repr(o) for o in ops)))
    for op, sources in sorted(producers.items()):
        print("# %s size from: %s" % (op, ", ".join(sorted(sources))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"operators": {"%s/%s" % k: sorted(v) for k, v in sorted(used.items())},
                       "size_inputs": {k: sorted(v) for k, v in producers.items()}}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
