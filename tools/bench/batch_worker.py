"""One worker process of the batch benchmark: Lambda's SQS poller and the
``batch_work`` function in one, against the emulator. It loads app.py with
the batch stage's settings (its init), then receives one range task at a
time, hands it to ``batch_work`` in the event shape Lambda builds, deletes
it on success and returns it to the queue on failure; every S3 call is
counted and timed. Each task's figures go to the parent as they happen.

What it may be told to do once, on its first task: ``crash`` (killed by
SIGKILL mid-range: its part written, its error report not, the part not
counted; the message comes back after the visibility timeout) or
``redeliver`` (its task done, the message made visible again instead of
deleted, so another delivery of it arrives at once).

Imports nothing heavy at the top: the process must start with its thread
settings in the environment before numpy does.
"""
import io
import json
import os
import signal
import time


class CountedS3:
    """An S3 client whose calls are counted and timed (a GET's body is read
    inside the timing); ``crash(name, kwargs)`` true kills the process."""

    def __init__(self, client):
        self._client = client
        self.calls, self.seconds = {}, {}
        self.crash = None

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(**kwargs):
            if self.crash is not None and self.crash(name, kwargs):
                os.kill(os.getpid(), signal.SIGKILL)
            started = time.perf_counter()
            try:
                result = attr(**kwargs)
                if name == "get_object":
                    from botocore.response import StreamingBody
                    data = result["Body"].read()
                    result["Body"] = StreamingBody(io.BytesIO(data), len(data))
                return result
            finally:
                self.calls[name] = self.calls.get(name, 0) + 1
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return call


def _crash_mid_range(name, kwargs):
    key = kwargs.get("Key", "")
    return name == "put_object" and "/work/" in key and key.endswith(".errors.jsonl")


def peak_rss_kib():
    """This process's peak resident memory since its exec (``VmHWM``): not
    ``ru_maxrss``, which a process spawned (fork, then exec) from a large
    parent inherits from the parent's resident memory at the fork."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(endpoint, settings, index, inject, stop, results, queue_arn):
    """The worker's loop until ``stop`` is set; figures to ``results``."""
    from tools.fixtures.batch_lambda import batch_app, receive, sqs_event
    started = time.perf_counter()
    with batch_app(endpoint, **settings) as app:
        jobs = app.BATCH_JOBS
        jobs.model.ready()
        s3 = CountedS3(jobs.clients.s3)
        jobs.clients._s3 = s3
        sqs, url = jobs.clients.sqs, jobs.queue_url
        seen = {}
        score_part, assemble = jobs._score_part, jobs._assemble

        def scored(task, keys):
            seen["stats"] = score_part(task, keys)
            return seen["stats"]

        def assembled(task, keys):
            t = time.perf_counter()
            assemble(task, keys)
            seen["assembly_s"] = time.perf_counter() - t

        jobs._score_part, jobs._assemble = scored, assembled
        results.put(("ready", index, os.getpid(), time.perf_counter() - started))
        first = True
        while not stop.is_set():
            messages = receive(sqs, url, 1, wait=1)
            if not messages:
                continue
            message = messages[0]
            part = json.loads(message["Body"]).get("part")
            if first and inject == "crash":
                s3.crash = _crash_mid_range
            seen.clear()
            t, cpu = time.perf_counter(), time.process_time()
            error = None
            try:
                app.batch_work(sqs_event(messages, queue_arn), None)
            except Exception as exc:  # the queue delivers it again
                error = "%s: %s" % (type(exc).__name__, exc)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            redeliver = first and inject == "redeliver"
            if error or redeliver:
                sqs.change_message_visibility(QueueUrl=url, VisibilityTimeout=0,
                                              ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            stats = seen.get("stats")
            results.put(("task", index, os.getpid(), {
                "part": part, "seconds": seconds, "cpu_seconds": cpu, "error": error,
                "rows": stats["rows_in"] if stats else 0, "scored": stats is not None,
                "assembly_s": seen.get("assembly_s"), "left_for_redelivery": redeliver,
                "s3_calls": dict(s3.calls), "s3_seconds": dict(s3.seconds),
                "maxrss_kib": peak_rss_kib()}))
            first = False
    results.put(("done", index, os.getpid(), None))
