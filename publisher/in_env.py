"""The publish that runs inside a build environment (:mod:`publisher.build_env`),
under the scikit-learn release that saved the model.

``python -m publisher.in_env`` reads a JSON request on stdin (the artifact,
the publish options, an output directory), publishes the model there with
:func:`publisher.publish.publish` (so the audit, loading, schema inference,
ONNX conversion and agreement check are this project's own, run against
that release's estimator), then answers the rows the graph will be checked
on again on the host: the card's example and ``--sample`` rows plus the
generated validation rows, each answered by the model as the app's
scikit-learn runtime loads it here. It prints one JSON line: ``{"card":
...}`` or ``{"refused": reason}``.
"""
import json
import os
import sys
import warnings


def answer(out_dir, sample=None):
    """``{"rows", "predictions", "probabilities"}``: the validation rows (JSON
    values) and the model's own answers to them."""
    import numpy as np
    from chalicelib.runtimes.choice import load_model_dir
    from publisher import onnx_export, onnx_validation
    from publisher.publish import example_rows, read_sample
    loaded = load_model_dir(out_dir, choice="scikit-learn")
    card, estimator = loaded.card, loaded.estimator
    schema, specs = card.schema, card.raw["features"]
    frame = read_sample(sample)
    if frame is None:
        first = [[row[n] for n in card.feature_names] for row in card.raw["example"]["instances"]]
    else:
        first = example_rows(schema, specs, frame, n=onnx_export.MAX_SAMPLE_ROWS)
    problem = None
    for widen in (True, False):  # as the exporter: rows beyond the range may be outside the domain
        rows = onnx_validation.validation_rows(schema, specs, first, widen)
        try:
            with warnings.catch_warnings(), loaded.context():
                warnings.simplefilter("ignore")
                X = schema.build(rows, lambda i, j: "validation row %d" % i)
                predictions = np.asarray(estimator.predict(X))
                proba = (np.asarray(estimator.predict_proba(X))
                         if card.raw.get("onnx", {}).get("probabilities") else None)
        except Exception as exc:
            problem = exc
            continue
        return {"rows": rows, "predictions": predictions.tolist(),
                "probabilities": None if proba is None else proba.tolist()}
    raise RuntimeError("the model cannot answer the validation rows: %s: %s"
                       % (type(problem).__name__, problem))


def main():
    request = json.load(sys.stdin)
    from publisher.publish import PublishError, publish
    if request.get("trust"):
        os.environ["TRUST_MODEL_PICKLE"] = "true"  # what the app would need too
    try:
        card = publish(request["artifact"], name=request["name"], version=request["version"],
                       features=request.get("features"), out_dir=request["out_dir"],
                       force=True, metrics=request.get("metrics"),
                       created_at=request.get("created_at"), sample=request.get("sample"),
                       code=request.get("code") or (), trust=bool(request.get("trust")),
                       onnx=True)
    except (PublishError, ValueError) as exc:
        print(json.dumps({"refused": str(exc)}))
        return 0
    reply = {"card": card}
    if card.get("runtime") == "onnxruntime":
        reply["answers"] = answer(request["out_dir"], request.get("sample"))
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
