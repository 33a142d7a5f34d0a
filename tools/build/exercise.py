"""The requests the build sends the app, and the runner that sends them
inside an isolated interpreter (``python -I -S -B``: nothing importable but
the package's directories and the standard library).

Standard library only: :func:`tools.build.trace.run_exercise` runs this very
file by path (``python -I -S -B tools/build/exercise.py --paths ...``), where
the ``tools`` package is not importable. It loads ``tools/ops/lambda_events.py``
by path for the same reason."""
import argparse
import csv
import io
import json
import os
import sys
import time

EVENTS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ops",
                           "lambda_events.py")


def exercise_requests(card, max_rows):
    """(name, event, expected statuses) for every request format and error
    case of the contract, built from the model's card."""
    spec = _load_events()
    features = card["features"]
    names = [f["name"] for f in features]
    n = len(names)
    rows = [[_typed_value(f, i, k) for i, f in enumerate(features)] for k in range(3)]
    row = rows[0]
    js = json.dumps
    post = spec.post_model
    objects = [dict(zip(names, r)) for r in rows]
    rev = list(reversed(names))
    ok, proba = {200}, {200, 422}
    numeric = all(f.get("type", "number") == "number" for f in features)
    # A typed value may be the right answer where a number schema refuses.
    typed = {200, 422} if not numeric else set()
    csv_rows = _csv_text(rows)
    header_rev = _csv_text([rev] + [list(reversed(r)) for r in rows])
    cases = [
        ("instances-lists", post(js({"instances": rows})), ok),
        ("instances-ints", post(js({"instances": [[int(v) if numeric else v for v in row]]})), ok),
        ("instances-objects", post(js({"instances": objects})), ok),
        ("dataframe-split", post(js({"dataframe_split": {"columns": names, "data": rows}})), ok),
        ("dataframe-split-reordered", post(js({"dataframe_split": {
            "columns": rev, "data": [list(reversed(r)) for r in rows], "index": [0, 1, 2]}})), ok),
        ("dataframe-records", post(js({"dataframe_records": objects})), ok),
        ("csv", post(csv_rows, "text/csv"), ok),
        ("csv-header-reordered", post(header_rev, "text/csv; charset=utf-8"), ok),
        ("csv-probabilities", post(csv_rows, "text/csv", query={"probabilities": "true"}), proba),
        ("probabilities", post(js({"instances": rows, "probabilities": True})), proba),
        ("no-content-type", post(js({"instances": rows}), None), ok),
        ("base64", post(js({"instances": rows}).encode(), "application/json"), ok),
        ("big-batch", post(js({"instances": [row] * min(max_rows, 2000)})), ok),
        ("malformed-json", post('{"instances": [[1, 2'), {400}),
        ("empty-body", post(""), {400}),
        ("not-object", post(js([row])), {400}),
        ("unknown-key", post(js({"rows": rows})), {400}),
        ("two-formats", post(js({"instances": rows, "dataframe_records": objects})), {400}),
        ("bad-probabilities", post(js({"instances": rows, "probabilities": "yes"})), {400}),
        ("bad-probabilities-query", post(csv_rows, "text/csv",
                                         query={"probabilities": "maybe"}), {400}),
        ("duplicate-key", post('{"instances": [], "instances": []}'), {400}),
        ("bad-utf8", post(b'{"instances": [[\xff]]}', "application/json"), {400}),
        ("bad-base64", dict(post("not base64!!", "application/json"), isBase64Encoded=True),
         {400}),
        ("row-not-list", post(js({"instances": [row, 5]})), {400, 422}),
        ("text-plain", post(js({"instances": rows}), "text/plain"), {415}),
        ("bad-charset", post(js({"instances": rows}), "application/json; charset=latin-1"),
         {415}),
        ("too-many-rows", post(js({"instances": [row] * (max_rows + 1)})), {413}),
        ("too-many-csv-rows", post(_csv_text([row] * (max_rows + 1)), "text/csv"), {413}),
        ("wrong-count", post(js({"instances": [row + [1.0]]})), {422, 400}),
        ("non-numeric", post(js({"instances": [[str(v) for v in row]]})), {422} | typed),
        ("boolean", post(js({"instances": [[True] + row[1:]]})), {422} | typed),
        ("null", post(js({"instances": [[None] + row[1:]]})), {200, 422}),
        ("nan", post('{"instances": [[NaN%s]]}' % "".join(", %s" % js(v) for v in row[1:])),
         {200, 422}),
        ("infinity", post('{"instances": [[Infinity%s]]}' % "".join(", %s" % js(v)
                                                                 for v in row[1:])), {422}),
        ("huge-number", post(js({"instances": [[10 ** 400] + row[1:]]})), {422}),
        ("unknown-feature", post(js({"instances": [dict(objects[0], bogus=1)]})), {422}),
        ("missing-feature", post(js({"dataframe_records": [
            {k: v for k, v in objects[0].items() if k != names[0]}]})), {422}),
        ("csv-wrong-count", post(csv_rows + ",9", "text/csv"), {422}),
        ("csv-non-numeric", post("abc" + csv_rows[csv_rows.index(","):] if n > 1 else "1e",
                                 "text/csv"), {422, 400} | typed),
        ("csv-malformed", post('"unterminated\n1,2', "text/csv"), {400, 422}),
        ("csv-empty", post("\n\n", "text/csv"), {400}),
        ("get-card", spec.get("/model"), ok),
        ("health", spec.get("/health"), ok),
        ("try-it-page", spec.get("/", headers={"Accept": "text/html"}), ok),
    ]
    return cases + protocol_requests(card, rows, objects, numeric)


def protocol_requests(card, rows, objects, numeric):
    """The peers' protocols (chalicelib/protocols): every body format and
    answer type they read and write, and their error shapes. Number-only
    bodies (NPY, float tensors) only for a card of numbers; for a typed card
    a typed value may be refused where the card's schema says so."""
    import struct
    spec = _load_events()
    js = json.dumps
    names = [f["name"] for f in card["features"]]
    name, n = card["name"], len(names)
    ok = {200}
    valid = ok if numeric else {200, 422}
    # MLflow's route answers a value the model cannot take with 400.
    valid_mlflow = ok if numeric else {200, 400}

    def post(path, body, content_type="application/json", resource=None, params=None,
             accept=None, extra=None):
        headers = {"Content-Type": content_type} if content_type else {}
        if accept:
            headers["Accept"] = accept
        headers.update(extra or {})
        return spec.rest_event("POST", path, body=body, headers=headers,
                               resource=resource or path, path_params=params)

    v1 = ("/v1/models/{segment}", {"segment": name + ":predict"})
    v2 = ("/v2/models/{name}/infer", {"name": name})
    v2_types = {"integer": "INT64", "boolean": "BOOL", "string": "BYTES", "text": "BYTES"}
    columns = [{"name": f["name"], "shape": [len(rows)],
                "datatype": v2_types.get(f.get("type"), "FP64"),
                "data": [r[j] for r in rows]} for j, f in enumerate(card["features"])]
    csv_rows = _csv_text(rows)
    pandas_csv = _csv_text([[""] + names] + [[i] + list(r) for i, r in enumerate(rows)])
    cases = [
        ("ping", spec.get("/ping"), ok),
        ("version", spec.get("/version"), ok),
        ("mlflow-split", post("/invocations", js({"dataframe_split": {
            "columns": names, "data": rows, "index": list(range(len(rows)))}})), valid_mlflow),
        ("mlflow-inputs-params", post("/invocations", js({
            "inputs": rows, "params": {"probabilities": True}})), {200, 400}),
        ("mlflow-inputs-columns", post("/invocations", js({"inputs": {
            f: [r[j] for r in rows] for j, f in enumerate(names)}})), valid_mlflow),
        ("mlflow-records", post("/invocations", js({"dataframe_records": objects})), valid_mlflow),
        ("mlflow-csv-pandas", post("/invocations", pandas_csv, "text/csv"), valid_mlflow),
        ("mlflow-bad-value", post("/invocations", js({"inputs": [[None, [1]] * n]})), {400, 422}),
        ("sagemaker-csv-csv", post("/invocations", csv_rows, "text/csv", accept="text/csv"),
         valid_mlflow),
        ("sagemaker-json-rows", post("/invocations", js(rows), accept="application/json"),
         valid_mlflow),
        ("sagemaker-npy-bad", post("/invocations", b"\x93NUMPY garbage", "application/x-npy"),
         {400}),
        ("sagemaker-406", post("/invocations", csv_rows, "text/csv", accept="image/png"), {406}),
        ("invocations-415", post("/invocations", "x", "text/plain"), {415}),
        ("v1-models", spec.get("/v1/models"), ok),
        ("v1-ready", spec.get("/v1/models/" + name, "/v1/models/{segment}",
                              {"segment": name}), ok),
        ("v1-predict", post("/v1/models/%s:predict" % name,
                            js({"instances": rows}), resource=v1[0], params=v1[1]), valid),
        ("v1-inputs", post("/v1/models/%s:predict" % name, js({"inputs": objects}),
                           resource=v1[0], params=v1[1]), valid),
        ("v1-unknown-model", post("/v1/models/other:predict", js({"instances": rows}),
                                  resource=v1[0], params={"segment": "other:predict"}), {404}),
        ("v2-server", spec.get("/v2"), ok),
        ("v2-live", spec.get("/v2/health/live"), ok),
        ("v2-ready", spec.get("/v2/health/ready"), ok),
        ("v2-metadata", spec.get("/v2/models/" + name, "/v2/models/{name}", {"name": name}),
         ok),
        ("v2-model-ready", spec.get("/v2/models/%s/ready" % name, "/v2/models/{name}/ready",
                                    {"name": name}), ok),
        ("v2-infer-columns", post("/v2/models/%s/infer" % name, js({"inputs": columns}),
                                  resource=v2[0], params=v2[1]), valid),
        ("v1-live", spec.get("/"), ok),
        ("v2-models", spec.get("/v2/models"), ok),
        ("triton-config", spec.get("/v2/models/%s/config" % name, "/v2/models/{name}/config",
                                   {"name": name}), ok),
        ("triton-index", post("/v2/repository/index", "{}"), ok),
        ("v2-bad-datatype", post("/v2/models/%s/infer" % name, js({
            "inputs": [dict(columns[0], datatype="FP128")]}),
            resource=v2[0], params=v2[1]), {400}),
    ]
    if not numeric:
        return cases
    # NumPy's .npy format, written by hand (header + little-endian float64),
    # since this runs on the standard library only.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), n)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy = (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
           + struct.pack("<%dd" % (len(rows) * n), *[v for r in rows for v in r]))
    tensor = {"name": "input-0", "shape": [len(rows), n], "datatype": "FP64"}
    binary = struct.pack("<%df" % (len(rows) * n), *[v for r in rows for v in r])
    binary_head = js({"inputs": [dict(tensor, datatype="FP32",
                                      parameters={"binary_data_size": len(binary)})]})
    return cases + [
        ("sagemaker-npy-npy", post("/invocations", npy, "application/x-npy",
                                   accept="application/x-npy"), ok),
        ("v2-infer-rows", post("/v2/models/%s/infer" % name, js({
            "id": "1", "inputs": [dict(tensor, data=rows)]}), resource=v2[0], params=v2[1]),
         ok),
        ("v2-infer-classification", post("/v2/models/%s/infer" % name, js({
            "inputs": [dict(tensor, data=rows)], "parameters": {"binary_data_output": True},
            "outputs": [{"name": "predictions"}] + ([{"name": "probabilities",
                                                      "parameters": {"classification": 1}}]
                                                    if card.get("task") == "classification"
                                                    else [])}),
            resource=v2[0], params=v2[1], accept="application/octet-stream"), ok),
        ("v2-infer-binary", post(
            "/v2/models/%s/infer" % name, binary_head.encode() + binary,
            "application/octet-stream", resource=v2[0], params=v2[1],
            extra={"Inference-Header-Content-Length": str(len(binary_head))}), ok),
    ]


def _typed_value(feature, i, k):
    """Row ``k``'s value of feature ``i``, of the feature's card type."""
    kind = feature.get("type", "number")
    categories = feature.get("categories")
    if categories:
        return categories[k % len(categories)]
    if kind == "integer":
        return i + k
    if kind == "boolean":
        return k % 2 == 0
    if kind == "string":
        return "value %d" % k
    if kind == "text":
        return "an example text, number %d" % k
    return [round(0.5 + 0.75 * i, 2), round(1.5 + 0.25 * i, 2), float(i)][k]


def _csv_text(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        [["true" if v is True else "false" if v is False else v for v in r] for r in rows])
    return out.getvalue()


_EVENTS = None


def _load_events():
    global _EVENTS
    if _EVENTS is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("lambda_events", EVENTS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _EVENTS = module
    return _EVENTS


def exercise(paths, model_rel, out_file, lazy_file=None):
    """In the isolated interpreter: import the app, answer every request,
    report the answers and what was loaded. With ``lazy_file`` (a JSON
    ``{"modules": [...]}``), those modules are lazy (the app's own
    ``chalicelib.ops.lazy_imports``) from before the app is imported."""
    opened = {}

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(args[0] if isinstance(args[0], str) else os.fsdecode(args[0]))
            opened[path] = opened.get(path, 0) + 1
        elif event == "ctypes.dlopen" and args and isinstance(args[0], str):
            opened[args[0]] = opened.get(args[0], 0) + 1

    sys.addaudithook(audit)
    stdlib = [p for p in sys.path if p]
    sys.path[:] = list(paths) + stdlib
    events = _load_events()  # loaded by path from the repo: not part of the package
    started = time.perf_counter()
    lazy_finder = None
    if lazy_file:
        with open(lazy_file) as f:
            lazy_names = json.load(f)["modules"]
        from chalicelib.ops import lazy_imports
        lazy_finder = lazy_imports.install(lazy_names)
    import app as app_module  # noqa: E402  (the package's app.py)
    import_seconds = time.perf_counter() - started
    with open(os.path.join(paths[0], *model_rel.split("/"), "model.json"), "rb") as f:
        card = json.loads(f.read().decode("utf-8"))
    max_rows = int(os.environ.get("MAX_ROWS") or 10000)
    results = []
    context = events.LambdaContext()
    for name, event, expected in exercise_requests(card, max_rows):
        response = app_module.app(event, context)
        body = response.get("body")
        results.append({"name": name, "status": response.get("statusCode"),
                        "expected": sorted(expected), "body": body,
                        "content_type": (response.get("headers") or {}).get("Content-Type")})
    with open("/proc/self/maps") as f:
        mapped = sorted({line.split(None, 5)[5].strip() for line in f
                         if len(line.split(None, 5)) == 6 and "/" in line})
    modules = sorted((name, getattr(m, "__file__", None)) for name, m in list(sys.modules.items())
                     if getattr(m, "__file__", None))
    # Imported, still lazy: no request path ran their code (chalicelib.ops.lazy_imports).
    lazy_pending = sorted(name for name, m in list(sys.modules.items())
                          if type(m).__name__ == "_LazyModule")
    with open(out_file, "w") as f:
        json.dump({"results": results, "opened": sorted(opened), "mapped": mapped,
                   # a source opened again after its import was read as data
                   # (inspect.getsource, linecache): it must ship as source
                   "reread": sorted(p for p, n in opened.items() if n > 1 and p.endswith(".py")),
                   "modules": modules, "import_seconds": import_seconds,
                   "lazy_pending": lazy_pending,
                   # lazy modules whose code raised when it ran (out of order)
                   "lazy_failed": list(lazy_finder.failed) if lazy_finder else [],
                   "sys_path": sys.path}, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -I -S -B tools/build/exercise.py")
    parser.add_argument("--paths", required=True)
    parser.add_argument("--model-rel", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lazy", help="JSON list of modules to make lazy before the import")
    args = parser.parse_args(argv)
    exercise(args.paths.split(os.pathsep), args.model_rel, args.out, args.lazy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
