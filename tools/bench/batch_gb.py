"""The batch benchmark: a generated CSV of ``--size-mb`` through the real
batch job on moto's S3 and SQS (loopback), scored by ``--workers`` worker
processes, checked row by row, timed, against the floor, with estimates.

    .venv/bin/python -m tools.bench.batch_gb [--size-mb 1024] [--workers 2]
        [--model iris|dataframe] [--json build/bench.json]

1. The file (:mod:`tools.bench.batch_file`: fixed seed, bad rows, blank
   lines, CRLF blocks, no final newline) is uploaded by ``make batch``'s own
   ``submit`` (multipart) with ``join``; the bucket's notification reaches
   the splitter (app.py's ``batch_split``) as in the tests.
2. N worker processes (:mod:`tools.bench.batch_worker`) consume the range
   tasks; one is killed mid-range on its first task and replaced (its
   message comes back after the visibility timeout), another leaves its
   first task to be delivered again.
3. The output is read back (:mod:`tools.bench.batch_check`): every good
   row exactly once and in order, every bad row in the error report with
   its line, the manifest's counts; a sample of output rows is scored
   again through ``POST /model`` (Chalice's test client) and must agree.
4. The floor (:mod:`tools.bench.batch_floor`) scores the same file in one
   process; the estimates (:mod:`tools.bench.batch_estimate`) for 1 GB and
   10 GB are derived from the measured rows per second per worker.

Exits 1 when the check fails. moto answers a ranged GET by reading the
whole object, and runs in this process: its cost is inside the measured
worker time, so the figures are conservative for S3.
"""
import argparse
import json
import math
import multiprocessing
import os
import queue as queues
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO) if REPO not in sys.path else None

# The stage's thread settings, before numpy is imported here or in a worker.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from tools.bench import batch_check, batch_estimate, batch_file, batch_worker  # noqa: E402
from tools.bench.models import BENCH_DIR, PYTHON, say  # noqa: E402
from tools.bench.report import LAMBDA_GB_S, LAMBDA_PER_M, PRICE_DATE  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
BUCKET, QUEUE = "bench-batch", "bench-batch-q"
WORK_DIR = os.path.join(BENCH_DIR, "batch")
SAMPLES = 10_000
ENDPOINT_ROWS = 2_000     # rows per POST /model of the sample
DATAFRAME_MODEL = ("customer-churn", "1.0.0")


def model_dir(kind):
    """``(MODEL_DIR or None, joblib artifact)`` of the model benchmarked."""
    if kind == "iris":
        return None, os.path.join(REPO, "model", "iris", "model.joblib")
    from chalicelib.schema.card import sha256_of
    from tools.bench.models import models
    artifact = models(["tabular"])[0].artifact
    target = os.path.join(WORK_DIR, "model-%s" % DATAFRAME_MODEL[0])
    card = os.path.join(target, "model.json")
    fresh = False
    if os.path.isfile(card):
        with open(card) as f:
            fresh = json.load(f).get("sha256") == sha256_of(artifact)
    if not fresh:
        name, version = DATAFRAME_MODEL
        subprocess.run([PYTHON, "-m", "publisher.publish", artifact, "--name", name,
                        "--version", version, "--out", target, "--force"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    return target, artifact


def batch_memory_mb():
    """The worker's memory in the prod stage: ``lambda_functions.batch_work``,
    else the stage's, else the project's."""
    with open(os.path.join(REPO, ".chalice", "config.json")) as f:
        config = json.load(f)
    stage = config["stages"]["prod"]
    return (stage.get("lambda_functions", {}).get("batch_work", {}).get("lambda_memory_size")
            or stage.get("lambda_memory_size") or config.get("lambda_memory_size") or 128)


class Run:
    """The worker processes of one job, and what they report."""

    def __init__(self, endpoint, settings, queue_arn, workers):
        self.ctx = multiprocessing.get_context("spawn")
        self.stop = self.ctx.Event()
        self.results = self.ctx.Queue()
        self.endpoint, self.settings, self.queue_arn = endpoint, settings, queue_arn
        self.procs = {}            # index -> Process
        self.ready = {}            # pid -> init seconds
        self.tasks = []            # (pid, figures)
        self.last = {}             # pid -> the latest cumulative figures
        self.crashes = []
        plans = ["crash", "redeliver"] + [None] * max(0, workers - 2)
        self.pending_plans = plans[workers:]  # what a replacement takes over (one worker)
        for index in range(workers):
            self.start(index, plans[index])

    def start(self, index, inject):
        proc = self.ctx.Process(target=batch_worker.run, daemon=True, args=(
            self.endpoint, self.settings, index, inject, self.stop, self.results,
            self.queue_arn))
        proc.start()
        self.procs[index] = proc

    def collect(self, timeout=0.0):
        try:
            while True:
                kind, index, pid, figures = self.results.get(timeout=timeout)
                timeout = 0.0
                if kind == "ready":
                    self.ready[pid] = figures
                elif kind == "task":
                    self.tasks.append((pid, figures))
                    self.last[pid] = figures
        except queues.Empty:
            pass

    def wait_ready(self, n, timeout=600):
        deadline = time.monotonic() + timeout
        while len(self.ready) < n:
            if time.monotonic() > deadline:
                raise SystemExit("batch bench: the workers did not start")
            self.collect(timeout=1.0)

    def replace_dead(self):
        for index, proc in list(self.procs.items()):
            if proc.exitcode is not None and proc.exitcode != 0 and index not in self.crashes:
                self.crashes.append(index)
                say("  worker %d (pid %d) died (exit %d) mid-range; a new one starts, its "
                    "task comes back after the visibility timeout" % (index, proc.pid,
                                                                     proc.exitcode))
                plan = self.pending_plans.pop(0) if self.pending_plans else None
                self.start(index, plan)

    def finish(self):
        self.stop.set()
        deadline = time.monotonic() + 60
        while any(p.is_alive() for p in self.procs.values()) and time.monotonic() < deadline:
            self.collect(timeout=0.5)
        self.collect()
        for proc in self.procs.values():
            proc.join(5)


def follow(run, s3, manifest_key, timeout):
    """Wait for the job (replacing a crashed worker); its final manifest."""
    deadline = time.monotonic() + timeout
    shown = 0.0
    while True:
        run.collect(timeout=0.5)
        run.replace_dead()
        try:
            manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
        except Exception:  # not written yet
            manifest = None
        if manifest and manifest["status"] != "running":
            return manifest
        if manifest and time.monotonic() - shown > 10:
            shown = time.monotonic()
            say("  %d/%d parts, %d rows scored" % (manifest["parts_done"],
                                                   manifest["parts_total"],
                                                   manifest["rows_scored"]))
        if time.monotonic() > deadline:
            raise SystemExit("batch bench: the job did not finish within %.0f s" % timeout)


def deliver_upload_event(app_module, sqs, events_url):
    """The upload's S3 notification, handed to the splitter as Lambda hands
    it. moto's multipart completion notifies twice (``Put`` and
    ``CompleteMultipartUpload``, with different sequencers: two jobs); S3
    notifies once, so only the completion is delivered."""
    from tools.fixtures.batch_lambda import receive
    events = []
    for message in receive(sqs, events_url):
        body = json.loads(message["Body"])
        if "Records" in body:  # not moto's s3:TestEvent
            events.append(body)
        sqs.delete_message(QueueUrl=events_url, ReceiptHandle=message["ReceiptHandle"])
    names = [e["Records"][0]["eventName"] for e in events]
    if "ObjectCreated:CompleteMultipartUpload" in names:
        events = [e for e in events if e["Records"][0]["eventName"] != "ObjectCreated:Put"]
    if len(events) != 1:
        raise SystemExit("batch bench: %d S3 notifications for the upload (%s)" % (
            len(events), ", ".join(names)))
    app_module.batch_split(events[0], None)


def endpoint_predictions(app_module, header, texts):
    """``POST /model`` on the sampled input lines (CSV under the file's
    header), through Chalice's test client: the predictions, in order."""
    from chalice.test import Client
    got = []
    with Client(app_module.app) as client:
        for i in range(0, len(texts), ENDPOINT_ROWS):
            body = ",".join(header) + "\n" + "\n".join(texts[i:i + ENDPOINT_ROWS]) + "\n"
            reply = client.http.post("/model", headers={"Content-Type": "text/csv"}, body=body)
            if reply.status_code != 200:
                raise SystemExit("batch bench: POST /model answered %d: %s"
                                 % (reply.status_code, reply.body[:500]))
            got += json.loads(reply.body)["predictions"]
    return got


def floor(path, artifact, shape):
    proc = subprocess.run([PYTHON, "-m", "tools.bench.batch_floor", path, artifact, shape],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ), timeout=7200)
    if proc.returncode != 0:
        raise SystemExit("batch bench: the floor failed:\n" + proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_figures(run):
    """Per worker process: ranges scored, rows, busy seconds, rows/s."""
    per = {}
    for pid, task in run.tasks:
        w = per.setdefault(pid, {"pid": pid, "tasks": 0, "ranges_scored": 0, "rows": 0,
                                 "busy_s": 0.0, "cpu_s": 0.0, "s3_s": 0.0})
        w["tasks"] += 1
        # where the peak grew (a range scored, the assembly): what sizes memory
        grown = task["maxrss_kib"] / 1024.0 - w.get("_rss", 0.0)
        w["_rss"] = task["maxrss_kib"] / 1024.0
        if grown > 32:
            w.setdefault("rss_growth", []).append({
                "part": task["part"], "assembled": task["assembly_s"] is not None,
                "redelivery_left": task["left_for_redelivery"], "grew_mib": round(grown, 1),
                "peak_mib": round(w["_rss"], 1)})
        w["ranges_scored"] += task["scored"]
        w["rows"] += task["rows"]
        w["busy_s"] += task["seconds"]
        w["cpu_s"] += task["cpu_seconds"]
    for pid, w in per.items():
        w.pop("_rss", None)
        last = run.last[pid]
        w["s3_s"] = sum(last["s3_seconds"].values())
        w["maxrss_mib"] = last["maxrss_kib"] / 1024.0
        w["init_s"] = run.ready.get(pid)
        w["rows_per_s"] = w["rows"] / w["busy_s"] if w["busy_s"] else 0.0
        w["rows_per_cpu_s"] = w["rows"] / w["cpu_s"] if w["cpu_s"] else 0.0
    return sorted(per.values(), key=lambda w: -w["rows"])


def bench(size_mb=64, workers=2, kind="iris", range_mb=None, visibility=30, samples=SAMPLES,
          timeout=7200, keep=False, concurrency=(10, 100)):
    """One measured run; the figures (``"ok"``: the check passed)."""
    from tools.fixtures import batch_lambda
    from tools.fixtures.aws_emulator import ACCOUNT_ID, REGION, running_emulator
    from tools.ops import batch as batch_cli

    size = int(size_mb * MiB)
    shape = "iris" if kind == "iris" else "dataframe"
    range_mb = range_mb or min(16.0, max(0.25, size_mb / 16.0))
    os.makedirs(WORK_DIR, exist_ok=True)
    directory, artifact = model_dir(kind)
    path = os.path.join(WORK_DIR, "%s-%gMB.csv" % (shape, size_mb))
    t = time.perf_counter()
    generated = batch_file.generate(path, size, shape, seed=0)
    say("batch: %s model, %s; %.1f MB CSV (%d rows, %d bad, %d blank, %d CRLF lines, no final "
        "newline) generated in %.1f s" % (kind, "bundled model/iris" if directory is None
                                          else directory, generated.bytes / MiB, generated.rows,
                                          len(generated.bad), len(generated.blank),
                                          generated.crlf, time.perf_counter() - t))
    settings = {"BATCH_BUCKET": BUCKET, "BATCH_QUEUE": QUEUE, "BATCH_RANGE_MB": str(range_mb),
                "LOG_REQUESTS": "false"}
    if directory:
        settings["MODEL_DIR"] = directory
    queue_arn = "arn:aws:sqs:%s:%s:%s" % (REGION, ACCOUNT_ID, QUEUE)
    figures = {"model": kind, "workers": workers, "range_mb": range_mb,
               "visibility_timeout_s": visibility, "file": generated.as_dict()}
    with running_emulator() as aws:
        s3, sqs = aws.client("s3"), aws.client("sqs")
        urls = batch_lambda.create_stage_resources(s3, sqs, BUCKET, QUEUE,
                                                   visibility_timeout=visibility)
        with batch_lambda.batch_app(aws.endpoint_url, **settings) as app:
            splitter_s3 = batch_worker.CountedS3(app.BATCH_JOBS.clients.s3)
            app.BATCH_JOBS.clients._s3 = splitter_s3
            run = Run(aws.endpoint_url, settings, queue_arn, workers)
            try:
                run.wait_ready(workers)
                say("batch: %d worker processes ready (init %s s)" % (workers, ", ".join(
                    "%.1f" % s for s in run.ready.values())))
                t = time.perf_counter()
                name, _ = batch_cli.submit(s3, app.BATCH, path, join=True)
                upload_s = time.perf_counter() - t
                t0 = time.perf_counter()
                deliver_upload_event(app, sqs, urls["events"])
                split_s = time.perf_counter() - t0
                manifest = follow(run, s3, "batch/out/%s.manifest.json" % name, timeout)
                wall_s = time.perf_counter() - t0
            finally:
                run.finish()
            say("batch: job %s in %.1f s (upload %.1f s, split %.2f s): %d/%d parts"
                % (manifest["status"], wall_s, upload_s, split_s, manifest.get("parts_done", 0),
                   manifest.get("parts_total", 0)))
            t = time.perf_counter()
            at = batch_check.sample_indices(generated.rows, samples)
            body = s3.get_object(Bucket=BUCKET, Key="batch/out/%s.out" % name)["Body"]
            output = batch_check.read_output(body.read, at)
            errors = [json.loads(line) for line in s3.get_object(
                Bucket=BUCKET, Key="batch/out/%s.errors.jsonl" % name)["Body"].read()
                .decode().splitlines()]
            problems = batch_check.check(generated, lambda: open(path, "rb"), output, errors,
                                         manifest)
            texts, batch_says = [], []
            for index in sorted(output.samples):
                text, _, prediction = output.samples[index].rpartition(b",")
                texts.append(text.decode())
                batch_says.append(prediction.decode())
            endpoint_says = [str(p) for p in endpoint_predictions(app, generated.header, texts)]
            differ = sum(a != b for a, b in zip(batch_says, endpoint_says))
            if differ or len(endpoint_says) != len(batch_says):
                problems.append("%d of %d sampled rows scored differently by POST /model"
                                % (differ, len(batch_says)))
            check_s = time.perf_counter() - t
            s3_calls = {}
            for figures_of_pid in list(run.last.values()) + [{"s3_calls": splitter_s3.calls}]:
                for op, n in figures_of_pid["s3_calls"].items():
                    s3_calls[op] = s3_calls.get(op, 0) + n
    redelivered = sum(1 for _, task in run.tasks if task["left_for_redelivery"])
    assembly = [task["assembly_s"] for _, task in run.tasks if task["assembly_s"]]
    per_worker = worker_figures(run)
    rows_done = sum(w["rows"] for w in per_worker)
    busy = sum(w["busy_s"] for w in per_worker)
    rate = rows_done / busy if busy else 0.0
    cpu = sum(w["cpu_s"] for w in per_worker)
    figures.update(
        ok=not problems, problems=problems, status=manifest["status"], wall_s=wall_s,
        upload_s=upload_s, split_s=split_s, check_s=check_s, parts=manifest["parts_total"],
        rows_in=manifest["rows_in"], rows_scored=manifest["rows_scored"],
        rows_failed=manifest["rows_failed"], runtime=manifest.get("model", {}).get("runtime"),
        crashes=len(run.crashes), redelivered=redelivered,
        failed_deliveries=sum(1 for _, task in run.tasks if task["error"]),
        samples=len(batch_says), samples_differ=differ, assembly_s=sum(assembly),
        per_worker=per_worker, rows_per_s_per_worker=rate,
        rows_per_cpu_s_per_worker=rows_done / cpu if cpu else 0.0,
        s3_s_per_range=sum(w["s3_s"] for w in per_worker) / manifest["parts_total"],
        rows_per_s_per_worker_wall=generated.rows / wall_s / workers, s3_calls=s3_calls)
    say("batch: check %s in %.1f s: %d rows out of %d good, once each, in order; %d bad rows "
        "in the error report with their lines; %d sampled rows as POST /model scores them%s"
        % ("PASSED" if not problems else "FAILED", check_s, output.rows, generated.rows,
           len(errors), len(batch_says) - differ, "".join("\n  PROBLEM: " + p for p in problems)))
    say("batch: under %d worker crash(es) mid-range and %d redelivered task(s); %d failed "
        "deliveries" % (figures["crashes"], redelivered, figures["failed_deliveries"]))
    for w in per_worker:
        say("  worker pid %d: %d tasks (%d ranges scored), %d rows in %.1f s busy (CPU %.1f s, "
            "S3 calls %.1f s): %s rows/s busy, %s rows per CPU-s; peak RSS %.0f MiB; init %s s"
            % (w["pid"], w["tasks"], w["ranges_scored"], w["rows"], w["busy_s"], w["cpu_s"],
               w["s3_s"], _n(w["rows_per_s"]), _n(w["rows_per_cpu_s"]), w["maxrss_mib"],
               "%.1f" % w["init_s"] if w["init_s"] else "?"))
    figures["floor"] = floor(path, artifact, shape)
    floor_rate = figures["floor"]["rows"] / figures["floor"]["seconds"]
    figures["floor"]["rows_per_s"] = floor_rate
    floor_cpu = figures["floor"]["rows"] / figures["floor"]["cpu_seconds"]
    figures["floor"]["rows_per_cpu_s"] = floor_cpu
    say("batch: %d rows, %.1f MB, %.1f s wall with %d workers; per worker %s rows/s of busy "
        "time (%s rows per CPU-second; %s rows/s of the job's wall)"
        % (generated.rows, generated.bytes / MiB, wall_s, workers, _n(rate),
           _n(figures["rows_per_cpu_s_per_worker"]), _n(figures["rows_per_s_per_worker_wall"])))
    say("batch: floor, one process, pandas.read_csv(chunksize=200000) + predict (scikit-learn, "
        "no output written): %s rows/s (%s rows per CPU-second; %d rows in %.1f s); a worker "
        "does %.2f of the floor's rows/s (%.2f per CPU-second)"
        % (_n(floor_rate), _n(floor_cpu), figures["floor"]["rows"], figures["floor"]["seconds"],
           rate / floor_rate if floor_rate else 0.0,
           figures["rows_per_cpu_s_per_worker"] / floor_cpu if floor_cpu else 0.0))
    figures["estimates"] = estimates(figures, generated, range_mb, concurrency)
    if not keep:
        os.remove(path)
    return figures


def estimates(figures, generated, range_mb, concurrency):
    n_parts = figures["parts"]
    gets, puts = batch_estimate.s3_per_range(figures["s3_calls"], n_parts)
    measured = {"rows_per_byte": generated.rows / generated.bytes,
                "rows_per_cpu_s": figures["rows_per_cpu_s_per_worker"],
                "s3_s_per_range": figures["s3_s_per_range"],
                "range_bytes": max(1, int(range_mb * MiB)), "s3_get_per_range": gets,
                "s3_put_per_range": puts,
                "assembly_s_per_range": figures["assembly_s"] / n_parts,
                "split_s": figures["split_s"]}
    if range_mb < 16:  # a gigabyte is cut as the stage's default cuts it
        measured["range_bytes"] = 16 * MiB
    say("ESTIMATES (not measured): from %s rows per CPU-second per worker and %.1f s of S3 "
        "calls per range measured above, %.1f S3 GET and %.1f PUT-class requests per range "
        "counted, a worker's Lambda at memory/1,769 of a vCPU; Lambda x86 $%.10f per GB-s, $%.2f per 1M requests; SQS $%.2f per 1M; S3 "
        "$%.4f per 1k GET, $%.3f per 1k PUT (%s; SQS and S3 prices as listed there too)"
        % (_n(figures["rows_per_cpu_s_per_worker"]), figures["s3_s_per_range"], gets, puts,
           LAMBDA_GB_S, LAMBDA_PER_M,
           batch_estimate.SQS_PER_M, batch_estimate.S3_GET_PER_1K, batch_estimate.S3_PUT_PER_1K,
           PRICE_DATE))
    out = []
    stage_mb = batch_memory_mb()
    peak = max((w["maxrss_mib"] for w in figures["per_worker"]), default=0)
    for size_gb in (1, 10):
        for memory in sorted({stage_mb, 1769}):
            lines = [batch_estimate.estimate(size_gb * GiB, measured, memory, n)
                     for n in sorted({figures["workers"], *concurrency})]
            e = lines[0]
            say("  %2d GB (%s rows, %d ranges of %g MB), worker %d MB%s (%.2f vCPU): %s rows/s "
                "per worker, %.1f s per range; %.0f GB-s; cost $%.4f (Lambda $%.4f + %.5f, SQS "
                "$%.5f, S3 $%.4f); wall %s"
                % (size_gb, _n(e["rows"]), e["ranges"], measured["range_bytes"] / MiB, memory,
                   " (the stage's)" if memory == stage_mb else "", e["vcpu_share"],
                   _n(e["rows_per_s_per_worker"]), e["range_s"], e["gb_s"], e["cost"]["total"],
                   e["cost"]["lambda_compute"], e["cost"]["lambda_requests"], e["cost"]["sqs"],
                   e["cost"]["s3_requests"],
                   ", ".join("%s with %d workers" % (_duration(x["wall_s"]), x["concurrency"])
                             for x in lines)))
            out += lines
    if peak and peak * 1.3 > stage_mb:
        say("  note: a worker's peak RSS here was %.0f MiB: the stage's %d MB is too little for "
            "%g MB ranges; give batch_work more memory (or smaller BATCH_RANGE_MB)"
            % (peak, stage_mb, measured["range_bytes"] / MiB))
    return out


def _n(x):
    return "{:,.0f}".format(x)


def _duration(seconds):
    if seconds < 120:
        return "%.0f s" % seconds
    if seconds < 7200:
        return "%.1f min" % (seconds / 60)
    return "%.1f h" % (seconds / 3600)


def save(path, result):
    """``result`` under ``batch``/<model> of the JSON figures at ``path``
    (the other figures kept)."""
    figures = {}
    if os.path.isfile(path):
        with open(path) as f:
            figures = json.load(f)
    figures.setdefault("batch", {})[result["model"]] = result
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(figures, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.batch_gb",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=64.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", choices=("iris", "dataframe"), default="iris")
    parser.add_argument("--range-mb", type=float,
                        help="BATCH_RANGE_MB (default: the stage's 16, less for a small file "
                        "so that it still has 16 ranges)")
    parser.add_argument("--visibility", type=int, default=30,
                        help="the task queue's visibility timeout, seconds")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--json", help="merge the figures into this JSON file (key batch)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    result = bench(args.size_mb, args.workers, args.model, args.range_mb, args.visibility,
                   args.samples, keep=args.keep)
    if args.json:
        save(args.json, result)
        say("figures written to %s (batch/%s)" % (args.json, result["model"]))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
