"""The in-process half of ``tools.bench``: warm latency, batch and where the
time goes, measured inside an unzipped package (the ONNX path's or the
scikit-learn path's: "bare predict" is what the served model's own predict
runs, ``estimator.predict`` or the ONNX Runtime session).

    python -I -S -B tools/bench/child.py PACKAGE_DIR SPEC_JSON OUT_JSON

Standard library only (plus what the package ships): it runs in the isolated
interpreter that sees nothing but the package and the standard library, as
Lambda's ``/var/task``. The parent points stdout at /dev/null; stdout is
wrapped the way Lambda's Python runtime (awslambdaric) wraps it, flushing
after every write, so each request's log line costs its write(2) as there.
"""
import json
import os
import sys
import time


class Unbuffered:
    """awslambdaric's ``sys.stdout`` wrapper: flush after every write."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        self.stream.write(data)
        self.stream.flush()

    def writelines(self, lines):
        self.stream.writelines(lines)
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def lambda_context():
    """``tools/ops/lambda_context.py``'s Context, run from its source: this
    interpreter imports nothing but the package and the standard library."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "ops",
                        "lambda_context.py")
    namespace = {}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), namespace)
    return namespace["Context"]()


def pct(values, q):
    s = sorted(values)
    if not s:
        return None
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


def median(values):
    return pct(values, 50)


def bare_model(served):
    """(the bare predict function, its label, the served model's own
    predict): scikit-learn's ``estimator.predict``; on the ONNX path what a
    notebook with onnxruntime runs, ``session.run(None, {input: X})`` (all
    outputs, as the served classifier's one run computes labels and
    probabilities), its first output the labels."""
    est = served.estimator
    session = getattr(est, "session", None)
    if session is not None and hasattr(est, "input_name"):
        name, dtype = est.input_name, getattr(est, "input_dtype", None)

        def run(X):
            return session.run(None, {name: X.astype(dtype, copy=False) if dtype else X})[0]
        return run, "onnxruntime session.run", est.predict
    return est.predict, "%s.predict" % type(est).__name__, est.predict


def guards():
    """The guards the served model's predict runs in (scikit-learn's
    assume_finite only where scikit-learn is imported)."""
    import contextlib
    import numpy as np
    stack = contextlib.ExitStack()
    sklearn = sys.modules.get("sklearn")
    if sklearn is not None:
        stack.enter_context(sklearn.config_context(assume_finite=True))
    stack.enter_context(np.errstate(over="raise", invalid="raise"))
    return stack


def main():
    package, spec_file, out_file = sys.argv[1:4]
    stdlib = [p for p in sys.path if p]
    sys.path[:] = [package] + stdlib
    sys.stdout = Unbuffered(sys.stdout)
    with open(spec_file) as f:
        spec = json.load(f)
    perf = time.perf_counter_ns
    # This thread's CPU time too: on a machine shared with other processes it
    # leaves out the time the process waited for a core (wall time does not).
    cpu = time.thread_time_ns

    import app  # the package's app.py: the model loads here (init phase)
    import numpy as np
    from chalice.app import Request
    from chalicelib.protocols import model_api
    from chalicelib.schema import parsing
    from chalicelib.schema.parsing import parse_request
    # Only when the served path imported it: the ONNX path ships no sklearn.
    sklearn = sys.modules.get("sklearn")

    svc = app.SERVICE
    served = svc.model.ready()
    predict, bare_label, served_predict = bare_model(served)
    est = served.estimator
    ctx = lambda_context()
    single, batch = spec["single_event"], spec["batch_event"]
    if spec.get("input") == "dataframe" and getattr(est, "by_columns", False):
        # A DataFrame model compiled to ONNX: its package ships no pandas;
        # what a notebook with onnxruntime feeds it is one (rows, 1) array
        # per input column, in the graph's types.
        types = est.input_types
        session = est.session

        def frame(instances):
            return {name: np.asarray([r[name] for r in instances], dtype=dtype).reshape(-1, 1)
                    for name, dtype in types}

        def predict(feed):
            return session.run(None, feed)[0]
        row = frame([spec["row"]])
        frame_label = "column arrays"
        bare_label = "onnxruntime session.run"
    elif spec.get("input") == "dataframe":
        # The notebook's floor: a DataFrame of the records (pandas ships in
        # this model's package).
        import pandas as pd

        def frame(instances):
            return pd.DataFrame(instances)
        row = frame([spec["row"]])
        frame_label = "pd.DataFrame(records)"
    else:
        frame = np.asarray
        row = np.asarray([spec["row"]], dtype=np.float64)
        frame_label = "np.asarray(rows)"
    out = {"python": sys.version.split()[0], "isolated": bool(sys.flags.isolated),
           "no_site": bool(sys.flags.no_site), "model": served.identity,
           "estimator": type(est).__name__, "bare": bare_label,
           "sklearn_imported": sklearn is not None}

    # Sanity: the handler answers 200 and the same predictions as bare predict.
    r = app.app(single, ctx)
    assert r["statusCode"] == 200, r
    assert json.loads(r["body"])["predictions"] == np.asarray(predict(row)).reshape(-1).tolist(), \
        r["body"]
    rb = app.app(batch, ctx)
    assert rb["statusCode"] == 200, rb["statusCode"]

    def handler():
        app.app(single, ctx)

    def bare():
        predict(row)

    # ---- warm latency: interleaved blocks (ABBA), every call timed.
    n, block = spec["n_requests"], spec["block"]
    for _ in range(min(200, n // 4)):
        handler()
        bare()
    h_times, p_times, h_cpu, p_cpu = [], [], [], []
    for b in range(max(1, n // block)):
        order = ((handler, h_times, h_cpu), (bare, p_times, p_cpu))
        if b % 2:
            order = order[::-1]
        for fn, sink, cpu_sink in order:
            for _ in range(block):
                c0, t0 = cpu(), perf()
                fn()
                t1 = perf()
                cpu_sink.append(cpu() - c0)
                sink.append(t1 - t0)
    out["warm"] = {"n": len(h_times), "block": block,
                   "cpu_p50_ns": {"handler": median(h_cpu), "predict": median(p_cpu)},
                   "handler_ns": {"p50": median(h_times), "p99": pct(h_times, 99),
                                  "min": min(h_times), "max": max(h_times)},
                   "predict_ns": {"p50": median(p_times), "p99": pct(p_times, 99),
                                  "min": min(p_times), "max": max(p_times)}}

    # ---- where the time goes: each stage once per round, round-robin.
    def stages(event, body_rows, rounds):
        body = event["body"]
        body_bytes = body.encode("utf-8")
        ct = event["headers"]["Content-Type"]
        schema = served.schema
        max_rows = svc.config.max_rows
        X = parse_request(body_bytes, ct, schema, max_rows, None).X
        # Bare predict takes what a notebook would build (the served model
        # takes parse_request's matrix, DataFrame or columns).
        X_bare = frame(body_rows) if frame_label == "column arrays" else X
        req = Request(event, ctx)
        sink = {}

        def timed(name, fn):
            t0 = perf()
            fn()
            sink.setdefault(name, []).append(perf() - t0)

        def guarded():
            with guards():
                served_predict(X)

        def guards_only():
            with guards():
                pass

        def floor():
            payload = json.loads(body)
            Xf = frame(payload["instances"])
            json.dumps(predict(Xf).tolist())

        load_json = getattr(parsing, "_load_json", None)
        log_line = getattr(svc, "_log", None)
        items = [
            ("handler", lambda: app.app(event, ctx)),
            ("chalice Request()", lambda: Request(event, ctx)),
            ("model_api.predict", lambda: model_api.predict(svc, Request(event, ctx))),
            ("parse_request", lambda: parse_request(body_bytes, ct, schema, max_rows, None)),
            ("  _load_json", load_json and (lambda: load_json(body))),
            ("  json.loads (plain)", lambda: json.loads(body)),
            ("  " + frame_label, lambda: frame(body_rows)),
            ("served.answer_json", lambda: served.answer_json(X)),
            ("  predict in guards", guarded),
            ("  guards only", guards_only),
            ("  served model's predict", lambda: served_predict(X)),
            ("  bare predict", lambda: predict(X_bare)),
            ("_log (to sink)", log_line and (lambda: log_line(req, 200, time.perf_counter(), len(X)))),
            ("floor (json, %s, predict, json)" % frame_label, floor),
        ]
        # chalicelib internals may be renamed: time what exists.
        items = [(name, fn) for name, fn in items if fn]
        for _ in range(3):
            for name, fn in items:
                fn()
        for _ in range(rounds):
            for name, fn in items:
                timed(name, fn)
        return [(name, median(sink[name])) for name, _ in items]

    out["single_stages"] = stages(single, [spec["row"]], spec["stage_rounds"])

    # ---- batch: handler against the stdlib floor, interleaved.
    body = batch["body"]

    def batch_handler():
        app.app(batch, ctx)

    def batch_floor():
        payload = json.loads(body)
        X = frame(payload["instances"])
        json.dumps(predict(X).tolist())

    # The floor a target is read against: the stdlib floor for a matrix
    # model; bare predict on the DataFrame itself for a DataFrame model (the
    # notebook's json + DataFrame floor is timed too, for reference).
    floors = [("json.loads, %s, predict, json.dumps" % frame_label, batch_floor)]
    if spec.get("input") == "dataframe":
        X_batch = frame(spec["batch_instances"])
        floors.insert(0, ("bare predict on the prebuilt %s" % (
            "column arrays" if frame_label == "column arrays" else "DataFrame"),
            lambda: predict(X_batch)))
    bh, bfs, cpus = [], [[] for _ in floors], [[] for _ in range(len(floors) + 1)]
    for _ in range(2):
        batch_handler()
        for _, fn in floors:
            fn()
    for i in range(spec["batch_reps"]):
        order = [(batch_handler, bh, cpus[0])] + [
            (fn, sink, cpu_sink) for (_, fn), sink, cpu_sink in zip(floors, bfs, cpus[1:])]
        if i % 2:
            order = order[::-1]
        for fn, sink, cpu_sink in order:
            c0, t0 = cpu(), perf()
            fn()
            t1 = perf()
            cpu_sink.append(cpu() - c0)
            sink.append(t1 - t0)
    stats = [{"floor": name, "p50": median(v), "min": min(v), "max": max(v),
              "cpu_p50": median(c)} for (name, _), v, c in zip(floors, bfs, cpus[1:])]
    out["batch"] = {"rows": spec["batch_rows"], "reps": len(bh),
                    "handler_ns": {"p50": median(bh), "min": min(bh), "max": max(bh),
                                   "cpu_p50": median(cpus[0])},
                    "floor_ns": stats[0], "floors_ns": stats}
    out["batch_stages"] = stages(batch, spec["batch_instances"], spec["batch_stage_rounds"])

    if spec.get("profile"):
        import cProfile
        import io
        import pstats
        profiles = {}
        for label, event, count in (("single", single, spec["profile_single"]),
                                    ("batch", batch, spec["profile_batch"])):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(count):
                app.app(event, ctx)
            prof.disable()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(22)
            profiles[label] = "%d calls\n%s" % (count, text.getvalue())
        out["profiles"] = profiles

    import resource
    out["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(out_file, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
