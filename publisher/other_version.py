"""Publishing a model saved by another scikit-learn release, without
retraining it and without version skew at serving time.

The model is published in its own world: :mod:`publisher.build_env`
provides an environment of the release that saved it, and
:mod:`publisher.in_env` runs the whole publish there in a child process
(the audit, loading, schema inference, ONNX conversion, and the agreement
of the graph with that release's own ``predict``/``predict_proba``). Back
here the graph is loaded by the app's ONNX loader and answers the same rows
again; it must agree with what the old scikit-learn answered. The model is
then served by ONNX Runtime, whose graph does not depend on any scikit-learn
version, so the app needs no ``ALLOW_VERSION_SKEW``.

A model that cannot be served that way raises :class:`NotServable` with the
reason (``publisher.publish`` adds the choices left); one the old release
itself refuses (the audit, a bad feature list) raises :class:`Refused`.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

from publisher import build_env, onnx_export
from publisher.audit import LIMIT_AS_BYTES

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_CPU_S = 600
TIMEOUT_S = 900
# The app's settings are not the child's: it must judge the model as a
# fresh deployment would.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "ALLOW_VERSION_SKEW", "TRUST_MODEL_PICKLE",
                "MODEL_RUNTIME", "MODEL_DIR")


class NotServable(Exception):
    """No skew-free route for this model; the message says why."""


class Refused(Exception):
    """The release that saved the model refuses it; the message says why."""


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS_BYTES, LIMIT_AS_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMIT_CPU_S, LIMIT_CPU_S))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _log(message):
    print("publish: %s" % message, file=sys.stderr, flush=True)


def publish(artifact_path, saved, *, name, version, features=None, metrics=None,
            created_at=None, sample=None, code_paths=(), trust=False, onnx=True, upload=None):
    """``(card, graph bytes)`` for the artifact saved by scikit-learn
    ``saved``, made in an environment of that release."""
    if upload:
        raise NotServable("a model served from S3 (--upload) is served from its pickle, which "
                          "needs scikit-learn %s at runtime" % saved)
    if not onnx:
        raise NotServable("--runtime scikit-learn serves the pickle, which needs scikit-learn "
                          "%s at runtime" % saved)
    try:
        python, env = build_env.ensure(saved, log=_log)
    except build_env.NoEnvironment as exc:
        raise NotServable(str(exc)) from None
    if env["build_seconds"]:
        _log("environment built in %.0f s" % env["build_seconds"])
    with tempfile.TemporaryDirectory(prefix="publish-other-") as tmp:
        out = os.path.join(tmp, "model")
        if sample is not None and hasattr(sample, "to_csv"):
            sample.to_csv(os.path.join(tmp, "sample.csv"), index=False)
            sample = os.path.join(tmp, "sample.csv")
        request = {"artifact": os.path.abspath(artifact_path), "name": name,
                   "version": version, "features": features, "metrics": metrics,
                   "created_at": created_at,
                   "sample": os.path.abspath(sample) if sample is not None else None,
                   "code": [os.path.abspath(p) for p in code_paths], "trust": bool(trust),
                   "out_dir": out}
        reply = run_child(python, request, saved)
        if "refused" in reply:
            raise Refused("%s (checked under scikit-learn %s, which saved it)"
                          % (reply["refused"], saved))
        card = reply["card"]
        if card.get("runtime") != onnx_export.RUNTIME:
            raise NotServable("it does not compile to an ONNX graph that agrees with scikit-learn "
                              "%s: %s" % (saved, card.get("onnx", {}).get("not_used", "?")))
        with open(os.path.join(out, onnx_export.ONNX_FILE), "rb") as f:
            graph = f.read()
        rechecked = recheck(out, card, reply["answers"], saved)
    card["build_environment"] = {"python": env["python"], "packages": env["packages"],
                                 "rechecked_here": rechecked}
    return card, graph


def run_child(python, request, saved):
    """The reply of ``publisher.in_env`` run by ``python``, within limits."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        result = subprocess.run([python, "-m", "publisher.in_env"], input=json.dumps(request),
                                cwd=PROJECT_DIR, capture_output=True, text=True,
                                timeout=TIMEOUT_S, preexec_fn=_limits, env=env)
    except subprocess.TimeoutExpired:
        raise NotServable("publishing under scikit-learn %s took over %d s"
                          % (saved, TIMEOUT_S)) from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        how = ("killed by signal %d" % -result.returncode if result.returncode < 0
               else "exit code %d" % result.returncode)
        tail = (result.stderr.strip().splitlines() or ["?"])[-1][:300]
        raise NotServable("publishing under scikit-learn %s failed (%s, within limits of %d GiB "
                          "and %d s CPU): %s" % (saved, how, LIMIT_AS_BYTES >> 30, LIMIT_CPU_S,
                                                 tail))
    return json.loads(lines[-1])


def recheck(model_dir, card, answers, saved):
    """Run the graph here, loaded as the app loads it, on the rows the old
    release answered; its agreement, or NotServable."""
    from chalicelib.runtimes import onnx_runtime
    from chalicelib.schema.card import ModelCard
    import onnxruntime
    parsed = ModelCard(card)
    model = onnx_runtime.load(model_dir, parsed)
    schema = parsed.schema.fed_by_columns() if model.by_columns else parsed.schema
    X = schema.build(answers["rows"], lambda i, j: "validation row %d" % i)
    expected = {"predictions": np.asarray(answers["predictions"]),
                "probabilities": None if answers["probabilities"] is None
                else np.asarray(answers["probabilities"], dtype=np.float64)}
    got = {"predictions": model.predict(X),
           "probabilities": None if expected["probabilities"] is None
           else model.predict_proba(X)}
    agreement, problem = onnx_export.compare(expected, got, parsed.task)
    if problem:
        raise NotServable("the graph, run here by ONNX Runtime %s, disagrees with scikit-learn "
                          "%s: %s" % (onnxruntime.__version__, saved, problem))
    agreement["onnxruntime"] = onnxruntime.__version__
    return agreement
